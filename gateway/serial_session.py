# Serial instrument sessions: an ECG strip from an OpenBCI Cyton, the memory
# of a OneTouch Ultra2 glucometer, the results of an ASTM E1381/E1394 meter.
#
# Theory of operation
# -------------------
# A session talks to one instrument through a serial adapter passed in (never
# made here): `await adapter.read(n, timeout_ms)` returns up to n bytes, or
# b"" when nothing came within timeout_ms; `await adapter.write(data)`;
# `adapter.close()` is the caller's. gateway/host/serial_port.py is the
# pyserial one (Linux gateways, pseudo-terminal simulators in tests); the
# firmware wraps machine.UART the same way. The drivers (device_drivers.cyton,
# ecg, onetouch, astm, reading) do the decoding; the session moves bytes,
# journals readings through the gateway core (`core.on_reading`), and counts
# every fault in `core.errors[(instrument addr, code)]`, the same table BLE
# decode errors go to (diagnostics and heartbeats report it). Nothing here
# raises on instrument input; each function returns a result dict whose
# `status` is one of:
#   ok            the session did what it was asked
#   timeout       the instrument stopped answering (serial_timeout counted)
#   incomplete    a dump was cut (bad lines, an aborted transfer) after the
#                 retries; what arrived intact was journaled
#   journal_full  the journal could not take more; the instrument keeps its
#                 records and the cursor does not move past them
#   no_stream     (ECG) bytes kept coming but no strip could be made of them
#   port_error    the adapter raised OSError (port unplugged)
#
# ECG (capture_ecg_strip): write "s" (stop an earlier stream) and drain, "b"
# (start), feed the bytes to a CytonParser, its events to a StripAssembler;
# resynchronisation and lost packets are handled by the drivers, flagged on
# the strip ("resync", "gaps") and counted (cyton_resync, cyton_lost_packets);
# a strip a gap of over 1 s cut under 2 s is dropped (ecg_strip_short) and
# capture goes on. The first whole strip is journaled (type ecg_strip, its
# samples in the record's `ecg` member, docs/protocol.md), then "s" stops the
# stream. When the board goes quiet mid-strip (status timeout), what came is
# journaled if it is at least 2 s long (flagged too_short); a port error
# journals nothing. A strip is at most gateway.protocol.MAX_ECG_SAMPLES (10 s
# at 250 Hz) so that it fits one `data` message; its payload's room is taken
# at the start of the capture, while the heap is least fragmented.
#
# Glucometers (dump_onetouch, dump_astm): the meter's whole memory comes
# every time; the gateway journals only what it has not journaled before.
# A record's identity is its timestamp: iseq = seconds from 2000-01-01
# 00:00:00 to the meter's own time of the result (meter_iseq), stable
# across downloads (a OneTouch dump's line order is not), and the fleet
# server deduplicates by (instrument serial, iseq) too. `cursors` is a dict
# the caller keeps on flash (load_cursors / save_cursors); cursors[key]
# lists the iseqs journaled that the meter still holds (key
# "onetouch:<serial>" or "astm:<serial>"). An iseq is added only after
# core.on_reading returned its journal sequence number (the journal commit),
# so a record refused for a full journal is downloaded again next time;
# after a complete dump the list is pruned to the records the meter still
# has. A result without a usable timestamp has no iseq and is journaled on
# every dump (counted: no_timestamp).
# OneTouch: DMP, then the header and record lines; a bad checksum or a
# malformed line ends the attempt (checksum_error / decode_error) and the
# dump is asked again (`attempts`). ASTM: the gateway is the receiver; it
# writes EOT (ends any session, and a Contour-type meter starts sending),
# answers ENQ and each frame (the Receiver NAKs a bad one: astm_frame_rejected),
# and records are journaled as they complete, before the frame is ACKed.
#
# Portable: MicroPython (ESP32, Unix port) and CPython. The drivers are
# imported inside the session that needs them, so a gateway with only a
# glucometer never loads the ECG code into its heap.
import gc
import json

from gateway import protocol

STATUS_OK = "ok"
STATUS_TIMEOUT = "timeout"
STATUS_INCOMPLETE = "incomplete"
STATUS_JOURNAL_FULL = "journal_full"
STATUS_NO_STREAM = "no_stream"
STATUS_PORT_ERROR = "port_error"

