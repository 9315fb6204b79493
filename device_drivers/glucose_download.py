# Downloading a glucose meter's stored records over RACP: a sans-I/O state
# machine in the h11 manner. Bytes in, events out; the caller owns the radio.
#
# Theory of operation
# -------------------
# One GlucoseDownload object is one download attempt over one connection.
# The caller has enabled notifications on 0x2A18/0x2A34 and indications on
# 0x2A52, then:
#
#   d = GlucoseDownload(last_committed)   # None: this meter was never read
#   write_racp(d.start())                 # 01 01, or 01 03 01 <last+1 LE16>
#   for each notification/indication:     # raw bytes with their uuid16
#       d.receive(uuid16, data)
#       while (ev := d.next_event()) is not NEED_DATA:
#           Record    -> store it (qc=True: control solution, QC evidence
#                        not patient data), commit ev.sequence, then go on
#           Discarded -> log it (a repeat, a record already committed ...)
#           Done      -> finished; if ev.more, run another download from
#                        the new cursor
#           Failed    -> the meter answered with an error response code
#           Aborted   -> the meter confirmed abort()
#
# The cursor belongs to the caller. The machine never advances it: it hands
# out records in ascending sequence order, and the caller commits each one
# (QC records too) before taking the next event, keeping the last committed
# sequence number itself. After a dropped link the caller makes a new machine
# with that number: the request asks for the records after it, and anything
# at or below it that a meter sends anyway is discarded, so a record already
# committed is never handed out twice and none is skipped.
#
# Pairing. A measurement flagged "context follows" waits for the context with
# its sequence number, which the meter sends right after it. The wait ends
# when the context comes, when the next new measurement arrives, when the
# caller calls timeout() (its own timer: the meter went quiet), or at the end
# of the transfer. A record whose context never came is handed out with
# context None and context_missing True; a context no measurement is waiting
# for is Discarded ("orphan_context").
#
# Order. The first two new records tell the meter's order (the first one is
# held until then, or until the end). Ascending (the usual): each record is
# handed out as soon as it is complete, so only the record waiting for its
# context is held, and a new record below one already handed out is a remote
# error. Anything else (meters that send newest first): records are held,
# sorted, and handed out at the end of the transfer. At most `window` records
# are held: past that the highest is dropped and Done.more is True; the next
# download (from the new cursor) gets the rest. A held record is kept as its
# wire bytes (one bytearray of 36 bytes at most) and decoded when handed out.
#
# Repeats. A record seen again (held, or among the last few handed out) is
# Discarded ("duplicate"); the same sequence number with different bytes is a
# remote error.
#
# The end. The meter ends the transfer with a response to the report: success
# or "no records found" hands out everything held (Done), any other code
# drops what is held (Failed: it will be downloaded next time). abort()
# returns the RACP bytes to write; from then on records are Discarded
# ("after_abort") until the meter answers the abort (Aborted, or Failed with
# "abort_unsuccessful"). In DONE, ABORTED and FAILED, late records and
# responses are Discarded ("after_end"). Bytes that do not decode are a
# remote error in every state.
#
# Errors. LocalProtocolError: the caller misused the machine (start() twice,
# an unknown uuid). RemoteProtocolError: the meter broke the protocol
# (undecodable bytes, a response to a request never sent, sequence going
# backwards); the machine moves to ERROR and every later call raises. The
# error carries the record's sequence number when it is known, so a caller
# stuck on one bad record can decide to log it and commit past it; the
# machine never does.
#
# Transitions: _TRANSITIONS below, the only place states change.
#
# Not handled here: a meter whose numbering starts again at 0 (memory cleared,
# counter past 65535) looks like a meter with nothing new; noticing that (a
# record count, the meter's serial number) is the caller's business.
#
# Portable: the same source runs on MicroPython and CPython.
from collections import namedtuple

from device_drivers import NEED_DATA, DecodeError
from device_drivers.glucose import (
    RACP_ABORT,
    RACP_COUNT_RESPONSE,
    RACP_REPORT,
    RC_NO_RECORDS,
    RC_SUCCESS,
    decode_context,
    decode_measurement,
    decode_racp,
    is_control_solution,
    racp_abort,
    racp_report_all,
    racp_report_from,
)

try:
    from micropython import const
except ImportError:

    def const(x):  # type: (int) -> int
        return x


GLUCOSE_MEASUREMENT = const(0x2A18)
GLUCOSE_CONTEXT = const(0x2A34)
RACP = const(0x2A52)

