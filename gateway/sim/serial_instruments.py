"""Serial instrument simulators on pseudo-terminals: an OpenBCI Cyton
streaming ECG, a LifeScan OneTouch Ultra2 answering its commands, and an
ASTM E1381/E1394 meter (Contour-type) sending its memory.

Each simulator opens a pty pair (os.openpty) and runs the instrument on the
master side in a thread; the gateway opens the slave path (`sim.port`) with
pyserial (gateway/host/serial_port.py) exactly as it would open
/dev/ttyUSB0. The bytes are the real protocols' (the encoders of
device_drivers.cyton, onetouch and astm), so the sessions and drivers under
test cannot tell the difference, and faults are injected where a real link
has them: lost packets, line noise, a bad checksum, a UART overrun. The pty
is raw (no echo, no line discipline) from the start. Writes never block the
simulator thread: by default what the pty cannot take yet waits in the
simulator and goes when the gateway reads (so a busy test machine never
loses bytes by accident); with `lossy=True` it is lost instead, as on a UART
nobody reads, and counted in `overrun_bytes`.

    with CytonSim(bpm=72, speed=20) as cyton:       # 20x real time
        port = SerialPort(cyton.port, 115200)
        ...

CPython only (threads, ptys); not part of the firmware image.
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
import tty
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Self

from device_drivers import DecodeError, astm, onetouch
from device_drivers.cyton import SAMPLE_RATE, encode_packet, uv_to_counts

TICK_S = 0.002


class PtyInstrument:
    """A pty pair with the instrument on its master side, in a thread.
    Subclasses implement on_bytes(data) and may implement tick(now)."""

    def __init__(self, lossy: bool = False) -> None:
        self.lossy = lossy
        self._pending = bytearray()  # written by the instrument, not yet taken by the pty
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline, before anyone writes
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self.received = bytearray()  # everything the gateway wrote
        self.overrun_bytes = 0
        self.errors: list[str] = []  # simulator bugs, for the tests to see
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=type(self).__name__,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the instrument and close the pty: the gateway's port then
        reads as unplugged (OSError)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def pending(self) -> int:
        """Bytes the instrument sent that the pty has not taken yet."""
        return len(self._pending)

    def send(self, data: bytes) -> None:
        """Write toward the gateway (see the module header: queued, or lost
        when `lossy`)."""
        if self.lossy:
            n = self._write(data)
            self.overrun_bytes += len(data) - n
        else:
            self._pending += data
            self._drain()

    def _write(self, data: bytes | bytearray) -> int:
        try:
            return os.write(self._master, data)
        except BlockingIOError:
            return 0
        except OSError:
            return 0

    def _drain(self) -> None:
        while self._pending:
            n = self._write(self._pending[:4096])
            if not n:
                return
            del self._pending[:n]

    def on_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def tick(self, now: float) -> None:
        pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master],
                                            [self._master] if self._pending else [], [], TICK_S)
                if ready:
                    try:
                        data = os.read(self._master, 4096)
                    except BlockingIOError:
                        data = b""
                    if data:
                        with self._lock:
                            self.received += data
                            self.on_bytes(data)
                with self._lock:
                    self._drain()
                    self.tick(time.monotonic())
            except OSError:
                # EIO: nobody has the slave open (it was closed): keep waiting
                time.sleep(TICK_S)
            except Exception as e:  # a simulator bug: recorded, the thread goes on
                self.errors.append(f"{type(e).__name__}: {e}")
                time.sleep(TICK_S)


# --- OpenBCI Cyton -------------------------------------------------------------------

# One beat of a lead II-like ECG: (centre s from R, amplitude uV, width s).
_BEAT = ((-0.16, 150, 0.022), (-0.028, -120, 0.008), (0.0, 1100, 0.009),
         (0.028, -250, 0.009), (0.28, 300, 0.045))


def synthetic_ecg_uv(k: int, bpm: float = 72.0, fs: int = SAMPLE_RATE,
                     offset_uv: int = -20000) -> int:
    """Microvolts of sample k of a synthetic ECG (R waves of 1.1 mV, the
    first 0.35 s in, every 60/bpm s) on an electrode offset: what the
    simulated board measures, and what a test expects back."""
    rr = 60.0 / bpm
    t = k / fs - 0.35
    v = 0.0
    for j in (math.floor(t / rr), math.floor(t / rr) + 1):
        for centre, amp, width in _BEAT:
            z = (t - j * rr - centre) / width
            if -6.0 < z < 6.0:
                v += amp * math.exp(-0.5 * z * z)
    return round(v) + offset_uv


SOFT_RESET_REPLY = (b"OpenBCI V3 8-16 channel\nOn Board ADS1299 Device ID: 0x3E\n"
                    b"LIS3DH Device ID: 0x33\nFirmware: v3.1.2\n$$$")


class CytonSim(PtyInstrument):
    """An OpenBCI Cyton through its dongle (115200 baud): "b" starts the
    250 Hz stream of 33-byte packets, "s" stops it, "v" soft-resets (the
    board's banner ending "$$$"). Every channel carries the synthetic ECG at
    `gain`. `speed`: times faster than real time. `drop`: packet indices
    (counted from the first since power-up) never sent; `junk`: {index: bytes
    sent before that packet}. Without `lossy`, a reader slower than the
    stream slows the stream (no packet is lost unless asked)."""

    def __init__(self, bpm: float = 72.0, speed: float = 1.0, gain: int = 24,
                 drop: Iterable[int] = (), junk: dict[int, bytes] | None = None,
                 offset_uv: int = -20000, lossy: bool = False) -> None:
        super().__init__(lossy)
        self.bpm = bpm
        self.speed = speed
        self.gain = gain
        self.drop = set(drop)
        self.junk = dict(junk or {})
        self.offset_uv = offset_uv
        self.streaming = False
        self.starts = 0
        self.next_index = 0  # index of the next packet the board makes
        self._t0 = 0.0
        self._k0 = 0

    def uv(self, k: int) -> int:
        return synthetic_ecg_uv(k, self.bpm, SAMPLE_RATE, self.offset_uv)

    def packet(self, k: int) -> bytes:
        c = uv_to_counts(self.uv(k), self.gain)
        return encode_packet(k & 0xFF, [c] * 8, (0, 0, 0))

    def on_bytes(self, data: bytes) -> None:
        for c in data:
            if c == ord("b") and not self.streaming:
                self.streaming = True
                self.starts += 1
                self._t0 = time.monotonic()
                self._k0 = self.next_index
            elif c == ord("s"):
                self.streaming = False
            elif c == ord("v"):
                self.streaming = False
                self.send(SOFT_RESET_REPLY)

    def tick(self, now: float) -> None:
        if not self.streaming or (not self.lossy and self.pending > 8192):
            return  # (not lossy: the stream waits for a slow reader)
        due = self._k0 + int((now - self._t0) * SAMPLE_RATE * self.speed)
        out = bytearray()
        while self.next_index < due and len(out) < 4096:
            k = self.next_index
            self.next_index += 1
            out += self.junk.get(k, b"")
            if k not in self.drop:
                out += self.packet(k)
        if out:
            self.send(bytes(out))


# --- LifeScan OneTouch Ultra2 ------------------------------------------------------------


class OneTouchSim(PtyInstrument):
    """A OneTouch Ultra2 on its cable (9600 baud). Answers the commands
    framed DC1 CR <cmd> CR: DMP (its memory, newest first, in the documented
    format), DM@ (serial), DM? (firmware), DMF (clock), DMT (set clock),
    DMSU? / DMST? (display unit, time format), DMZ (clear memory). Unknown
    commands get no answer, as on the meter. `readings`: dicts as
    onetouch.encode_record takes them (timestamp, glucose, flags, meal,
    comment), oldest first. `corrupt_dumps`: how many DMP answers get a bad
    checksum on their third line; `cut_dumps`: how many stop after their
    second line (the cable pulled)."""

    def __init__(self, readings: Sequence[dict[str, Any]], serial: str = "ZDP0012AY",
                 clock: tuple[int, ...] = (2026, 11, 29, 9, 0, 0), corrupt_dumps: int = 0,
                 cut_dumps: int = 0, firmware: str = "P02.00.00 30/08/06") -> None:
        super().__init__()
        self.readings = list(readings)
        self.serial = serial
        self.clock = clock
        self.corrupt_dumps = corrupt_dumps
        self.cut_dumps = cut_dumps
        self.firmware = firmware
        self.commands: list[str] = []
        self._buf = bytearray()

    def on_bytes(self, data: bytes) -> None:
        self._buf += data
        while True:
            start = self._buf.find(b"\x11\r")
            if start < 0:
                self._buf.clear()  # noise before a command
                return
            end = self._buf.find(b"\r", start + 2)
            if end < 0:
                del self._buf[:start]
                return
            frame = bytes(self._buf[start:end + 1])
            del self._buf[:end + 1]
            try:
                cmd = onetouch.decode_command(frame)
            except DecodeError:
                continue
            self.commands.append(str(cmd["command"]))
            reply = self._answer(cmd)
            if reply:
                self.send(reply)

    def _answer(self, cmd: dict[str, Any]) -> bytes:
        name = cmd["command"]
        if name == "DMP":
            lines = [onetouch.encode_dump_header(len(self.readings), self.serial)]
            lines += [onetouch.encode_record(r) for r in reversed(self.readings)]
            if self.corrupt_dumps and len(lines) > 2:
                self.corrupt_dumps -= 1
                lines[2] = lines[2][:-6] + b"0000\r\n"
            if self.cut_dumps:
                self.cut_dumps -= 1
                lines = lines[:2]
            return b"".join(lines)
        if name == "DM@":
            return onetouch.encode_serial_reply(self.serial)
        if name == "DM?":
            return onetouch.encode_firmware_reply(self.firmware)
        if name == "DMF":
            return onetouch.encode_clock_reply(self.clock)
        if name == "DMT":
            self.clock = tuple(cmd["timestamp"])
            return onetouch.encode_clock_reply(self.clock, "T")
        if name == "DMSU?":
            return onetouch.encode_units_reply("mg/dL")
        if name == "DMST?":
            return onetouch.encode_time_format_reply("24h")
        if name == "DMZ":
            self.readings = []
            return onetouch.encode_cleared_reply()
        return b""


# --- ASTM E1381/E1394 meter ----------------------------------------------------------------

# A result: (timestamp 6-tuple, value, unit, analyte)
AstmResult = tuple[tuple[int, ...], float, str, str]


class AstmMeterSim(PtyInstrument):
    """A Contour-type meter speaking ASTM E1381/E1394 (9600 baud): an EOT
    from the computer makes it bid (ENQ) and send its whole memory as one
    message (H, P, R..., L), frame by frame, each resent on NAK (up to 6
    times), then EOT. `corrupt_frames`: frame numbers (1 = the first frame
    of a session) whose first transmission has a wrong checksum. The meter's
    own timers run `speed` times faster than the standard's 15 s."""

    def __init__(self, results: Sequence[AstmResult], serial: str = "7390-1234567",
                 model: str = "Contour", corrupt_frames: Iterable[int] = (),
                 speed: float = 10.0) -> None:
        super().__init__()
        self.results = list(results)
        self.serial = serial
        self.model = model
        self.corrupt_frames = set(corrupt_frames)
        self.speed = speed
        self.sessions = 0
        self.outcomes: list[str] = []  # per session: done / aborted
        self._sender: astm.Sender | None = None
        self._frames = 0
        self._deadline = 0.0

    def messages(self) -> list[bytes]:
        recs = [astm.header_record(sender=(self.model, "1.0", self.serial),
                                   timestamp=(2026, 11, 29, 9, 0, 0)),
                astm.patient_record(1)]
        for i, (ts, value, unit, analyte) in enumerate(self.results):
            recs.append(astm.result_record(i + 1, analyte, value, unit, timestamp=ts))
        recs.append(astm.terminator_record())
        return [astm.encode_message(recs)]

    def on_bytes(self, data: bytes) -> None:
        s = self._sender
        if s is None or s.state == "done":
            if astm.EOT in data:
                self._sender = astm.Sender(self.messages())
                self._sender.start()
                self.sessions += 1
                self._frames = 0
                self._flush()
            return
        events = s.feed(data)
        self._flush()
        self._note(events)

    def _note(self, events: list[tuple[str, object]]) -> None:
        for ev, _ in events:
            if ev in (astm.DONE, astm.ABORTED):
                self.outcomes.append(ev)

    def _flush(self) -> None:
        s = self._sender
        assert s is not None
        out = s.data_to_send()
        if out[:1] == b"\x02":
            self._frames += 1
            if self._frames in self.corrupt_frames:
                self.corrupt_frames.discard(self._frames)
                bad = b"00" if out[-4:-2] != b"00" else b"11"
                out = out[:-4] + bad + out[-2:]
        if out:
            self.send(out)
        timer = s.timer
        self._deadline = time.monotonic() + timer / self.speed if timer else 0.0

    def tick(self, now: float) -> None:
        s = self._sender
        if s is None or s.state == "done" or not self._deadline or now < self._deadline:
            return
        events = s.timeout()
        self._flush()
        self._note(events)
