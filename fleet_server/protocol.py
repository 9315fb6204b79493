"""The server's side of the wire contract (docs/protocol.md, v1). No I/O.

Theory of operation: the fleet server never trusts a payload it has not
validated. A `data` message is checked in layers, and the first layer that
fails decides the message-level rejection reason:

    topic (bad_topic) -> [registry: unknown_gateway, in ingest] ->
    size (too_large) -> UTF-8 JSON (malformed_json) -> envelope
    (unsupported_version, bad_envelope, too_large for > 256 records)

Then each record is validated on its own (`validate_record`): a bad record
becomes an `invalid_record` with a detail naming the field, in the form
`records[0].values[0][1]: must be a finite number`, and never blocks the
good records beside it. Details carry field paths and rules, never the
offending value: they are logged, and values may be medical data.

Times on the wire are integer unix milliseconds (UTC); `itime` is the
instrument's own clock as 6 integer parts, 0 = unknown.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import math
import re
import sys
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StringConstraints,
    ValidationError,
)

VERSION = 1
ROOT = "ummc/v1"
ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
_ID = re.compile(ID_PATTERN)
_JID = re.compile(r"^[0-9a-fA-F]{8}$")

STATUS_LEAVES = ("state", "birth", "health")
INGEST_LEAVES = ("data", *STATUS_LEAVES)

MAX_PAYLOAD_BYTES = 65_536
MAX_RECORDS = 256
MAX_REJECTED_LISTED = 64
MAX_BIGINT = 2**63 - 1
# 9999-12-31T23:59:59.999Z: the last millisecond a datetime can hold.
MAX_UNIX_MS = 253_402_300_799_999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Reason(enum.StrEnum):
    """Rejection reasons (docs/protocol.md, "Rejections")."""

    bad_topic = "bad_topic"
    unknown_gateway = "unknown_gateway"
    too_large = "too_large"
    malformed_json = "malformed_json"
    bad_envelope = "bad_envelope"
    unsupported_version = "unsupported_version"
    invalid_record = "invalid_record"
    duplicate_conflict = "duplicate_conflict"
    # a cmd/result whose id is no command sent to that gateway (or whose op differs)
    unknown_command = "unknown_command"


MESSAGE_REASONS = frozenset({Reason.bad_topic, Reason.unknown_gateway, Reason.too_large,
                             Reason.malformed_json, Reason.bad_envelope,
                             Reason.unsupported_version, Reason.unknown_command})
RECORD_REASONS = frozenset({Reason.invalid_record, Reason.duplicate_conflict})


@dataclass(frozen=True)
class Rejection:
    """Why a whole message was not accepted; `detail` names the field."""

    reason: Reason
    detail: str


# --- topics ------------------------------------------------------------------

@dataclass(frozen=True)
class Topic:
    unit: str
    gateway: str
    leaf: str

    def sibling(self, leaf: str) -> str:
        return topic(self.unit, self.gateway, leaf)


def topic(unit: str, gateway: str, leaf: str) -> str:
    return f"{ROOT}/{unit}/{gateway}/{leaf}"


def parse_topic(name: str, leaves: tuple[str, ...] = INGEST_LEAVES) -> Topic | Rejection:
    parts = name.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != ROOT:
        return Rejection(Reason.bad_topic, f"topic: not {ROOT}/<unit>/<gateway>/<leaf>")
    unit, gateway, leaf = parts[2], parts[3], parts[4]
    if not _ID.match(unit):
        return Rejection(Reason.bad_topic, "topic: unit id must match " + ID_PATTERN)
    if not _ID.match(gateway):
        return Rejection(Reason.bad_topic, "topic: gateway id must match " + ID_PATTERN)
    if leaf not in leaves:
        return Rejection(Reason.bad_topic, f"topic: leaf must be one of {', '.join(leaves)}")
    return Topic(unit, gateway, leaf)


# --- value rules per reading type ---------------------------------------------

_PRESSURE = frozenset({"mm[Hg]", "kPa"})
_PULSE = frozenset({"/min"})

# type -> value name -> allowed UCUM units (docs/protocol.md, `values`).
VALUE_UNITS: dict[str, dict[str, frozenset[str]]] = {
    "blood_pressure": {"systolic": _PRESSURE, "diastolic": _PRESSURE,
                       "mean_arterial": _PRESSURE, "pulse_rate": _PULSE},
    "glucose": {"glucose": frozenset({"mg/dL", "mmol/L"})},
    "temperature": {"temperature": frozenset({"Cel", "[degF]"})},
    "spo2": {"spo2": frozenset({"%"}), "pulse_rate": _PULSE},
    "weight": {"weight": frozenset({"kg", "[lb_av]"}), "bmi": frozenset({"kg/m2"}),
               "height": frozenset({"m", "[in_i]"})},
}
# Values a reading of the type must carry, unless the gateway flagged it
# `value_missing:<name>` (the instrument reported NaN/NRes).
REQUIRED_VALUES: dict[str, tuple[str, ...]] = {
    "blood_pressure": ("systolic", "diastolic"),
    "glucose": ("glucose",),
    "temperature": ("temperature",),
    "spo2": ("spo2",),
    "weight": ("weight",),
}
# Types the server stores without per-name rules (values still checked for shape).
FREE_TYPES = frozenset({"ecg_strip"})
READING_TYPES = frozenset(VALUE_UNITS) | FREE_TYPES


# --- record model ------------------------------------------------------------

def _number(v: object) -> int | float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("must be a number")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError("must be a finite number")
    if isinstance(v, int) and abs(v) > MAX_BIGINT:
        raise ValueError("number out of range")
    return v


def _text(s: str) -> str:
    # JSON allows both, neither database stores them: PostgreSQL refuses NUL in
    # text and JSONB, and a lone surrogate cannot be encoded to UTF-8 at all.
    if "\x00" in s:
        raise ValueError("must not contain NUL characters")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return s


def bad_text_path(doc: Any, path: str = "") -> str | None:
    """The path of the first string (or key) in a JSON document that `_text`
    refuses, or None: for documents stored whole (birth, health)."""
    if isinstance(doc, str):
        try:
            _text(doc)
        except ValueError:
            return path or "message"
    elif isinstance(doc, dict):
        for key, value in doc.items():
            bad = bad_text_path(key, path) or bad_text_path(value, f"{path}.{key}".lstrip("."))
            if bad is not None:
                return bad
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            bad = bad_text_path(value, f"{path}[{i}]")
            if bad is not None:
                return bad
    return None


Number = Annotated[int | float, PlainValidator(_number)]
Text64 = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=64),
                   AfterValidator(_text)]
Name = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=32),
                 AfterValidator(_text)]
UcumUnit = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=16),
                     AfterValidator(_text)]
Flag = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=64),
                 AfterValidator(_text)]
TypeName = Annotated[str, Strict(), StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Seq = Annotated[int, Strict(), Field(ge=1, le=MAX_BIGINT)]
UnixMs = Annotated[int, Strict(), Field(ge=0, le=MAX_UNIX_MS)]


# [year, month, day, hour, minute, second], 0 = unknown (60: a leap second)
_Year = Annotated[int, Strict(), Field(ge=0, le=9999)]
_Month = Annotated[int, Strict(), Field(ge=0, le=12)]
_Day = Annotated[int, Strict(), Field(ge=0, le=31)]
_Hour = Annotated[int, Strict(), Field(ge=0, le=23)]
_Minute = Annotated[int, Strict(), Field(ge=0, le=59)]
_Second = Annotated[int, Strict(), Field(ge=0, le=60)]
ITime = tuple[_Year, _Month, _Day, _Hour, _Minute, _Second]


class Instrument(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    addr: Text64
    model: Text64 | None = None
    serial: Text64 | None = None
    mfr: Text64 | None = None

    @property
    def key(self) -> str:
        """The instrument's identity for its own record numbers."""
        return self.serial or self.addr


