"""The serial instrument simulators (gateway/sim/serial_instruments.py) speak
the real protocols: checked on pseudo-terminals through the pyserial adapter
(gateway/host/serial_port.py) with the drivers' decoders, byte for byte, as
a gateway would see a real Cyton, OneTouch Ultra2 or ASTM meter."""

from __future__ import annotations

import asyncio
import time

import pytest

from device_drivers import astm, onetouch
from device_drivers.cyton import CytonParser, Gap, Resync, Sample, uv_per_count
from gateway.host.serial_port import BAUD_ASTM, BAUD_CYTON, BAUD_ONETOUCH, SerialPort
from gateway.sim.serial_instruments import (
    SOFT_RESET_REPLY,
    AstmMeterSim,
    CytonSim,
    OneTouchSim,
    synthetic_ecg_uv,
)


async def read_until(port: SerialPort, done: object, timeout_ms: int = 3000) -> bytes:
    """Bytes until done(buffer) is true, or until nothing came for timeout_ms."""
    buf = bytearray()
    while not done(buf):  # type: ignore[operator]
        data = await port.read(512, timeout_ms)
        if not data:
            break
        buf += data
    return bytes(buf)


def test_cyton_streams_packets_on_b_and_stops_on_s() -> None:
    async def scenario(sim: CytonSim) -> list[object]:
        async with SerialPort(sim.port, BAUD_CYTON) as port:
            assert await port.read(64, 100) == b""  # silent until asked
            await port.write(b"b")
            data = await read_until(port, lambda b: len(b) >= 33 * 300)
            await port.write(b"s")
            await asyncio.sleep(0.1)
            while await port.read(512, 100):  # what was in flight
                pass
            assert await port.read(64, 200) == b""  # stopped
            await port.write(b"v")
            banner = await read_until(port, lambda b: b.endswith(b"$$$"))
            assert banner == SOFT_RESET_REPLY
        parser = CytonParser()
        parser.feed(data)
        return list(parser)

    with CytonSim(bpm=60, speed=10) as sim:
        events = asyncio.run(scenario(sim))
        assert sim.starts == 1 and not sim.streaming and sim.errors == []
    samples = [e for e in events if isinstance(e, Sample)]
    assert len(samples) >= 299 and not [e for e in events if isinstance(e, Gap | Resync)]
    scale = uv_per_count(24)
    for k, s in enumerate(samples):
        assert s.sample_number == k & 0xFF
        assert s.stop_byte == 0xC0 and s.counts[0] == s.counts[7]
        assert abs(s.counts[0] * scale - synthetic_ecg_uv(k, 60)) < 0.05


def test_cyton_faults_are_real_link_faults() -> None:
    async def scenario(sim: CytonSim) -> list[object]:
        async with SerialPort(sim.port, BAUD_CYTON) as port:
            await port.write(b"b")
            data = await read_until(port, lambda b: len(b) >= 33 * 60)
            await port.write(b"s")
        parser = CytonParser()
        parser.feed(data)
        return list(parser)

    with CytonSim(speed=10, drop=(20, 21), junk={40: b"\xa0noise"}) as sim:
        events = asyncio.run(scenario(sim))
    kinds = [type(e).__name__ for e in events if not isinstance(e, Sample)]
    assert kinds == ["Gap", "Resync"]
    assert [e.missing for e in events if isinstance(e, Gap)] == [2]


def test_lossy_cyton_overruns_when_nobody_reads() -> None:
    with CytonSim(speed=50, lossy=True) as sim:
        port = SerialPort(sim.port, BAUD_CYTON)
        try:
            asyncio.run(port.write(b"b"))
            deadline = time.monotonic() + 5
            while sim.overrun_bytes == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert sim.overrun_bytes > 0 and sim.errors == []
        finally:
            port.close()


def _readings(n: int) -> list[dict[str, object]]:
    return [{"timestamp": (2026, 11, 20 + k, 7, 15, 30), "glucose": 95 + 7 * k,
             "meal": "before" if k % 2 else "none"} for k in range(n)]