CYTON_START = b"b"
CYTON_STOP = b"s"
ECG_RECORD_BYTES = 8192  # journal room a strip needs (payload and header)
GLUCOSE_RECORD_BYTES = 512

_READ = 128  # bytes asked of the adapter per read: small buffers on a small heap
_EPOCH_2000_DAYS = 10957  # days from 1970-01-01 to 2000-01-01


def _count(core, inst, code, n=1):
    key = (inst.get("addr"), code)
    core.errors[key] = core.errors.get(key, 0) + n


async def _drain(adapter, timeout_ms=50, limit=65536):
    # Read and drop what is in flight (an earlier stream, a half reply).
    dropped = 0
    while dropped < limit:
        data = await adapter.read(_READ, timeout_ms)
        if not data:
            break
        dropped += len(data)
    return dropped


def _days_from_civil(y, m, d):
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def meter_iseq(ts):
    # A meter result's identity: seconds from 2000-01-01 00:00:00 to its
    # timestamp (y, mo, d, h, mi, s) in the meter's own clock; None when the
    # timestamp is missing or has an unknown (0) or pre-2000 date.
    if not ts or len(ts) != 6:
        return None
    y, mo, d, h, mi, s = ts
    if y < 2000 or not mo or not d:
        return None
    return ((_days_from_civil(y, mo, d) - _EPOCH_2000_DAYS) * 86400
            + h * 3600 + mi * 60 + s)


def load_cursors(path):
    # The cursors dict saved by save_cursors ({} when missing or unreadable).
    try:
        with open(path) as f:
            d = json.loads(f.read())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def save_cursors(path, cursors):
    # Written then renamed: a power cut leaves the old cursors or the new.
    from gateway.fsutil import atomic_write  # only here: the ECG path is tight on heap

    atomic_write(path, json.dumps(cursors))


# --- ECG strip from an OpenBCI Cyton -----------------------------------------

