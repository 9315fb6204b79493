"""The ingest worker against a real Mosquitto: a batch published on a data
topic is stored, and the retained ack arrives only after the commit.

Every test uses its own gateway id, client id and shared-subscription group:
the `broker` fixture is shared by the whole session, and Mosquitto keeps
retained acks and persistent sessions (an offline member of a shared group
is still dealt its share of the messages)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from devharness.broker import GatewayAccount, Mosquitto, ServiceAccount
from fleet_server import ingest
from fleet_server.db import session_factory
from fleet_server.ingest import IngestWorker
from fleet_server.models import Reading
from tests.fleet_server.helpers import golden, golden_json, make_settings, register


@dataclass
class Names:
    unit: str
    gateway: str
    client_id: str
    group: str

    def topic(self, leaf: str) -> str:
        return f"ummc/v1/{self.unit}/{self.gateway}/{leaf}"


@pytest.fixture
def names() -> Names:
    tag = uuid.uuid4().hex[:8]
    return Names(unit=f"U{tag}", gateway=f"gw-{tag}", client_id=f"ingest-{tag}",
                 group=f"g{tag}")


@dataclass
class Inbox:
    """A paho client's received messages, with a check run at delivery time."""

    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    seen_at_delivery: list[Any] = field(default_factory=list)
    event: threading.Event = field(default_factory=threading.Event)

    def wait(self, n: int = 1, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.messages)} of {n} messages in {timeout} s")
            self.event.wait(0.05)
            self.event.clear()
        return self.messages


def _client(port: int, client_id: str, user: tuple[str, str] | None = None) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if user:
        c.username_pw_set(*user)
    assert c.connect("127.0.0.1", port) == mqtt.MQTT_ERR_SUCCESS
    c.loop_start()
    return c


def _subscribe(c: mqtt.Client, topic: str, check: Any = None) -> Inbox:
    inbox = Inbox()
    subscribed = threading.Event()

    def on_message(_c: mqtt.Client, _u: Any, m: mqtt.MQTTMessage) -> None:
        if check is not None:
            inbox.seen_at_delivery.append(check())
        inbox.messages.append(m)
        inbox.event.set()

    c.on_message = on_message
    c.on_subscribe = lambda *_a: subscribed.set()
    c.subscribe(topic, qos=1)
    assert subscribed.wait(5)
    return inbox


def _stop(*clients: mqtt.Client) -> None:
    for c in clients:
        c.disconnect()
        c.loop_stop()


@pytest.fixture
def worker_factory(names: Names) -> Iterator[Any]:
    workers: list[IngestWorker] = []

    def make(engine: Engine, port: int, user: tuple[str, str] | None = None) -> IngestWorker:
        settings = make_settings(str(engine.url), mqtt_host="127.0.0.1", mqtt_port=port,
                                 mqtt_client_id=names.client_id, ingest_group=names.group,
                                 mqtt_session_expiry=60,
                                 mqtt_username=user[0] if user else None,
                                 mqtt_password=user[1] if user else None)
        w = IngestWorker(settings, session_factory(engine))
        w.start()
        assert w.subscribed.wait(10), "worker did not subscribe"
        workers.append(w)
        return w

    yield make
    for w in workers:
        w.stop()


def _count(engine: Engine, gateway: str) -> int:
    with Session(engine) as s:
        return len(s.scalars(select(Reading.seq).join(Reading.gateway)
                             .where(Reading.gateway.has(gateway_id=gateway))).all())


def test_batch_is_stored_and_retained_ack_follows_the_commit(
        engine: Engine, broker: Mosquitto, names: Names, worker_factory: Any) -> None:
    with Session(engine) as s:
        register(s, (names.unit, names.gateway))
    worker = worker_factory(engine, broker.port)
    watcher = _client(broker.port, f"watch-{names.gateway}")
    acks = _subscribe(watcher, names.topic("ack"),
                      check=lambda: _count(engine, names.gateway))
    gateway = _client(broker.port, f"pub-{names.gateway}")
    gateway.publish(names.topic("data"), golden("data_bp.json"), qos=1).wait_for_publish(5)

    [msg] = acks.wait(1)
    assert acks.seen_at_delivery == [2]  # both rows committed when the ack arrived
    ack = json.loads(msg.payload)
    assert (ack["v"], ack["jid"], ack["upto"], ack["rejected"]) == (1, "3f9a1c02", 102, [])
    assert abs(ack["server_time"] - time.time() * 1000) < 60_000

    gateway.publish(names.topic("data"), golden("data_mixed_bad.json"),
                    qos=1).wait_for_publish(5)
    acks.wait(2)
    second = json.loads(acks.messages[1].payload)
    expected = golden_json("ack.json")
    assert (second["upto"], second["rejected"]) == (expected["upto"], expected["rejected"])

    late = _client(broker.port, f"late-{names.gateway}")  # a reconnecting gateway
    retained = _subscribe(late, names.topic("ack")).wait(1)[0]
    assert retained.retain and json.loads(retained.payload)["upto"] == 104
    assert worker.stats["acks_published"] == 2 and worker.stats["readings_stored"] == 3
    assert worker.stats["records_rejected"] == 1
    _stop(watcher, gateway, late)


