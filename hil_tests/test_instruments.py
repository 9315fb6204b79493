"""Instruments on the bench, through the firmware's sessions, to the fleet:
a cuff reading (BLE indication, confirmed only once journaled), a glucose
meter's incremental download after 100 stored records, an ECG strip from a
Cyton on a serial port, and an instrument whose clock is a year off (the
drift reported in the gateway's health, the instrument's clock set)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from devharness.broker import GatewayAccount
from device_drivers.gatt import decode
from firmware.virtual.bench import BenchClient
from hil_tests.bench import (
    YEAR_S,
    Fleet,
    config_doc,
    needs_bench,
    wait_for,
    wait_subscribed,
)
from hil_tests.conftest import MakeTarget

_addr = itertools.count(0x10)


def ble_addr() -> str:
    """A BLE address of its own per scenario (the bench is shared)."""
    n = next(_addr)
    return f"C4:7C:8D:6A:{n >> 8:02X}:{n & 0xFF:02X}"


def test_a_cuff_reading_reaches_the_fleet(make_target: MakeTarget, fleet: Fleet,
                                          bench: BenchClient, account: GatewayAccount,
                                          broker_host: str) -> None:
    cuff = ble_addr()
    bench.call("add", profile="blood_pressure", addr=cuff, options={"serial": "5140209001"})
    target = needs_bench(make_target(), "needs a simulated cuff")
    target.provision(config_doc(account, broker_host, fleet.broker_port, [
        {"addr": cuff, "kind": "ble", "profile": "blood_pressure"}]))
    target.start()
    wait_subscribed(bench, cuff)

    sent = bench.call("measure", addr=cuff, n=2, pause_s=0.2)["sent"]
    assert len(sent) == 2  # the cuff saw both confirmed: journaled on the gateway
    rows = wait_for("two readings at the fleet",
                    lambda: (lambda r: r if len(r) == 2 else None)(
                        fleet.readings(account.gateway)), 20)
    for row, raw in zip(rows, sent, strict=True):
        m = decode(0x2A35, bytes.fromhex(raw))
        values = {v[0]: v[1] for v in row["values"]}
        assert row["type"] == "blood_pressure"
        assert values["systolic"] == m["systolic"] and values["diastolic"] == m["diastolic"]
        assert row["instrument"]["serial"] == "5140209001"
        assert row["instrument"]["model"] == "UA-651BLE"
        assert "gateway_clock_unsynced" not in row["flags"]


def test_glucose_meter_incremental_sync_after_100_stored_records(
        make_target: MakeTarget, fleet: Fleet, bench: BenchClient, account: GatewayAccount,
        broker_host: str) -> None:
    meter = ble_addr()
    bench.call("add", profile="glucose", addr=meter, options={"serial": "7100019001"})
    bench.call("add_records", addr=meter, n=100, context_every=3)
    target = needs_bench(make_target(), "needs a simulated glucose meter")
    target.provision(config_doc(account, broker_host, fleet.broker_port, [
        {"addr": meter, "kind": "ble", "profile": "glucose"}]))
    target.start()
    gw = account.gateway

    rows = wait_for("100 glucose readings",
                    lambda: (lambda r: r if len(r) >= 100 else None)(fleet.readings(gw)), 40)
    assert sorted(r["iseq"] for r in rows) == list(range(1, 101))
    assert {r["instrument"]["serial"] for r in rows} == {"7100019001"}

    bench.call("add_records", addr=meter, n=5)
    before = bench.call("stats", addr=meter)
    c = fleet.command(gw, "sync_now")
    assert c["status"] == "ok" and c["result"]["started"] == [meter], c
    rows = wait_for("105 glucose readings",
                    lambda: (lambda r: r if len(r) >= 105 else None)(fleet.readings(gw)), 30)
    assert sorted(r["iseq"] for r in rows) == list(range(1, 106))  # once each
    after = bench.call("stats", addr=meter)
    # incremental: the second download asked for, and got, only the 5 new records
    assert after["reports"] == before["reports"] + 1
    assert after["records_sent"] - before["records_sent"] == 5


def test_an_ecg_strip_from_a_serial_cyton(make_target: MakeTarget, fleet: Fleet,
                                          bench: BenchClient, account: GatewayAccount,
                                          broker_host: str) -> None:
    inst = bench.call("add", profile="ecg_cyton", options={"bpm": 72, "speed": 5})["instrument"]
    target = needs_bench(make_target(), "needs a simulated Cyton on a pty")
    target.provision(config_doc(account, broker_host, fleet.broker_port, [
        {"addr": "cyton1", "kind": "serial", "profile": "ecg_cyton", "port": inst["port"],
         "name": "Cyton"}]))
    target.start()
    rows = wait_for("an ECG strip at the fleet",
                    lambda: fleet.readings(account.gateway, type="ecg_strip"), 40)
    row = rows[0]
    values = {v[0]: v[1] for v in row["values"]}
    assert 66 <= values["heart_rate"] <= 78
    s = fleet.get(f"/readings/{row['id']}/samples")
    assert s["fs"] == 250 and s["n"] == 2500 and len(s["samples"]) == 2500
    assert 10 <= len(s["r_peaks"]) <= 14  # 72 bpm over 10 s
    assert s["missing"] == 0


def test_an_instrument_clock_a_year_off_is_reported_and_set(
        make_target: MakeTarget, fleet: Fleet, bench: BenchClient, account: GatewayAccount,
        broker_host: str) -> None:
    thermo = ble_addr()
    bench.call("add", profile="thermometer", addr=thermo,
               options={"serial": "8390009001", "clock_offset_s": -YEAR_S})
    target = needs_bench(make_target(), "needs a simulated thermometer")
    target.provision(config_doc(account, broker_host, fleet.broker_port, [
        {"addr": thermo, "kind": "ble", "profile": "thermometer", "set_clock": True}]))
    target.start()
    wait_subscribed(bench, thermo)
    st = bench.call("stats", addr=thermo)
    assert st["clock_writes"] == 1 and abs(st["clock_offset_s"]) < 5  # set by the gateway

    # the fleet sees the drift the gateway measured before it set the clock
    def drift() -> int | None:
        for i in fleet.health(account.gateway)["instruments"]:
            if i["addr"] == thermo and i["drift_ms"] is not None:
                return int(i["drift_ms"])
        return None

    d = wait_for("the instrument's drift in the gateway's health", drift, 25)
    assert abs(d + YEAR_S * 1000) < 10_000, d

    # and what the thermometer measures now carries the right time
    bench.call("measure", addr=thermo)
    row = wait_for("the temperature reading",
                   lambda: fleet.readings(account.gateway, type="temperature"), 20)[0]
    itime = datetime.fromisoformat(row["instrument_time"]).replace(tzinfo=UTC)
    received = datetime.fromisoformat(row["received_at"].replace("Z", "+00:00"))
    assert abs((itime - received).total_seconds()) < 10
