"""The uplink on a bad day: the unit's link down for 72 (simulated) hours
while the nurse keeps measuring, then the backlog drains; the fleet's broker
restarting under a gateway that is sending; the journal filling up while the
link is down, with a glucose meter that has more than the flash can hold."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from devharness.broker import GatewayAccount
from devharness.netproxy import LinkProxy
from firmware.virtual.bench import BenchClient
from hil_tests.bench import Fleet, config_doc, needs_bench, wait_for, wait_subscribed
from hil_tests.conftest import MakeTarget
from hil_tests.test_instruments import ble_addr

HOUR_MS = 3_600_000
OUTAGE_H = 72
WARP = 14_400  # simulated seconds per real second: 72 h in 18 s


@pytest.fixture
def link(fleet: Fleet) -> Iterator[LinkProxy]:
    """The unit's link to the fleet's broker, which the test can cut."""
    assert fleet.stack.broker is not None
    p = LinkProxy(target_port=fleet.broker_port).start()
    yield p
    p.set_link(False)  # resets the open connections: their tasks end before the loop does
    time.sleep(0.3)
    p.stop()


def _time(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_link_down_72_hours_then_the_backlog_drains(
        make_target: MakeTarget, fleet: Fleet, bench: BenchClient, link: LinkProxy,
        account: GatewayAccount, broker_host: str) -> None:
    cuff = ble_addr()
    bench.call("add", profile="blood_pressure", addr=cuff, options={"serial": "5140209072"})
    link.set_link(False)
    start = int(time.time() * 1000)
    # The gateway's clock starts 72 h ago and runs WARP times faster until it
    # reaches now: 72 h of readings and offline heartbeats in 18 s.
    warp = f"{start}:{start - OUTAGE_H * HOUR_MS}:{WARP}"
    target = needs_bench(make_target(env={"UMMC_VG_TIME_WARP": warp}),
                         "needs simulated time")
    target.provision(config_doc(account, broker_host, link.port, [
        {"addr": cuff, "kind": "ble", "profile": "blood_pressure"}],
        uplink={"heartbeat_s": 600, "backoff_max_s": 1}))
    target.start()
    wait_subscribed(bench, cuff)

    sent: list[str] = []
    end = start + OUTAGE_H * HOUR_MS / WARP
    while time.time() * 1000 < end - 1500:  # a reading every ~6 simulated hours
        sent += bench.call("measure", addr=cuff)["sent"]
        time.sleep(1.5)
    assert len(sent) >= 10
    wait_for("the simulated clock to catch up", lambda: time.time() * 1000 > end + 500, 30)
    assert fleet.readings(account.gateway) == []  # nothing got through the cut link
    link_up = datetime.now().astimezone()
    link.set_link(True)

    rows = wait_for("every reading of the outage",
                    lambda: (lambda r: r if len(r) >= len(sent) else None)(
                        fleet.readings(account.gateway)), 30)
    assert len(rows) == len(sent)  # each once
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    received = [_time(r["received_at"]) for r in rows]
    assert received == sorted(received)
    span_h = (received[-1] - received[0]).total_seconds() / 3600
    assert span_h > 60, span_h  # taken over the 72 hours, and stamped so
    assert all(t < link_up for t in received)
    # the gateway's health while it was cut off reached the fleet too
    samples = fleet.readings(account.gateway, kind="health")
    assert len(samples) >= 5
    assert all(_time(s["received_at"]) < link_up for s in samples)
    assert (_time(samples[-1]["received_at"]) - _time(samples[0]["received_at"])
            ).total_seconds() > 48 * 3600
    d = fleet.command(account.gateway, "diagnostics")["result"]
    assert d["journal"]["depth"] == 0 and d["clock"]["synced"]


def test_broker_restart_loses_and_duplicates_nothing(
        make_target: MakeTarget, fleet: Fleet, bench: BenchClient, account: GatewayAccount,
        broker_host: str) -> None:
    cuff = ble_addr()
    bench.call("add", profile="blood_pressure", addr=cuff, options={"serial": "5140209073"})
    target = needs_bench(make_target(), "needs a simulated cuff")
    broker = fleet.stack.broker
    assert broker is not None
    target.provision(config_doc(account, broker_host, broker.port, [
        {"addr": cuff, "kind": "ble", "profile": "blood_pressure"}]))
    target.start()
    wait_subscribed(bench, cuff)
    sent = bench.call("measure", addr=cuff, n=3, pause_s=0.1)["sent"]
    wait_for("3 readings", lambda: len(fleet.readings(account.gateway)) == 3, 20)

    broker.stop()
    sent += bench.call("measure", addr=cuff, n=3, pause_s=0.1)["sent"]  # while it is down
    time.sleep(1.0)
    broker.start()
    sent += bench.call("measure", addr=cuff, n=2, pause_s=0.1)["sent"]

    rows = wait_for("all 8 readings after the restart",
                    lambda: (lambda r: r if len(r) >= 8 else None)(
                        fleet.readings(account.gateway)), 40)
    assert len(sent) == 8 and len(rows) == 8
    assert [r["seq"] for r in rows] == list(range(1, 9))
    g = wait_for("the gateway online again",
                 lambda: (lambda g: g if g["state"] == "online" else None)(
                     fleet.gateway(account.gateway)), 20)
    assert g["boot_count"] == 1  # the gateway rode it out without a restart


def test_flash_full_holds_the_meter_records_until_there_is_room(
        make_target: MakeTarget, fleet: Fleet, bench: BenchClient, link: LinkProxy,
        account: GatewayAccount, broker_host: str) -> None:
    meter = ble_addr()
    bench.call("add", profile="glucose", addr=meter, options={"serial": "7100019099"})
    n = 400  # about 100 KB of readings: more than the journal's 64 KB
    bench.call("add_records", addr=meter, n=n)
    link.set_link(False)
    target = needs_bench(make_target(env={"UMMC_VG_RETRY_MS": "2000"}),
                         "needs a simulated glucose meter")
    target.provision(config_doc(account, broker_host, link.port, [
        {"addr": meter, "kind": "ble", "profile": "glucose"}],
        journal={"capacity_bytes": 65536}))
    target.start()

    # The journal fills: the download is aborted, the meter keeps the rest.
    st = wait_for("the meter's download aborted",
                  lambda: (lambda s: s if s["aborts"] >= 1 else None)(
                      bench.call("stats", addr=meter)), 30)
    assert st["records"] == n  # nothing deleted from the meter
    time.sleep(1.0)
    link.set_link(True)

    # Room again as the backlog drains: the next sessions download the rest.
    rows = wait_for(f"all {n} readings",
                    lambda: (lambda r: r if len(r) >= n else None)(
                        fleet.readings(account.gateway)), 60)
    assert sorted(r["iseq"] for r in rows) == list(range(1, n + 1))  # each once, no gap
    d = fleet.command(account.gateway, "diagnostics")["result"]
    assert d["errors"][meter]["journal_full"] >= 1  # what a technician sees of it
    assert "journal_full" not in d["alarms"]  # and it is over
