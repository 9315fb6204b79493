# mpy-portable
# ECG strip capture (gateway/serial_session.py) against an in-memory Cyton
# that speaks the real bytes (33-byte packets, "b"/"s" stream commands), into
# a real journal through the gateway core, and the wire limits of a strip.
# Runs on CPython and under
# MicroPython with the 100 KB heap (the meters have their own modules, so
# each run holds one instrument's drivers); the pseudo-terminal versions with
# pyserial are in test_serial_session.py. Comments, not docstrings (heap).
import json
import math
import sys
from array import array
from binascii import a2b_base64

from device_drivers.cyton import encode_packet, uv_to_counts
from gateway import protocol
from gateway.journal import KIND_READING, Journal, JournalFull
from gateway.serial_session import capture_ecg_strip
from tests.portable import rmtree, tmpdir


class _LinkDown:
    connected = False
    stats = {"reconnects": 0}

    def notify(self):
        pass


class _Core:
    # Under MicroPython only: what a session asks of the gateway core
    # (gateway.app.Gateway: can_accept, on_reading, errors, alarms) over the
    # real journal and payloads. app.py imports every BLE decoder, and the
    # Unix port holds imported bytecode in the heap (a board keeps it in
    # flash): with the drivers beside it, that is over 100 KB. On CPython
    # these tests run the real Gateway.

    def __init__(self, journal):
        self.journal = journal
        self.errors = {}
        self.alarms = {}

    def _count(self, inst, code):
        key = (inst.get("addr"), code)
        self.errors[key] = self.errors.get(key, 0) + 1

    def can_accept(self, nbytes=1024):
        ok = self.journal.has_room(nbytes)
        if not ok:
            self.alarms["journal_full"] = True
        return ok

    def on_reading(self, inst, r, iseq=None):
        kind = KIND_READING  # (no urgency rule for ECG strips: reading.is_urgent)
        try:
            payload = protocol.reading_payload(r, inst, 1795935781000,
                                               iseq=r.get("iseq") if iseq is None else iseq)
        except ValueError:
            self._count(inst, "bad_reading")
            return None
        try:
            seq = self.journal.append(payload, kind)
        except JournalFull:
            self._count(inst, "journal_full")
            self.alarms["journal_full"] = True
            return None
        self.alarms["journal_full"] = False
        return seq


def _core(capacity=2000000):
    d = tmpdir("ss")
    j = Journal(d, segment_bytes=4096, capacity_bytes=capacity)
    if sys.implementation.name != "cpython":
        return d, _Core(j)
    from gateway.app import Gateway
    from gateway.clock import GatewayClock
    from gateway.indicator import RecordingIndicator

    return d, Gateway(j, _LinkDown(), GatewayClock(source=lambda: 1795935781000, synced=True),
                      RecordingIndicator())


def _records(core):
    return [json.loads(p) for _, _, p in core.journal.read(0, 1000, 1 << 30)]


def await_(coro):
    # The in-memory instruments answer at once, so a session never suspends:
    # run it to the end without an event loop (asyncio's heap is saved).
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    raise AssertionError("the session waited on something")


CYTON = {"addr": "/dev/ttyUSB0", "model": "Cyton"}


def _beat(bpm=75, fs=250):
    # One beat of a synthetic lead II (P, QRS, T as Gaussians, 1 mV R wave
    # 0.3 s in), integer microvolts, computed once: no float garbage while
    # streaming (floats are heap objects on the Unix port).
    n = int(60.0 * fs / bpm + 0.5)
    out = array("h", range(n))
    for k in range(n):
        t = k / fs - 0.3
        v = 0.0
        for centre, amp, width in ((-0.16, 120, 0.022), (0.0, 1000, 0.01),
                                   (0.03, -200, 0.01), (0.28, 250, 0.045)):
            z = (t - centre) / width
            if -6 < z < 6:
                v += amp * math.exp(-0.5 * z * z)
        out[k] = int(v)
    return out


