"""A unit's link is down for 72 simulated hours while the clinic keeps
measuring, then comes back: every reading arrives once, urgent ones first,
then the rest in sequence order; health telemetry kept offline is shed
before any clinical reading, and the shedding is counted.

The link is a TCP proxy in front of the real broker (devharness.netproxy),
cut for the outage, so the broker and the fleet server's ingest worker stay
up as they would in the field. The gateway's clock is simulated (72 hours
pass in a few seconds); the uplink runs for real throughout, failing to
connect and backing off."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path

from devharness.netproxy import LinkProxy
from devharness.stack import FleetStack
from device_drivers import glucose, pulse_oximeter
from device_drivers.gatt import BLOOD_PRESSURE_MEASUREMENT, encode_blood_pressure
from gateway.app import Gateway
from gateway.clock import GatewayClock
from gateway.health import HealthSampler
from gateway.indicator import RecordingIndicator
from gateway.journal import Journal
from gateway.mqtt import MQTTClient
from gateway.protocol import LAST_WILL, topic
from gateway.uplink import Uplink
from tests.integration.test_end_to_end import wait_async

MIN = 60_000
HOURS = 72
CUFF = {"addr": "C4:7C:8D:6A:00:07", "model": "UA-651BLE", "serial": "5140200007"}
METER = {"addr": "C4:7C:8D:6A:01:07", "model": "GL50", "serial": "GL5000007"}
OXI = {"addr": "C4:7C:8D:6A:02:07", "model": "PO60", "serial": "PO6000007"}


def test_72_hours_offline_then_everything_arrives_once_urgent_first(
        stack: FleetStack, tmp_path: Path) -> None:
    acc = stack.gateways[0]
    assert stack.broker is not None
    proxy = LinkProxy(stack.broker.port).start()
    proxy.set_link(False)
    rng = random.Random(72)
    now = [int(time.time() * 1000) - HOURS * 60 * MIN]
    clock = GatewayClock(source=lambda: now[0], synced=True)
    # 1 MB of journal: the health share (half) holds about 2,000 of the
    # 4,320 offline heartbeats; the rest must be shed, never a reading.
    journal = Journal(str(tmp_path / "journal"), capacity_bytes=1_000_000)
    indicator = RecordingIndicator()
    client = MQTTClient(acc.gateway, "127.0.0.1", proxy.port, username=acc.gateway,
                        password=acc.password, keepalive=30, clean_session=False,
                        will=(topic(acc.unit, acc.gateway, "state"), LAST_WILL, 1, True))
    uplink = Uplink(journal, client, acc.unit, acc.gateway, clock, indicator,
                    backoff_min_ms=100, backoff_max_ms=400, heartbeat_ms=60 * MIN)
    core = Gateway(journal, uplink, clock, indicator)
    sampler = HealthSampler(journal, uplink, clock, link_probe=lambda: ("cellular", None),
                            alarms=core.alarms)
    taken: list[int] = []
    urgent: list[int] = []

    def measure(minute: int) -> None:
        """The clinic, 08:00-16:00: a patient every ~12 minutes; now and then
        an urgent value (a hypertensive crisis, a hypoglycaemia, SpO2 86 %)."""
        hour = minute // 60 % 24
        if not 8 <= hour < 16 or rng.random() > 1 / 12:
            return
        roll = rng.random()
        if roll < 0.01:
            seq = core.on_value(CUFF, BLOOD_PRESSURE_MEASUREMENT,
                                encode_blood_pressure(196, 124, 140, status=None))
        elif roll < 0.02:
            seq = core.on_value(METER, 0x2A18, glucose.encode_measurement(
                len(taken) + 1, (2026, 11, 29, 8, 0, 0), concentration=0.0006, type=1,
                sample_location=1))
        elif roll < 0.03:
            seq = core.on_value(OXI, 0x2A5E, pulse_oximeter.encode_spot_check(86, 110))
        else:
            seq = core.on_value(CUFF, BLOOD_PRESSURE_MEASUREMENT, encode_blood_pressure(
                rng.randint(100, 170), rng.randint(60, 100), rng.randint(55, 110),
                status=None))
        assert seq is not None, "a clinical reading was refused"
        taken.append(seq)
        if seq in journal.urgent:
            urgent.append(seq)

    async def scenario() -> None:
        task = asyncio.create_task(uplink.run())
        for minute in range(HOURS * 60):
            now[0] += MIN
            sampler.journal_sample()  # the heartbeat, kept in the journal while offline
            measure(minute)
            if minute % 240 == 0:
                await asyncio.sleep(0.01)  # the uplink keeps trying (and failing)
        assert not uplink.connected and uplink.stats["connects"] == 0
        assert uplink.stats["link_errors"] > 0
        proxy.set_link(True)
        await wait_async(lambda: journal.depth == 0, timeout=120)
        uplink.stop()
        await task

    try:
        asyncio.run(scenario())
    finally:
        proxy.stop()

    assert len(taken) > 100 and urgent, (len(taken), urgent)
    assert sampler.journaled + sampler.shed == HOURS * 60
    assert sampler.shed > 0 and sampler.journaled > 1000
    assert ("buffered", taken[0]) in indicator.events

    db = sqlite3.connect(stack.db_path)
    try:
        rows = db.execute("SELECT kind, seq, flags FROM readings ORDER BY id").fetchall()
    finally:
        db.close()
    seqs = [seq for _, seq, _ in rows]
    assert len(seqs) == len(set(seqs)), "a record was stored twice"
    readings = [seq for kind, seq, _ in rows if kind == "reading"]
    assert sorted(readings) == taken, "a reading is missing"
    assert sum(1 for kind, _, _ in rows if kind == "health") == sampler.journaled
    # urgent first, then everything else in journal order
    assert seqs[:len(urgent)] == urgent
    assert seqs[len(urgent):] == sorted(seqs[len(urgent):])