def test_a_failing_message_is_counted_and_the_loop_goes_on(
        sqlite_url: str, broker: Mosquitto, names: Names, worker_factory: Any,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from fleet_server.db import make_engine

    engine = make_engine(sqlite_url)
    with Session(engine) as s:
        register(s, (names.unit, names.gateway))
    real = ingest.ingest_batch
    calls: list[int] = []

    def flaky(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(*args)

    monkeypatch.setattr(ingest, "ingest_batch", flaky)
    worker = worker_factory(engine, broker.port)
    watcher = _client(broker.port, f"watch-{names.gateway}")
    acks = _subscribe(watcher, names.topic("ack"))
    gateway = _client(broker.port, f"pub-{names.gateway}")
    for _ in range(2):  # the first fails, the re-send goes through
        gateway.publish(names.topic("data"), golden("data_bp.json"), qos=1).wait_for_publish(5)
    acks.wait(1)
    assert worker.stats["errors"] == 1 and worker.stats["messages"] == 2
    assert _count(engine, names.gateway) == 2
    assert "failed; the gateway will re-send" in caplog.text
    assert "138" not in caplog.text  # no medical value in the logs
    _stop(watcher, gateway)
    worker.stop()
    engine.dispose()


def test_messages_wait_in_the_session_while_the_worker_is_down(
        sqlite_url: str, broker: Mosquitto, names: Names, worker_factory: Any) -> None:
    from fleet_server.db import make_engine

    engine = make_engine(sqlite_url)
    with Session(engine) as s:
        register(s, (names.unit, names.gateway))
    first = worker_factory(engine, broker.port)
    first.stop()  # clean stop: the session (and its shared subscriptions) stays
    gateway = _client(broker.port, f"pub-{names.gateway}")
    gateway.publish(names.topic("data"), golden("data_bp.json"), qos=1).wait_for_publish(5)
    assert _count(engine, names.gateway) == 0
    watcher = _client(broker.port, f"watch-{names.gateway}")
    acks = _subscribe(watcher, names.topic("ack"))
    worker_factory(engine, broker.port)  # same client id: resumes the session
    acks.wait(1)
    assert _count(engine, names.gateway) == 2
    _stop(watcher, gateway)
    engine.dispose()


def test_with_per_gateway_accounts_and_acls(sqlite_url: str, broker_factory: Any,
                                            names: Names, worker_factory: Any) -> None:
    """Shared subscriptions pass Mosquitto's ACL for the service account, and
    the gateway reads its own ack."""
    from fleet_server.db import make_engine

    account = GatewayAccount(names.unit, names.gateway, "gw-secret")
    service = ServiceAccount("fleet-server", "svc-secret")
    secured: Mosquitto = broker_factory(gateways=[account], services=[service])
    engine = make_engine(sqlite_url)
    with Session(engine) as s:
        register(s, (names.unit, names.gateway))
    worker_factory(engine, secured.port, user=(service.username, service.password))
    gw = _client(secured.port, names.gateway, user=(names.gateway, "gw-secret"))
    acks = _subscribe(gw, names.topic("ack"))
    gw.publish(names.topic("data"), golden("data_bp.json"), qos=1).wait_for_publish(5)
    assert json.loads(acks.wait(1)[0].payload)["upto"] == 102
    _stop(gw)
    engine.dispose()


def test_worker_rides_out_a_broker_restart(sqlite_url: str, broker_factory: Any, names: Names,
                                           worker_factory: Any) -> None:
    from fleet_server.db import make_engine

    private: Mosquitto = broker_factory()
    engine = make_engine(sqlite_url)
    with Session(engine) as s:
        register(s, (names.unit, names.gateway))
    worker = worker_factory(engine, private.port)
    private.restart()
    assert worker.subscribed.wait(15), "no reconnect after the broker restart"
    gateway = _client(private.port, f"pub-{names.gateway}")
    acks = _subscribe(gateway, names.topic("ack"))
    gateway.publish(names.topic("data"), golden("data_bp.json"), qos=1).wait_for_publish(5)
    acks.wait(1)
    assert worker.stats["connects"] >= 2 and _count(engine, names.gateway) == 2
    _stop(gateway)
    engine.dispose()


def test_worker_stops_promptly_without_a_broker(sqlite_url: str, names: Names) -> None:
    from devharness.ports import free_port
    from fleet_server.db import make_engine

    engine = make_engine(sqlite_url)
    settings = make_settings(sqlite_url, mqtt_host="127.0.0.1", mqtt_port=free_port(),
                             mqtt_client_id=names.client_id)
    worker = IngestWorker(settings, session_factory(engine))
    worker.start()
    time.sleep(1.5)  # a failed connect and a retry
    started = time.monotonic()
    worker.stop()
    assert time.monotonic() - started < 5
    assert not [t for t in threading.enumerate() if "paho" in t.name.lower()]
    engine.dispose()
