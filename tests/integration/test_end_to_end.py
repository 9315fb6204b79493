"""One reading end to end through real components: simulated cuff bytes ->
drivers -> gateway journal -> our MQTT client -> real Mosquitto -> fleet
server ingest -> SQLite -> ack -> journal freed -> API."""

from __future__ import annotations

import asyncio
import calendar
import random
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from devharness.processes import wait_until
from devharness.stack import FleetStack
from device_drivers.gatt import BLOOD_PRESSURE_MEASUREMENT, encode_blood_pressure
from gateway.app import Gateway
from gateway.clock import GatewayClock
from gateway.indicator import RecordingIndicator
from gateway.journal import Journal
from gateway.mqtt import MQTTClient
from gateway.protocol import LAST_WILL, topic
from gateway.sim.cuff import SimulatedCuff
from gateway.uplink import Uplink


def make_gateway(stack: FleetStack, index: int, journal_dir: Path,
                 resend_after_ms: int = 30000, *,
                 client_factory: Callable[..., Any] = MQTTClient,
                 port: int | None = None) -> tuple[Gateway, Uplink, RecordingIndicator]:
    """A gateway core for the stack's gateway `index`, its MQTT client made by
    `client_factory` (MQTTClient's arguments; e.g. the paho adapter) for the
    broker's `port` (default: its plain listener)."""
    acc = stack.gateways[index]
    assert stack.broker is not None
    journal = Journal(str(journal_dir))
    clock = GatewayClock(synced=True)
    indicator = RecordingIndicator()
    client = client_factory(acc.gateway, "127.0.0.1", port or stack.broker.port,
                            username=acc.gateway, password=acc.password, keepalive=30,
                            clean_session=False,
                            will=(topic(acc.unit, acc.gateway, "state"), LAST_WILL, 1, True))
    uplink = Uplink(journal, client, acc.unit, acc.gateway, clock, indicator,
                    resend_after_ms=resend_after_ms, backoff_min_ms=200, backoff_max_ms=1000)
    return Gateway(journal, uplink, clock, indicator), uplink, indicator


async def wait_async(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


def test_one_reading_end_to_end(stack: FleetStack, tmp_path: Path) -> None:
    cuff = SimulatedCuff(addr="C4:7C:8D:6A:00:01", serial="5140200001",
                         rng=random.Random(1), clock_offset_s=-3600)
    taken_at = time.time()
    data = cuff.measure(taken_at)

    async def scenario() -> tuple[int, list[tuple[object, ...]]]:
        core, uplink, indicator = make_gateway(stack, 0, tmp_path / "journal")
        task = asyncio.create_task(uplink.run())
        seq = core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, data)
        assert seq == 1
        await wait_async(lambda: core.journal.depth == 0)
        uplink.stop()
        await task
        return seq, indicator.events

    seq, events = asyncio.run(scenario())
    assert ("captured", 1) in events
    assert ("delivered", 1, []) in events

    rows = stack.get("/readings", gateway=stack.gateways[0].gateway)
    assert len(rows) == 1
    row = rows[0]
    assert row["unit"] == stack.gateways[0].unit
    assert row["gateway"] == stack.gateways[0].gateway
    assert row["instrument"]["addr"] == cuff.addr
    assert row["instrument"]["serial"] == cuff.serial
    assert row["instrument"]["model"] == cuff.model
    assert row["seq"] == seq and row["type"] == "blood_pressure"
    # the instrument's own clock (an hour behind), exactly as it sent it
    assert row["instrument_time"] == time.strftime("%Y-%m-%dT%H:%M:%S",
                                                   time.gmtime(int(taken_at - 3600)))
    # and the gateway's receive time beside it
    received = datetime.fromisoformat(row["received_at"].replace("Z", "+00:00"))
    assert abs(calendar.timegm(received.utctimetuple()) - taken_at) < 30
    names = [v[0] for v in row["values"]]
    assert names[:2] == ["systolic", "diastolic"]


