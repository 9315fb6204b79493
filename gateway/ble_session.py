# BLE instrument sessions: what the gateway does each time it meets a known
# instrument (issue 4, items 4 and 5). Portable: the same file runs in the
# firmware (MicroPython, aioble adapter) and on CPython (bumble or bleak
# adapter); it never imports a radio stack. docs/instrument_sessions.md tells
# the whole story for people; this header is the contract for code.
#
# One sync, in order (BleSession.sync(cfg), cfg = {addr, profile, passkey,
# set_clock, quirks, listen_ms}):
#   1. connect and secure the link (bond, or re-encrypt with the stored bond;
#      passkey entry when the instrument shows a PIN)
#   2. Device Information -> identity {addr, mfr, model, serial, firmware};
#      the journal's `inst` is {addr, model, serial, mfr}
#   3. Battery Level
#   4. the instrument's clock (Current Time 0x2A2B, else Date Time 0x2A08):
#      drift = instrument time - gateway time (ms), measured at the read; when
#      cfg set_clock, the characteristic is writable, the gateway clock is
#      synced and |drift| > drift_threshold_ms, the gateway's time is written.
#      Record times (0x2A18 base time + offset) are never used for drift.
#      on_seen(addr, battery=, drift_ms=, identity=, clock_set=) reports it.
#   5. per profile
#      glucose: incremental RACP download from cursors.get(addr) with
#        device_drivers.glucose_download; each record goes through
#        gateway_core.on_value(inst, 0x2A18, bytes, iseq=seq) and the cursor
#        moves to seq only once on_value returned a journal seq (the journal
#        committed it). Before each record, gateway_core.can_accept(): when the
#        journal is full the download is aborted (RACP abort) and the cursor
#        held -- the meter keeps its memory. A link drop loses only what was
#        not committed; the next sync resumes from the cursor (no duplicate,
#        no gap). Done with more=True (a newest-first meter past the window)
#        runs another round from the new cursor.
#      blood_pressure, thermometer, pulse_oximeter, weight_scale: subscribe
#        and journal every value via on_value until the instrument disconnects,
#        stop() is called or cfg listen_ms passes. Nothing is subscribed when
#        the journal is full, and the link is closed as soon as it fills, so
#        unconfirmed readings stay in the instrument.
#   6. disconnect (always).
#
# Bad record policy (glucose). A measurement that does not decode (before the
# state machine sees it) or that the gateway core refuses (on_value -> None
# without journal_full) is kept as a journal `event` record (type
# `undecodable_record`, iseq = its sequence number, its raw bytes as hex in a
# `raw:` flag, the reason in a `reason:` flag) and the cursor moves past it,
# in sequence order, so one bad record never blocks a meter forever and the
# bytes reach the fleet for a technician. Counted as `bad_record`, shown on the
# indicator. An unreadable context is dropped (`bad_context`): the measurement
# is journaled without it. A meter that breaks RACP itself (sequence going
# backwards, two different records under one number) ends the sync with
# `protocol_error`, cursor at the last good record. A meter silent for
# quiet_ms is nudged once (a record waiting for its context is handed out
# without it), then the sync ends with `download_timeout`.
#
# Errors never escape sync(): each is counted in `errors[(addr, code)]`, kept
# in `last_error[addr]`, passed to log_error(addr, code, detail) and returned in
# the result dict (`error`). Codes: the E_* constants below.
#
# Adapter interface (duck-typed; gateway/host/ble_bumble.py implements it on
# bumble, gateway/host/ble_bleak.py on bleak/BlueZ (untested: no BlueZ here),
# and the firmware's aioble adapter will implement the same):
#   connected -> bool                         (attribute or property)
#   await connect(addr, passkey=None, on_disconnect=None)
#       find (scan, bounded), connect, secure, discover; on_disconnect(reason)
#       is called when the link drops afterwards
#   await disconnect()                        never raises; no-op if not connected
#   has(uuid16) -> bool                       the instrument has the characteristic
#   can_write(uuid16) -> bool                 ... and its properties allow a write
#   await read(uuid16) -> bytes
#   await write(uuid16, data, response=True)
#   await subscribe(uuid16, callback, indicate=False)
#       notifications (or indications): callback(uuid16, data) runs on the
#       event loop, in arrival order; an indication is confirmed after the
#       callback returns
# and raises BleError (below) or a subclass carrying `error_code`.
import asyncio
from binascii import hexlify

