"""`ummc-gateway doctor` on a virtual gateway's directory: a healthy
gateway, a broken config, a crash record, a broker that cannot be reached or
refuses the login (real Mosquitto from tests/conftest.py), a journal that
waits. The verdict's last line and the exit code say what to fix."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devharness.broker import GatewayAccount, Mosquitto
from devharness.ports import free_port
from gateway.bootinfo import BootInfo
from gateway.config import ConfigStore
from gateway.journal import Journal
from gateway.protocol import reading_payload
from tests.firmware_tool.conftest import Run, SignedBundle, run_tool

CUFF = "C4:7C:8D:6A:00:21"


def provisioned(tmp_path: Path, port: int, password: str | None = None) -> Path:
    vdir = tmp_path / "gw"
    vdir.mkdir(exist_ok=True)
    extra = ("--password", password) if password else ()
    r = run_tool("provision", "--virtual", str(vdir), "--unit", "U012", "--network", "host",
                 "--broker", f"mqtt://127.0.0.1:{port}", "--no-label", *extra, cwd=tmp_path)
    assert r.code == 0, r.err
    store = ConfigStore(str(vdir / "data"))
    doc = json.loads((vdir / "data" / "config.json").read_text())
    doc["instruments"] = [{"addr": CUFF, "kind": "ble", "profile": "blood_pressure",
                           "passkey": "123456"}]
    doc["version"] += 1
    store.save(doc)
    return vdir


def run_gateway_a_while(vdir: Path, readings: int, ago_s: float = 60) -> None:
    """What a gateway leaves on flash after running: boot record, journal."""
    now = int(time.time() * 1000)
    boot = BootInfo(str(vdir / "data"), now - 3_600_000)
    boot.mark_clean()
    j = Journal(str(vdir / "data" / "journal"))
    for i in range(readings):
        r = {"type": "blood_pressure", "values": [["systolic", 120 + i, "mm[Hg]"]],
             "flags": [], "itime": None}
        j.append(reading_payload(r, {"addr": CUFF, "model": "UA-651BLE"},
                                 now - int(ago_s * 1000) + i))


def doctor(vdir: Path, *extra: str, lang: str = "en") -> Run:
    return run_tool("--lang", lang, "doctor", "--virtual", str(vdir), "--timeout", "3", *extra)


def test_healthy_gateway(tmp_path: Path, broker: Mosquitto, signed: SignedBundle) -> None:
    vdir = provisioned(tmp_path, broker.port)
    assert run_tool("flash", "--virtual", str(vdir), "--bundle", str(signed.tree), "--trust",
                    str(signed.pub)).code == 0
    run_gateway_a_while(vdir, readings=3, ago_s=330)
    r = doctor(vdir)
    assert r.code == 0, r.out + r.err
    lines = r.out.splitlines()
    assert "✔ Firmware ummc 1.2.3 (app_a)" in lines
    assert ("✔ Configuration valid (version 2): unit U012, gateway gw-u012, network host"
            in lines)
    assert f"✔ Broker 127.0.0.1:{broker.port} reachable, gw-u012's credentials accepted " \
           "(tried from this computer)." in lines
    assert "✔ Journal: 3 record(s) waiting to be sent (0 KB), the oldest from 5 min ago." \
        in lines
    assert f"· Blood pressure monitor {CUFF}: seen 5 min ago, 3 reading(s) waiting." in lines
    assert "· 1 start(s), 0 of them unexpected." in lines
    assert "✔ No crash recorded." in lines
    assert lines[-1] == "✔ VERDICT: gateway in good order, ready to go."
    assert "120" not in r.out and "systolic" not in r.out  # never a medical value
    assert len(lines) <= 20  # one screen
    # read-only: the journal on the gateway is untouched
    assert Journal(str(vdir / "data" / "journal")).depth == 3


@pytest.mark.parametrize("lang", ["fr", "ar", "en"])
def test_broken_config(lang: str, tmp_path: Path) -> None:
    vdir = provisioned(tmp_path, free_port())
    doc = json.loads((vdir / "data" / "config.json").read_text())
    doc["uplink"]["heartbeat_s"] = 5
    (vdir / "data" / "config.json").write_text(json.dumps(doc))
    r = doctor(vdir, lang=lang)
    assert r.code == 6
    assert {"fr": "✘ Configuration refusée : champ uplink.heartbeat_s",
            "ar": "✘ الإعدادات مرفوضة: الحقل uplink.heartbeat_s",
            "en": "✘ Configuration refused: field uplink.heartbeat_s"}[lang] in r.out
    assert r.out.splitlines()[-1] == {
        "fr": "✘ VERDICT : 1 problème(s) à corriger avant le départ (code 6).",
        "ar": "✘ الحكم: 1 مشكلة (مشاكل) يجب إصلاحها قبل الانطلاق (الرمز 6).",
        "en": "✘ VERDICT: 1 problem(s) to fix before it goes out (code 6)."}[lang]


def test_tls_without_a_ca_certificate(tmp_path: Path) -> None:
    vdir = provisioned(tmp_path, free_port())
    doc = json.loads((vdir / "data" / "config.json").read_text())
    doc["uplink"]["tls"] = True
    (vdir / "data" / "config.json").write_text(json.dumps(doc))
    r = doctor(vdir, "--offline")
    assert r.code == 6
    assert "✘ TLS is on but there is no CA certificate (ca.pem)" in r.out


def test_not_provisioned_and_not_json(tmp_path: Path) -> None:
    vdir = tmp_path / "gw"
    vdir.mkdir()
    r = doctor(vdir)
    assert r.code == 6 and "✘ Gateway not provisioned" in r.out
    (vdir / "data").mkdir()
    (vdir / "data" / "config.json").write_text("{not json")
    r = doctor(vdir)
    assert r.code == 6 and "✘ Configuration unreadable" in r.out


def test_a_recent_crash_needs_attention(tmp_path: Path) -> None:
    vdir = provisioned(tmp_path, free_port())
    now = int(time.time() * 1000)
    boot = BootInfo(str(vdir / "data"), now - 600_000)
    boot.record_crash(now - 60_000, "uplink.run", "OSError: [Errno 12] ENOMEM")
    BootInfo(str(vdir / "data"), now, reset_cause="watchdog")  # it came back after the crash
    r = doctor(vdir, "--offline")
    assert r.code == 10
    assert "· 2 start(s), 1 of them unexpected." in r.out
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime((now - 60_000) / 1000))
    assert f"✘ Recent crash on {stamp} in uplink.run: OSError: [Errno 12] ENOMEM" in r.out


def test_a_crash_record_that_is_not_json(tmp_path: Path) -> None:
    vdir = provisioned(tmp_path, free_port())
    (vdir / "data" / "boot.json").write_text("{")
    r = doctor(vdir, "--offline")
    assert r.code == 0 and "! boot.json is unreadable." in r.out


def test_unreachable_broker(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    vdir = provisioned(tmp_path, port)
    r = doctor(vdir)
    assert r.code == 7
    assert f"✘ Broker 127.0.0.1:{port} unreachable: cannot connect" in r.out


def test_broker_refuses_wrong_credentials(tmp_path: Path,
                                          broker_factory: Callable[..., Mosquitto]) -> None:
    account = GatewayAccount("U012", "gw-u012", "right-password-123")
    b = broker_factory(gateways=[account])
    vdir = provisioned(tmp_path, b.port, password="wrong-password-456")
    r = doctor(vdir)
    assert r.code == 7
    assert f"✘ Broker 127.0.0.1:{b.port} REFUSES the login (not authorized)" in r.out
    assert provisioned(tmp_path, b.port, password=account.password)
    assert doctor(vdir).code == 0


def test_readings_waiting_for_days_and_a_nearly_full_journal(tmp_path: Path) -> None:
    vdir = provisioned(tmp_path, free_port())
    doc = json.loads((vdir / "data" / "config.json").read_text())
    doc["journal"] = {"capacity_bytes": 65536}
    doc["version"] += 1
    ConfigStore(str(vdir / "data")).save(doc)
    run_gateway_a_while(vdir, readings=500, ago_s=3 * 86400)
    r = doctor(vdir, "--offline")
    assert r.code == 10
    assert "! Readings have been waiting for 3 days: check the network link." in r.out
    assert "✘ Journal nearly full (" in r.out
