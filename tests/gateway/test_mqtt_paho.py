"""The paho-mqtt adapter (gateway/host/mqtt_paho.py) against a real Mosquitto,
side by side with our own client: each behaviour the Uplink relies on is run
on both, and must come out the same. MQTT 5 sessions for the adapter alone.

A stalled broker is made with SIGSTOP (the TCP connection stays up, nothing
answers).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from devharness.broker import GatewayAccount, Mosquitto, ServiceAccount
from gateway.host.mqtt_paho import MQTT_5, PahoMQTTClient
from gateway.mqtt import (
    ConnectionLost,
    ConnectRefused,
    LocalProtocolError,
    MQTTClient,
    MQTTError,
    SubscribeRefused,
)

HOST = "127.0.0.1"
KINDS = ("ours", "paho", "paho5")  # paho5: the adapter speaking MQTT 5

Client = MQTTClient | PahoMQTTClient


def make(kind: str, client_id: str, port: int, **kw: Any) -> Client:
    if kind == "paho5":
        return PahoMQTTClient(client_id, HOST, port, mqtt_version=MQTT_5, **kw)
    if kind == "paho":
        return PahoMQTTClient(client_id, HOST, port, **kw)
    return MQTTClient(client_id, HOST, port, **kw)


def run(coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %.1f s" % timeout)
        await asyncio.sleep(0.02)


async def reconnect(c: Client, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await c.connect(timeout=1)
        except (MQTTError, OSError, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


@contextmanager
def stopped(broker: Mosquitto) -> Iterator[None]:
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_and_interface(broker: Mosquitto, kind: str) -> None:
    async def main() -> None:
        c = make(kind, "rt-" + kind, broker.port, clean_session=True)
        with pytest.raises(ConnectionLost) as lost:
            await c.publish("test/rt/" + kind, b"x", qos=1)
        assert lost.value.queued is False  # not connected: not taken
        assert await c.connect() is False
        with pytest.raises(LocalProtocolError):
            await c.connect()
        assert c.is_connected
        assert await c.subscribe("test/rt/" + kind, 1) == 1
        await c.publish("test/rt/" + kind, b"one", qos=1)
        await c.publish("test/rt/" + kind, "two", qos=0)
        m1, m2 = await c.next_message(timeout=3), await c.next_message(timeout=3)
        assert (m1.topic, m1.payload, m1.qos) == ("test/rt/" + kind, b"one", 1)
        assert m2.payload == b"two"
        assert c.inflight == 0
        c.abort()  # synchronous
        assert not c.is_connected
        with pytest.raises(ConnectionLost):
            await c.next_message(timeout=1)
        await reconnect(c)  # the same object connects again
        await c.disconnect()
        assert not c.is_connected

    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_persistent_session_gets_what_came_while_offline(broker: Mosquitto, kind: str) -> None:
    async def main() -> None:
        topic = "test/persist/" + kind
        c = make(kind, "persist-" + kind, broker.port, clean_session=False)
        await c.connect()
        await c.subscribe(topic, 1)
        await c.disconnect()
        other = MQTTClient("persist-pub-" + kind, HOST, broker.port, clean_session=True)
        await other.connect()
        for i in range(3):
            await other.publish(topic, b"p%d" % i, qos=1)
        await other.disconnect()
        assert await c.connect() is True  # session present
        got = [(await c.next_message(timeout=3)).payload for _ in range(3)]
        assert got == [b"p0", b"p1", b"p2"]
        await c.disconnect()

    run(main())


def test_mqtt5_session_survives_a_broker_restart(broker_factory: Callable[..., Mosquitto]) -> None:
    b = broker_factory()

    async def main() -> None:
        c = PahoMQTTClient("v5-gw", HOST, b.port, clean_session=False, mqtt_version=MQTT_5)
        assert await c.connect() is False
        assert await c.subscribe("test/v5", 1) == 1
        await c.disconnect()
        await asyncio.to_thread(b.restart)
        other = PahoMQTTClient("v5-pub", HOST, b.port, clean_session=True, mqtt_version=MQTT_5)
        await other.connect()
        await other.publish("test/v5", b"while away", qos=1)
        await other.disconnect()
        assert await c.connect() is True  # clean_start=False + session expiry
        assert (await c.next_message(timeout=3)).payload == b"while away"
        await c.disconnect()

    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_last_will_on_close_but_not_on_disconnect(broker: Mosquitto, kind: str) -> None:
    async def main() -> None:
        topic = "test/will/" + kind
        watcher = MQTTClient("will-watch-" + kind, HOST, broker.port, clean_session=True)
        await watcher.connect()
        await watcher.subscribe(topic + "/#", 1)
        clean = make(kind, "will-clean-" + kind, broker.port, clean_session=True,
                     will=(topic + "/clean", b"offline", 1, False))
        await clean.connect()
        await clean.disconnect()
        crash = make(kind, "will-crash-" + kind, broker.port, clean_session=True,
                     will=(topic + "/crash", b"offline", 1, False))
        await crash.connect()
        await crash.close()
        assert not crash.is_connected
        # The crash's will is the first message: the clean stop sent none.
        m = await watcher.next_message(timeout=3)
        assert (m.topic, m.payload) == (topic + "/crash", b"offline")
        await watcher.disconnect()

    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_password_refused_and_acl_subscribe(broker_factory: Callable[..., Mosquitto],
                                                  kind: str) -> None:
    acc = GatewayAccount("U001", "gw-u001", "right-password")
    other = GatewayAccount("U002", "gw-u002", "other-password")
    svc = ServiceAccount("fleet", "fleet-password")
    b = broker_factory(gateways=[acc, other], services=[svc])

    async def main() -> None:
        bad = make(kind, acc.gateway, b.port, username=acc.gateway, password="wrong")
        with pytest.raises(ConnectRefused) as refused:
            await bad.connect()
        # bad user name or password / not authorized (MQTT 5: 134 / 135)
        assert refused.value.code in ((134, 135) if kind == "paho5" else (4, 5))
        assert refused.value.reason in str(refused.value)
        assert not bad.is_connected
        good = make(kind, acc.gateway, b.port, username=acc.gateway,
                    password=acc.password.encode(), clean_session=True)
        await good.connect()
        # Mosquitto 2.0.11 grants a subscription its ACL forbids (SUBACK 1,
        # not 0x80: no SubscribeRefused) and then delivers nothing on it.
        assert await good.subscribe(other.prefix + "/cmd", 1) == 1
        assert await good.subscribe(acc.prefix + "/cmd", 1) == 1
        fleet = MQTTClient("fleet-" + kind, HOST, b.port, username=svc.username,
                           password=svc.password, clean_session=True)
        await fleet.connect()
        await fleet.publish(other.prefix + "/cmd", b"not for you", qos=1)
        await fleet.publish(acc.prefix + "/cmd", b"for you", qos=1)
        await fleet.disconnect()
        m = await good.next_message(timeout=3)  # the first one that came
        assert (m.topic, m.payload) == (acc.prefix + "/cmd", b"for you")
        await good.disconnect()

    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_unacked_publish_is_kept_and_sent_again(broker_factory: Callable[..., Mosquitto],
                                                kind: str) -> None:
    b = broker_factory()

    async def main() -> None:
        topic = "test/held/" + kind
        watcher = MQTTClient("held-watch-" + kind, HOST, b.port, clean_session=False)
        await watcher.connect()
        await watcher.subscribe(topic, 1)
        c = make(kind, "held-" + kind, b.port, clean_session=False, ack_timeout=1)
        await c.connect()
        await c.publish(topic, b"before", qos=1)
        with stopped(b):
            with pytest.raises(ConnectionLost) as lost:
                await c.publish(topic, b"during", qos=1)
        assert lost.value.queued is True
        assert "no ack" in str(lost.value)
        assert c.inflight == 1 and not c.is_connected
        await reconnect(c)
        await until(lambda: c.inflight == 0)  # re-sent and acknowledged
        got = []
        while b"during" not in got:
            got.append((await watcher.next_message(timeout=3)).payload)
        assert got[0] == b"before"
        await c.disconnect()
        await watcher.disconnect()

    run(main())


def test_inflight_window_is_never_exceeded(broker_factory: Callable[..., Mosquitto]) -> None:
    b = broker_factory()

    async def main() -> None:
        c = PahoMQTTClient("window", HOST, b.port, clean_session=False, max_inflight=2)
        await c.connect()
        with stopped(b):
            tasks = [asyncio.create_task(c.publish("test/window", b"%d" % i, qos=1))
                     for i in range(3)]
            await until(lambda: c.inflight == 2)
            await asyncio.sleep(0.3)
            assert c.inflight == 2 and not any(t.done() for t in tasks)  # the third waits
        await asyncio.gather(*tasks)  # PUBACKs came: all three went, in turn
        assert c.inflight == 0
        await c.disconnect()

    run(main())


@pytest.mark.parametrize("kind", KINDS[:2])
def test_suback_failure_is_subscribe_refused(kind: str) -> None:
    """A broker that answers SUBACK 0x80 (Mosquitto 2.0.11 does not, see
    above): a one-connection fake broker speaking just enough MQTT 3.1.1."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def packet() -> bytes:
            head = await reader.readexactly(2)  # small packets: one length byte
            return head + await reader.readexactly(head[1])
        await packet()  # CONNECT
        writer.write(b"\x20\x02\x00\x00")  # CONNACK accepted, no session
        sub = await packet()
        assert sub[0] == 0x82
        writer.write(b"\x90\x03" + sub[2:4] + b"\x80")  # SUBACK failure
        await writer.drain()
        await reader.read()  # until the client goes

    async def main() -> None:
        server = await asyncio.start_server(serve, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        c = make(kind, "refused-" + kind, port, clean_session=True)
        await c.connect()
        with pytest.raises(SubscribeRefused) as refused:
            await c.subscribe("not/yours", 1)
        assert refused.value.topic_filter == "not/yours"
        assert c.is_connected  # a refusal does not end the link
        c.abort()
        server.close()

    run(main())
