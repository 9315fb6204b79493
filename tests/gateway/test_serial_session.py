"""Serial sessions (gateway/serial_session.py) with the real gateway core and
journal, over pseudo-terminals: the pyserial adapter (gateway/host/
serial_port.py) on one side, the instrument simulators (gateway/sim/
serial_instruments.py) on the other. The in-memory versions, which also run
under MicroPython, are the test_serial_session_portable*.py modules."""

from __future__ import annotations

import asyncio
import base64
import json
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.clock import GatewayClock
from gateway.host.serial_port import BAUD_ASTM, BAUD_CYTON, BAUD_ONETOUCH, SerialPort
from gateway.indicator import RecordingIndicator
from gateway.journal import Journal
from gateway.serial_session import (
    capture_ecg_strip,
    dump_astm,
    dump_onetouch,
    load_cursors,
    meter_iseq,
    save_cursors,
)
from gateway.sim.serial_instruments import AstmMeterSim, CytonSim, OneTouchSim

NOW_MS = 1795935781000


class LinkDown:
    connected = False

    def notify(self) -> None:
        pass


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Gateway]:
    journal = Journal(str(tmp_path / "journal"))
    yield Gateway(journal, LinkDown(), GatewayClock(source=lambda: NOW_MS, synced=True),
                  RecordingIndicator())


def records(core: Gateway) -> list[dict[str, Any]]:
    return [json.loads(p) for _, _, p in core.journal.read(0, 1000, 1 << 30)]


def strip_samples(rec: dict[str, Any]) -> array[int]:
    samples = array("h", base64.b64decode(rec["ecg"]["b64"], validate=True))
    assert len(samples) == rec["ecg"]["n"]
    return samples


def capture(sim: CytonSim, core: Gateway, **kw: Any) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with SerialPort(sim.port, BAUD_CYTON) as port:
            return await capture_ecg_strip(port, core, {"addr": sim.port, "model": "Cyton"},
                                           **kw)
    return asyncio.run(run())


def test_a_10_s_strip_over_a_pty_is_journaled_sample_for_sample(core: Gateway) -> None:
    with CytonSim(bpm=72, speed=20) as sim:
        res = capture(sim, core, seconds=10, channel=1, lead="II")
        assert not sim.streaming and sim.starts == 1 and sim.errors == []
    assert res["status"] == "ok" and res["seq"] == 1 and res["samples"] == 2500
    assert abs(res["heart_rate"] - 72) <= 2 and res["flags"] == []
    (rec,) = records(core)
    assert rec["type"] == "ecg_strip" and rec["kind"] == "reading"
    assert rec["values"] == [["heart_rate", res["heart_rate"], "/min"]]
    assert rec["itime"] is None and rec["rtime"] == NOW_MS
    ecg = rec["ecg"]
    assert {k: ecg[k] for k in ("fs", "n", "lead", "channel", "gain", "unit", "scale_uv")} == {
        "fs": 250, "n": 2500, "lead": "II", "channel": 1, "gain": 24, "unit": "uV",
        "scale_uv": 1}
    samples = strip_samples(rec)
    # The board's microvolts from its first packet on, back within the 1 uV
    # of the strip's integer rounding.
    for k in range(2500):
        assert abs(ecg["offset_uv"] + samples[k] - sim.uv(k)) <= 1, k
    assert 11 <= len(ecg["r_peaks"]) <= 13 and ecg["gaps"] == [] and ecg["missing"] == 0
    assert core.errors == {}


def test_lost_packets_and_line_noise_are_flagged_counted_and_filled(core: Gateway) -> None:
    with CytonSim(bpm=80, speed=20, drop=range(500, 504), junk={900: b"\xa0\x55noise"}) as sim:
        res = capture(sim, core, seconds=10)
    assert res["status"] == "ok" and set(res["flags"]) == {"gaps", "resync"}
    addr = sim.port
    assert core.errors[(addr, "cyton_lost_packets")] == 4
    assert core.errors[(addr, "cyton_resync")] == 1
    ecg = records(core)[0]["ecg"]
    assert ecg["missing"] == 4 and len(ecg["gaps"]) == 1 and ecg["gaps"][0][1] == 4
    assert len(strip_samples(records(core)[0])) == 2500  # the time base is kept


def test_a_board_that_never_streams_times_out(core: Gateway) -> None:
    with CytonSim(speed=20) as sim:
        sim.on_bytes = lambda data: None  # type: ignore[method-assign]  # deaf
        res = capture(sim, core, seconds=4, timeout_ms=200)
    assert res["status"] == "timeout" and core.journal.depth == 0
    assert core.errors == {(sim.port, "serial_timeout"): 1}