# --- ECG strips (docs/protocol.md, `data`, "ECG strips") ------------------------

# The gateway sends at most 2,500 samples (10 s at 250 Hz) in one record; the
# server takes strips up to this many (64 KB messages hold 16,384 in base64).
ECG_MAX_SAMPLES = 16_384
ECG_FS_MIN, ECG_FS_MAX = 50, 2000
ECG_MAX_PEAKS = 1024
ECG_MAX_GAPS = 64
_ECG_B64_MAX = 4 * ((2 * ECG_MAX_SAMPLES + 2) // 3)


def _scale(v: object) -> int | float:
    n = _number(v)
    if not 0 < n <= 1_000_000:
        raise ValueError("must be a number above 0 and at most 1000000")
    return n


_Count = Annotated[int, Strict(), Field(ge=0, le=MAX_BIGINT)]
_Index = Annotated[int, Strict(), Field(ge=0, le=ECG_MAX_SAMPLES)]


class EcgStrip(BaseModel):
    """The `ecg` member of an ecg_strip record: one lead's samples as base64
    of int16 little-endian; microvolts = offset_uv + scale_uv * sample."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    fs: Annotated[int, Strict(), Field(ge=ECG_FS_MIN, le=ECG_FS_MAX)]
    n: Annotated[int, Strict(), Field(ge=1, le=ECG_MAX_SAMPLES)]
    b64: Annotated[str, Strict(), StringConstraints(min_length=4, max_length=_ECG_B64_MAX)]
    unit: Literal["uV"] = "uV"
    scale_uv: Annotated[int | float, PlainValidator(_scale)] = 1
    offset_uv: Annotated[int, Strict(), Field(ge=-(10**9), le=10**9)] = 0
    lead: Annotated[str, Strict(), StringConstraints(min_length=1, max_length=16),
                    AfterValidator(_text)] | None = None
    channel: Annotated[int, Strict(), Field(ge=0, le=255)] | None = None
    gain: Annotated[int, Strict(), Field(ge=1, le=1_000_000)] | None = None
    r_peaks: Annotated[list[_Index], Field(max_length=ECG_MAX_PEAKS)] = []
    gaps: Annotated[list[tuple[_Index, Annotated[int, Strict(), Field(ge=1, le=MAX_BIGINT)]]],
                    Field(max_length=ECG_MAX_GAPS)] = []
    missing: _Count = 0
    railed: _Count = 0

    def raw(self) -> bytes:
        """The samples' bytes (int16 little-endian); ValueError if not base64."""
        try:
            return base64.b64decode(self.b64, validate=True)
        except binascii.Error:
            raise ValueError("must be base64 (RFC 4648 alphabet, padded)") from None

    def samples(self) -> array[int]:
        """The samples as int16, in this machine's byte order."""
        out = array("h", self.raw())
        if sys.byteorder != "little":
            out.byteswap()
        return out


def ecg_problem(ecg: EcgStrip) -> str | None:
    """Rules across the fields of an `ecg` member: a path below it and a
    message, or None."""
    try:
        raw = ecg.raw()
    except ValueError as e:
        return f"b64: {e}"
    if len(raw) != 2 * ecg.n:
        return f"b64: decodes to {len(raw)} bytes; n = {ecg.n} int16 samples are {2 * ecg.n}"
    last = -1
    for i, r in enumerate(ecg.r_peaks):
        if r >= ecg.n:
            return f"r_peaks[{i}]: must be a sample index below n"
        if r <= last:
            return f"r_peaks[{i}]: must be in ascending order"
        last = r
    for i, (at, _count) in enumerate(ecg.gaps):
        if at > ecg.n:
            return f"gaps[{i}][0]: must be a sample index at most n"
    return None


class Record(BaseModel):
    """One journal record of a `data` message, validated."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    seq: Seq
    kind: Literal["reading", "event", "health"]
    type: TypeName | None = None
    inst: Instrument | None = None
    iseq: Annotated[int, Strict(), Field(ge=0, le=MAX_BIGINT)] | None = None
    itime: ITime | None = None
    rtime: UnixMs
    values: Annotated[list[tuple[Name, Number, UcumUnit]], Field(max_length=256)] = []
    flags: Annotated[list[Flag], Field(max_length=64)] = []
    ecg: EcgStrip | None = None  # an ecg_strip's samples

    @property
    def received_at(self) -> datetime:
        return from_unix_ms(self.rtime)

    @property
    def itime_text(self) -> str | None:
        return itime_text(self.itime)

    def stored_ecg(self) -> dict[str, Any] | None:
        """The `ecg` member as the readings table keeps it (JSON), or None."""
        return self.ecg.model_dump(mode="json") if self.ecg is not None else None

    def content_hash(self) -> str:
        doc = self.model_dump(mode="json")
        if doc.get("ecg") is None:
            doc.pop("ecg", None)  # records without samples hash as before it existed
        raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class RecordError:
    """A record that failed validation: its seq when readable, and the detail."""

    seq: int | None
    detail: str


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _first_error(prefix: str, e: ValidationError) -> str:
    err = e.errors(include_url=False, include_input=False)[0]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "missing":
        msg = "required field is missing"
    return f"{_path(prefix, tuple(err['loc']))}: {msg}"


def readable_seq(raw: object) -> int | None:
    """The record's seq if it is a valid one, to file a rejected record under."""
    if isinstance(raw, dict):
        seq = raw.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool) and 1 <= seq <= MAX_BIGINT:
            return seq
    return None


