# mpy-portable
# The BLE session under both runtimes. MicroPython has no BLE stack on a host
# (bumble is CPython-only), so an in-memory thermometer plays the instrument's
# side of the adapter interface with the real encoders; the behaviour over a
# real stack, with the real gateway core, is tested in test_ble_session.py.
# This file proves that gateway/ble_session.py itself -- asyncio, integer
# time arithmetic, clock drift, identity, listening -- runs on MicroPython
# with a 100 KB heap and gives the same results as on CPython. The core is the
# stand-in below, as in test_ble_session_download_portable.py (session + real core do
# not fit the Unix port's heap, where loaded bytecode lives; on a board it is
# frozen in flash). The glucose download: test_ble_session_download_portable.py.
import asyncio

from device_drivers.common_chars import decode_current_time, encode_current_time
from device_drivers.thermometer import encode_measurement
from gateway.ble_session import BleError, BleSession, days_from_civil, ms_stamp, stamp_ms
from gateway.clock import GatewayClock
from gateway.cursors import Cursors
from gateway.journal import Journal
from tests.portable import rmtree, tmpdir

ADDR = "C4:7C:8D:6A:00:71"
NOW = 1795935781000  # 2026-11-29 07:03:01 UTC, a Sunday
T = (2026, 11, 29, 7, 0, 0)
YEAR = 365 * 86400000


class StandInCore:
    # What the session asks of gateway.app.Gateway (on_value, can_accept,
    # alarms, journal, uplink.notify, indicator.error), journaling the
    # characteristic and the value's first byte (the flags) only.
    def __init__(self, journal):
        self.journal = journal
        self.alarms = {}
        self.uplink = self
        self.indicator = self

    def can_accept(self, nbytes=1024):
        return self.journal.has_room(nbytes)

    def on_value(self, inst, uuid16, data, iseq=None, extra_quirks=None):
        return self.journal.append(b"%d %d" % (uuid16, data[0]))

    def notify(self):
        pass

    def error(self, what, reason):
        pass


class MemoryThermometer:
    # The adapter interface over a thermometer kept in memory, its clock
    # `offset_ms` off.
    def __init__(self, offset_ms=0):
        self.offset_ms = offset_ms
        self.connected = False
        self.subs = {}
        self.on_disconnect = None
        self.clock_written = None
        self.info = {0x2A29: b"A&D Medical", 0x2A24: b"TH-839S\0\0", 0x2A25: b"8390000071",
                     0x2A19: bytes((91,))}

    async def connect(self, addr, passkey=None, on_disconnect=None):
        if addr != ADDR:
            raise BleError("not advertising", addr, "not_found")
        self.connected = True
        self.on_disconnect = on_disconnect
        self.subs = {}

    async def disconnect(self):
        if self.connected:
            self.connected = False
            if self.on_disconnect is not None:
                self.on_disconnect(0x16)

    def has(self, uuid16):
        return uuid16 in self.info or uuid16 in (0x2A2B, 0x2A1C)

    def can_write(self, uuid16):
        return uuid16 == 0x2A2B

    async def read(self, uuid16):
        if uuid16 == 0x2A2B:
            ts, dow, frac = ms_stamp(NOW + self.offset_ms)
            return encode_current_time(ts, dow, frac * 256 // 1000)
        return self.info[uuid16]

    async def write(self, uuid16, data, response=True):
        self.clock_written = decode_current_time(data)["timestamp"]
        self.offset_ms = 0

    async def subscribe(self, uuid16, callback, indicate=False):
        self.subs[uuid16] = callback

    async def measure(self, celsius):
        self.subs[0x2A1C](0x2A1C, encode_measurement(celsius, timestamp=T))


def _setup(thermometer):
    d = tmpdir("s")
    journal = Journal(d + "/journal", segment_bytes=2048)
    clock = GatewayClock(source=lambda: NOW, synced=True)
    core = StandInCore(journal)
    seen = []
    session = BleSession(thermometer, core, Cursors(d + "/state"), clock,
                         on_seen=lambda addr, **kw: seen.append(kw))
    return d, journal, session, seen


def _cfg(**kw):
    cfg = {"addr": ADDR, "profile": "temperature", "listen_ms": 0}
    cfg.update(kw)
    return cfg


def test_civil_time_round_trips():
    assert days_from_civil(1970, 1, 1) == 0 and days_from_civil(2000, 3, 1) == 11017
    for ms in (0, NOW, 951782400000, 4102444799999):
        ts, _, frac = ms_stamp(ms)
        assert stamp_ms(ts) + frac == ms
    assert ms_stamp(NOW) == ((2026, 11, 29, 7, 3, 1), 7, 0)


def test_drift_is_measured_and_the_clock_set():
    t = MemoryThermometer(offset_ms=-YEAR)
    d, _, session, seen = _setup(t)
    try:
        res = asyncio.run(session.sync(_cfg()))
        assert res["ok"] and res["drift_ms"] == -YEAR and not res["clock_set"]
        assert t.clock_written is None
        res = asyncio.run(session.sync(_cfg(set_clock=True)))
        assert res["ok"] and res["drift_ms"] == -YEAR and res["clock_set"]
        assert t.clock_written == (2026, 11, 29, 7, 3, 1)
        assert seen[-1] == {"battery": 91, "drift_ms": -YEAR, "clock_set": True,
                            "identity": {"addr": ADDR, "mfr": "A&D Medical",
                                         "model": "TH-839S", "serial": "8390000071"}}
        res = asyncio.run(session.sync(_cfg(set_clock=True)))
        assert res["drift_ms"] == 0 and not res["clock_set"]
    finally:
        rmtree(d)


def test_indications_reach_the_journal_until_stopped():
    t = MemoryThermometer()
    d, journal, session, _ = _setup(t)

    async def scenario():
        task = asyncio.create_task(session.sync(_cfg(listen_ms=None)))
        while 0x2A1C not in t.subs:
            await asyncio.sleep(0)
        await t.measure(37.4)
        await t.measure(38.9)
        session.stop()
        return await task

    try:
        res = asyncio.run(scenario())
        assert res["ok"] and res["readings"] == 2
        assert [p for _, _, p in journal.read(0)] == [b"10780 2", b"10780 2"]
        res = asyncio.run(session.sync(_cfg(addr="C4:00:00:00:00:00")))
        assert res["error"] == "not_found"
        assert session.errors == {("C4:00:00:00:00:00", "not_found"): 1}
    finally:
        rmtree(d)
