"""Gateway credentials issued by the API, against a real Mosquitto that reads
the password and ACL files the fleet server writes (and reloads on SIGHUP):
the issued login works for the gateway's own topics and nothing else,
rotating locks the old password out, other broker users are left alone,
and every mistake gets its status and field."""

from __future__ import annotations

import asyncio
import secrets
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, select

from devharness import broker as devbroker
from devharness.broker import GatewayAccount, Mosquitto, ServiceAccount
from devharness.processes import wait_until
from fleet_server import broker_accounts, crud
from fleet_server.api import create_app
from fleet_server.db import session_factory
from fleet_server.models import Gateway, Role, Unit, User
from fleet_server.security import hash_password
from gateway.mqtt import MQTTClient
from gateway.mqtt.client import ConnectRefused
from tests.fleet_server.helpers import NOW, make_settings, register

SECRET = "t" * 40
SERVICE = ServiceAccount("fleet-server", secrets.token_urlsafe(18))
LEGACY = GatewayAccount("U002", "gw-u002", secrets.token_urlsafe(18))  # made by hand


@dataclass
class Env:
    client: TestClient
    engine: Engine
    broker: Mosquitto
    tokens: dict[Role, str]
    passwd: Path
    acl: Path

    def issue(self, gateway: str, body: Any, role: Role = Role.admin) -> httpx.Response:
        return self.client.post(f"/api/v1/gateways/{gateway}/credentials", json=body,
                                headers={"Authorization": f"Bearer {self.tokens[role]}"})


def _app(engine: Engine, **settings: Any) -> tuple[TestClient, dict[Role, str]]:
    tokens: dict[Role, str] = {}
    with session_factory(engine)() as s:
        register(s, ("U001", "gw-u001"), ("U002", "gw-u002"))
        pw = hash_password("x" * 12)
        for role in Role:
            user = User(username=f"{role.value}-1", role=role.value, password_hash=pw,
                        is_active=True, created_at=NOW)
            s.add(user)
            s.flush()
            tokens[role], _ = crud.issue_token(s, user=user, secret_key=SECRET,
                                               ttl=timedelta(hours=1), now=datetime.now(UTC))
        s.commit()
    app = create_app(make_settings(str(engine.url), secret_key=SECRET, **settings),
                     engine=engine)
    return TestClient(app), tokens


@pytest.fixture
def env(engine: Engine, tmp_path: Path) -> Iterator[Env]:
    etc = tmp_path / "etc"
    etc.mkdir()
    passwd, acl, pid = etc / "passwd", etc / "acl", tmp_path / "mosquitto.pid"
    # The administrator's starting point: the service account (and one gateway
    # made by hand with mosquitto_passwd) in the files Mosquitto is told to read.
    b = Mosquitto(tmp_path / "mq", gateways=[LEGACY], services=[SERVICE], password_file=passwd,
                  acl_file=acl, pid_file=pid).start()
    client, tokens = _app(engine, broker_password_file=str(passwd), broker_acl_file=str(acl),
                          broker_pid_file=str(pid), broker_service_users=SERVICE.username,
                          broker_public_url=f"mqtt://127.0.0.1:{b.port}")
    with client:
        yield Env(client, engine, b, tokens, passwd, acl)
    b.stop()


# --- paho helpers --------------------------------------------------------------------------