async def capture_ecg_strip(adapter, core, inst, seconds=10, channel=0, lead="II", gain=24,
                            timeout_ms=1000):
    # One strip of `seconds` from Cyton `channel` (0-based, at `gain`) as lead
    # `lead`, journaled. Returns {"status", "seq", "heart_rate", "samples",
    # "flags"}. ValueError (a configuration error) for a strip longer than
    # the protocol carries.
    from device_drivers.cyton import SAMPLE_RATE
    from device_drivers.ecg import StripAssembler

    needed = int(seconds * SAMPLE_RATE + 0.5)
    if needed > protocol.MAX_ECG_SAMPLES:
        raise ValueError("a strip of %d samples is over the protocol's %d"
                         % (needed, protocol.MAX_ECG_SAMPLES))
    result = {"status": STATUS_OK, "seq": None, "heart_rate": None, "samples": 0,
              "flags": []}  # type: dict
    if not core.can_accept(ECG_RECORD_BYTES):
        _count(core, inst, "journal_full")
        result["status"] = STATUS_JOURNAL_FULL
        return result
    asm = StripAssembler(channel, lead, gain, SAMPLE_RATE, seconds)  # first: its 5 KB array
    # The journal payload (base64 and all) and the journal's copy of it are
    # the largest blocks a capture needs, at its end, when the stream may
    # have fragmented the heap: hold their room from the start (if there is
    # room now), and free it just before they are made.
    try:
        size = 4 * ((2 * needed + 2) // 3) + 1024
        room = [bytearray(size), bytearray(size)]
    except MemoryError:
        room = None
    try:
        strip = await _stream_strip(adapter, core, inst, asm, needed, timeout_ms, result)
    except OSError:
        _count(core, inst, "serial_error")
        result["status"] = STATUS_PORT_ERROR
        return result
    if strip is None:
        return result
    from device_drivers.ecg import strip_reading

    r = strip_reading(strip)
    del strip
    result["heart_rate"] = r["heart_rate"]
    result["samples"] = len(r["samples"])
    result["flags"] = r["flags"]
    del room
    gc.collect()
    seq = core.on_reading(inst, r)
    if seq is None:
        result["status"] = STATUS_JOURNAL_FULL if core.alarms.get("journal_full") \
            else "bad_reading"
    result["seq"] = seq
    return result


async def _stream_strip(adapter, core, inst, asm, needed, timeout_ms, result):
    # Start the stream, assemble the first strip of at least 2 s, stop.
    from device_drivers.cyton import CytonParser, Gap, Resync

    await adapter.write(CYTON_STOP)
    await _drain(adapter)
    parser = CytonParser(asm.gain)
    budget = needed * 66 + 4096  # bytes: twice a strip's packets
    shortest = 2 * asm.sample_rate
    received = 0
    strip = None
    await adapter.write(CYTON_START)
    try:
        while strip is None:
            data = await adapter.read(_READ, timeout_ms)
            if not data:
                _count(core, inst, "serial_timeout")
                result["status"] = STATUS_TIMEOUT
                strip = asm.flush()
                if strip is not None and len(strip.samples) < shortest:
                    strip = None
                break
            received += len(data)
            parser.feed(data)
            for ev in parser:
                t = type(ev)
                if t is Resync:
                    _count(core, inst, "cyton_resync")
                elif t is Gap:
                    _count(core, inst, "cyton_lost_packets", ev.missing)
                done = asm.add(ev)
                if done is not None:
                    if len(done.samples) >= shortest:
                        strip = done
                        break
                    _count(core, inst, "ecg_strip_short")
            if strip is None and received > budget:
                _count(core, inst, "ecg_no_stream")
                result["status"] = STATUS_NO_STREAM
                break
    finally:
        await adapter.write(CYTON_STOP)
    await _drain(adapter)
    return strip


# --- glucometer dumps ------------------------------------------------------------

class _Dump:
    # What one meter download keeps: the identities already journaled
    # (`have`), those the meter holds now (`seen`), counters, the result.

    def __init__(self, core, inst, cursors, prefix):
        self.core = core
        self.inst = inst
        self.cursors = cursors
        self.prefix = prefix
        self.key = None
        self.have = set()
        self.seen = set()
        self.stopped = False  # the journal refused a record
        self.result = {"status": STATUS_OK, "records": 0, "journaled": 0, "duplicates": 0,
                       "serial": inst.get("serial")}

    def identify(self, serial, model=None):
        # The meter said who it is: its cursor is keyed by its serial.
        inst = dict(self.inst)
        if serial and not inst.get("serial"):
            inst["serial"] = serial
        if model and not inst.get("model"):
            inst["model"] = model
        self.inst = inst
        self.result["serial"] = inst.get("serial")
        key = "%s:%s" % (self.prefix, inst.get("serial") or inst.get("addr"))
        if key != self.key:
            self.key = key
            self.have = set(self.cursors.get(key) or ())

    def add(self, r, iseq):
        # One normalized result of the meter: journal it unless it was already.
        if self.key is None:
            self.identify(None)
        self.result["records"] += 1
        if iseq is None:
            _count(self.core, self.inst, "no_timestamp")
        else:
            self.seen.add(iseq)
            if iseq in self.have:
                self.result["duplicates"] += 1
                return
        if self.stopped:
            return
        if not self.core.can_accept(GLUCOSE_RECORD_BYTES):
            self._full()
            return
        if self.core.on_reading(self.inst, r, iseq) is None:
            if self.core.alarms.get("journal_full"):
                self._full()
            return
        self.result["journaled"] += 1
        if iseq is not None:
            self.have.add(iseq)  # committed: the cursor may move past it

    def _full(self):
        if not self.stopped:
            self.stopped = True
            _count(self.core, self.inst, "journal_full")
            self.result["status"] = STATUS_JOURNAL_FULL

    def finish(self, complete):
        # Save the cursor: pruned to what the meter holds after a whole dump.
        if self.key is None:
            return self.result
        have = self.have
        if complete and not self.stopped:
            have = have & self.seen
        self.cursors[self.key] = sorted(have)
        return self.result


async def dump_onetouch(adapter, core, inst, cursors=None, timeout_ms=2000, attempts=2):
    # Download a OneTouch Ultra2's memory (DMP) and journal the new results.
    # Returns {"status", "records", "journaled", "duplicates", "serial"}.
    from device_drivers import DecodeError
    from device_drivers.onetouch import DUMP_RECORDS, DumpParser, LineFramer
    from device_drivers.reading import from_meter_glucose

    dump = _Dump(core, inst, {} if cursors is None else cursors, "onetouch")
    complete = False
    for _ in range(attempts):
        if not core.can_accept(GLUCOSE_RECORD_BYTES):
            dump._full()
            break
        framer = LineFramer()
        parser = DumpParser()
        status = STATUS_INCOMPLETE
        try:
            await _drain(adapter)
            await adapter.write(DUMP_RECORDS)
            while not parser.done and status == STATUS_INCOMPLETE:
                data = await adapter.read(_READ, timeout_ms)
                if not data:
                    _count(core, inst, "serial_timeout")
                    status = STATUS_TIMEOUT
                    break
                for line in framer.feed(data):
                    try:
                        msg = parser.add_line(line)
                    except DecodeError as e:
                        _count(core, inst, "checksum_error" if e.field == "checksum"
                               else "decode_error")
                        status = "bad_line"
                        break
                    if msg["type"] == "dump_header":
                        dump.identify(msg["serial"], "OneTouch Ultra2")
                    else:
                        dump.add(from_meter_glucose(msg), meter_iseq(msg["timestamp"]))
                    if parser.done:
                        break
        except OSError:
            _count(core, inst, "serial_error")
            dump.result["status"] = STATUS_PORT_ERROR
            return dump.finish(False)
        if framer.discarded:
            _count(core, inst, "garbage_bytes", framer.discarded)
        if parser.done:
            complete = True
            break
        if dump.stopped:
            break
        if status == STATUS_TIMEOUT and parser.state == "header":
            break  # the meter does not answer at all: no point asking again
    if not complete and not dump.stopped:
        dump.result["status"] = STATUS_TIMEOUT if dump.key is None else STATUS_INCOMPLETE
    return dump.finish(complete)


async def dump_astm(adapter, core, inst, cursors=None, timeout_ms=3000, wait_ms=5000):
    # Receive an ASTM E1381/E1394 meter's transmission (it sends its memory
    # as one or more messages) and journal the new glucose results. `wait_ms`:
    # how long to wait for the meter's ENQ. Returns the same dict as
    # dump_onetouch.
    from device_drivers import DecodeError, astm
    from device_drivers.reading import from_astm_result

    dump = _Dump(core, inst, {} if cursors is None else cursors, "astm")
    rx = astm.Receiver()
    collector = astm.ResultCollector()
    complete = False
    linked = False
    try:
        await adapter.write(bytes((astm.EOT,)))
        while True:
            data = await adapter.read(_READ, timeout_ms if linked else wait_ms)
            if not data:
                _count(core, inst, "serial_timeout")
                if rx.timeout():  # inside a transfer: the meter went quiet
                    _count(core, inst, "astm_aborted")
                break
            events = rx.feed(data)
            for ev, payload in events:
                if ev == astm.LINK_UP:
                    linked = True
                elif ev == astm.RECORD:
                    _astm_record(dump, collector, payload, core, inst, astm, DecodeError,
                                 from_astm_result)
                elif ev == astm.REJECTED:
                    _count(core, inst, "astm_frame_rejected")
                elif ev == astm.ABORTED:
                    _count(core, inst, "astm_aborted")
                elif ev == astm.LINK_DOWN:
                    complete = True
            out = rx.data_to_send()  # ACK only once the frame's records are journaled
            if out:
                await adapter.write(out)
            if complete or (linked and rx.state == "idle"):
                break
    except OSError:
        _count(core, inst, "serial_error")
        dump.result["status"] = STATUS_PORT_ERROR
        return dump.finish(False)
    if not complete and not dump.stopped:
        dump.result["status"] = STATUS_INCOMPLETE if linked else STATUS_TIMEOUT
    return dump.finish(complete)


def _astm_record(dump, collector, payload, core, inst, astm, DecodeError, from_astm_result):
    try:
        rec = astm.decode_record(payload, collector.delimiters)
        result = collector.add_record(rec)
    except DecodeError:
        _count(core, inst, "decode_error")
        return
    if rec["type"] == "H":
        sender = rec.get("sender") or []
        dump.identify(sender[2] if len(sender) > 2 and sender[2] else None,
                      sender[0] if sender and sender[0] else None)
        return
    if result is None:
        return
    try:
        r = from_astm_result(result)
    except ValueError:  # an analyte protocol v1 has no reading type for
        _count(core, inst, "unsupported_result")
        return
    dump.add(r, meter_iseq(result.get("timestamp")))