from device_drivers import NEED_DATA, DecodeError
from device_drivers.common_chars import (
    decode_battery,
    decode_current_time,
    decode_date_time,
    encode_current_time,
    encode_date_time,
)
from gateway.journal import KIND_EVENT, JournalFull

_gd = None  # device_drivers.glucose_download, imported by the first glucose sync


def _glucose():
    # Imported on first use, as device_drivers.gatt does with the profiles: a
    # gateway with no glucose meter never loads the download machine.
    global _gd
    if _gd is None:
        from device_drivers import glucose_download

        _gd = glucose_download
    return _gd


# error codes (docs/instrument_sessions.md)
E_BUSY = "busy"  # a sync is already running on this session
E_PROFILE = "unknown_profile"  # cfg profile is not one of PROFILES
E_NOT_FOUND = "not_found"  # not advertising / no connection in time
E_CONNECT = "connect_failed"
E_PAIRING = "pairing_failed"  # SMP failed (wrong PIN, refused)
E_AUTH = "auth_required"  # the instrument wants a (MITM) bond we do not have
E_GATT = "gatt_error"  # an ATT error response
E_LINK = "link_lost"
E_MISSING = "missing_characteristic"
E_TIMEOUT = "timeout"  # a GATT operation timed out
E_BATTERY = "bad_battery"  # battery level unreadable (sync goes on)
E_CLOCK = "bad_clock"  # clock characteristic unreadable (sync goes on)
E_CLOCK_WRITE = "clock_write_failed"  # (sync goes on)
E_JOURNAL_FULL = "journal_full"
E_BAD_RECORD = "bad_record"  # journaled as an event and skipped
E_BAD_CONTEXT = "bad_context"
E_BAD_VALUE = "bad_value"  # a notified/indicated value the core refused
E_RACP = "racp_error"  # the meter answered the report with an error code
E_PROTOCOL = "protocol_error"  # the meter broke the RACP protocol
E_DOWNLOAD_TIMEOUT = "download_timeout"  # the meter went quiet mid-download
E_STORAGE = "storage_error"  # the cursor could not be written
E_INTERNAL = "internal_error"

DRIFT_THRESHOLD_MS = 5000  # set an instrument clock that is further off
QUIET_MS = 3000  # a downloading meter silent this long: nudge, then give up

GLUCOSE_MEASUREMENT = 0x2A18
GLUCOSE_CONTEXT = 0x2A34
RACP = 0x2A52
BATTERY_LEVEL = 0x2A19
CURRENT_TIME = 0x2A2B
DATE_TIME = 0x2A08

# profile -> ((measurement uuid16, indicate), ...); glucose is a download
PROFILES = {
    "blood_pressure": ((0x2A35, True),),
    "glucose": (),
    "thermometer": ((0x2A1C, True),),
    "pulse_oximeter": ((0x2A5E, True), (0x2A5F, False)),
    "weight_scale": ((0x2A9D, True),),
}
# reading-type names accepted for the profiles
_ALIASES = {"temperature": "thermometer", "spo2": "pulse_oximeter", "weight": "weight_scale"}

_IDENTITY = (("mfr", 0x2A29), ("model", 0x2A24), ("serial", 0x2A25), ("firmware", 0x2A26))
_INST_KEYS = ("addr", "model", "serial", "mfr")
_MS_PER_DAY = 86400000
_FAILED = object()  # what _optional returns when the read failed


class BleError(Exception):
    """A BLE operation failed. `error_code` is one of the E_* codes; `addr`
    names the instrument. Adapters raise it (or subclasses)."""

    error_code = "ble_error"

    def __init__(self, message, addr=None, error_code=None):
        super().__init__("%s: %s" % (addr, message) if addr else message)
        self.addr = addr
        if error_code is not None:
            self.error_code = error_code


# --- civil time, integers only (ESP32 floats are single precision) ----------

def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def civil_from_days(z):
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (yoe + era * 400 + (1 if m <= 2 else 0), m, d)