def test_unplugged_mid_strip_is_counted_and_the_scrap_not_journaled(core: Gateway) -> None:
    sim = CytonSim(speed=2).start()

    async def run() -> dict[str, Any]:
        async with SerialPort(sim.port, BAUD_CYTON) as port:
            task = asyncio.create_task(capture_ecg_strip(port, core, {"addr": "ttyX"},
                                                         seconds=10, timeout_ms=500))
            await asyncio.sleep(0.5)
            sim.stop()  # the cable is pulled
            return await task

    res = asyncio.run(run())
    assert res["status"] in ("port_error", "timeout") and res["seq"] is None
    assert core.journal.depth == 0
    assert core.errors.get(("ttyX", "serial_error"), 0) + \
        core.errors.get(("ttyX", "serial_timeout"), 0) == 1


def test_on_reading_refuses_what_the_wire_cannot_carry(core: Gateway) -> None:
    r: dict[str, Any] = {"type": "ecg_strip", "values": [], "flags": [], "itime": None,
                         "samples": array("h", bytes(2 * 3000)), "sample_rate": 250}
    assert core.on_reading({"addr": "ttyX"}, r) is None
    assert core.errors == {("ttyX", "bad_reading"): 1} and core.journal.depth == 0


def test_onetouch_memory_dump_over_a_pty_once_per_record(core: Gateway,
                                                          tmp_path: Path) -> None:
    readings = [{"timestamp": (2026, 11, 20 + k, 7, 15, 30), "glucose": 95 + 7 * k}
                for k in range(5)]
    readings[2]["flags"] = ["control_solution"]
    path = str(tmp_path / "cursors.json")

    async def dump(sim: OneTouchSim) -> dict[str, Any]:
        async with SerialPort(sim.port, BAUD_ONETOUCH) as port:
            cursors = load_cursors(path)
            res = await dump_onetouch(port, core, {"addr": sim.port}, cursors,
                                      timeout_ms=300)
            save_cursors(path, cursors)
            return res

    with OneTouchSim(readings, corrupt_dumps=1) as sim:
        first = asyncio.run(dump(sim))
        second = asyncio.run(dump(sim))
        sim.readings.append({"timestamp": (2026, 11, 29, 8, 0, 0), "glucose": 201})
        third = asyncio.run(dump(sim))
        assert sim.commands.count("DMP") == 4  # the corrupt first answer was asked again
    assert (first["status"], first["journaled"]) == ("ok", 5)
    assert (second["journaled"], second["duplicates"]) == (0, 5)
    assert (third["journaled"], third["duplicates"]) == (1, 5)
    assert core.errors == {(sim.port, "checksum_error"): 1}
    recs = records(core)
    assert len(recs) == 6 and len({r["iseq"] for r in recs}) == 6
    control = next(r for r in recs if r["values"] == [["glucose", 109, "mg/dL"]])
    assert "control_solution" in control["flags"]
    assert recs[-1]["iseq"] == meter_iseq((2026, 11, 29, 8, 0, 0))
    assert recs[-1]["inst"]["serial"] == "ZDP0012AY"


def test_astm_meter_over_a_pty(core: Gateway) -> None:
    results = [((2026, 11, 28, 7, 0, 0), 133, "mg/dL", "Glucose"),
               ((2026, 11, 28, 19, 5, 0), 3.4, "mmol/L", "Glucose"),
               ((2026, 11, 29, 7, 2, 0), 2.1, "mg/L", "CRP")]
    cursors: dict[str, Any] = {}

    async def dump(sim: AstmMeterSim) -> dict[str, Any]:
        async with SerialPort(sim.port, BAUD_ASTM) as port:
            return await dump_astm(port, core, {"addr": sim.port}, cursors, timeout_ms=1000,
                                   wait_ms=1000)

    with AstmMeterSim(results, corrupt_frames=(3,)) as sim:
        first = asyncio.run(dump(sim))
        second = asyncio.run(dump(sim))
        assert sim.sessions == 2
    assert (first["status"], first["journaled"], first["serial"]) == ("ok", 2, "7390-1234567")
    assert (second["journaled"], second["duplicates"]) == (0, 2)
    assert core.errors == {(sim.port, "astm_frame_rejected"): 1,
                           (sim.port, "unsupported_result"): 2}
    recs = records(core)
    assert [r["values"] for r in recs] == [[["glucose", 133, "mg/dL"]],
                                           [["glucose", 3.4, "mmol/L"]]]
    assert "urgent" in recs[1]["flags"]  # 3.4 mmol/L is below 70 mg/dL
    assert recs[0]["inst"] == {"addr": sim.port, "serial": "7390-1234567", "model": "Contour"}