def test_onetouch_answers_its_commands_in_the_documented_format() -> None:
    async def scenario(sim: OneTouchSim) -> dict[str, object]:
        async with SerialPort(sim.port, BAUD_ONETOUCH) as port:
            got: dict[str, object] = {}
            for cmd in ("DM@", "DM?", "DMF"):
                await port.write(onetouch.encode_command(cmd))
                line = await read_until(port, lambda b: b.endswith(b"\r\n"))
                got[cmd] = onetouch.decode_line(line.rstrip(b"\r\n"))
            await port.write(b"\x00\xffnoise" + onetouch.DUMP_RECORDS)
            got["DMP"] = onetouch.parse_dump(await read_until(port, lambda b: False, 300))
            await port.write(onetouch.encode_command("DMX"))  # unknown: no answer
            got["DMX"] = await port.read(64, 200)
            return got

    with OneTouchSim(_readings(5), serial="ZDP0012AY") as sim:
        got = asyncio.run(scenario(sim))
        assert sim.commands == ["DM@", "DM?", "DMF", "DMP", "DMX"] and sim.errors == []
    assert got["DM@"] == {"type": "serial", "serial": "ZDP0012AY", "model": "Ultra2"}
    assert got["DM?"]["type"] == "firmware"  # type: ignore[index]
    assert got["DMF"]["timestamp"] == (2026, 11, 29, 9, 0, 0)  # type: ignore[index]
    dump = got["DMP"]
    assert dump["serial"] == "ZDP0012AY" and dump["count"] == 5  # type: ignore[index]
    values = [r["glucose"] for r in dump["readings"]]  # type: ignore[index]
    assert values == [123, 116, 109, 102, 95]  # newest first
    assert got["DMX"] == b""


def test_onetouch_fault_injection_breaks_a_checksum_once() -> None:
    async def dump(port: SerialPort) -> bytes:
        await port.write(onetouch.DUMP_RECORDS)
        return await read_until(port, lambda b: False, 300)

    async def scenario(sim: OneTouchSim) -> tuple[bytes, bytes]:
        async with SerialPort(sim.port, BAUD_ONETOUCH) as port:
            return await dump(port), await dump(port)

    with OneTouchSim(_readings(3), corrupt_dumps=1) as sim:
        first, second = asyncio.run(scenario(sim))
    with pytest.raises(onetouch.DecodeError, match="checksum"):
        onetouch.parse_dump(first)
    assert onetouch.parse_dump(second)["count"] == 3


def test_astm_meter_bids_sends_frames_and_resends_a_nakked_one() -> None:
    results = [((2026, 11, 28, 7, 0, 0), 133, "mg/dL", "Glucose"),
               ((2026, 11, 28, 19, 5, 0), 64, "mg/dL", "Glucose")]

    async def scenario(sim: AstmMeterSim) -> list[tuple[str, object]]:
        rx = astm.Receiver()
        events: list[tuple[str, object]] = []
        async with SerialPort(sim.port, BAUD_ASTM) as port:
            await port.write(bytes([astm.EOT]))
            while True:
                data = await port.read(512, 2000)
                assert data, "the meter went quiet"
                events += rx.feed(data)
                out = rx.data_to_send()
                if out:
                    await port.write(out)
                if events and events[-1][0] == astm.LINK_DOWN:
                    return events

    with AstmMeterSim(results, corrupt_frames=(2,)) as sim:
        events = asyncio.run(scenario(sim))
        deadline = time.monotonic() + 2
        while not sim.outcomes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sim.outcomes == [astm.DONE] and sim.errors == []
    kinds = [e for e, _ in events]
    assert kinds[0] == astm.LINK_UP and kinds.count(astm.REJECTED) == 1
    records = [astm.decode_record(p) for e, p in events if e == astm.RECORD]
    assert [r["type"] for r in records] == ["H", "P", "R", "R", "L"]
    assert records[0]["sender"] == ["Contour", "1.0", "7390-1234567"]
    readings = astm.results_to_readings(records)
    assert [(r["value"], r["timestamp"]) for r in readings] == [
        (133, (2026, 11, 28, 7, 0, 0)), (64, (2026, 11, 28, 19, 5, 0))]


def test_a_stopped_simulator_reads_as_an_unplugged_port() -> None:
    async def scenario(sim: CytonSim) -> None:
        port = SerialPort(sim.port, BAUD_CYTON)
        try:
            await port.write(b"b")
            assert await port.read(64, 2000)
            sim.stop()
            with pytest.raises(OSError):
                for _ in range(1000):
                    await port.read(512, 200)
        finally:
            port.close()

    sim = CytonSim(speed=5).start()
    asyncio.run(scenario(sim))
