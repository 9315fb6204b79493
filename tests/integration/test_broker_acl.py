"""Every gateway has its own credentials, and the broker lets it publish and
read only its own topics (docs/protocol.md, "Security")."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devharness.accounts import make_accounts
from devharness.broker import GatewayAccount, Mosquitto, ServiceAccount


def _recorder(seen: list[str], got: threading.Event) -> Callable[..., None]:
    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        seen.append(msg.topic)
        got.set()
    return on_message


def _client(user: str, password: str, port: int) -> mqtt.Client:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=user + "-t",
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password)
    rc = c.connect("127.0.0.1", port)
    assert rc == 0
    c.loop_start()
    return c


Secured = tuple[Mosquitto, list[GatewayAccount], ServiceAccount]


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    gateways, service = make_accounts(2)
    b = Mosquitto(tmp_path / "b", gateways=gateways, services=[service]).start()
    yield b, gateways, service
    b.stop()


def test_gateway_cannot_publish_into_another_gateways_topics(secured: Secured) -> None:
    broker, (a, b), service = secured
    seen: list[str] = []
    got = threading.Event()
    watcher = _client(service.username, service.password, broker.port)
    watcher.on_message = _recorder(seen, got)
    watcher.subscribe("ummc/v1/#", qos=1)
    attacker = _client(a.gateway, a.password, broker.port)
    import time
    time.sleep(0.3)
    attacker.publish(f"{b.prefix}/data", b"{}", qos=1).wait_for_publish(5)
    attacker.publish(f"{a.prefix}/data", b"{}", qos=1).wait_for_publish(5)
    assert got.wait(5)
    time.sleep(0.3)
    assert seen == [f"{a.prefix}/data"]
    attacker.loop_stop()
    watcher.loop_stop()


def test_gateway_cannot_read_another_gateways_acks(secured: Secured) -> None:
    # Mosquitto 2.0 grants a subscription the ACL denies (SUBACK QoS 1) but
    # never delivers a message on it: check delivery, not the SUBACK.
    import time
    broker, (a, b), service = secured
    server = _client(service.username, service.password, broker.port)
    server.publish(f"{b.prefix}/ack", b"for b", qos=1, retain=True).wait_for_publish(5)
    server.publish(f"{a.prefix}/ack", b"for a", qos=1, retain=True).wait_for_publish(5)
    seen: list[str] = []
    got = threading.Event()
    c = _client(a.gateway, a.password, broker.port)
    c.on_message = _recorder(seen, got)
    c.subscribe([(f"{b.prefix}/ack", 1), (f"{a.prefix}/ack", 1), ("ummc/v1/#", 1)])
    assert got.wait(5)
    time.sleep(0.5)
    assert set(seen) == {f"{a.prefix}/ack"}  # overlapping filters may deliver it twice
    c.loop_stop()
    server.loop_stop()


def test_wrong_password_is_refused(secured: Secured) -> None:
    broker, (a, _), _ = secured
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="x",
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(a.gateway, "wrong")
    result: list[Any] = []
    ev = threading.Event()

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        result.append(rc)
        ev.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    assert ev.wait(5)
    c.loop_stop()
    assert result and getattr(result[0], "is_failure", True)