_RECENT = const(4)  # handed-out records remembered to spot repeats
# A held record is one bytearray: state, length of the measurement, the
# measurement's bytes, then the context's (none yet: nothing).
_COMPLETE = const(0)
_WAITING = const(1)  # waiting for its context
_MISSING = const(2)  # waited for its context in vain

_UNKNOWN = const(0)
_ASCENDING = const(1)
_UNORDERED = const(2)


class DownloadError(Exception):
    pass  # root of the errors this module raises


class LocalProtocolError(DownloadError):
    pass  # the caller misused the machine


class RemoteProtocolError(DownloadError):
    # The meter broke the protocol; the machine is in ERROR. `sequence`: the
    # record concerned, if known; `cause`: the DecodeError, if any.
    def __init__(self, message, sequence=None, cause=None):
        # type: (str, int | None, DecodeError | None) -> None
        super().__init__(message)
        self.sequence = sequence
        self.cause = cause



# Events
Record = namedtuple("Record", ("sequence", "measurement", "context", "qc", "context_missing"))
Discarded = namedtuple("Discarded", ("uuid16", "sequence", "reason"))
Done = namedtuple("Done", ("no_records", "more"))
Failed = namedtuple("Failed", ("request_opcode", "response_code", "reason"))
Aborted = namedtuple("Aborted", ())

# States
IDLE = "IDLE"
REPORTING = "REPORTING"
ABORTING = "ABORTING"
DONE = "DONE"
ABORTED = "ABORTED"
FAILED = "FAILED"
ERROR = "ERROR"

# Inputs: the caller's calls ...
_START = "start"
_ABORT = "abort"
_TIMEOUT = "timeout"
_LOCAL = (_START, _ABORT, _TIMEOUT)
# ... and what the meter sends
_MEASUREMENT = "measurement"
_CONTEXT = "context"
_REPORT_END = "report success or no records"
_REPORT_FAILED = "report error response"
_ABORT_OK = "abort success"
_ABORT_FAILED = "abort error response"
_COUNT = "count response"  # never asked for: always a remote error
_STRAY = "response to a request never sent"  # likewise


def _ended(state):  # type: (str) -> dict
    return {_MEASUREMENT: state, _CONTEXT: state, _REPORT_END: state, _REPORT_FAILED: state,
            _ABORT_OK: state, _ABORT_FAILED: state, _TIMEOUT: state}


_TRANSITIONS = {
    IDLE: {_START: REPORTING},
    REPORTING: {_MEASUREMENT: REPORTING, _CONTEXT: REPORTING, _TIMEOUT: REPORTING,
                _REPORT_END: DONE, _REPORT_FAILED: FAILED, _ABORT: ABORTING},
    ABORTING: {_MEASUREMENT: ABORTING, _CONTEXT: ABORTING, _TIMEOUT: ABORTING,
               _REPORT_END: ABORTING, _REPORT_FAILED: ABORTING,
               _ABORT_OK: ABORTED, _ABORT_FAILED: FAILED},
    DONE: _ended(DONE),
    ABORTED: _ended(ABORTED),
    FAILED: _ended(FAILED),
    ERROR: {},  # every call raises the error that led here
}


def _sequence_of(data):  # type: (bytes) -> int | None
    return data[1] | (data[2] << 8) if len(data) >= 3 else None


def _seq(e):  # type: (bytearray) -> int
    return e[3] | (e[4] << 8)  # the measurement's bytes 1-2


def _measurement(e):  # type: (bytearray) -> bytes
    return bytes(e[2:2 + e[1]])


def _context(e):  # type: (bytearray) -> bytes | None
    end = 2 + e[1]
    return bytes(e[end:]) if len(e) > end else None