def _login(port: int, user: str, password: str) -> bool:
    """Whether the broker accepts this login (CONNACK success)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{secrets.token_hex(4)}",
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password)
    result: list[Any] = []
    done = threading.Event()

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        result.append(rc)
        done.set()

    def on_disconnect(*_a: Any) -> None:
        done.set()

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert done.wait(5), "no CONNACK"
    finally:
        c.disconnect()
        c.loop_stop()
    return bool(result) and not result[0].is_failure


def _watch(port: int, user: str, password: str, topics: list[str]) -> tuple[mqtt.Client,
                                                                              list[str]]:
    seen: list[str] = []
    subscribed = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{secrets.token_hex(4)}",
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password)
    c.on_message = lambda _c, _u, msg: seen.append(msg.topic)
    c.on_subscribe = lambda *_a: subscribed.set()
    c.on_connect = lambda cl, *_a: cl.subscribe([(t, 1) for t in topics])
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert subscribed.wait(5)
    return c, seen


def _stop(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


async def _gateway_publishes(port: int, gateway: str, password: str, topic: str) -> None:
    """Our gateway's MQTT client logs in with the issued password and
    publishes one data message (QoS 1: the broker's PUBACK)."""
    c = MQTTClient(gateway, "127.0.0.1", port, username=gateway, password=password)
    await c.connect()
    await c.publish(topic, b'{"v":1}', qos=1)
    await c.disconnect()


# --- the files' format ---------------------------------------------------------------------

def test_hashes_match_mosquitto_passwd_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "alice", "s3cret-pw"],
                   check=True, capture_output=True)
    theirs = path.read_text().strip().split(":", 1)[1]
    assert broker_accounts.verify_hash("s3cret-pw", theirs)
    assert not broker_accounts.verify_hash("s3cret-pX", theirs)
    ours = broker_accounts.mosquitto_hash("s3cret-pw", iterations=101)
    kind, iterations, salt, key = ours.split("$")[1:]
    assert (kind, iterations, len(salt), len(key)) == ("7", "101", 16, 88)
    assert theirs.split("$")[1:3] == ["7", "101"]  # mosquitto_passwd's own shape


def test_password_file_keeps_other_lines_and_acl_is_the_harness_acl() -> None:
    current = "# broker users\nfleet-server:$7$101$a$b\ngw-a:$7$101$old$old\n\ngw-a:$7$1$x$y\n"
    out = broker_accounts.render_password_file(current, {"gw-a": "$7$1000$n$n",
                                                         "gw-b": "$7$1000$m$m"})
    assert out == ("# broker users\nfleet-server:$7$101$a$b\ngw-a:$7$1000$n$n\n\n"
                   "gw-b:$7$1000$m$m\n")
    gws = [GatewayAccount("U001", "gw-a", "x"), GatewayAccount("U002", "gw-b", "y")]
    assert broker_accounts.acl_text([(g.unit, g.gateway) for g in gws], ["fleet-server"]) == \
        devbroker.acl_text(gws, [ServiceAccount("fleet-server", "z")])


# --- through the API, with the real broker -------------------------------------------------

def test_issued_credentials_work_for_the_gateways_own_topics_only(env: Env) -> None:
    port = env.broker.port
    service_line = next(line for line in env.passwd.read_text().splitlines()
                        if line.startswith(f"{SERVICE.username}:"))
    r = env.issue("gw-u007", {"unit": "U001"})
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    doc = r.json()
    password = doc.pop("password")
    assert len(password) == 32
    assert doc["issued_at"]
    del doc["issued_at"]
    assert doc == {"gateway": "gw-u007", "unit": "U001", "username": "gw-u007",
                   "broker": {"host": "127.0.0.1", "port": port, "tls": False},
                   "registered": True, "reloaded": True}
    # only a hash is kept: in the database and in the broker's file
    with session_factory(env.engine)() as s:
        gw = s.scalar(select(Gateway).where(Gateway.gateway_id == "gw-u007"))
        assert gw is not None and gw.unit.code == "U001"
        assert gw.credentials_issued_by == "admin-1" and gw.credentials_issued_at is not None
        assert gw.broker_password_hash is not None
        assert broker_accounts.verify_hash(password, gw.broker_password_hash)
    text = env.passwd.read_text()
    assert password not in text and f"gw-u007:{gw.broker_password_hash}\n" in text
    assert service_line in text.splitlines()  # the service account is untouched
    for path in (env.passwd, env.acl):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "user gw-u007\ntopic write ummc/v1/U001/gw-u007/state\n" in env.acl.read_text()

    # the gateway logs in (once the broker has reloaded) and publishes its data
    watcher, seen = _watch(port, SERVICE.username, SERVICE.password, ["ummc/v1/#"])
    wait_until(lambda: _login(port, "gw-u007", password), timeout=10)
    asyncio.run(_gateway_publishes(port, "gw-u007", password, "ummc/v1/U001/gw-u007/data"))
    # ... but not into another gateway's topics
    asyncio.run(_gateway_publishes(port, "gw-u007", password, "ummc/v1/U002/gw-u002/data"))
    wait_until(lambda: "ummc/v1/U001/gw-u007/data" in seen, timeout=5)

    # it reads its own ack, never another gateway's
    svc = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="svc-pub", protocol=mqtt.MQTTv311)
    svc.username_pw_set(SERVICE.username, SERVICE.password)
    svc.connect("127.0.0.1", port)
    svc.loop_start()
    for topic in ("ummc/v1/U002/gw-u002/ack", "ummc/v1/U001/gw-u007/ack"):
        svc.publish(topic, b'{"jid":"0"}', qos=1, retain=True).wait_for_publish(5)
    gw_client, got = _watch(port, "gw-u007", password, ["ummc/v1/U002/gw-u002/ack",
                                                        "ummc/v1/U001/gw-u007/ack",
                                                        "ummc/v1/#"])
    wait_until(lambda: "ummc/v1/U001/gw-u007/ack" in got, timeout=5)
    time.sleep(0.5)  # room for a message the ACL should have stopped
    assert set(got) == {"ummc/v1/U001/gw-u007/ack"}
    assert "ummc/v1/U002/gw-u002/data" not in seen
    # the gateway made by hand still logs in and keeps its own subtree
    assert _login(port, LEGACY.gateway, LEGACY.password)
    assert f"user {LEGACY.gateway}\n" in env.acl.read_text()
    for c in (watcher, gw_client, svc):
        _stop(c)