def validate_record(raw: object, index: int) -> Record | RecordError:
    prefix = f"records[{index}]"
    seq = readable_seq(raw)
    if not isinstance(raw, dict):
        return RecordError(None, f"{prefix}: must be an object")
    try:
        rec = Record.model_validate(raw)
    except ValidationError as e:
        return RecordError(seq, _first_error(prefix, e))
    problem = _semantic_problem(rec)
    if problem:
        return RecordError(seq, f"{prefix}.{problem}")
    return rec


def _semantic_problem(rec: Record) -> str | None:
    """Rules across fields (per-type names and units); a path-and-message or None."""
    seen: set[str] = set()
    for i, (name, _value, _unit) in enumerate(rec.values):
        if name in seen:
            return f"values[{i}][0]: duplicate value name"
        seen.add(name)
    if rec.ecg is not None:
        if rec.kind != "reading" or rec.type != "ecg_strip":
            return "ecg: only an ecg_strip reading carries samples"
        problem = ecg_problem(rec.ecg)
        if problem:
            return f"ecg.{problem}"
    if rec.kind != "reading":
        return None
    if rec.type is None:
        return "type: required for a reading"
    if rec.type not in READING_TYPES:
        return f"type: unknown reading type (known: {', '.join(sorted(READING_TYPES))})"
    if rec.inst is None:
        return "inst: required for a reading"
    rules = VALUE_UNITS.get(rec.type)
    if rules is None:
        return None
    for i, (name, _value, unit) in enumerate(rec.values):
        allowed = rules.get(name)
        if allowed is None:
            return f"values[{i}][0]: not a value of {rec.type} (one of {', '.join(rules)})"
        if unit not in allowed:
            return f"values[{i}][2]: unit for {name} must be one of {', '.join(sorted(allowed))}"
    for name in REQUIRED_VALUES.get(rec.type, ()):
        if name not in seen and f"value_missing:{name}" not in rec.flags:
            return f"values: {name} is required for {rec.type} (or flag value_missing:{name})"
    return None


