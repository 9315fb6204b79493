"""`python -m fleet_server`: the one-shot commands in-process, the long-running
ones as real processes (signals, threads, exit codes), and the settings."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from devharness.broker import Mosquitto
from devharness.ports import free_port, wait_for_port
from devharness.processes import wait_until
from fleet_server.cli import main
from fleet_server.db import make_engine
from fleet_server.models import Gateway, Unit, User
from fleet_server.settings import Settings
from tests.fleet_server.helpers import REPO, golden


def test_settings_refuse_default_secrets_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UMMC_SECRET_KEY", raising=False)
    monkeypatch.delenv("UMMC_BOOTSTRAP_ADMIN_PASSWORD", raising=False)
    with pytest.raises(ValidationError, match="refusing to start in production"):
        Settings(env="production")
    with pytest.raises(ValidationError, match="BOOTSTRAP_ADMIN_PASSWORD"):
        Settings(env="production", secret_key="k" * 40)
    with pytest.raises(ValidationError, match="shorter than 32"):
        Settings(env="production", secret_key="short", bootstrap_admin_password=None)
    monkeypatch.setenv("UMMC_ENV", "production")
    monkeypatch.setenv("UMMC_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("UMMC_BOOTSTRAP_ADMIN_PASSWORD", "")  # empty: no bootstrap admin
    monkeypatch.setenv("UMMC_MQTT_PORT", "18830")
    s = Settings()
    assert (s.env, s.bootstrap_admin_password, s.mqtt_port) == ("production", None, 18830)
    assert Settings().database_url == "sqlite:///var/fleet.db"
    assert Settings(env="development").secret_key == "k" * 40  # dev: defaults only warn


def test_bad_settings_exit_2(capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UMMC_ENV", "production")
    monkeypatch.delenv("UMMC_SECRET_KEY", raising=False)
    assert main(["migrate", "--database-url", "sqlite://"]) == 2
    assert "refusing to start in production" in capsys.readouterr().err


def test_migrate_register_create_user(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'db' / 'fleet.db'}"
    assert main(["migrate", "--database-url", url]) == 0
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps([
        {"unit": "U001", "gateway": "gw-u001", "province": "Ifrane", "region": "Fès-Meknès"},
        {"unit": "U002", "gateway": "gw-u002"}]))
    assert main(["register", "--accounts", str(registry), "--database-url", url]) == 0
    assert "gateways created 2" in capsys.readouterr().out
    # the accounts.json shape (with passwords, ignored) is accepted too; idempotent
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"gateways": [
        {"unit": "U001", "gateway": "gw-u001", "password": "x"},
        {"unit": "U001", "gateway": "gw-u002", "password": "y"}]}))
    assert main(["register", "--accounts", str(accounts), "--database-url", url]) == 0
    assert "units created 0, gateways created 0, moved 1, unchanged 1" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"unit": "U 3", "gateway": "gw"}]))
    assert main(["register", "--accounts", str(bad), "--database-url", url]) == 2
    assert main(["create-user", "--username", "amina", "--role", "nurse", "--password", "pw1",
                 "--database-url", url]) == 0
    assert main(["create-user", "--username", "amina", "--role", "technician",
                 "--password", "-pw2", "--database-url", url]) == 0  # a leading '-' too
    assert "updated" in capsys.readouterr().out
    engine = make_engine(url)
    with Session(engine) as s:
        unit = s.scalar(select(Unit).where(Unit.code == "U001"))
        assert unit is not None and (unit.province, unit.region) == ("Ifrane", "Fès-Meknès")
        gw = s.scalar(select(Gateway).where(Gateway.gateway_id == "gw-u002"))
        assert gw is not None and gw.unit.code == "U001"
        assert [(u.username, u.role) for u in s.scalars(select(User))] == \
            [("amina", "technician")]
    engine.dispose()


def _env(tmp_path: Path, broker_port: int, api_port: int) -> dict[str, str]:
    return dict(os.environ, UMMC_ENV="development",
                UMMC_DATABASE_URL=f"sqlite:///{tmp_path / 'fleet.db'}",
                UMMC_MQTT_HOST="127.0.0.1", UMMC_MQTT_PORT=str(broker_port),
                UMMC_MQTT_CLIENT_ID=f"cli-{uuid.uuid4().hex[:8]}",
                UMMC_INGEST_GROUP=f"g{uuid.uuid4().hex[:8]}", UMMC_MQTT_SESSION_EXPIRY="30",
                UMMC_API_HOST="127.0.0.1", UMMC_API_PORT=str(api_port),
                UMMC_SECRET_KEY="s" * 40, UMMC_BOOTSTRAP_ADMIN_PASSWORD="boot-pass")


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "fleet_server", *args], env=env,
                                cwd=REPO, stdout=out, stderr=out, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], sig: int, log: Path) -> None:
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("did not stop in 20 s:\n" + log.read_text())
    assert rc == 0, log.read_text()
    with pytest.raises(ProcessLookupError):  # nothing left in its process group
        os.killpg(proc.pid, 0)




def test_run_ingests_serves_and_stops_on_sigterm(tmp_path: Path, broker: Mosquitto) -> None:
    api_port = free_port()
    env = _env(tmp_path, broker.port, api_port)
    tag = uuid.uuid4().hex[:6]
    unit, gateway = f"U{tag}", f"gw-{tag}"
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps([{"unit": unit, "gateway": gateway}]))
    subprocess.run([sys.executable, "-m", "fleet_server", "migrate"], env=env, cwd=REPO,
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "fleet_server", "register", "--accounts",
                    str(registry)], env=env, cwd=REPO, check=True, capture_output=True)
    log = tmp_path / "run.log"
    proc = _start(["run"], env, log)
    try:
        wait_for_port(api_port, timeout=30)
        api = f"http://127.0.0.1:{api_port}/api/v1"
        wait_until(lambda: httpx.get(f"{api}/healthz").json()["ingest"]["connected"])
        token = httpx.post(f"{api}/auth/token", json={"username": "admin",
                                                      "password": "boot-pass"}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{tag}",
                          protocol=mqtt.MQTTv311)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        time.sleep(0.3)  # the worker's SUBACK
        pub.publish(f"ummc/v1/{unit}/{gateway}/data", golden("data_bp.json"),
                    qos=1).wait_for_publish(5)
        rows = wait_until(lambda: httpx.get(f"{api}/readings", headers=headers,
                                       params={"gateway": gateway}).json())
        pub.disconnect()
        pub.loop_stop()
        assert sorted(r["seq"] for r in rows) == [101, 102]
        assert rows[0]["unit"] == unit
    finally:
        _stop(proc, signal.SIGTERM, log)
    text = log.read_text()
    assert "SIGTERM: stopping" in text and "ingest worker stopped" in text
    assert "138" not in text  # no medical value in the log


def test_ingest_stops_on_sigint(tmp_path: Path, broker: Mosquitto) -> None:
    env = _env(tmp_path, broker.port, free_port())
    subprocess.run([sys.executable, "-m", "fleet_server", "migrate"], env=env, cwd=REPO,
                   check=True, capture_output=True)
    log = tmp_path / "ingest.log"
    proc = _start(["ingest"], env, log)
    wait_until(lambda: "subscribing" in log.read_text())
    _stop(proc, signal.SIGINT, log)


def test_api_exits_1_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = _env(tmp_path, free_port(), taken.getsockname()[1])
        subprocess.run([sys.executable, "-m", "fleet_server", "migrate"], env=env, cwd=REPO,
                       check=True, capture_output=True)
        r = subprocess.run([sys.executable, "-m", "fleet_server", "api"], env=env, cwd=REPO,
                           capture_output=True, timeout=60)
    assert r.returncode == 1, r.stderr.decode()
    assert b"the API stopped on its own" in r.stderr


def test_commands_before_migrate_say_so(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps([{"unit": "U001", "gateway": "gw-u001"}]))
    assert main(["register", "--accounts", str(registry), "--database-url", url]) == 1
    assert "has `migrate` been run?" in capsys.readouterr().err
