# mpy-portable
# ASTM E1381/E1394 meter downloads (gateway/serial_session.py) against an
# in-memory meter running the instrument's side of the handshake
# (device_drivers.astm.Sender: ENQ, frames with checksums, NAK and resend,
# EOT), into a real journal through the gateway core. CPython and
# MicroPython (100 KB heap). Comments, not docstrings.
import json
import sys

from device_drivers import astm
from device_drivers.reading import is_urgent
from gateway import protocol
from gateway.journal import KIND_READING, URGENT, Journal, JournalFull
from gateway.serial_session import dump_astm, meter_iseq
from tests.portable import rmtree, tmpdir

CONTOUR = {"addr": "/dev/ttyUSB2"}


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
        kind = KIND_READING
        if is_urgent(r):
            kind |= URGENT
            r["flags"].append("urgent")
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
    j = Journal(d, segment_bytes=2048, capacity_bytes=capacity)
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


def _astm_messages(results, serial="7390-1234567"):
    recs = [astm.header_record(sender=("Contour", "1.0", serial),
                               timestamp=(2026, 11, 29, 9, 0, 0)),
            astm.patient_record(1)]
    for i, (ts, value, analyte) in enumerate(results):
        recs.append(astm.result_record(i + 1, analyte, value, "mg/dL", timestamp=ts))
    recs.append(astm.terminator_record())
    return [astm.encode_message(recs)]


class FakeAstmMeter:
    # The meter's side of E1381 (astm.Sender): EOT from the computer makes
    # it bid (ENQ) and send its memory; `corrupt`: frame numbers whose first
    # transmission has a bad checksum.
    def __init__(self, results, corrupt=()):
        self.results = results
        self.corrupt = list(corrupt)
        self.sender = None  # type: astm.Sender | None
        self.out = bytearray()
        self.sent_frames = 0

    async def write(self, data):
        if self.sender is None or self.sender.state == "done":
            if data == b"\x04":
                self.sender = astm.Sender(_astm_messages(self.results))
                self.sender.start()
                self.sent_frames = 0
                self._pull()
            return
        self.sender.feed(data)
        self._pull()

    def _pull(self):
        assert self.sender is not None
        out = self.sender.data_to_send()
        if out[:1] == b"\x02":
            self.sent_frames += 1
            if self.sent_frames in self.corrupt:
                self.corrupt.remove(self.sent_frames)
                out = out[:-4] + (b"00" if out[-4:-2] != b"00" else b"11") + out[-2:]
        self.out += out

    async def read(self, n, timeout_ms):
        data = bytes(self.out[:n])
        self.out = self.out[n:]
        return data


def test_astm_dump_journals_glucose_results_once():
    d, core = _core()
    try:
        results = [((2026, 11, 28, 7, 0, 0), 133, "Glucose"),
                   ((2026, 11, 28, 19, 5, 0), 64, "Glucose"),
                   ((2026, 11, 29, 7, 2, 0), 5.5, "HbA1c")]
        meter = FakeAstmMeter(results, corrupt=(3,))
        cursors = {}  # type: dict
        res = await_(dump_astm(meter, core, CONTOUR, cursors, timeout_ms=50, wait_ms=50))
        assert res["status"] == "ok" and res["journaled"] == 2, res
        assert res["serial"] == "7390-1234567"
        assert core.errors == {("/dev/ttyUSB2", "astm_frame_rejected"): 1,
                               ("/dev/ttyUSB2", "unsupported_result"): 1}
        recs = _records(core)
        assert [r["values"] for r in recs] == [[["glucose", 133, "mg/dL"]],
                                               [["glucose", 64, "mg/dL"]]]
        assert recs[0]["inst"]["serial"] == "7390-1234567"
        assert recs[0]["inst"]["model"] == "Contour"
        assert recs[1]["iseq"] == meter_iseq((2026, 11, 28, 19, 5, 0))
        assert "urgent" in recs[1]["flags"]
        again = await_(dump_astm(meter, core, CONTOUR, cursors, timeout_ms=50, wait_ms=50))
        assert again["journaled"] == 0 and again["duplicates"] == 2
    finally:
        rmtree(d)


def test_astm_meter_that_never_bids_times_out():
    d, core = _core()
    try:
        class Mute(FakeAstmMeter):
            async def write(self, data):
                pass

        res = await_(dump_astm(Mute([]), core, CONTOUR, {}, wait_ms=10))
        assert res["status"] == "timeout"
        assert core.errors == {("/dev/ttyUSB2", "serial_timeout"): 1}
    finally:
        rmtree(d)
