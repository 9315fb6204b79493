"""`ummc-gateway provision --fleet-url ... --fleet-token ...`: the gateway's
broker password issued by a real fleet server API (uvicorn on a loopback
port, a migrated SQLite database) that writes the files of a real Mosquitto
and reloads it; then the gateway's own configuration logs in to that broker.
And each way the fleet server can refuse, with its exit code and message."""

from __future__ import annotations

import io
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import uvicorn
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from devharness.broker import Mosquitto, ServiceAccount
from devharness.ports import free_port, wait_for_port
from devharness.processes import wait_until
from firmware.tool import cli
from fleet_server import crud
from fleet_server.api import create_app
from fleet_server.db import make_engine, migrate, session_factory
from fleet_server.models import Gateway, Role, Unit, User
from fleet_server.security import hash_password
from fleet_server.settings import Settings
from gateway.config import ConfigStore
from tests.firmware_tool.conftest import Run, run_tool

SERVICE = ServiceAccount("fleet-server", secrets.token_urlsafe(18))


@dataclass
class Fleet:
    url: str
    broker: Mosquitto
    tokens: dict[Role, str]
    database_url: str


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    d = tmp_path_factory.mktemp("fleet")
    database_url = f"sqlite:///{d / 'fleet.db'}"
    migrate(database_url)
    broker = Mosquitto(d / "mq", services=[SERVICE], password_file=d / "passwd",
                       acl_file=d / "acl", pid_file=d / "mosquitto.pid").start()
    engine = make_engine(database_url)
    tokens: dict[Role, str] = {}
    with session_factory(engine)() as s:
        crud.register(s, entries=[crud.Registration(unit="U013", gateway="gw-u013")],
                      now=datetime.now(UTC))
        s.add(Unit(code="U012", created_at=datetime.now(UTC)))  # a unit without a gateway yet
        pw = hash_password("x" * 12)
        for role in (Role.technician, Role.nurse):
            user = User(username=role.value, role=role.value, password_hash=pw, is_active=True,
                        created_at=datetime.now(UTC))
            s.add(user)
            s.flush()
            tokens[role], _ = crud.issue_token(s, user=user, secret_key="t" * 40,
                                               ttl=timedelta(hours=1), now=datetime.now(UTC))
        s.commit()
    settings = Settings(env="development", database_url=database_url, secret_key="t" * 40,
                        bootstrap_admin_password=None,
                        broker_password_file=d / "passwd", broker_acl_file=d / "acl",
                        broker_pid_file=d / "mosquitto.pid",
                        broker_service_users=SERVICE.username,
                        broker_public_url=f"mqtt://127.0.0.1:{broker.port}")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, engine=engine), host="127.0.0.1",
                                           port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, name="fleet-api", daemon=True)
    thread.start()
    wait_for_port(port, timeout=20)
    yield Fleet(f"http://127.0.0.1:{port}", broker, tokens, database_url)
    server.should_exit = True
    thread.join(timeout=20)
    engine.dispose()
    broker.stop()


@pytest.fixture
def vdir(tmp_path: Path) -> Path:
    d = tmp_path / "gw"
    d.mkdir()
    return d


def _login(port: int, user: str, password: str) -> bool:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{secrets.token_hex(4)}",
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password)
    result: list[Any] = []
    done = threading.Event()

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        result.append(rc)
        done.set()

    c.on_connect = on_connect
    c.on_disconnect = lambda *_a: done.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert done.wait(5)
    finally:
        c.disconnect()
        c.loop_stop()
    return bool(result) and not result[0].is_failure


def provision(vdir: Path, cwd: Path, *extra: str) -> Run:
    return run_tool("--lang", "en", "provision", "--virtual", str(vdir), "--network", "host",
                    "--no-label", *extra, cwd=cwd)


