"""The uplink over the paho-mqtt adapter (gateway/host/mqtt_paho.py), and TLS
to the broker for real: Mosquitto's TLS listener with a throwaway CA
(devharness/tlscerts.py), both MQTT clients, and the runtime's
`make_mqtt_client` with `uplink.tls` on, readings delivered end to end
through a FleetStack (real Mosquitto, fleet server, SQLite)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devharness.broker import Mosquitto
from devharness.stack import FleetStack
from devharness.tlscerts import TLSFiles, client_context, make_tls_files
from device_drivers.gatt import BLOOD_PRESSURE_MEASUREMENT
from gateway.config import validate
from gateway.host.mqtt_paho import PahoMQTTClient
from gateway.indicator import RecordingIndicator
from gateway.mqtt import ConnectionLost, MQTTClient
from gateway.runtime import make_mqtt_client
from gateway.sim.cuff import SimulatedCuff
from tests.integration.test_end_to_end import make_gateway, wait_async

HOST = "127.0.0.1"
Client = MQTTClient | PahoMQTTClient


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_broker(tls: TLSFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """An anonymous Mosquitto with a TLS listener beside its plain one."""
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto-tls"))
    b.enable_tls(tls.certfile, tls.keyfile).start()
    yield b
    b.stop()


def client_of(kind: str) -> Callable[..., Client]:
    return PahoMQTTClient if kind == "paho" else MQTTClient


# --- the uplink over paho, no TLS ----------------------------------------------


def test_uplink_over_paho_delivers_and_survives_a_broker_restart(stack: FleetStack,
                                                                 tmp_path: Path) -> None:
    cuff = SimulatedCuff(addr="C4:7C:8D:6A:00:14", serial="5140200014", rng=random.Random(14))
    gw = stack.gateways[0].gateway
    assert stack.broker is not None
    broker = stack.broker

    async def scenario() -> RecordingIndicator:
        core, uplink, indicator = make_gateway(stack, 0, tmp_path / "journal",
                                               client_factory=PahoMQTTClient,
                                               resend_after_ms=3000)
        assert isinstance(uplink.client, PahoMQTTClient)
        task = asyncio.create_task(uplink.run())
        assert core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, cuff.measure()) == 1
        await wait_async(lambda: core.journal.depth == 0)
        first = stack.get("/readings", gateway=gw)
        assert [(r["seq"], r["type"], r["instrument"]["serial"]) for r in first] == \
            [(1, "blood_pressure", cuff.serial)]
        for _ in range(4):
            core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, cuff.measure())
        await wait_async(lambda: core.journal.depth == 0)
        await asyncio.to_thread(broker.stop)
        await wait_async(lambda: not uplink.connected, timeout=30)
        for _ in range(5):  # taken while the link is down
            core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, cuff.measure())
        assert core.journal.depth == 5
        await asyncio.to_thread(broker.start)
        for _ in range(5):
            core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, cuff.measure())
        await wait_async(lambda: core.journal.depth == 0, timeout=30)
        assert uplink.stats["reconnects"] >= 1
        uplink.stop()
        await task
        assert not uplink.client.is_connected
        return indicator

    indicator = asyncio.run(scenario())
    assert [e for e in indicator.events if e[0] == "buffered"]
    rows = stack.get("/readings", gateway=gw)
    assert sorted(r["seq"] for r in rows) == list(range(1, 16))  # each once


# --- TLS ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ours", "paho"])
def test_clients_publish_over_tls(tls_broker: Mosquitto, tls: TLSFiles, kind: str) -> None:
    async def main() -> None:
        t = "test/tls/" + kind
        c = client_of(kind)("tls-" + kind, HOST, tls_broker.tls_port, clean_session=True,
                            ssl=client_context(tls.cafile))
        assert await c.connect(timeout=5) is False
        assert await c.subscribe(t, 1) == 1
        await c.publish(t, b"over tls", qos=1)
        assert (await c.next_message(timeout=3)).payload == b"over tls"
        # and a client on the plain listener sees what came over TLS
        plain = MQTTClient("plain-" + kind, HOST, tls_broker.port, clean_session=True)
        await plain.connect()
        await plain.subscribe(t, 1)
        await c.publish(t, b"to plain", qos=1)
        assert (await plain.next_message(timeout=3)).payload == b"to plain"
        await plain.disconnect()
        c.abort()
        await c.connect(timeout=5)  # reconnects over TLS on the same object
        await c.disconnect()

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["ours", "paho"])
def test_wrong_ca_or_no_tls_is_refused(tls_broker: Mosquitto, tmp_path: Path,
                                       kind: str) -> None:
    stranger = make_tls_files(tmp_path / "other-ca", ca_name="Some other CA")

    async def main() -> None:
        c = client_of(kind)("wrong-ca-" + kind, HOST, tls_broker.tls_port, clean_session=True,
                            ssl=client_context(stranger.cafile))
        with pytest.raises(ConnectionLost) as lost:
            await c.connect(timeout=5)
        assert "CERTIFICATE_VERIFY_FAILED" in str(lost.value)
        assert not c.is_connected
        # plain MQTT to the TLS port never gets a CONNACK
        clear = client_of(kind)("clear-" + kind, HOST, tls_broker.tls_port, clean_session=True)
        with pytest.raises((ConnectionLost, asyncio.TimeoutError)):
            await clear.connect(timeout=2)
        assert not clear.is_connected

    asyncio.run(main())


def test_runtime_client_with_tls_delivers_end_to_end(stack: FleetStack, tmp_path: Path) -> None:
    """uplink.tls on: gateway 0 through gateway.runtime.make_mqtt_client (our
    client), gateway 1 through the paho adapter, both over the broker's TLS
    listener; the fleet server stays on the plain one."""
    assert stack.broker is not None
    files = make_tls_files(tmp_path / "tls")
    stack.broker.enable_tls(files.certfile, files.keyfile)
    stack.broker.restart()
    ctx = client_context(files.cafile)
    tls_port = stack.broker.tls_port
    acc = stack.gateways[0]
    cfg = validate({"version": 1, "unit": acc.unit, "gateway": acc.gateway,
                    "network": {"mode": "host"}, "instruments": [],
                    "uplink": {"broker_host": HOST, "broker_port": stack.broker.tls_port,
                               "tls": True, "password": acc.password, "keepalive_s": 30}})
    with pytest.raises(ValueError):
        make_mqtt_client(cfg)  # TLS on and no context: refuses to go in clear
    ours = make_mqtt_client(cfg, ssl_context=ctx)
    assert isinstance(ours, MQTTClient) and ours.ssl is ctx

    def paho_tls(*args: Any, **kw: Any) -> PahoMQTTClient:
        return PahoMQTTClient(*args, **{**kw, "ssl": ctx})

    cuff = SimulatedCuff(addr="C4:7C:8D:6A:00:15", serial="5140200015", rng=random.Random(15))

    async def scenario() -> None:
        core0, up0, _ = make_gateway(stack, 0, tmp_path / "j0", resend_after_ms=1500)
        up0.client = ours  # the runtime's client, as Runtime would give it
        core1, up1, _ = make_gateway(stack, 1, tmp_path / "j1", resend_after_ms=1500,
                                     client_factory=paho_tls, port=tls_port)
        assert isinstance(up1.client, PahoMQTTClient)
        tasks = [asyncio.create_task(u.run()) for u in (up0, up1)]
        for core in (core0, core1):
            core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, cuff.measure())
        await wait_async(lambda: core0.journal.depth == 0 and core1.journal.depth == 0,
                         timeout=30)
        assert up0.stats["link_errors"] == 0 and up1.stats["link_errors"] == 0
        for u in (up0, up1):
            u.stop()
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    for g in stack.gateways:
        assert [r["seq"] for r in stack.get("/readings", gateway=g.gateway)] == [1]