def test_record_freed_only_after_server_commit(stack: FleetStack, tmp_path: Path) -> None:
    """The broker has the message (PUBACK) but the server has not committed: the
    journal keeps the record. Kill the server before its commit; after restart
    the record is re-sent and stored exactly once."""
    cuff = SimulatedCuff(addr="C4:7C:8D:6A:00:02", serial="5140200002", rng=random.Random(2))
    gw = stack.gateways[1].gateway

    async def scenario() -> None:
        core, uplink, _ = make_gateway(stack, 1, tmp_path / "journal", resend_after_ms=1500)
        task = asyncio.create_task(uplink.run())
        core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, cuff.measure())
        await wait_async(lambda: core.journal.depth == 0)

        # Hold the database's write lock so the ingest worker cannot commit.
        lock = sqlite3.connect(stack.db_path, timeout=30, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, cuff.measure())
        await wait_async(lambda: uplink.stats["batches"] >= 2)  # published, broker PUBACKed
        await asyncio.sleep(2.0)
        assert core.journal.depth == 1, "freed before the server committed"
        await asyncio.to_thread(stack.kill_server)
        lock.execute("ROLLBACK")
        lock.close()
        await asyncio.sleep(0.5)
        assert core.journal.depth == 1
        await asyncio.to_thread(stack.start_server)
        await wait_async(lambda: core.journal.depth == 0, timeout=30)
        assert uplink.stats["resends"] >= 1 or uplink.stats["batches"] >= 2
        uplink.stop()
        await task

    asyncio.run(scenario())
    rows = stack.get("/readings", gateway=gw)
    assert sorted(r["seq"] for r in rows) == [1, 2]  # each stored once


def test_bad_payload_is_rejected_counted_and_good_data_goes_on(stack: FleetStack,
                                                                tmp_path: Path) -> None:
    acc = stack.gateways[0]
    assert stack.broker is not None
    port = stack.broker.port

    async def scenario() -> None:
        client = MQTTClient(acc.gateway + "-raw", "127.0.0.1", port,
                            username=acc.gateway, password=acc.password, clean_session=True)
        await client.connect()
        data_topic = topic(acc.unit, acc.gateway, "data")
        await client.publish(data_topic, b"{not json", qos=1)
        await client.publish(data_topic, b'{"v":1,"jid":"0badc0de","base":1,"sent":1,'
                             b'"records":[{"seq":1,"kind":"reading","type":"blood_pressure",'
                             b'"inst":{"addr":"x"},"iseq":null,"itime":null,"rtime":1,'
                             b'"values":[["systolic",120,"furlongs"],["diastolic",80,"mm[Hg]"]],'
                             b'"flags":[]}]}', qos=1)
        await client.disconnect()

    asyncio.run(scenario())
    counts = wait_until(lambda: stack.get("/rejections/counts"), timeout=20)
    # then a real gateway's good reading still goes through
    cuff = SimulatedCuff(addr="C4:7C:8D:6A:00:03", rng=random.Random(3))

    async def good() -> None:
        core, uplink, _ = make_gateway(stack, 0, tmp_path / "journal")
        task = asyncio.create_task(uplink.run())
        core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, cuff.measure())
        await wait_async(lambda: core.journal.depth == 0)
        uplink.stop()
        await task

    asyncio.run(good())
    text = repr(counts)
    assert "malformed_json" in text and "invalid_record" in text and acc.gateway in text
    assert len(stack.get("/readings", gateway=acc.gateway)) == 1


def test_decode_error_is_counted_and_does_not_stop_the_gateway(stack: FleetStack,
                                                                tmp_path: Path) -> None:
    async def scenario() -> Gateway:
        core, uplink, indicator = make_gateway(stack, 0, tmp_path / "journal")
        task = asyncio.create_task(uplink.run())
        assert core.on_value({"addr": "AA"}, BLOOD_PRESSURE_MEASUREMENT,
                             bytes.fromhex("010203040506")) is None
        good = encode_blood_pressure(120, 80, 93, status=None)
        assert core.on_value({"addr": "AA"}, BLOOD_PRESSURE_MEASUREMENT, good) == 1
        await wait_async(lambda: core.journal.depth == 0)
        uplink.stop()
        await task
        assert any(e[0] == "error" for e in indicator.events)
        return core

    core = asyncio.run(scenario())
    assert core.errors == {("AA", "decode_error"): 1}