BEAT = _beat()
OFFSET_UV = -5000  # the electrode offset


def ecg_uv(k):
    return BEAT[k % len(BEAT)] + OFFSET_UV


class FakeCyton:
    # "b" starts the stream of 33-byte packets, "s" stops it. `drop`: packet
    # numbers never sent (radio loss); `junk`: {packet number: bytes sent
    # before it} (line noise); `dead`: the board never answers. The stream is
    # made as it is read, into one buffer.
    def __init__(self, drop=(), junk=None, dead=False, quiet_after=None):
        self.quiet_after = quiet_after  # packets sent before the board goes quiet
        self.drop = drop
        self.junk = junk or {}
        self.dead = dead
        self.streaming = False
        self.k = 0
        self.out = bytearray()
        self.commands = bytearray()

    async def write(self, data):
        self.commands += data
        for c in data:
            if c == 0x62:  # b
                self.streaming = not self.dead
            elif c == 0x73:  # s
                self.streaming = False
                self.out[66:] = b""  # a packet or two still in flight

    async def read(self, n, timeout_ms):
        while self.streaming and len(self.out) < n and self.k != self.quiet_after:
            k = self.k
            self.k += 1
            if k in self.junk:
                self.out += self.junk[k]
            if k not in self.drop:
                self.out += encode_packet(k & 0xFF, [uv_to_counts(ecg_uv(k))] * 8)
        data = bytes(self.out[:n])
        self.out[:n] = b""
        return data


def test_ecg_strip_is_captured_journaled_and_the_stream_stopped():
    d, core = _core()
    try:
        board = FakeCyton()
        res = await_(capture_ecg_strip(board, core, CYTON, seconds=4, lead="II"))
        assert res["status"] == "ok" and res["seq"] == 1 and res["samples"] == 1000
        assert not board.streaming and board.commands[-1:] == b"s"
        assert abs(res["heart_rate"] - 75) <= 2
        rec = _records(core)[0]
        assert rec["type"] == "ecg_strip" and rec["inst"] == CYTON
        assert rec["values"] == [["heart_rate", res["heart_rate"], "/min"]]
        ecg = rec["ecg"]
        assert ecg["fs"] == 250 and ecg["n"] == 1000 and ecg["lead"] == "II"
        assert ecg["unit"] == "uV" and ecg["scale_uv"] == 1 and ecg["gain"] == 24
        samples = array("h", a2b_base64(ecg["b64"]))
        assert len(samples) == 1000
        for k in range(0, 1000, 7):  # the board's microvolts, within 1 uV
            assert abs(ecg["offset_uv"] + samples[k] - ecg_uv(k)) <= 1, k
        assert len(ecg["r_peaks"]) >= 4 and not ecg["gaps"]
        assert core.errors == {}
    finally:
        rmtree(d)


def test_ecg_garbage_and_lost_packets_are_flagged_and_counted():
    d, core = _core()
    try:
        board = FakeCyton(drop=(300, 301), junk={100: b"\x00\xa0\x13garbage"})
        res = await_(capture_ecg_strip(board, core, CYTON, seconds=4))
        assert res["status"] == "ok" and "gaps" in res["flags"] and "resync" in res["flags"]
        assert core.errors[("/dev/ttyUSB0", "cyton_lost_packets")] == 2
        assert core.errors[("/dev/ttyUSB0", "cyton_resync")] == 1
        ecg = _records(core)[0]["ecg"]
        assert ecg["missing"] == 2 and ecg["gaps"] == [[300, 2]]
    finally:
        rmtree(d)


def test_ecg_from_a_silent_board_times_out_and_journals_nothing():
    d, core = _core()
    try:
        res = await_(capture_ecg_strip(FakeCyton(dead=True), core, CYTON, seconds=4,
                                       timeout_ms=10))
        assert res["status"] == "timeout" and res["seq"] is None
        assert core.errors[("/dev/ttyUSB0", "serial_timeout")] == 1
        assert core.journal.depth == 0
    finally:
        rmtree(d)


