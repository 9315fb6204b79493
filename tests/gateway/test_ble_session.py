"""BLE instrument sessions (gateway/ble_session.py) over a real BLE stack: the
bumble central adapter (gateway/host/ble_bumble.py) and the bumble instrument
simulators (gateway/sim/ble_*.py) on two virtual controllers joined by an
in-process LocalLink -- real HCI, L2CAP, ATT/GATT and SMP between them -- and
the real gateway core (Journal on a tmp dir, GatewayClock, RecordingIndicator)
with real download cursors. The uplink is a stand-in whose link is down: the
uplink is tested elsewhere, here the journal is what must be right.

What a nurse and a technician rely on: every glucose record reaches the
journal exactly once whatever the link does, the meter's cursor never runs
ahead of the journal, a full journal stops the download and holds the cursor,
wrong PINs and bad records are named, readings of every profile arrive with
their values, and an instrument clock a year off is measured and set.

CPython only (bumble); the session module itself is portable."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bumble.link import LocalLink

from gateway.app import Gateway
from gateway.ble_session import BleSession
from gateway.clock import GatewayClock
from gateway.cursors import Cursors
from gateway.host.ble_bumble import BumbleCentral
from gateway.indicator import RecordingIndicator
from gateway.journal import KIND_EVENT, KIND_READING, Journal
from gateway.sim.ble_common import SimInstrument, stamp_of, virtual_device
from gateway.sim.ble_cuff import BleCuff
from gateway.sim.ble_glucometer import BleGlucometer
from gateway.sim.ble_oximeter import BleOximeter
from gateway.sim.ble_scale import BleScale
from gateway.sim.ble_thermometer import BleThermometer
from gateway.sim.cuff import SimulatedCuff

GATEWAY_ADDR = "F0:1D:00:00:00:02"
ADDR = "C4:7C:8D:6A:00:51"
DEADLINE_S = 20.0
YEAR_MS = 365 * 86400 * 1000


class LinkDown:
    """What the core asks of its uplink; here the link is down."""

    connected = False
    stats = {"reconnects": 0}

    def __init__(self) -> None:
        self.notified = 0

    def notify(self) -> None:
        self.notified += 1


@dataclass
class Rig:
    instrument: Any
    central: BumbleCentral
    session: BleSession
    core: Gateway
    journal: Journal
    cursors: Cursors
    indicator: RecordingIndicator
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    logged: list[tuple[str, str, str]] = field(default_factory=list)

    def records(self, kind: int | None = None) -> list[dict[str, Any]]:
        """Every unacknowledged journal record (of `kind`), payloads decoded."""
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            batch = self.journal.read(after, limit=256, max_bytes=1 << 20)
            if not batch:
                return out
            for seq, k, payload in batch:
                if kind is None or k & 0x7F == kind:
                    out.append(dict(json.loads(payload), seq=seq))
            after = batch[-1][0]

    def readings(self) -> list[dict[str, Any]]:
        return self.records(KIND_READING)

    def iseqs(self) -> list[int]:
        return [r["iseq"] for r in self.readings()]

    async def sync(self, **cfg: Any) -> dict[str, Any]:
        profile = {BleGlucometer: "glucose", BleCuff: "blood_pressure",
                   BleThermometer: "thermometer", BleOximeter: "pulse_oximeter",
                   BleScale: "weight_scale"}[type(self.instrument)]
        return await self.session.sync({"addr": ADDR, "profile": profile, "passkey": None,
                                        "set_clock": False, "quirks": None, **cfg})


@asynccontextmanager
async def rig(tmp_path: Path, make: Callable[[Any], SimInstrument], *,
              capacity: int = 2_000_000) -> AsyncIterator[Rig]:
    """An instrument advertising on a fresh LocalLink and a gateway beside it."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    link = LocalLink()
    instrument = make(virtual_device(link, ADDR, "instrument"))
    central = BumbleCentral(virtual_device(link, GATEWAY_ADDR, "ummc-gw-test"),
                            connect_timeout=2.0)
    journal = Journal(str(tmp_path / "journal"), capacity_bytes=capacity)
    cursors = Cursors(str(tmp_path / "state"))
    clock = GatewayClock(synced=True)  # the host's clock is NTP-disciplined
    indicator = RecordingIndicator()
    core = Gateway(journal, LinkDown(), clock, indicator)
    r = Rig(instrument, central, None, core, journal, cursors, indicator)  # type: ignore[arg-type]
    r.session = BleSession(central, core, cursors, clock,
                           on_seen=lambda addr, **kw: r.seen.append((addr, kw)),
                           log_error=lambda addr, code, detail: r.logged.append(
                               (addr, code, detail)))
    await instrument.start()
    try:
        yield r
    finally:
        await central.disconnect()
        await instrument.stop()
        await central.device.power_off()
        await asyncio.sleep(0)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run a scenario in its own loop, within the deadline, leaving nothing running."""
    threads = threading.active_count()

    async def main() -> None:
        await asyncio.wait_for(scenario(), DEADLINE_S)
        stray = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert stray == [], stray

    asyncio.run(main())
    assert threading.active_count() == threads


def meter(**kw: Any) -> Callable[[Any], BleGlucometer]:
    return lambda device: BleGlucometer(device, **kw)


# -- glucose ---------------------------------------------------------------------

def test_full_download_then_exactly_the_new_records(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, meter(battery=64)) as r:
            m: BleGlucometer = r.instrument
            stored = m.add_records(100, context_every=3)  # the last 100 hours
            m.grow_during_report = 2  # two patients measured while it downloads
            res = await r.sync()
            assert res["ok"] and res["error"] is None, res
            assert res["readings"] == 100 and res["cursor"] == 100
            assert r.cursors.get(ADDR) == 100
            readings = r.readings()
            assert [x["iseq"] for x in readings] == list(range(1, 101))
            assert [x["seq"] for x in readings] == list(range(1, 101))  # journal order
            for rec, x in zip(stored, readings, strict=True):
                assert x["type"] == "glucose"
                assert x["values"] == [["glucose", rec.mg_dl, "mg/dL"]]
                assert tuple(x["itime"]) == rec.base_time  # the meter's own time
                assert x["inst"] == {"addr": ADDR, "model": "Contour Next One",
                                     "serial": "7100012345", "mfr": "Ascensia"}
            assert res["identity"]["firmware"] == "3.1.0"
            # drift comes from Current Time, not from the (old) record times
            addr, seen = r.seen[-1]
            assert addr == ADDR and seen["battery"] == 64 and abs(seen["drift_ms"]) < 2000
            assert seen["identity"]["serial"] == "7100012345" and seen["clock_set"] is False

            m.add_records(3)
            assert m.next_sequence == 106  # 100 + 2 taken during the download + 3
            res = await r.sync()
            assert res["ok"] and res["readings"] == 5 and res["cursor"] == 105
            assert r.iseqs() == list(range(1, 106))
            assert m.reports == 2

            res = await r.sync()  # nothing new: "no records found" is a success
            assert res["ok"] and res["readings"] == 0 and res["cursor"] == 105
            assert r.session.errors == {}

    run(scenario)


def test_link_drop_mid_download_resumes_with_no_duplicate_and_no_gap(tmp_path: Path) -> None:
    async def scenario() -> None:
        for k in (0, 1, 37, 99):
            async with rig(tmp_path / str(k), meter()) as r:
                m: BleGlucometer = r.instrument
                m.add_records(100, context_every=4)
                m.drop_after = k
                res = await r.sync()
                assert not res["ok"] and res["error"] == "link_lost", (k, res)
                cursor = r.cursors.get(ADDR)
                # only committed records moved the cursor: it matches the journal.
                # (a lone first record is held until the meter's order is known)
                assert cursor == (k if k > 1 else None), (k, cursor)
                assert r.iseqs() == list(range(1, (cursor or 0) + 1))
                assert r.session.errors[(ADDR, "link_lost")] == 1
                assert r.session.last_error[ADDR] == "link_lost"
                assert ("error", ADDR, "instrument sync: link_lost") in r.indicator.events

                res = await r.sync()  # reconnect: from the cursor on
                assert res["ok"], (k, res)
                assert r.iseqs() == list(range(1, 101)), k
                assert r.cursors.get(ADDR) == 100

    run(scenario)


def test_meter_going_silent_times_out_and_resumes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, meter()) as r:
            m: BleGlucometer = r.instrument
            m.add_records(30, context_every=2)
            m.stall_after = 12  # record 12 (index 11) said "context follows", then silence
            r.session.quiet_ms = 400
            res = await r.sync()
            assert res["error"] == "download_timeout", res
            # the nudge stopped waiting for record 12's context: it is in too
            assert r.cursors.get(ADDR) == 12 and r.iseqs() == list(range(1, 13))
            res = await r.sync()
            assert res["ok"] and r.iseqs() == list(range(1, 31))

    run(scenario)


def test_newest_first_meter_is_read_in_rounds_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, meter()) as r:
            m: BleGlucometer = r.instrument
            m.newest_first = True
            m.repeat = True  # and it repeats every notification
            m.add_records(100, context_every=5)
            res = await r.sync()
            assert res["ok"], res
            assert res["rounds"] == 4  # a window of 32 held records per round
            assert r.iseqs() == list(range(1, 101)) and res["cursor"] == 100

    run(scenario)


def test_full_journal_stops_the_download_and_holds_the_cursor(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, meter(), capacity=9000) as r:
            m: BleGlucometer = r.instrument
            m.add_records(60)
            res = await r.sync()
            assert not res["ok"] and res["error"] == "journal_full", res
            got = r.iseqs()
            assert 5 < len(got) < 60 and got == list(range(1, len(got) + 1))
            assert r.cursors.get(ADDR) == len(got)  # held at the last committed
            assert r.core.alarms["journal_full"] is True
            assert m.aborts == 1  # the gateway aborted the report (RACP 03 00)
            assert r.session.errors[(ADDR, "journal_full")] == 1
            assert ("error", ADDR, "instrument sync: journal_full") in r.indicator.events

            res = await r.sync()  # still full: nothing is asked of the meter
            assert res["error"] == "journal_full" and m.reports == 1
            delivered = list(got)
            for _ in range(10):  # the fleet acknowledges; the next syncs go on
                r.journal.ack(r.journal.next_seq - 1)
                res = await r.sync()
                delivered += r.iseqs()
                if res["ok"]:
                    break
            assert res["ok"] and delivered == list(range(1, 61))

    run(scenario)


def test_undecodable_record_is_kept_as_an_event_and_skipped(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, meter()) as r:
            m: BleGlucometer = r.instrument
            m.add_records(4)
            m.add_raw(bytes.fromhex("020500e907"))  # record 5: cut short by its firmware
            m.add_records(5)
            res = await r.sync()
            assert res["ok"] and res["readings"] == 9 and res["bad_records"] == 1, res
            assert res["cursor"] == 10
            records = r.records()
            assert [(x["kind"], x["iseq"]) for x in records] == \
                [("reading", i) for i in range(1, 5)] + [("event", 5)] + \
                [("reading", i) for i in range(6, 11)]
            event = records[4]
            assert event["type"] == "undecodable_record"
            assert "raw:020500e907" in event["flags"] and "reason:undecodable" in event["flags"]
            assert r.records(KIND_EVENT) == [event]
            assert r.session.errors[(ADDR, "bad_record")] == 1
            assert any(e[0] == "error" and e[1] == ADDR and "record 5" in e[2]
                       for e in r.indicator.events)
            res = await r.sync()  # it does not come back
            assert res["ok"] and res["readings"] == 0 and res["bad_records"] == 0

    run(scenario)


def test_passkey_meter_wrong_pin_then_right_pin(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, meter(passkey=246810)) as r:
            r.instrument.add_records(3)
            res = await r.sync(passkey=135790)
            assert not res["ok"] and res["error"] == "pairing_failed", res
            assert r.session.errors == {(ADDR, "pairing_failed"): 1}
            assert r.records() == [] and r.cursors.get(ADDR) is None

            res = await r.sync(passkey=None)  # Just Works: a bond the meter does not trust
            assert not res["ok"] and res["error"] == "auth_required", res
            assert r.records() == []

            res = await r.sync(passkey=246810)  # the PIN in the config: paired again
            assert res["ok"] and r.iseqs() == [1, 2, 3], res
            assert await r.central.bond_keys_authenticated() is True

    run(scenario)


def test_absent_instrument_is_counted_not_raised(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, meter()) as r:
            r.central.connect_timeout = 0.3
            res = await r.session.sync({"addr": "C4:7C:8D:6A:00:99", "profile": "glucose"})
            assert res["error"] == "not_found"
            assert r.session.errors == {("C4:7C:8D:6A:00:99", "not_found"): 1}
            res = await r.session.sync({"addr": ADDR, "profile": "ecg"})
            assert res["error"] == "unknown_profile"

    run(scenario)


# -- clocks -----------------------------------------------------------------------

def test_clock_a_year_off_is_measured_and_set(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, meter(clock_offset_s=-365 * 86400)) as r:
            m: BleGlucometer = r.instrument
            m.add_records(2)
            res = await r.sync()  # set_clock False: measured, left alone
            assert abs(res["drift_ms"] + YEAR_MS) < 2000, res
            assert not res["clock_set"] and m.clock_writes == 0
            # the records carry the meter's (wrong) time, as it sent them
            assert r.readings()[0]["itime"][0] == stamp_of(time.time() - 365 * 86400)[0]

            res = await r.sync(set_clock=True)
            assert res["clock_set"] and abs(res["drift_ms"] + YEAR_MS) < 2000
            assert m.clock_writes == 1 and abs(m.clock_offset_s) < 2
            assert r.seen[-1][1]["clock_set"] is True

            res = await r.sync(set_clock=True)  # now within the threshold: left alone
            assert abs(res["drift_ms"]) < 2000 and not res["clock_set"]
            assert m.clock_writes == 1

    run(scenario)


def test_unwritable_clock_is_reported_not_set(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, lambda d: BleOximeter(d, clock_offset_s=3600)) as r:
            res = await r.sync(set_clock=True, listen_ms=50)
            assert res["ok"] and abs(res["drift_ms"] - 3600_000) < 2000, res
            assert not res["clock_set"] and res["clock_note"] == "not_writable"

    run(scenario)


# -- indicating and notifying instruments --------------------------------------

async def listening(r: Rig, characteristic: Any) -> asyncio.Task[dict[str, Any]]:
    """Start a sync that listens, and wait until it has subscribed."""
    task = asyncio.create_task(r.sync())
    await r.instrument.wait_for_subscription(characteristic, 5.0)
    return task


def values(reading: dict[str, Any]) -> dict[str, Any]:
    return {name: (value, unit) for name, value, unit in reading["values"]}


def test_thermometer_reading_reaches_the_journal(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, lambda d: BleThermometer(d, clock_offset_s=-600)) as r:
            t: BleThermometer = r.instrument
            task = await listening(r, t.measurement)
            await t.take_measurement(37.25)
            await t.drop_links()  # the thermometer switches off
            res = await task
            assert res["ok"] and res["readings"] == 1, res
            (x,) = r.readings()
            assert x["type"] == "temperature" and values(x) == {"temperature": (37.25, "Cel")}
            assert "site:3" in x["flags"] and x["iseq"] is None
            assert abs(res["drift_ms"] + 600_000) < 2000

    run(scenario)


def test_oximeter_spot_check_and_continuous_reach_the_journal(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, lambda d: BleOximeter(d)) as r:
            o: BleOximeter = r.instrument
            task = await listening(r, o.spot)
            await o.wait_for_subscription(o.stream)
            await o.spot_check(97, 72)
            await o.continuous(88, 110)
            await o.spot_check(95, 64)  # confirmed: the continuous one is in too
            r.session.stop()  # the nurse is done
            res = await task
            assert res["ok"] and res["readings"] == 3, res
            got = [values(x) for x in r.readings()]
            assert got == [{"spo2": (97, "%"), "pulse_rate": (72, "/min")},
                           {"spo2": (88, "%"), "pulse_rate": (110, "/min")},
                           {"spo2": (95, "%"), "pulse_rate": (64, "/min")}]
            assert "urgent" in r.readings()[1]["flags"]  # SpO2 below 90 %

    run(scenario)


def test_scale_reading_reaches_the_journal(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, lambda d: BleScale(d)) as r:
            s: BleScale = r.instrument
            task = await listening(r, s.measurement)
            await s.weigh(72.4, 1.75)
            await s.drop_links()
            res = await task
            assert res["ok"] and res["readings"] == 1, res
            (x,) = r.readings()
            assert x["type"] == "weight"
            assert values(x) == {"weight": (72.4, "kg"), "bmi": (23.6, "kg/m2"),
                                 "height": (1.75, "m")}
            assert x["inst"]["model"] == "UC-352BLE"

    run(scenario)


def test_blood_pressure_cuff_through_the_session(tmp_path: Path) -> None:
    async def scenario() -> None:
        def make(d: Any) -> BleCuff:
            return BleCuff(d, SimulatedCuff(addr=ADDR, serial="5140200051"), passkey=111222)

        async with rig(tmp_path, make) as r:
            cuff: BleCuff = r.instrument
            task = asyncio.create_task(r.sync(passkey=111222))
            await cuff.wait_subscribed(5.0)
            await cuff.take_measurement()
            await cuff.take_measurement()
            await cuff.drop_links()
            res = await task
            assert res["ok"] and res["readings"] == 2, res
            assert [x["type"] for x in r.readings()] == ["blood_pressure"] * 2
            assert r.readings()[0]["inst"]["serial"] == "5140200051"

    run(scenario)


def test_listening_stops_when_the_journal_fills(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, lambda d: BleScale(d), capacity=2000) as r:
            s: BleScale = r.instrument
            task = await listening(r, s.measurement)
            sent = 0
            while s.is_subscribed(s.measurement) and sent < 20:
                await s.weigh()
                sent += 1
            res = await task
            assert res["error"] == "journal_full" and 0 < res["readings"] == sent, res
            assert len(r.readings()) == sent  # every confirmed reading is journaled
            res = await r.sync()  # full: it does not even subscribe
            assert res["error"] == "journal_full" and not s.is_subscribed(s.measurement)

    run(scenario)