def test_provision_gets_the_password_from_the_fleet_and_the_gateway_logs_in(
        fleet: Fleet, vdir: Path, tmp_path: Path) -> None:
    token = fleet.tokens[Role.technician]
    r = provision(vdir, tmp_path, "--unit", "U012", "--fleet-url", fleet.url,
                  "--fleet-token", token)
    assert r.code == 0, r.err
    assert "Broker password: issued by the fleet server" in r.out
    assert "Gateway gw-u012 registered to unit U012 on the fleet server." in r.out
    assert f"Broker: 127.0.0.1:{fleet.broker.port} (no TLS)" in r.out
    assert "WARNING" not in r.out
    cfg = ConfigStore(str(vdir / "data")).load()  # the gateway's own loader
    up = cfg["uplink"]
    assert (cfg["unit"], cfg["gateway"], up["username"]) == ("U012", "gw-u012", "gw-u012")
    assert (up["broker_host"], up["broker_port"], up["tls"]) == \
        ("127.0.0.1", fleet.broker.port, False)
    assert up["password"] not in r.out
    assert not (tmp_path / "accounts").exists()  # nothing to hand over
    # the fleet knows the gateway and keeps only the hash; the broker lets it in
    engine = make_engine(fleet.database_url)
    with session_factory(engine)() as s:
        gw = s.scalar(select(Gateway).where(Gateway.gateway_id == "gw-u012"))
        assert gw is not None and gw.unit.code == "U012"
        assert gw.credentials_issued_by == "technician"
    engine.dispose()
    wait_until(lambda: _login(fleet.broker.port, "gw-u012", up["password"]), timeout=10)

    # provisioning again through the fleet rotates the password; token from the environment
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--lang", "en", "provision", "--virtual", str(vdir), "--no-label",
                     "--fleet-url", fleet.url], env={"UMMC_FLEET_TOKEN": token}, out=out,
                    err=err, inp=io.StringIO())
    assert code == 0, err.getvalue()
    assert "registered to unit" not in out.getvalue()
    new = ConfigStore(str(vdir / "data")).load()["uplink"]["password"]
    assert new != up["password"]
    wait_until(lambda: not _login(fleet.broker.port, "gw-u012", up["password"]), timeout=10)
    assert _login(fleet.broker.port, "gw-u012", new)


def test_the_fleets_refusals_have_their_exit_codes_and_write_nothing(
        fleet: Fleet, vdir: Path, tmp_path: Path) -> None:
    tech, nurse = fleet.tokens[Role.technician], fleet.tokens[Role.nurse]
    closed = f"http://127.0.0.1:{free_port()}"
    cases = [
        # gw-u013 is registered to U013: not to be moved from the workshop
        (("--unit", "U014", "--gateway", "gw-u013", "--fleet-url", fleet.url, "--fleet-token",
          tech), 6, "The fleet server refuses: gateway gw-u013 is registered to unit U013"),
        (("--unit", "U015", "--fleet-url", fleet.url, "--fleet-token", tech), 6,
         "The fleet server refuses: unit: unknown unit U015: an administrator registers new "
         "units"),
        (("--unit", "U015", "--fleet-url", fleet.url, "--fleet-token", "not-a-token"), 7,
         "The fleet server refuses the token (expired or wrong): get a new one."),
        (("--unit", "U015", "--fleet-url", fleet.url, "--fleet-token", nurse), 7,
         "Your fleet server account may not issue credentials (role nurse may not use "
         "this route)."),
        (("--unit", "U015", "--fleet-url", closed, "--fleet-token", tech), 7,
         f"Fleet server {closed} unreachable"),
        (("--unit", "U015", "--fleet-url", "ftp://fleet", "--fleet-token", tech), 2,
         "Bad fleet server address: ftp://fleet"),
        (("--unit", "U015", "--fleet-url", fleet.url), 2, "--fleet-url needs a token"),
        (("--unit", "U015", "--fleet-url", fleet.url, "--fleet-token", tech, "--password",
          "x" * 20), 2, "--fleet-url and --password exclude each other"),
        # the rest is checked before the fleet is asked: a bad unit code never reaches it
        (("--unit", "U 15", "--fleet-url", closed, "--fleet-token", tech), 6,
         "Configuration refused: field unit"),
    ]
    for argv, code, text in cases:
        r = provision(vdir, tmp_path, *argv)
        assert r.code == code, (argv, r.out, r.err)
        assert text in r.err, (argv, r.err)
        assert f"(exit code {code})" in r.err
    assert list(vdir.iterdir()) == []
    assert not (tmp_path / "accounts").exists()
    engine = make_engine(fleet.database_url)
    with session_factory(engine)() as s:  # nothing issued for any of them
        assert s.scalar(select(Gateway).where(Gateway.gateway_id == "gw-u015")) is None
        gw13 = s.scalar(select(Gateway).where(Gateway.gateway_id == "gw-u013"))
        assert gw13 is not None and gw13.broker_password_hash is None
    engine.dispose()
