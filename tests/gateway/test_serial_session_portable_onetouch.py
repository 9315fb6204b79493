# mpy-portable
# OneTouch Ultra2 memory dumps (gateway/serial_session.py) against an
# in-memory meter answering the real command and reply lines (checksums,
# newest first), into a real journal through the gateway core: each record
# journaled once across dumps, bad checksums retried, flash full holding the
# cursor; the meters' record identity (meter_iseq) and cursor file. CPython
# and MicroPython (100 KB heap). Comments, not docstrings.
import json
import sys

from device_drivers import onetouch
from device_drivers.reading import is_urgent
from gateway import protocol
from gateway.journal import KIND_READING, URGENT, Journal, JournalFull
from gateway.serial_session import dump_onetouch, load_cursors, meter_iseq, save_cursors
from tests.portable import rmtree, tmpdir

ULTRA = {"addr": "/dev/ttyUSB1"}


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


# --- OneTouch Ultra2 ---------------------------------------------------------------

def _glucose(day, value, **kw):
    r = {"timestamp": (2026, 11, day, 8, 30, 15), "glucose": value}
    r.update(kw)
    return r


class FakeUltra2:
    # Answers DMP with the dump (newest first), DM@ with its serial.
    # `corrupt`: how many answers get a bad checksum on their 3rd line;
    # `cut`: how many answers stop after their 2nd line.
    def __init__(self, readings, serial="ZDP0012AY", corrupt=0, cut=0):
        self.readings = readings
        self.serial = serial
        self.corrupt = corrupt
        self.cut = cut
        self.out = bytearray()
        self.dumps = 0

    async def write(self, data):
        if data == onetouch.DUMP_RECORDS:
            self.dumps += 1
            lines = [onetouch.encode_dump_header(len(self.readings), self.serial)]
            lines += [onetouch.encode_record(r) for r in reversed(self.readings)]
            if self.corrupt:
                self.corrupt -= 1
                lines[2] = lines[2][:-6] + b"0000\r\n"
            if self.cut:
                self.cut -= 1
                lines = lines[:2]
            self.out += b"".join(lines)
        elif data == onetouch.READ_SERIAL:
            self.out += onetouch.encode_serial_reply(self.serial)

    async def read(self, n, timeout_ms):
        data = bytes(self.out[:n])
        self.out = self.out[n:]
        return data


def test_onetouch_dump_journals_each_record_once():
    d, core = _core()
    try:
        meter = FakeUltra2([_glucose(k, 90 + k) for k in range(1, 6)])
        cursors = {}  # type: dict
        res = await_(dump_onetouch(meter, core, ULTRA, cursors))
        assert res == {"status": "ok", "records": 5, "journaled": 5, "duplicates": 0,
                       "serial": "ZDP0012AY"}
        recs = _records(core)
        assert [r["values"][0][1] for r in recs] == [95, 94, 93, 92, 91]  # newest first
        assert recs[0]["inst"] == {"addr": "/dev/ttyUSB1", "serial": "ZDP0012AY",
                                   "model": "OneTouch Ultra2"}
        assert recs[0]["itime"] == [2026, 11, 5, 8, 30, 15]
        assert recs[0]["iseq"] == meter_iseq((2026, 11, 5, 8, 30, 15))
        again = await_(dump_onetouch(meter, core, ULTRA, cursors))
        assert again["journaled"] == 0 and again["duplicates"] == 5
        meter.readings.append(_glucose(6, 61))  # a hypo, taken since
        third = await_(dump_onetouch(meter, core, ULTRA, cursors))
        assert third["journaled"] == 1 and third["duplicates"] == 5
        last = _records(core)[-1]
        assert last["values"] == [["glucose", 61, "mg/dL"]] and "urgent" in last["flags"]
        assert core.journal.urgent == [6]
        meter.readings = meter.readings[3:]  # the meter's memory was cleared of old ones
        await_(dump_onetouch(meter, core, ULTRA, cursors))
        assert len(cursors["onetouch:ZDP0012AY"]) == 3  # pruned to what it holds
    finally:
        rmtree(d)