def test_rotating_locks_the_old_password_out(env: Env) -> None:
    port = env.broker.port
    first = env.issue("gw-u001", {"unit": "U001"}, Role.technician)
    assert first.status_code == 201, first.text
    assert first.json()["registered"] is False
    old = first.json()["password"]
    wait_until(lambda: _login(port, "gw-u001", old), timeout=10)
    # a gateway still connected with the old password ...
    dropped = threading.Event()
    connected = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw-u001",
                            protocol=mqtt.MQTTv311)
    connected.username_pw_set("gw-u001", old)
    connected.on_disconnect = lambda *_a: dropped.set()
    connected.reconnect_delay_set(30, 30)
    connected.connect("127.0.0.1", port)
    connected.loop_start()

    second = env.issue("gw-u001", {"unit": "U001"}, Role.technician)
    assert second.status_code == 201
    new = second.json()["password"]
    assert new != old
    wait_until(lambda: not _login(port, "gw-u001", old), timeout=10)
    assert dropped.wait(5), "... is disconnected by the reload"
    connected.loop_stop()
    assert _login(port, "gw-u001", new)
    asyncio.run(_gateway_publishes(port, "gw-u001", new, "ummc/v1/U001/gw-u001/data"))
    with pytest.raises(ConnectRefused):
        asyncio.run(_gateway_publishes(port, "gw-u001", old, "ummc/v1/U001/gw-u001/data"))
    # the line was replaced, not added
    lines = [ln for ln in env.passwd.read_text().splitlines() if ln.startswith("gw-u001:")]
    assert len(lines) == 1


def _detail(r: httpx.Response) -> list[tuple[tuple[str, ...], str]]:
    return [(tuple(e["loc"]), e["msg"]) for e in r.json()["detail"]]


def test_bad_input_and_wrong_roles(env: Env) -> None:
    before = (env.passwd.read_text(), env.acl.read_text())
    r = env.issue("gw-u009", {})
    assert r.status_code == 422 and _detail(r)[0][0] == ("body", "unit")
    r = env.issue("gw-u009", {"unit": "U 01"})
    assert r.status_code == 422 and _detail(r)[0][0] == ("body", "unit")
    r = env.issue("gw-u009", {"unit": "U001", "password": "mine"})
    assert r.status_code == 422 and _detail(r)[0][0] == ("body", "password")
    r = env.issue("gw%20x", {"unit": "U001"})
    assert r.status_code == 422 and _detail(r)[0][0] == ("path", "gateway_id")
    # a technician's unknown unit is a typo until an admin says otherwise
    r = env.issue("gw-u009", {"unit": "U0l9"}, Role.technician)
    assert r.status_code == 422
    assert _detail(r) == [(("body", "unit"),
                           "unknown unit U0l9: an administrator registers new units")]
    # moving a gateway, or taking a service account's name: conflicts
    r = env.issue("gw-u002", {"unit": "U001"}, Role.technician)
    assert r.status_code == 409 and "registered to unit U002" in r.json()["detail"]
    r = env.issue(SERVICE.username, {"unit": "U001"})
    assert r.status_code == 409 and "service account" in r.json()["detail"]
    for role in (Role.logistics, Role.nurse, Role.reception):
        r = env.issue("gw-u009", {"unit": "U001"}, role)
        assert r.status_code == 403
        assert r.json() == {"detail": f"role {role.value} may not use this route"}
    assert env.client.post("/api/v1/gateways/gw-u009/credentials",
                           json={"unit": "U001"}).status_code == 401
    assert (env.passwd.read_text(), env.acl.read_text()) == before  # nothing written
    with session_factory(env.engine)() as s:
        assert s.scalar(select(Gateway).where(Gateway.gateway_id == "gw-u009")) is None
    # an admin may open a new unit on the way
    r = env.issue("gw-u009", {"unit": "U009"})
    assert r.status_code == 201 and r.json()["registered"] is True
    with session_factory(env.engine)() as s:
        assert s.scalar(select(Unit).where(Unit.code == "U009")) is not None