def test_broker_restart_loses_nothing_and_duplicates_nothing(stack: FleetStack,
                                                             tmp_path: Path) -> None:
    """Readings keep coming while the broker is down: they are buffered, shown
    as such, and all arrive once when it is back."""
    cuff = SimulatedCuff(addr="C4:7C:8D:6A:00:04", serial="5140200004", rng=random.Random(4))
    gw = stack.gateways[0].gateway
    assert stack.broker is not None
    broker = stack.broker

    async def scenario() -> RecordingIndicator:
        # Mosquitto 2.0.11 drops a message sent to the shared subscription after
        # a restart and before the ingest worker is back (seen here): the
        # gateway's re-send of what no ack covers is what recovers it.
        core, uplink, indicator = make_gateway(stack, 0, tmp_path / "journal",
                                               resend_after_ms=3000)
        task = asyncio.create_task(uplink.run())
        for _ in range(5):
            core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, cuff.measure())
        await wait_async(lambda: core.journal.depth == 0)
        await asyncio.to_thread(broker.stop)
        await wait_async(lambda: not uplink.connected, timeout=30)
        for _ in range(5):  # taken while the link is down
            core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, cuff.measure())
        assert core.journal.depth == 5
        await asyncio.to_thread(broker.start)
        for _ in range(5):
            core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, cuff.measure())
        try:
            await wait_async(lambda: core.journal.depth == 0, timeout=30)
        except TimeoutError:
            raise AssertionError(f"depth {core.journal.depth} {uplink.stats} {uplink.connected}"
                                 + stack.server_log()[-3000:] + broker.log_text()[-3000:])
        assert uplink.stats["reconnects"] >= 1
        uplink.stop()
        await task
        return indicator

    indicator = asyncio.run(scenario())
    assert [e for e in indicator.events if e[0] == "buffered"], "nurse never saw 'buffered'"
    rows = stack.get("/readings", gateway=gw)
    assert sorted(r["seq"] for r in rows) == list(range(1, 16))


def test_state_birth_and_heartbeat_reach_the_fleet(stack: FleetStack, tmp_path: Path) -> None:
    """The fleet sees the gateway online with its last heartbeat, and offline
    after a clean stop."""
    from gateway.health import HealthSampler

    acc = stack.gateways[1]

    async def scenario() -> None:
        core, uplink, _ = make_gateway(stack, 1, tmp_path / "journal")
        sampler = HealthSampler(core.journal, uplink, core.clock, boot_count=7,
                                link_probe=lambda: ("cellular", -95))
        uplink.heartbeat, uplink.heartbeat_ms = sampler.payload, 500
        task = asyncio.create_task(uplink.run())

        def seen() -> bool:
            gws = {g["gateway"]: g for g in stack.get("/gateways")}
            g = gws[acc.gateway]
            return g["state"] == "online" and (g["health"] or {}).get("boots") == 7

        await wait_async(lambda: uplink.stats["heartbeats"] >= 2)
        await asyncio.to_thread(wait_until, seen, 20)
        uplink.stop()
        await task

    asyncio.run(scenario())
    g = wait_until(lambda: [x for x in stack.get("/gateways")
                            if x["gateway"] == acc.gateway and x["state"] == "offline"], 20)[0]
    assert g["state_reason"] == "shutdown"
    assert g["health"]["link"] == "cellular" and g["health"]["journal_depth"] == 0


def test_urgent_reading_jumps_the_backlog(stack: FleetStack, tmp_path: Path) -> None:
    """After a day offline with 40 readings buffered, a hypertensive crisis
    measured last is the first reading the fleet server stores."""
    cuff = SimulatedCuff(addr="C4:7C:8D:6A:00:05", serial="5140200005", rng=random.Random(5))
    gw = stack.gateways[0].gateway

    async def scenario() -> int:
        core, uplink, _ = make_gateway(stack, 0, tmp_path / "journal")
        for _ in range(40):  # the link is not up yet: all buffered
            core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT,
                          encode_blood_pressure(128, 84, 99, status=None))
        crisis = core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT,
                               encode_blood_pressure(204, 126, 152, status=None))
        assert crisis == 41 and core.journal.urgent == [41]
        task = asyncio.create_task(uplink.run())
        await wait_async(lambda: core.journal.depth == 0, timeout=30)
        assert uplink.stats["urgent_sent"] == 1
        assert uplink.stats["records_sent"] == 41  # the urgent one was not sent twice
        uplink.stop()
        await task
        return crisis

    crisis = asyncio.run(scenario())
    rows = stack.get("/readings", gateway=gw)
    assert len(rows) == 41
    first = min(rows, key=lambda r: r["id"])
    assert first["seq"] == crisis and "urgent" in first["flags"]
