# mpy-portable
# The glucose download of gateway/ble_session.py under both runtimes: an
# in-memory meter plays the adapter interface with the real encoders and
# RACP framing (MicroPython has no BLE stack on a host; the same behaviour
# over a real stack is in test_ble_session.py). The gateway core here is a
# small stand-in journaling into the real Journal: the session, the RACP
# machine and the real core together do not fit the test's 100 KB heap on
# the Unix port, where loaded bytecode lives in the heap (on a board it is
# frozen in flash); Gateway.on_value has its own portable tests.
# isort: off
# The biggest modules first, while the heap is emptiest (the session imports
# the download machine lazily, on its first glucose sync).
import device_drivers.glucose_download  # noqa: F401
from gateway.ble_session import BleSession
# isort: on
import asyncio
import gc
import json

from device_drivers.glucose import encode_measurement, encode_racp_response
from gateway.clock import GatewayClock
from gateway.cursors import Cursors
from gateway.journal import Journal, JournalFull
from tests.portable import rmtree, tmpdir

ADDR = "C4:7C:8D:6A:00:72"
T = (2026, 11, 28, 7, 0, 0)


class StandInCore:
    # What the session asks of gateway.app.Gateway (on_value, can_accept,
    # alarms, journal, uplink.notify, indicator.error), journaling the
    # instrument's record number and the characteristic only.
    def __init__(self, journal):
        self.journal = journal
        self.alarms = {}
        self.uplink = self
        self.indicator = self

    def can_accept(self, nbytes=1024):
        return self.journal.has_room(nbytes)

    def on_value(self, inst, uuid16, data, iseq=None, extra_quirks=None):
        try:
            return self.journal.append(json.dumps({"iseq": iseq, "uuid": uuid16}).encode())
        except JournalFull:
            self.alarms["journal_full"] = True
            return None

    def notify(self):
        pass

    def error(self, what, reason):
        pass


class MemoryMeter:
    # The adapter interface over a meter holding records 1..n in memory;
    # drop_after=k drops the link after k records of the next report.
    def __init__(self, n):
        self.records = list(range(1, n + 1))
        self.connected = False
        self.drop_after = None
        self.aborted = False
        self.task = None
        self.subs = {}
        self.on_disconnect = None

    async def connect(self, addr, passkey=None, on_disconnect=None):
        self.connected = True
        self.on_disconnect = on_disconnect
        self.subs = {}

    async def disconnect(self):
        if self.connected:
            self.connected = False
            if self.on_disconnect is not None:
                self.on_disconnect(0x16)

    def has(self, uuid16):
        return uuid16 in (0x2A18, 0x2A52)

    def can_write(self, uuid16):
        return uuid16 == 0x2A52

    async def write(self, uuid16, data, response=True):
        if data[0] == 3:  # abort: the report stops, the abort is answered
            self.aborted = True
            self.task = asyncio.create_task(self._answer(encode_racp_response(3, 1)))
            return
        low = 0 if data[1] == 1 else data[3] | data[4] << 8
        # the meter answers from its own task, after the write response
        self.aborted = False
        self.task = asyncio.create_task(self._report([s for s in self.records if s >= low]))

    async def _answer(self, data):
        await asyncio.sleep(0)
        self.subs[0x2A52](0x2A52, data)

    async def subscribe(self, uuid16, callback, indicate=False):
        self.subs[uuid16] = callback

    async def _report(self, seqs):
        await asyncio.sleep(0)
        for i, s in enumerate(seqs):
            if self.aborted or not self.connected:
                return
            if self.drop_after is not None and i == self.drop_after:
                self.drop_after = None
                await self.disconnect()
                return
            self.subs[0x2A18](0x2A18, encode_measurement(
                s, T, concentration=(90 + s) / 100000, type=1, sample_location=1))
            await asyncio.sleep(0)
        self.subs[0x2A52](0x2A52, encode_racp_response(1, 1 if seqs else 6))


def _iseqs(journal):
    gc.collect()
    return [json.loads(p)["iseq"] for _, _, p in journal.read(0, limit=100, max_bytes=4096)]


def test_download_incremental_and_resume_after_a_link_drop():
    meter = MemoryMeter(30)
    d = tmpdir("g")
    try:
        journal = Journal(d + "/journal", segment_bytes=1024)
        cursors = Cursors(d + "/state")
        session = BleSession(meter, StandInCore(journal), cursors, GatewayClock(synced=True))
        meter.drop_after = 17
        res = asyncio.run(session.sync({"addr": ADDR, "profile": "glucose"}))
        assert res["error"] == "link_lost" and res["cursor"] == 17
        assert _iseqs(journal) == list(range(1, 18))
        res = asyncio.run(session.sync({"addr": ADDR, "profile": "glucose"}))
        assert res["ok"] and res["readings"] == 13 and res["cursor"] == 30
        meter.records.append(31)
        meter.records.append(32)
        res = asyncio.run(session.sync({"addr": ADDR, "profile": "glucose"}))
        assert res["ok"] and res["readings"] == 2
        assert _iseqs(journal) == list(range(1, 33))
        assert Cursors(d + "/state").get(ADDR) == 32
        assert session.errors == {(ADDR, "link_lost"): 1}
    finally:
        rmtree(d)


def test_full_journal_holds_the_cursor():
    meter = MemoryMeter(30)
    d = tmpdir("g")
    try:
        journal = Journal(d + "/journal", segment_bytes=1024, capacity_bytes=1500)
        core = StandInCore(journal)
        session = BleSession(meter, core, Cursors(d + "/state"), GatewayClock(synced=True))
        res = asyncio.run(session.sync({"addr": ADDR, "profile": "glucose"}))
        got = _iseqs(journal)
        assert res["error"] == "journal_full" and core.alarms["journal_full"]
        assert 0 < len(got) < 30 and res["cursor"] == len(got)
        for _ in range(10):  # the fleet acknowledges; the next syncs go on
            journal.ack(journal.next_seq - 1)
            res = asyncio.run(session.sync({"addr": ADDR, "profile": "glucose"}))
            got += _iseqs(journal)
            if res["ok"]:
                break
        assert res["ok"] and got == list(range(1, 31))
    finally:
        rmtree(d)