def test_a_failed_reload_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    passwd.write_text("fleet-server:$7$101$a$b\n")
    acl.write_text("user fleet-server\ntopic readwrite ummc/v1/#\n")
    client, tokens = _app(engine, broker_password_file=str(passwd), broker_acl_file=str(acl),
                          broker_pid_file=str(tmp_path / "no-such.pid"))
    with client:
        r = client.post("/api/v1/gateways/gw-u001/credentials", json={"unit": "U001"},
                        headers={"Authorization": f"Bearer {tokens[Role.admin]}"})
    assert r.status_code == 503
    assert r.json()["detail"].startswith("broker accounts unchanged: cannot signal the broker")
    assert passwd.read_text() == "fleet-server:$7$101$a$b\n"
    assert acl.read_text() == "user fleet-server\ntopic readwrite ummc/v1/#\n"
    with session_factory(engine)() as s:
        gw = s.scalar(select(Gateway).where(Gateway.gateway_id == "gw-u001"))
        assert gw is not None and gw.broker_password_hash is None


def test_not_configured_is_a_503_after_the_requests_own_mistakes(engine: Engine) -> None:
    client, tokens = _app(engine)
    auth = {"Authorization": f"Bearer {tokens[Role.admin]}"}
    with client:
        r = client.post("/api/v1/gateways/gw-u001/credentials", json={"unit": "U002"},
                        headers=auth)
        assert r.status_code == 409
        r = client.post("/api/v1/gateways/gw-u001/credentials", json={"unit": "U001"},
                        headers=auth)
        assert r.status_code == 503 and "UMMC_BROKER_PASSWORD_FILE" in r.json()["detail"]


def test_files_are_written_again_from_the_database_after_a_move(engine: Engine,
                                                                 tmp_path: Path) -> None:
    """`write_broker_files` (no reload configured): the hash lines come from the
    database, the ACL follows a gateway that `register` moved to another unit."""
    files = broker_accounts.BrokerFiles(password_file=tmp_path / "passwd",
                                        acl_file=tmp_path / "acl",
                                        service_users=(SERVICE.username,))
    (tmp_path / "passwd").write_text(f"{SERVICE.username}:$7$101$a$b\n")
    with session_factory(engine)() as s:
        register(s, ("U001", "gw-u001"))
        gw = s.scalar(select(Gateway).where(Gateway.gateway_id == "gw-u001"))
        assert gw is not None
        gw.broker_password_hash = broker_accounts.mosquitto_hash("pw")
        s.commit()
        assert broker_accounts.write_broker_files(s, files) is False
        assert "topic write ummc/v1/U001/gw-u001/data\n" in files.acl_file.read_text()
        crud.register(s, entries=[crud.Registration(unit="U005", gateway="gw-u001")], now=NOW)
        s.commit()
        broker_accounts.write_broker_files(s, files)
        hash_ = gw.broker_password_hash
    acl = files.acl_file.read_text()
    assert "ummc/v1/U001/" not in acl and "topic read ummc/v1/U005/gw-u001/ack\n" in acl
    assert files.password_file.read_text() == \
        f"{SERVICE.username}:$7$101$a$b\ngw-u001:{hash_}\n"
