# The gateway's side of the wire contract (docs/protocol.md, v1): topic
# names, the journal payload of a reading, `data` batches, `state`/`birth`
# payloads, and parsing of the server's `ack`. Pure functions: the uplink does
# the I/O. Batches are built by joining the journaled JSON payloads, without
# decoding them again (cheap on a microcontroller).
import json
import sys
from binascii import b2a_base64

VERSION = 1
ROOT = "ummc/v1"

MAX_RECORDS_PER_BATCH = 32
MAX_BATCH_BYTES = 8192


class AckError(ValueError):
    """An `ack` payload that does not follow the contract."""


def topic(unit, gateway, leaf):
    return "%s/%s/%s/%s" % (ROOT, unit, gateway, leaf)


def reading_payload(reading, inst, rtime, iseq=None, flags=None):
    """Journal payload (UTF-8 JSON bytes) of one normalized reading.

    `reading` is a dict from device_drivers.reading (type, values, flags,
    itime); `inst` the instrument identity {addr, model, serial}; `rtime` the
    gateway's receive time in unix ms (int). An ECG strip (a reading with
    `samples`, device_drivers.ecg.strip_reading) also gets its `ecg` member
    (a bytearray then; ValueError past MAX_ECG_SAMPLES)."""
    itime = reading.get("itime")
    rec = {
        "kind": "reading",
        "type": reading["type"],
        "inst": inst,
        "iseq": iseq,
        "itime": list(itime) if itime is not None else None,
        "rtime": int(rtime),
        "values": reading["values"],
        "flags": list(reading.get("flags") or []) + list(flags or []),
    }
    if reading.get("samples") is None:
        return _dumps(rec)
    # An ECG strip: its samples go in an "ecg" member. The payload is
    # assembled in one buffer and the base64 written into it piece by
    # piece, so the heap holds the samples and the payload, nothing more.
    head = _dumps(rec)
    samples = reading["samples"]
    meta = _ecg_meta(reading, samples)
    nbytes = 2 * len(samples)
    size = len(head) + len(meta) + 4 * ((nbytes + 2) // 3) + 16
    out = bytearray(size)
    k = _put(out, 0, memoryview(head)[:-1])
    k = _put(out, k, b',"ecg":')
    k = _put(out, k, memoryview(meta)[:-1])
    k = _put(out, k, b',"b64":"')
    view = memoryview(samples)
    for i in range(0, len(samples), _B64_ITEMS):
        part = view[i:i + _B64_ITEMS]
        chunk = b2a_base64(_swapped(part) if _SWAP else part)  # the wire is little-endian
        end = len(chunk)
        while end and chunk[end - 1] in (10, 13):  # some ports always add a newline
            end -= 1
        k = _put(out, k, memoryview(chunk)[:end])
    _put(out, k, b'"}}')
    return out


# ECG strips (docs/protocol.md, `data`, "ECG strips"): at most this many
# samples in one record, so that a record alone in its `data` message stays
# under MAX_BATCH_BYTES (10 s at 250 Hz: 6,668 bytes of base64).
MAX_ECG_SAMPLES = 2500
MAX_ECG_PEAKS = 64
MAX_ECG_GAPS = 32
_B64_ITEMS = 240  # samples base64-encoded at a time: 480 bytes, a multiple of 3
_SWAP = sys.byteorder != "little"


def _swapped(part):
    out = bytearray(part)
    for j in range(0, len(out), 2):
        out[j], out[j + 1] = out[j + 1], out[j]
    return out


def _put(out, k, data):
    n = len(data)
    out[k:k + n] = data
    return k + n


def _ecg_meta(reading, samples):
    """The `ecg` member's JSON (bytes) without its samples, for an ecg_strip
    reading from device_drivers.ecg.strip_reading: samples are int16
    microvolts around sample_offset_uv, sent as base64 of their
    little-endian bytes. ValueError past the limits or for other arrays."""
    n = len(samples)
    if not 0 < n <= MAX_ECG_SAMPLES:
        raise ValueError("ECG strip of %d samples, not 1..%d" % (n, MAX_ECG_SAMPLES))
    try:
        ok = len(bytes(memoryview(samples)[:1])) == 2
    except TypeError:
        ok = False
    if not ok:
        raise ValueError("ECG samples must be an int16 array")
    return _dumps({"fs": int(reading["sample_rate"]), "n": n, "unit": "uV", "scale_uv": 1,
                   "offset_uv": int(reading.get("sample_offset_uv") or 0),
                   "lead": reading.get("lead"), "channel": reading.get("channel"),
                   "gain": reading.get("gain"),
                   "r_peaks": list(reading.get("r_peaks") or ())[:MAX_ECG_PEAKS],
                   "gaps": list(reading.get("gaps") or ())[:MAX_ECG_GAPS],
                   "missing": int(reading.get("missing_samples") or 0),
                   "railed": int(reading.get("railed_samples") or 0)})


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def data_message(jid, base, sent, records):
    """A `data` payload (a bytearray) from journal records [(seq, kind,
    payload bytes)], built in one allocation of its exact size: on a board
    the heap is fragmented, and joining parts would need several copies of
    a batch of up to 8 KB."""
    head = ('{"v":%d,"jid":"%s","base":%d,"sent":%d,"records":['
            % (VERSION, jid, base, sent)).encode()
    # each payload is a JSON object: "seq" is spliced in as its first member
    seqs = [b'{"seq":%d,' % r[0] for r in records]
    n = len(head) + 2 + max(0, len(records) - 1)
    for i in range(len(records)):
        n += len(seqs[i]) + len(records[i][2]) - 1
    out = bytearray(n)
    out[:len(head)] = head
    k = len(head)
    for i in range(len(records)):
        if i:
            out[k] = 44  # ,
            k += 1
        s, p = seqs[i], records[i][2]
        out[k:k + len(s)] = s
        k += len(s)
        out[k:k + len(p) - 1] = memoryview(p)[1:]
        k += len(p) - 1
    out[k:k + 2] = b"]}"
    return out


def state_payload(state, ts=None, boot=None, reason=None):
    d = {"v": VERSION, "state": state}
    if ts is not None:
        d["ts"] = ts
    if boot is not None:
        d["boot"] = boot
    if reason is not None:
        d["reason"] = reason
    return _dumps(d)


LAST_WILL = state_payload("offline", reason="connection_lost")


def birth_payload(fw, cfg, boot, reset, instruments, journal, ts):
    return _dumps({"v": VERSION, "fw": fw, "cfg": cfg, "boot": boot, "reset": reset,
                   "instruments": instruments, "journal": journal, "ts": ts})


def parse_ack(payload):
    """(jid, upto, rejected, server_time) from an `ack` payload; AckError if bad."""
    try:
        d = json.loads(payload)
    except ValueError:
        raise AckError("ack is not JSON")
    if not isinstance(d, dict) or d.get("v") != VERSION:
        raise AckError("ack version is not %d" % VERSION)
    jid = d.get("jid")
    upto = d.get("upto")
    if not isinstance(jid, str) or not isinstance(upto, int) or isinstance(upto, bool) \
            or upto < 0:
        raise AckError("ack needs a jid string and a non-negative integer upto")
    rejected = d.get("rejected") or []
    if not isinstance(rejected, list):
        raise AckError("ack rejected must be a list")
    st = d.get("server_time")
    if st is not None and (not isinstance(st, int) or isinstance(st, bool)):
        raise AckError("ack server_time must be integer unix ms")
    return jid, upto, rejected, st