def test_a_board_quiet_mid_strip_leaves_a_short_strip():
    d, core = _core()
    try:
        res = await_(capture_ecg_strip(FakeCyton(quiet_after=700), core, CYTON, seconds=4,
                                       timeout_ms=10))
        assert res["status"] == "timeout" and res["seq"] == 1
        assert res["samples"] == 700 and "too_short" in res["flags"]
        assert core.errors == {("/dev/ttyUSB0", "serial_timeout"): 1}
    finally:
        rmtree(d)


def test_ecg_with_the_journal_full_does_not_start_the_board():
    d, core = _core(capacity=4000)
    try:
        board = FakeCyton()
        res = await_(capture_ecg_strip(board, core, CYTON, seconds=4))
        assert res["status"] == "journal_full" and board.commands == b""
        assert core.alarms["journal_full"]
    finally:
        rmtree(d)


def test_a_strip_over_the_protocol_limit_is_refused_before_capture():
    d, core = _core()
    try:
        board = FakeCyton()
        try:
            await_(capture_ecg_strip(board, core, CYTON, seconds=11))
            raise AssertionError("no ValueError")
        except ValueError:
            pass
        assert board.commands == b""
    finally:
        rmtree(d)


def test_the_largest_strip_fits_one_data_message():
    # 2,500 extreme samples, every R peak and gap listed, long identities.
    # Under MicroPython the strip is shorter: the Unix port holds some 50 KB
    # of bytecode in this 100 KB heap (a board keeps it in flash), and the
    # samples and their payload need 12 KB in two pieces.
    full = sys.implementation.name == "cpython"
    n = protocol.MAX_ECG_SAMPLES if full else 1200
    samples = array("h", range(n))
    for k in range(n):
        samples[k] = -32768 if k % 2 else 32767
    r = {"type": "ecg_strip", "values": [["heart_rate", 250, "/min"]],
         "flags": ["railed", "clipped", "gaps", "resync", "suspect:heart_rate_out_of_range"],
         "itime": None, "samples": samples,
         "sample_rate": 250, "sample_offset_uv": -4500000, "lead": "aVR", "channel": 7,
         "gain": 24, "r_peaks": [2400 + k for k in range(100)],
         "gaps": [[2400 + k, 250] for k in range(40)], "missing_samples": 10000,
         "railed_samples": 2500}
    inst = {"addr": "A" * 64, "model": "M" * 64, "serial": "S" * 64, "mfr": "F" * 64}
    payload = protocol.reading_payload(r, inst, 1795935781000, iseq=2 ** 40,
                                       flags=["gateway_clock_unsynced"])
    del r, samples
    # the `data` message it goes in alone (built around a small stand-in,
    # not copied: data_message splices the payload in)
    small = b'{"x":1}'
    msg = protocol.data_message("3f9a1c02", 2 ** 40, 1795935781500, [(2 ** 40, 1, small)])
    if full:
        assert len(msg) - len(small) + len(payload) <= protocol.MAX_BATCH_BYTES
    # read it back without a second copy of its 6.7 KB of base64
    i = payload.find(b',"b64":"')
    assert i > 0 and payload[-3:] == b'"}}'
    rec = json.loads(bytes(payload[:i]) + b"}}")
    assert rec["ecg"]["n"] == n and len(rec["ecg"]["r_peaks"]) == protocol.MAX_ECG_PEAKS
    assert len(rec["ecg"]["gaps"]) == protocol.MAX_ECG_GAPS and rec["inst"] == inst
    b64 = memoryview(payload)[i + 8:len(payload) - 3]
    count = 0
    for at in range(0, len(b64), 640):  # 480 bytes, 240 samples at a time
        for v in array("h", a2b_base64(b64[at:at + 640])):
            assert v == (-32768 if count % 2 else 32767), count
            count += 1
    assert count == n
