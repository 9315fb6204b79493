# The gateway's side of the wire contract (docs/protocol.md, v1): topic
# names, the journal payload of a reading, `data` batches, `state`/`birth`
# payloads, and parsing of the server's `ack`. Pure functions: the uplink does
# the I/O. Batches are built by joining the journaled JSON payloads, without
# decoding them again (cheap on a microcontroller).
import json

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
    gateway's receive time in unix ms (int)."""
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
    return _dumps(rec)


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def data_message(jid, base, sent, records):
    """A `data` payload from journal records [(seq, kind, payload bytes)]."""
    parts = []
    for seq, _kind, payload in records:
        # payload is a JSON object: splice "seq" in as its first member
        parts.append(b'{"seq":%d,' % seq + payload[1:])
    head = '{"v":%d,"jid":"%s","base":%d,"sent":%d,"records":[' % (VERSION, jid, base, sent)
    return head.encode() + b",".join(parts) + b"]}"


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