# --- the envelope ------------------------------------------------------------

@dataclass(frozen=True)
class Envelope:
    jid: str
    base: int
    sent: int | None
    records: list[Any]


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _json_object(payload: bytes) -> dict[str, Any] | Rejection:
    """The checks every payload passes first: size, UTF-8 JSON, an object, `v`."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection(Reason.too_large, f"payload: {len(payload)} bytes, over "
                                           f"{MAX_PAYLOAD_BYTES}")
    doc = _loads(payload)
    if isinstance(doc, Rejection):
        return doc
    if not isinstance(doc, dict):
        return Rejection(Reason.bad_envelope, "message: must be a JSON object")
    version = _check_version(doc)
    if version is not None:
        return version
    return doc


def parse_data(payload: bytes) -> Envelope | Rejection:
    """Size, JSON and envelope checks of a `data` payload (records unchecked)."""
    doc = _json_object(payload)
    if isinstance(doc, Rejection):
        return doc
    jid = doc.get("jid")
    if not isinstance(jid, str) or not _JID.match(jid):
        return Rejection(Reason.bad_envelope, "jid: must be 8 hex digits")
    base = doc.get("base")
    if not isinstance(base, int) or isinstance(base, bool) or not 1 <= base <= MAX_BIGINT:
        return Rejection(Reason.bad_envelope, "base: must be an integer >= 1")
    sent = doc.get("sent")
    if sent is not None and (not isinstance(sent, int) or isinstance(sent, bool)
                             or not 0 <= sent <= MAX_UNIX_MS):
        return Rejection(Reason.bad_envelope, "sent: must be unix milliseconds (integer)")
    records = doc.get("records")
    if not isinstance(records, list) or not records:
        return Rejection(Reason.bad_envelope, "records: must be a non-empty list")
    if len(records) > MAX_RECORDS:
        return Rejection(Reason.too_large, f"records: {len(records)} records, over "
                                           f"{MAX_RECORDS}")
    return Envelope(jid=jid, base=base, sent=sent, records=records)


def _loads(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as e:
        return Rejection(Reason.malformed_json, f"payload: not UTF-8 (byte {e.start})")
    except ValueError as e:
        # json's message names a position, never the content.
        return Rejection(Reason.malformed_json, f"payload: not JSON ({e})")
    except RecursionError:
        return Rejection(Reason.malformed_json, "payload: JSON nested too deeply")


def _check_version(doc: dict[str, Any]) -> Rejection | None:
    if "v" not in doc:
        return Rejection(Reason.bad_envelope, "v: required field is missing")
    v = doc["v"]
    if not _is_int(v):
        return Rejection(Reason.bad_envelope, "v: must be an integer")
    if v != VERSION:
        return Rejection(Reason.unsupported_version, f"v: version {v} is not supported "
                                                     f"(this server speaks {VERSION})")
    return None


# --- status messages: state, birth, health -------------------------------------

class StatePayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: Literal["online", "offline"]
    ts: UnixMs | None = None
    boot: Annotated[int, Strict(), Field(ge=0, le=MAX_BIGINT)] | None = None
    reason: Text64 | None = None


class BirthPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    fw: Annotated[str, Strict(), StringConstraints(min_length=1, max_length=32),
                  AfterValidator(_text)]
    boot: Annotated[int, Strict(), Field(ge=0, le=MAX_BIGINT)] | None = None
    ts: UnixMs | None = None


class HealthPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ts: UnixMs


STATUS_MODELS: dict[str, type[BaseModel]] = {
    "state": StatePayload, "birth": BirthPayload, "health": HealthPayload,
}


def parse_status(leaf: str, payload: bytes) -> tuple[BaseModel, dict[str, Any]] | Rejection:
    """(validated model, the whole JSON object) of a state/birth/health payload."""
    doc = _json_object(payload)
    if isinstance(doc, Rejection):
        return doc
    try:
        model = STATUS_MODELS[leaf].model_validate(doc)
    except ValidationError as e:
        return Rejection(Reason.bad_envelope, _first_error("", e).lstrip("."))
    bad = bad_text_path(doc)  # the document is stored whole
    if bad is not None:
        return Rejection(Reason.bad_envelope, f"{bad}: must be valid text (no NUL, no lone "
                                              "surrogates)")
    return model, doc


# --- commands: cmd (server -> gateway) and cmd/result (gateway -> server) ----------

CMD_LEAF = "cmd"
RESULT_LEAF = "cmd/result"
COMMAND_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
COMMAND_OPS = ("apply_config", "sync_now", "set_time", "reboot", "diagnostics")
# Error codes a gateway may answer (docs/protocol.md); others are kept as sent.
COMMAND_ERRORS = ("bad_command", "unknown_op", "bad_args", "expired", "rolled_back", "busy",
                  "failed")
MAX_DETAIL_CHARS = 2000


def parse_result_topic(name: str) -> Topic | Rejection:
    """`ummc/v1/<unit>/<gateway>/cmd/result` -> Topic(leaf 'cmd/result')."""
    if not name.endswith("/" + RESULT_LEAF):
        return Rejection(Reason.bad_topic, f"topic: not {ROOT}/<unit>/<gateway>/{RESULT_LEAF}")
    t = parse_topic(name.removesuffix("/result"), (CMD_LEAF,))
    if isinstance(t, Rejection):
        return t
    return Topic(t.unit, t.gateway, RESULT_LEAF)


class CommandResult(BaseModel):
    """A gateway's answer to one command (docs/protocol.md, `cmd/result`)."""

    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Strict(), StringConstraints(pattern=COMMAND_ID_PATTERN)]
    op: Name | None = None
    ok: Annotated[bool, Strict()]
    result: dict[str, Any] | None = None
    error: Annotated[str, Strict(), StringConstraints(min_length=1, max_length=32),
                     AfterValidator(_text)] | None = None
    detail: Annotated[str, Strict(), StringConstraints(max_length=MAX_DETAIL_CHARS),
                      AfterValidator(_text)] | None = None
    replay: Annotated[bool, Strict()] = False
    ts: UnixMs


