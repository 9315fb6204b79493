"""Serial instruments end to end through real components: a simulated Cyton
or OneTouch Ultra2 on a pseudo-terminal -> pyserial adapter -> serial
session -> drivers -> gateway journal -> our MQTT client -> real Mosquitto
-> fleet server ingest -> SQLite -> ack -> journal freed -> API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from devharness.stack import FleetStack
from gateway.host.serial_port import BAUD_CYTON, BAUD_ONETOUCH, SerialPort
from gateway.journal import Journal
from gateway.serial_session import capture_ecg_strip, dump_onetouch, meter_iseq
from gateway.sim.serial_instruments import CytonSim, OneTouchSim
from tests.integration.test_end_to_end import make_gateway, wait_async


def test_ecg_strip_from_a_pty_reaches_the_api_sample_for_sample(stack: FleetStack,
                                                                 tmp_path: Path) -> None:
    acc = stack.gateways[0]

    async def scenario(sim: CytonSim) -> dict[str, Any]:
        core, uplink, indicator = make_gateway(stack, 0, tmp_path / "journal")
        task = asyncio.create_task(uplink.run())
        async with SerialPort(sim.port, BAUD_CYTON) as port:
            res = await capture_ecg_strip(port, core, {"addr": "ttyUSB0", "model": "Cyton",
                                                       "serial": "CYT-0042"}, seconds=10)
        assert res["status"] == "ok" and res["seq"] == 1
        await wait_async(lambda: core.journal.depth == 0)
        assert ("delivered", 1, []) in indicator.events
        assert uplink.stats["batches"] == 1  # the strip went alone, in one message
        uplink.stop()
        await task
        return res

    with CytonSim(bpm=66, speed=20) as sim:
        res = asyncio.run(scenario(sim))
        expected = [sim.uv(k) for k in range(2500)]
    (row,) = stack.get("/readings", gateway=acc.gateway, type="ecg_strip")
    assert row["values"] == [["heart_rate", res["heart_rate"], "/min"]]
    assert row["instrument"]["serial"] == "CYT-0042" and row["instrument_time"] is None
    strip = stack.get(f"/readings/{row['id']}/samples")
    assert (strip["fs"], strip["n"], strip["lead"], strip["unit"]) == (250, 2500, "II", "uV")
    # exactly what the gateway journaled ...
    journaled = [strip["offset_uv"] + strip["scale_uv"] * s for s in strip["samples"]]
    # ... which is the board's microvolts within the strip's 1 uV rounding
    assert max(abs(a - b) for a, b in zip(journaled, expected, strict=True)) <= 1
    assert 10 <= len(strip["r_peaks"]) <= 12 and strip["gaps"] == []


def test_meter_records_are_stored_once_even_when_the_gateway_forgets(stack: FleetStack,
                                                                      tmp_path: Path) -> None:
    """The gateway's cursor keeps a second dump from journaling the meter's
    records again; a gateway that lost it (flash replaced: a new journal)
    sends them again, and the server keeps each once by (meter serial,
    iseq)."""
    acc = stack.gateways[1]
    readings = [{"timestamp": (2026, 11, 20 + k, 7, 15, 30), "glucose": 95 + 9 * k}
                for k in range(4)]

    async def dump(sim: OneTouchSim, journal_dir: Path, cursors: dict[str, Any]) -> Any:
        core, uplink, _ = make_gateway(stack, 1, journal_dir)
        task = asyncio.create_task(uplink.run())
        async with SerialPort(sim.port, BAUD_ONETOUCH) as port:
            res = await dump_onetouch(port, core, {"addr": "ttyUSB1"}, cursors,
                                      timeout_ms=500)
        await wait_async(lambda: core.journal.depth == 0)
        uplink.stop()
        await task
        return res

    with OneTouchSim(readings) as sim:
        cursors: dict[str, Any] = {}
        first = asyncio.run(dump(sim, tmp_path / "j1", cursors))
        second = asyncio.run(dump(sim, tmp_path / "j1", cursors))
        forgot = asyncio.run(dump(sim, tmp_path / "j2", {}))  # a new flash, no cursor
    assert (first["journaled"], second["journaled"], forgot["journaled"]) == (4, 0, 4)
    assert Journal(str(tmp_path / "j1")).jid != Journal(str(tmp_path / "j2")).jid
    rows = stack.get("/readings", gateway=acc.gateway)
    assert sorted(r["iseq"] for r in rows) == sorted(
        meter_iseq(r["timestamp"]) for r in readings)
    assert {r["instrument"]["serial"] for r in rows} == {"ZDP0012AY"}
    assert sorted(r["values"][0][1] for r in rows) == [95, 104, 113, 122]