def stamp_ms(ts):
    """Unix ms of a (year, month, day, hour, minute, second) tuple (UTC)."""
    y, mo, d, h, mi, s = ts
    return (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1000


def ms_stamp(ms):
    """((year, month, day, hour, minute, second), day of week 1=Monday, ms
    within the second) of unix ms."""
    days, rest = divmod(ms, _MS_PER_DAY)
    y, mo, d = civil_from_days(days)
    s, frac = divmod(rest, 1000)
    return (y, mo, d, s // 3600, s // 60 % 60, s % 60), (days + 3) % 7 + 1, frac


def _text(raw):
    raw = bytes(raw).split(b"\0", 1)[0]
    try:
        text = raw.decode("utf-8")
    except UnicodeError:
        return ""
    return "".join(c for c in text if ord(c) >= 32).strip()[:64]


def _seq_of(data):
    return data[1] | (data[2] << 8) if len(data) >= 3 else None


class _Run:
    # One sync: what the callbacks and the waiting loop share. A glucose
    # download adds one RACP round at a time (new_round).
    def __init__(self, addr, inst, quirks, res):
        self.addr = addr
        self.inst = inst
        self.quirks = quirks
        self.res = res
        self.full = False  # listening: the journal filled up
        self.m = None  # the round's GlucoseDownload
        self.detail = None

    def new_round(self, machine, cursor):
        self.m = machine
        self.cursor = cursor
        self.raw = {}  # sequence -> measurement bytes, until handed out
        self.bad = {}  # sequence -> bytes of an undecodable measurement
        self.outcome = None  # done, more, stopped, or an error code
        self.detail = None
        self.aborting = False
        self.abort_reason = None
        self.abort_bytes = None
        self.activity = 0


class BleSession:
    """Syncs one known instrument at a time through `adapter` into
    `gateway_core` (gateway.app.Gateway), keeping download `cursors`
    (gateway.cursors.Cursors); `clock` is the GatewayClock."""

    def __init__(self, adapter, gateway_core, cursors, clock, on_seen=None, log_error=None,
                 drift_threshold_ms=DRIFT_THRESHOLD_MS, quiet_ms=QUIET_MS, window=32,
                 max_rounds=64):
        self.adapter = adapter
        self.core = gateway_core
        self.cursors = cursors
        self.clock = clock
        self.on_seen = on_seen
        self.log_error = log_error
        self.drift_threshold_ms = drift_threshold_ms
        self.quiet_ms = quiet_ms
        self.window = window
        self.max_rounds = max_rounds
        self.errors = {}  # (addr, code) -> count
        self.last_error = {}  # addr -> code
        self.busy = False
        self._stop = False
        self._link_down = False
        self._wake = asyncio.Event()  # a fresh one per sync (a loop each)
        self._run = None

    def stop(self):
        """End the running sync soon (a download is aborted cleanly)."""
        self._stop = True
        self._wake.set()

    async def sync(self, cfg):
        """One session with the instrument cfg["addr"]; returns a result dict
        (never raises, but for cancellation)."""
        addr = cfg.get("addr")
        profile = _ALIASES.get(cfg.get("profile"), cfg.get("profile"))
        res = {"addr": addr, "profile": profile, "ok": False, "error": None,
               "identity": None, "battery": None, "drift_ms": None, "clock_set": False,
               "readings": 0, "bad_records": 0, "cursor": None, "rounds": 0}
        if self.busy:
            res["error"] = E_BUSY
            return res
        if profile not in PROFILES:
            self._fail(res, addr, E_PROFILE, "profile %r" % profile)
            return res
        self.busy = True
        self._stop = False
        self._link_down = False
        self._wake = asyncio.Event()
        try:
            await self._sync(cfg, addr, profile, res)
        except BleError as e:
            self._fail(res, addr, e.error_code, str(e))
        except asyncio.TimeoutError:
            self._fail(res, addr, E_TIMEOUT, "GATT operation timed out")
        except Exception as e:  # an adapter or core bug must not kill the caller
            self._fail(res, addr, E_INTERNAL, "%s: %s" % (type(e).__name__, e))
        finally:
            self._run = None
            try:
                await self.adapter.disconnect()
            except Exception:
                pass
            self.busy = False
        if profile == "glucose":
            res["cursor"] = self.cursors.get(addr)
        return res

    # --- the session ---------------------------------------------------------

    async def _sync(self, cfg, addr, profile, res):
        adapter = self.adapter
        await adapter.connect(addr, passkey=cfg.get("passkey"),
                              on_disconnect=self._on_disconnect)
        identity = {"addr": addr}
        inst = {"addr": addr}
        for key, uuid in _IDENTITY:
            if adapter.has(uuid):
                text = await self._optional(addr, E_GATT, adapter.read(uuid), _text)
                if text and text is not _FAILED:
                    identity[key] = text
                    if key != "firmware":
                        inst[key] = text
        res["identity"] = identity
        if adapter.has(BATTERY_LEVEL):
            battery = await self._optional(addr, E_BATTERY, adapter.read(BATTERY_LEVEL),
                                           decode_battery)
            if battery is not _FAILED:
                res["battery"] = battery["level"]
        await self._clock(cfg, addr, res)
        if self.on_seen is not None:
            try:
                self.on_seen(addr, battery=res["battery"], drift_ms=res["drift_ms"],
                             identity=identity, clock_set=res["clock_set"])
            except Exception as e:
                self._error(addr, E_INTERNAL, "on_seen: %s" % type(e).__name__)
        self._run = _Run(addr, inst, cfg.get("quirks"), res)
        if profile == "glucose":
            await self._download(self._run)
        else:
            await self._listen(self._run, profile, cfg.get("listen_ms"))

    def _on_disconnect(self, reason=None):
        self._link_down = True
        self._wake.set()

    async def _optional(self, addr, code, coro, decoder):
        # A read the sync can do without: a GATT or decoding error is counted,
        # not fatal (_FAILED is returned); a lost link still ends the sync.
        try:
            return decoder(await coro)
        except BleError as e:
            if e.error_code in (E_LINK, E_PAIRING):
                raise
            self._error(addr, code, str(e))
        except DecodeError as e:
            self._error(addr, code, str(e))
        return _FAILED

    async def _read_clock(self, uuid):
        # -> (the clock characteristic's bytes, the gateway time of the read)
        t0 = self.clock.now_ms()
        raw = await self.adapter.read(uuid)
        return raw, (t0 + self.clock.now_ms()) // 2

    async def _clock(self, cfg, addr, res):
        uuid = CURRENT_TIME if self.adapter.has(CURRENT_TIME) else \
            DATE_TIME if self.adapter.has(DATE_TIME) else None
        if uuid is None:
            return
        got = await self._optional(addr, E_CLOCK, self._read_clock(uuid), _noop)
        if got is _FAILED:
            return
        try:
            d = (decode_current_time if uuid == CURRENT_TIME else decode_date_time)(got[0])
        except DecodeError as e:
            self._error(addr, E_CLOCK, str(e))
            return
        ts = d["timestamp"]
        drift = None  # the instrument's clock was never set
        if ts[0] and ts[1] and ts[2]:
            drift = stamp_ms(ts) + d.get("fractions256", 0) * 1000 // 256 - got[1]
        res["drift_ms"] = drift
        if not cfg.get("set_clock") or \
                (drift is not None and abs(drift) <= self.drift_threshold_ms):
            return
        if not self.clock.synced:
            res["clock_note"] = "gateway_clock_unsynced"
            return
        if not self.adapter.can_write(uuid):
            res["clock_note"] = "not_writable"
            return
        ts, dow, frac = ms_stamp(self.clock.now_ms())
        if uuid == CURRENT_TIME:
            value = encode_current_time(ts, dow, frac * 256 // 1000, ["external_reference"])
        else:
            value = encode_date_time(ts)
        try:
            await self.adapter.write(uuid, value, True)
            res["clock_set"] = True
        except BleError as e:
            if e.error_code == E_LINK:
                raise
            self._error(addr, E_CLOCK_WRITE, str(e))

    # --- indications and notifications ---------------------------------------

    async def _listen(self, run, profile, limit):
        chars = [(u, ind) for u, ind in PROFILES[profile] if self.adapter.has(u)]
        if not chars:
            raise BleError("no %s measurement characteristic" % profile, run.addr, E_MISSING)
        if not self.core.can_accept():
            # not subscribing: the instrument keeps its readings for later
            self._fail(run.res, run.addr, E_JOURNAL_FULL, "journal full: not collecting")
            return
        for uuid, indicate in chars:
            await self.adapter.subscribe(uuid, self._on_value, indicate)
        try:
            if limit is None:
                await self._until_listen_ends(run)
            else:
                await asyncio.wait_for(self._until_listen_ends(run), limit / 1000)
        except asyncio.TimeoutError:
            pass
        if run.full:
            self._fail(run.res, run.addr, E_JOURNAL_FULL, "journal full: stopped collecting")
        else:
            run.res["ok"] = True

    async def _until_listen_ends(self, run):
        while not (self._link_down or self._stop or run.full):
            self._wake.clear()
            await self._wake.wait()

    def _on_value(self, uuid16, data):
        run = self._run
        if run is None:
            return
        core = self.core
        try:
            seq = core.on_value(run.inst, uuid16, data, None, run.quirks)
        except Exception as e:
            self._error(run.addr, E_INTERNAL, "on_value: %s" % type(e).__name__)
            return
        if seq is not None:
            run.res["readings"] += 1
        elif not core.alarms.get("journal_full"):
            self._error(run.addr, E_BAD_VALUE, "0x%04X value refused" % uuid16)
        if not core.can_accept():
            run.full = True  # close the link: what follows stays in the instrument
            self._wake.set()

    # --- glucose download ------------------------------------------------------

    async def _download(self, run):
        adapter = self.adapter
        for uuid in (GLUCOSE_MEASUREMENT, RACP):
            if not adapter.has(uuid):
                raise BleError("no characteristic 0x%04X" % uuid, run.addr, E_MISSING)
        await adapter.subscribe(GLUCOSE_MEASUREMENT, self._on_glucose, False)
        if adapter.has(GLUCOSE_CONTEXT):
            await adapter.subscribe(GLUCOSE_CONTEXT, self._on_glucose, False)
        await adapter.subscribe(RACP, self._on_glucose, True)
        res = run.res
        outcome = "more"
        while outcome == "more" and res["rounds"] < self.max_rounds:
            if not self.core.can_accept():
                outcome = E_JOURNAL_FULL
                run.detail = "journal full: nothing asked of the meter"
                break
            res["rounds"] += 1
            cursor = self.cursors.get(run.addr)
            run.new_round(_glucose().GlucoseDownload(cursor, self.window), cursor)
            await adapter.write(RACP, run.m.start(), True)
            outcome = await self._await_round(run)
        if outcome in ("done", "more"):
            res["ok"] = True
        elif outcome == "stopped":
            res["stopped"] = True
        else:  # an error code; a full journal holds the cursor (and raises the alarm)
            if outcome == E_JOURNAL_FULL:
                self.core.alarms["journal_full"] = True
            self._fail(res, run.addr, outcome, run.detail or outcome)

    async def _await_round(self, run):
        quiet = self.quiet_ms / 1000
        seen = run.activity
        nudged = False
        while run.outcome is None:
            if self._link_down:
                self._end(run, E_LINK, "link lost after record %s" % run.cursor)
                break
            if self._stop and not run.aborting:
                self._abort(run, "stopped")
                continue
            if run.abort_bytes is not None:
                data = run.abort_bytes
                run.abort_bytes = None
                try:
                    await self.adapter.write(RACP, data, True)
                except BleError:
                    self._end(run, run.abort_reason)
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), quiet)
                continue
            except asyncio.TimeoutError:
                pass
            if run.activity != seen:
                seen = run.activity
                nudged = False
            elif run.aborting:
                self._end(run, run.abort_reason)  # the meter never answered the abort
            elif not nudged and run.m.state == _glucose().REPORTING:
                nudged = True  # stop waiting for a context that is not coming
                self._guarded(run, run.m.timeout)
            else:
                self._end(run, E_DOWNLOAD_TIMEOUT, "meter silent for %d ms" % self.quiet_ms)
        return run.outcome

    def _on_glucose(self, uuid16, data):
        run = self._run
        if run is None or run.m is None or run.outcome is not None:
            return  # late values after the end: the next download asks again
        run.activity += 1
        self._guarded(run, self._receive, run, uuid16, bytes(data))

    def _guarded(self, run, fn, *args):
        try:
            fn(*args)
            self._drain(run)
        except _glucose().RemoteProtocolError as e:
            self._end(run, E_PROTOCOL, str(e))
        except OSError as e:
            self._end(run, E_STORAGE, "cursor not written: %s" % e)
        except Exception as e:
            self._end(run, E_INTERNAL, "%s: %s" % (type(e).__name__, e))

    def _receive(self, run, uuid16, data):
        from device_drivers.glucose import decode_context, decode_measurement

        seq = _seq_of(data)
        try:
            if uuid16 == GLUCOSE_MEASUREMENT:
                decode_measurement(data)
                run.raw[seq] = data
            elif uuid16 == GLUCOSE_CONTEXT:
                decode_context(data)
        except DecodeError:
            if uuid16 == GLUCOSE_CONTEXT:  # the measurement goes on without it
                self._error(run.addr, E_BAD_CONTEXT, "context of record %s" % seq)
            elif seq is None:  # too short to say which record: kept, not skipped
                self._journal_bad(run, None, data, "unnumbered")
            elif not run.aborting and (run.cursor is None or seq > run.cursor):
                run.bad[seq] = data  # kept and skipped in its turn
            return
        run.m.receive(uuid16, data)

    def _drain(self, run):
        m = run.m
        gd = _glucose()
        while run.outcome is None:
            ev = m.next_event()
            if ev is NEED_DATA:
                return
            if isinstance(ev, gd.Record):
                self._commit(run, ev.sequence)
            elif isinstance(ev, gd.Discarded):
                if ev.uuid16 == GLUCOSE_MEASUREMENT and ev.reason != "duplicate":
                    run.raw.pop(ev.sequence, None)
            elif isinstance(ev, gd.Done):
                # with more, bad records past the window come again next round
                if ev.more or self._flush_bad(run, None):
                    self._end(run, "more" if ev.more else "done")
            elif isinstance(ev, gd.Failed):
                self._end(run, run.abort_reason or E_RACP, "meter answered %s" % ev.reason)
            elif isinstance(ev, gd.Aborted):
                self._end(run, run.abort_reason or E_RACP, "meter aborted")

    def _commit(self, run, seq):
        if not self._flush_bad(run, seq):
            return
        core = self.core
        if not core.can_accept():
            self._abort(run, E_JOURNAL_FULL)
            return
        raw = run.raw.pop(seq)
        if core.on_value(run.inst, GLUCOSE_MEASUREMENT, raw, seq, run.quirks) is None:
            if core.alarms.get("journal_full"):
                self._abort(run, E_JOURNAL_FULL)
            else:  # the core could not make a reading of it
                self._journal_bad(run, seq, raw, "refused")
            return
        self._advance(run, seq)  # only now: the journal has committed it
        run.res["readings"] += 1

    def _advance(self, run, seq):
        if run.cursor is None or seq > run.cursor:
            self.cursors.set(run.addr, seq)
            run.cursor = seq

    def _flush_bad(self, run, below):
        # Journal the bad records below `below` (all when None), in order.
        for seq in sorted(run.bad):
            if below is not None and seq >= below:
                break
            if not self._journal_bad(run, seq, run.bad.pop(seq), "undecodable"):
                return False
        return True

    def _journal_bad(self, run, seq, raw, reason):
        core = self.core
        try:
            if not core.can_accept():
                raise JournalFull("")
            core.journal.append(event_payload(run.inst, "undecodable_record", seq,
                                              self.clock.now_ms(), raw, reason), KIND_EVENT)
        except JournalFull:
            self._abort(run, E_JOURNAL_FULL)
            return False
        core.uplink.notify()
        what = "record %d" % seq if seq is not None else "a record"
        core.indicator.error(run.addr, "%s of the meter is unreadable: kept, skipped" % what)
        self._error(run.addr, E_BAD_RECORD, "%s: %s" % (what, reason))
        run.res["bad_records"] += 1
        if seq is not None:
            self._advance(run, seq)
        return True

    def _abort(self, run, reason):
        if run.aborting or run.outcome is not None:
            return
        run.aborting = True
        run.abort_reason = reason
        run.bad = {}
        try:
            run.abort_bytes = run.m.abort()
            self._wake.set()
        except _glucose().DownloadError:  # not reporting any more: nothing to abort
            self._end(run, reason)

    def _end(self, run, outcome, detail=None):
        if run.outcome is None:
            run.outcome = outcome
            run.detail = detail
            self._wake.set()

    # --- errors --------------------------------------------------------------

    def _error(self, addr, code, detail=""):
        key = (addr, code)
        self.errors[key] = self.errors.get(key, 0) + 1
        self.last_error[addr] = code
        if self.log_error is not None:
            try:
                self.log_error(addr, code, detail)
            except Exception:
                pass

    def _fail(self, res, addr, code, detail):
        if res["error"] is None:
            res["error"] = code
        res["ok"] = False
        self._error(addr, code, detail)
        try:
            self.core.indicator.error(addr, "instrument sync: %s" % code)
        except Exception:
            pass


def _noop(x):
    return x


def event_payload(inst, etype, iseq, rtime, raw, reason):
    """Journal payload of an instrument event (docs/protocol.md, kind `event`):
    the raw bytes go to the fleet as hex so a technician can recover them."""
    import json

    return json.dumps({"kind": "event", "type": etype, "inst": inst, "iseq": iseq,
                       "itime": None, "rtime": int(rtime), "values": [],
                       "flags": ["reason:" + reason,
                                 "raw:" + hexlify(bytes(raw[:28])).decode()]},
                      separators=(",", ":")).encode()