def test_onetouch_checksum_error_is_counted_and_the_dump_asked_again():
    d, core = _core()
    try:
        meter = FakeUltra2([_glucose(k, 100 + k) for k in range(1, 5)], corrupt=1)
        res = await_(dump_onetouch(meter, core, ULTRA, {}))
        assert res["status"] == "ok" and res["journaled"] == 4 and meter.dumps == 2
        assert res["duplicates"] == 1  # the line before the bad one, journaled first time
        assert core.errors == {("/dev/ttyUSB1", "checksum_error"): 1}
        assert sorted(r["values"][0][1] for r in _records(core)) == [101, 102, 103, 104]
    finally:
        rmtree(d)


def test_onetouch_cut_dump_is_incomplete_after_the_retries():
    d, core = _core()
    try:
        meter = FakeUltra2([_glucose(k, 100 + k) for k in range(1, 5)], cut=2)
        cursors = {}  # type: dict
        res = await_(dump_onetouch(meter, core, ULTRA, cursors, timeout_ms=10))
        assert res["status"] == "incomplete" and res["journaled"] == 1
        assert core.errors[("/dev/ttyUSB1", "serial_timeout")] == 2
        res = await_(dump_onetouch(meter, core, ULTRA, cursors, timeout_ms=10))
        assert res["status"] == "ok" and res["journaled"] == 3 and res["duplicates"] == 1
    finally:
        rmtree(d)


def test_onetouch_silent_meter_times_out():
    d, core = _core()
    try:
        class Silent(FakeUltra2):
            async def write(self, data):
                self.dumps += 1

        meter = Silent([])
        res = await_(dump_onetouch(meter, core, ULTRA, {}, timeout_ms=10))
        assert res["status"] == "timeout" and meter.dumps == 1
    finally:
        rmtree(d)


def test_onetouch_flash_full_stops_and_holds_the_cursor():
    d, core = _core(capacity=1300)
    try:
        meter = FakeUltra2([_glucose(k, 100 + k) for k in range(1, 8)])
        cursors = {}  # type: dict
        res = await_(dump_onetouch(meter, core, ULTRA, cursors))
        assert res["status"] == "journal_full" and 0 < res["journaled"] < 7
        got = res["journaled"]
        assert core.alarms["journal_full"]
        assert core.errors[("/dev/ttyUSB1", "journal_full")] == 1
        assert len(cursors["onetouch:ZDP0012AY"]) == got
        core.journal.ack(core.journal.next_seq - 1)  # the fleet acknowledged them
        res = await_(dump_onetouch(meter, core, ULTRA, cursors))
        assert res["duplicates"] == got and res["journaled"] > 0
        total = got + res["journaled"]
        while res["status"] == "journal_full":
            core.journal.ack(core.journal.next_seq - 1)
            res = await_(dump_onetouch(meter, core, ULTRA, cursors))
            total += res["journaled"]
        assert total == 7 and len(cursors["onetouch:ZDP0012AY"]) == 7
    finally:
        rmtree(d)


def test_meter_iseq_is_seconds_since_2000():
    assert meter_iseq((2000, 1, 1, 0, 0, 0)) == 0
    assert meter_iseq((2000, 1, 2, 0, 0, 1)) == 86401
    assert meter_iseq((2026, 11, 29, 8, 41, 59)) == 849256919  # by calendar.timegm
    assert meter_iseq((2024, 3, 1, 0, 0, 0)) - meter_iseq((2024, 2, 28, 0, 0, 0)) == 2 * 86400
    assert meter_iseq(None) is None and meter_iseq((0, 4, 17, 20, 41, 59)) is None
    assert meter_iseq((1999, 12, 31, 23, 59, 59)) is None


def test_cursors_survive_save_and_load():
    d = tmpdir("cur")
    try:
        path = d + "/cursors.json"
        assert load_cursors(path) == {}
        save_cursors(path, {"onetouch:ZDP0012AY": [1, 2, 3]})
        assert load_cursors(path) == {"onetouch:ZDP0012AY": [1, 2, 3]}
    finally:
        rmtree(d)