def parse_command_result(payload: bytes) -> CommandResult | Rejection:
    doc = _json_object(payload)
    if isinstance(doc, Rejection):
        return doc
    try:
        res = CommandResult.model_validate(doc)
    except ValidationError as e:
        return Rejection(Reason.bad_envelope, _first_error("", e).lstrip("."))
    if not res.ok and res.error is None:
        return Rejection(Reason.bad_envelope, "error: required when ok is false")
    bad = bad_text_path(doc)  # the result object is stored whole
    if bad is not None:
        return Rejection(Reason.bad_envelope, f"{bad}: must be valid text (no NUL, no lone "
                                              "surrogates)")
    return res


def command_payload(*, id: str, op: str, args: dict[str, Any], ts: int,
                    expires: int | None) -> bytes:
    doc: dict[str, Any] = {"v": VERSION, "id": id, "op": op, "args": args, "ts": ts}
    if expires is not None:
        doc["expires"] = expires
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# --- the ack and times ---------------------------------------------------------

def ack_payload(*, jid: str, upto: int, rejected: list[int], server_time: int) -> bytes:
    return json.dumps({"v": VERSION, "jid": jid, "upto": upto,
                       "rejected": rejected[:MAX_REJECTED_LISTED],
                       "server_time": server_time}, separators=(",", ":")).encode()


def from_unix_ms(ms: int) -> datetime:
    """Exact (no float) conversion of unix milliseconds to an aware UTC datetime."""
    return _EPOCH + timedelta(milliseconds=ms)


def to_unix_ms(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(milliseconds=1)


def itime_text(parts: tuple[int, ...] | list[int] | None) -> str | None:
    """[2026, 11, 29, 8, 41, 59] -> '2026-11-29T08:41:59'; unknown parts stay 0."""
    if parts is None:
        return None
    y, mo, d, h, mi, s = parts
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"


def itime_parts(text: str | None) -> list[int] | None:
    """The inverse of itime_text (lossless)."""
    if text is None:
        return None
    date, time = text.split("T")
    return [int(p) for p in date.split("-")] + [int(p) for p in time.split(":")]