class GlucoseDownload:
    """One download of a meter's records; see the theory of operation above."""

    def __init__(self, last_committed=None, window=32):  # type: (int | None, int) -> None
        if last_committed is not None and not (
                isinstance(last_committed, int) and 0 <= last_committed <= 0xFFFF):
            raise LocalProtocolError("last_committed must be None or 0..65535")
        if not (isinstance(window, int) and window >= 2):
            raise LocalProtocolError("window must be at least 2")
        self.last_committed = last_committed
        self.window = window
        self.state = IDLE
        self._inbox = []  # type: list  # (uuid16, bytes) not processed yet
        self._events = []  # type: list  # events, and records handed out (bytearray)
        self._held = []  # type: list  # records held, sorted by sequence
        self._waiting = None  # type: bytearray | None  # the record waiting for its context
        self._order = _UNKNOWN
        self._last_out = -1  # sequence of the last record handed out
        self._recent = []  # type: list  # (sequence, hash(measurement), hash(context))
        self._more = False
        self._error = None  # type: RemoteProtocolError | None

    @property
    def held(self):  # type: () -> int
        """Records held (waiting for their context or for the end)."""
        return len(self._held)

    # --- the caller's side -----------------------------------------------------

    def start(self):  # type: () -> bytes
        """The RACP request to write: all records, or those after last_committed."""
        self._transition(_START)
        if self.last_committed is None:
            return racp_report_all()
        # past 65535 nothing can follow; ask for >= 65535 and discard that one
        return racp_report_from(min(self.last_committed + 1, 0xFFFF))

    def abort(self):  # type: () -> bytes
        """The RACP abort to write; records that arrive from now on are discarded."""
        self._transition(_ABORT)
        self._held = []
        self._waiting = None
        return racp_abort()

    def timeout(self):  # type: () -> None
        """The caller's timer ran out (the meter went quiet): stop waiting for a context."""
        self._transition(_TIMEOUT)
        if self.state == REPORTING:
            self._stop_waiting()
            self._release()

    def receive(self, uuid16, data):  # type: (int, bytes) -> None
        """Feed one notification (0x2A18, 0x2A34) or indication (0x2A52)."""
        self._check_error()
        if uuid16 not in (GLUCOSE_MEASUREMENT, GLUCOSE_CONTEXT, RACP):
            raise LocalProtocolError("not a glucose download characteristic: 0x%04X" % uuid16)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise LocalProtocolError("data must be bytes")
        if self.state == IDLE:
            raise LocalProtocolError("nothing was requested yet: call start() first")
        self._inbox.append((uuid16, bytes(data)))

    def next_event(self):  # type: () -> object
        """The next event, or NEED_DATA when everything received has been handed out."""
        self._check_error()
        while not self._events:
            if not self._inbox:
                return NEED_DATA
            uuid16, data = self._inbox.pop(0)
            try:
                self._process(uuid16, data)
            except RemoteProtocolError as e:
                self.state = ERROR
                self._error = e
                self._inbox = []
                self._held = []
                self._waiting = None
                raise
        ev = self._events.pop(0)
        if isinstance(ev, bytearray):  # a record handed out: decode it now
            m = decode_measurement(_measurement(ev))
            c = _context(ev)
            return Record(_seq(ev), m, decode_context(c) if c is not None else None,
                          is_control_solution(m), ev[0] == _MISSING)
        return ev

    # --- internals -------------------------------------------------------------

    def _check_error(self):  # type: () -> None
        if self._error is not None:
            raise RemoteProtocolError("download is in ERROR: %s" % self._error,
                                      self._error.sequence, self._error.cause)

    def _transition(self, kind, sequence=None):  # type: (str, int | None) -> str
        # Move along _TRANSITIONS; returns the state the input arrived in.
        self._check_error()
        old = self.state
        new = _TRANSITIONS[old].get(kind)
        if new is None:
            if kind in _LOCAL:
                raise LocalProtocolError("%s() is not allowed in state %s" % (kind, old))
            raise RemoteProtocolError("meter sent a %s in state %s" % (kind, old), sequence)
        self.state = new
        return old

    def _process(self, uuid16, data):  # type: (int, bytes) -> None
        try:
            if uuid16 == RACP:
                self._on_racp(decode_racp(data))
            elif uuid16 == GLUCOSE_MEASUREMENT:
                self._on_record(_MEASUREMENT, uuid16, data, decode_measurement(data))
            else:
                self._on_record(_CONTEXT, uuid16, data, decode_context(data))
        except DecodeError as e:
            seq = _sequence_of(data) if uuid16 != RACP else None
            raise RemoteProtocolError("undecodable 0x%04X: %s" % (uuid16, e), seq, e)

    def _on_racp(self, r):  # type: (dict) -> None
        code = r.get("response_code")
        request = r.get("request_opcode")
        if r["opcode"] == RACP_COUNT_RESPONSE:
            kind = _COUNT
        elif request == RACP_REPORT:
            kind = _REPORT_END if code in (RC_SUCCESS, RC_NO_RECORDS) else _REPORT_FAILED
        elif request == RACP_ABORT:
            kind = _ABORT_OK if code == RC_SUCCESS else _ABORT_FAILED
        else:
            kind = _STRAY
        old = self._transition(kind)
        if old == REPORTING and kind == _REPORT_END:
            self._stop_waiting()
            self._order = _ASCENDING  # hand out everything held, in order
            self._release()
            self._events.append(Done(code == RC_NO_RECORDS, self._more))
        elif old == REPORTING:  # _REPORT_FAILED: what is held comes again next time
            self._held = []
            self._waiting = None
            self._events.append(Failed(request, code, r["response"]))
        elif old == ABORTING and kind == _ABORT_OK:
            self._events.append(Aborted())
        elif old == ABORTING and kind == _ABORT_FAILED:
            self._events.append(Failed(request, code, r["response"]))
        else:  # the report's end after abort(), or anything after the end
            self._events.append(Discarded(RACP, None,
                                          "after_abort" if old == ABORTING else "after_end"))

    def _on_record(self, kind, uuid16, data, d):  # type: (str, int, bytes, dict) -> None
        seq = d["sequence"]
        old = self._transition(kind, seq)
        if old != REPORTING:
            self._events.append(Discarded(uuid16, seq,
                                          "after_abort" if old == ABORTING else "after_end"))
            return
        if self.last_committed is not None and seq <= self.last_committed:
            self._events.append(Discarded(uuid16, seq, "committed"))
            return
        if kind == _MEASUREMENT:
            self._on_measurement(data, seq, d["context_follows"])
        else:
            self._on_context(data, seq)

    def _find(self, seq):  # type: (int) -> bytearray | None
        for e in self._held:
            if _seq(e) == seq:
                return e
        return None

    def _seen(self, seq, slot, data):  # type: (int, int, bytes) -> bool
        # True when `data` repeats what was received for `seq` (held or
        # recently handed out); raises when it contradicts it.
        e = self._find(seq)
        if e is not None:
            known = _measurement(e) if slot == 1 else _context(e)  # type: object
            same = known == data
        else:
            known = None
            same = False
            for r in self._recent:
                if r[0] == seq:
                    known = r[slot]
                    same = known == hash(data)
        if known is None:
            return False
        if not same:
            raise RemoteProtocolError("two different %s for sequence %d" % (
                "measurements" if slot == 1 else "contexts", seq), seq)
        return True

    def _on_measurement(self, data, seq, context_follows):  # type: (bytes, int, bool) -> None
        if self._seen(seq, 1, data):
            self._events.append(Discarded(GLUCOSE_MEASUREMENT, seq, "duplicate"))
            return
        if self._order == _ASCENDING and seq < self._last_out:
            raise RemoteProtocolError("sequence %d after %d: meter went backwards"
                                      % (seq, self._last_out), seq)
        self._stop_waiting()
        entry = bytearray((_WAITING if context_follows else _COMPLETE, len(data))) + data
        if context_follows:
            self._waiting = entry
        held = self._held
        i = len(held)
        while i and _seq(held[i - 1]) > seq:
            i -= 1
        held.insert(i, entry)
        if self._order == _UNKNOWN and len(held) == 2:
            self._order = _ASCENDING if held[1] is entry else _UNORDERED
        self._release()

    def _on_context(self, data, seq):  # type: (bytes, int) -> None
        w = self._waiting
        if w is not None and _seq(w) == seq:
            w.extend(data)
            w[0] = _COMPLETE
            self._waiting = None
            self._release()
        elif self._seen(seq, 2, data):
            self._events.append(Discarded(GLUCOSE_CONTEXT, seq, "duplicate"))
        else:
            self._events.append(Discarded(GLUCOSE_CONTEXT, seq, "orphan_context"))

    def _stop_waiting(self):  # type: () -> None
        if self._waiting is not None:
            self._waiting[0] = _MISSING
            self._waiting = None

    def _release(self):  # type: () -> None
        held = self._held
        if self._order == _ASCENDING:
            while held and held[0][0] != _WAITING:
                e = held.pop(0)
                self._last_out = seq = _seq(e)
                c = _context(e)
                self._recent.append((seq, hash(_measurement(e)),
                                     hash(c) if c is not None else None))
                if len(self._recent) > _RECENT:
                    self._recent.pop(0)
                self._events.append(e)
        elif len(held) > self.window:
            e = held.pop()  # keep the lowest: they are committed first
            if e is self._waiting:
                self._waiting = None
            self._more = True
