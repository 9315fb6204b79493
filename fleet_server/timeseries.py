"""Time series: readings and gateway health ALSO written to InfluxDB.

How it fits: the SQL store (fleet_server.ingest) is the source of truth and
the only thing an ack depends on. After a commit, the ingest worker hands the
newly stored records and every accepted heartbeat to a `TimeSeriesSink`, a
best-effort copy for dashboards (docs/grafana/ummc-dashboard.json). Nothing
here may stall or fail ingest:

- `write_readings`, `write_health` and `write_health_message` turn their
  input into InfluxDB line protocol in the caller's thread (cheap string
  building, ms precision) and append it to a bounded in-memory queue. They
  never block on the network, never raise and never log a value.
- One background thread takes up to `batch_size` lines (or what arrived
  within `flush_interval_ms`) and writes them with influxdb-client's
  synchronous write API, inside its own thread so timeouts and retries stay
  under our control. A failed write (server down, slow, 5xx, 429, bad token)
  is retried with exponential backoff; the lines stay at the head of the
  queue until a write succeeds.
- When the queue is full, the OLDEST lines are dropped and counted
  (`points_dropped`): the newest state of the fleet matters most on a
  dashboard, and the SQL copy keeps everything. A batch the server refuses as
  bad data (HTTP 400/413/422) is not retried; it is counted in
  `points_rejected`.

Every point put on the queue ends in exactly one of: `points_written`,
`points_dropped`, `points_rejected`, or still `queued`.

What is written (field values are always floats, so a value sent once as an
integer and once as a decimal never makes a type conflict):
- `reading` (records of kind `reading`), at the gateway's receive time
  `rtime`; tags unit, gateway, region, province, type, addr, serial, model
  (each when known); one field per value, named as in the record
  (`systolic`, `glucose`, ...), plus `count` = 1 to count readings. Never a
  flag, patient or encounter reference.
- `gateway_health`, at the heartbeat's `ts` (tag source=heartbeat) or a
  journaled health record's `rtime` (source=journal, sent after an outage);
  tags unit, gateway; fields: every numeric heartbeat field (`heap_free`,
  `journal_depth`, `reconnects`, `rssi`, ...), `alarms` (how many are
  raised) and `count` = 1.
- `instrument_health`, at the heartbeat's `ts`; tags unit, gateway, addr;
  fields `battery` (%) and `last_seen_age_s`.
Records of kind `event` are not written.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal, cast

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fleet_server import protocol

if TYPE_CHECKING:
    from fleet_server.models import Gateway
    from fleet_server.protocol import Record

log = logging.getLogger(__name__)

_MS = cast(WritePrecision, WritePrecision.MS)  # a plain str in the client's stubs

READING = "reading"
GATEWAY_HEALTH = "gateway_health"
INSTRUMENT_HEALTH = "instrument_health"
# Field written as 1 on every reading and health point: sum() counts them.
COUNT_FIELD = "count"
# Heartbeat keys that are not metrics.
_NOT_METRICS = frozenset({"v", "ts", COUNT_FIELD})
# HTTP statuses meaning "this data is bad": retrying the same lines cannot help.
_REJECTED_STATUSES = frozenset({400, 413, 422})

# Line protocol escapes for keys and tag values (as influxdb-client's Point
# does); newlines, tabs and carriage returns cannot be escaped: they become spaces.
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\ ", "\r": r"\ ",
                             "\t": r"\ "})


class TimeSeriesConfig(BaseModel):
    """Where and how to write. Built from the fleet Settings' `influx_*`
    fields (`from_settings`); `url` unset means no time-series copy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str  # e.g. http://influx.example:8086
    token: str = Field(default="", repr=False)  # InfluxDB 1.8: "user:password"
    org: str = "ummc"  # InfluxDB 1.8: "-"
    bucket: str = "ummc"  # InfluxDB 1.8: "database/retention_policy"
    batch_size: int = Field(default=1000, ge=1, le=50_000)  # lines per write
    flush_interval_ms: int = Field(default=1000, ge=10)  # longest a line waits for a batch
    max_queue: int = Field(default=100_000, ge=1)  # lines held; past it the oldest go
    timeout_ms: int = Field(default=10_000, ge=100)  # per HTTP request
    retry_interval_ms: int = Field(default=1000, ge=10)  # first retry; doubles per failure
    max_retry_delay_ms: int = Field(default=30_000, ge=10)
    gzip: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @classmethod
    def from_settings(cls, settings: object) -> TimeSeriesConfig | None:
        """From `settings.influx_url`, `settings.influx_token`, ... (every
        field here, prefixed `influx_`, where the settings have it); None
        when `influx_url` is empty or absent."""
        if not getattr(settings, "influx_url", None):
            return None
        values = {name: getattr(settings, "influx_" + name) for name in cls.model_fields
                  if getattr(settings, "influx_" + name, None) is not None}
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ReadingRow:
    """What the sink needs of one stored record (no patient data)."""

    gateway: str
    unit: str
    kind: str  # reading | event | health
    type: str | None
    rtime: int  # gateway receive time, unix ms
    values: tuple[tuple[str, float], ...]
    addr: str | None = None
    serial: str | None = None
    model: str | None = None
    region: str | None = None
    province: str | None = None

    @classmethod
    def from_record(cls, rec: Record, gw: Gateway) -> ReadingRow:
        """A validated record and the registered gateway it was stored under
        (its unit gives the code, region and province)."""
        inst = rec.inst
        unit = gw.unit
        return cls(gateway=gw.gateway_id, unit=unit.code, kind=rec.kind, type=rec.type,
                   rtime=rec.rtime, values=tuple((n, float(v)) for n, v, _u in rec.values),
                   addr=inst.addr if inst else None, serial=inst.serial if inst else None,
                   model=inst.model if inst else None, region=unit.region,
                   province=unit.province)


# --- line protocol ----------------------------------------------------------------

def _key(v: str) -> str:
    """A tag key, tag value or field key, escaped. A trailing backslash would
    escape the separator after it: it is left out."""
    return v.translate(_ESCAPE_KEY).rstrip("\\")


def _number(v: object) -> float | None:
    """A finite float, or None for anything that is not a number (bools too)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def line(measurement: str, tags: Mapping[str, str | None],
         fields: Iterable[tuple[str, float]], at_ms: int) -> str:
    """One line of line protocol: `measurement` is one of ours (no escaping),
    tags sorted (the server's preferred order), empty tags left out, float
    fields, a millisecond timestamp."""
    escaped = ((_key(k), _key(v)) for k, v in sorted(tags.items()) if v)
    tag_text = "".join(f",{k}={v}" for k, v in escaped if k and v)
    field_text = ",".join(f"{k}={v!r}" for k, v in ((_key(k), v) for k, v in fields) if k)
    return f"{measurement}{tag_text} {field_text} {at_ms}"


def reading_line(row: ReadingRow) -> str | None:
    """The line for a stored record; None for kinds that are not written."""
    if row.kind == "reading":
        measurement = READING
        tags = {"unit": row.unit, "gateway": row.gateway, "region": row.region,
                "province": row.province, "type": row.type, "addr": row.addr,
                "serial": row.serial, "model": row.model}
    elif row.kind == "health":
        measurement = GATEWAY_HEALTH
        tags = {"unit": row.unit, "gateway": row.gateway, "region": row.region,
                "province": row.province, "source": "journal"}
    else:
        return None
    fields = {name: v for name, v in row.values
              if name != COUNT_FIELD and math.isfinite(v)}
    fields[COUNT_FIELD] = 1.0
    return line(measurement, tags, fields.items(), row.rtime)


def health_lines(gateway: str, unit: str, payload: Mapping[str, Any], at_ms: int, *,
                 region: str | None = None, province: str | None = None) -> list[str]:
    """The lines for one heartbeat (docs/protocol.md, `health`)."""
    tags = {"unit": unit, "gateway": gateway, "region": region, "province": province}
    fields: dict[str, float] = {}
    for key, value in payload.items():
        f = _number(value)
        if f is not None and key not in _NOT_METRICS:
            fields[key] = f
    alarms = payload.get("alarms")
    if isinstance(alarms, list):
        fields["alarms"] = float(len(alarms))
    fields[COUNT_FIELD] = 1.0
    lines = [line(GATEWAY_HEALTH, {**tags, "source": "heartbeat"}, fields.items(), at_ms)]
    instruments = payload.get("instruments")
    for inst in instruments if isinstance(instruments, list) else ():
        if not isinstance(inst, dict) or not isinstance(inst.get("addr"), str):
            continue
        inst_fields: dict[str, float] = {}
        battery = _number(inst.get("battery"))
        if battery is not None:
            inst_fields["battery"] = battery
        seen = inst.get("last_seen")
        if isinstance(seen, int) and not isinstance(seen, bool):
            inst_fields["last_seen_age_s"] = (at_ms - seen) / 1000.0
        if inst_fields:
            lines.append(line(INSTRUMENT_HEALTH, {**tags, "addr": inst["addr"]},
                              inst_fields.items(), at_ms))
    return lines


# --- the sink ---------------------------------------------------------------------

Outcome = Literal["written", "rejected", "failed"]


class TimeSeriesSink:
    """A bounded queue of lines and the thread that writes them. See the
    module header. Thread-safe; the write_* methods never block or raise."""

    def __init__(self, config: TimeSeriesConfig) -> None:
        self.config = config
        self.points_written = 0
        self.points_dropped = 0
        self.points_rejected = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self.input_errors = 0  # write_* input that could not be converted
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._head = 0  # number of lines ever removed from the queue's front
        self._inflight: tuple[int, int] | None = None  # [start, end) being written
        self._inflight_evicted = 0  # of those, dropped from the queue meanwhile
        self._closing = False
        self._closed = False
        self._close_deadline = math.inf
        self._client = InfluxDBClient(url=config.url, token=config.token, org=config.org,
                                      timeout=config.timeout_ms, enable_gzip=config.gzip)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._thread = threading.Thread(target=self._run, name="timeseries-writer",
                                        daemon=True)
        self._thread.start()
        log.info("time-series copy to %s (bucket %s) started", config.url, config.bucket)

    @classmethod
    def from_settings(cls, settings: object) -> TimeSeriesSink | None:
        """A running sink when `settings.influx_url` is set, else None."""
        config = TimeSeriesConfig.from_settings(settings)
        return cls(config) if config is not None else None

    # --- producers (any thread; never block, never raise) ---
    def write_readings(self, rows: Iterable[ReadingRow]) -> None:
        """Queue the records just committed to SQL (kinds reading and health)."""
        try:
            lines = [x for x in (reading_line(r) for r in rows) if x is not None]
        except Exception as e:  # a bug here must not reach ingest
            self._input_error(e)
            return
        self._put(lines)

    def write_health(self, gateway: str, unit: str, payload: Mapping[str, Any],
                     at: int | None = None, *, region: str | None = None,
                     province: str | None = None) -> None:
        """Queue one accepted heartbeat; `at` (unix ms) defaults to its `ts`."""
        try:
            ts = payload.get("ts") if at is None else at
            if not isinstance(ts, int) or isinstance(ts, bool):
                raise ValueError("heartbeat without an integer ts")
            lines = health_lines(gateway, unit, payload, ts, region=region,
                                 province=province)
        except Exception as e:
            self._input_error(e)
            return
        self._put(lines)

    def write_health_message(self, topic: str, payload: bytes) -> None:
        """`write_health` for a `health` message the ingest worker accepted."""
        try:
            t = protocol.parse_topic(topic, ("health",))
            doc = json.loads(payload)
            if isinstance(t, protocol.Rejection) or not isinstance(doc, dict):
                raise ValueError("not a health message")
        except Exception as e:
            self._input_error(e)
            return
        self.write_health(t.gateway, t.unit, doc)

    def _input_error(self, e: Exception) -> None:
        with self._cond:
            self.input_errors += 1
        # The type only: a message could quote a value.
        log.error("time-series copy: input not converted (%s)", type(e).__name__)

    def _put(self, lines: list[str]) -> None:
        if not lines:
            return
        with self._cond:
            if self._closed:  # nobody writes any more
                self.points_dropped += len(lines)
                return
            q = self._queue
            q.extend(lines)
            over = len(q) - self.config.max_queue
            if over > 0:
                self._evict(over)
            if len(q) >= self.config.batch_size:
                self._cond.notify()

    def _evict(self, n: int) -> None:
        """Drop the n oldest lines (lock held)."""
        for _ in range(n):
            self._queue.popleft()
        start, self._head = self._head, self._head + n
        if self._inflight is not None:
            lo, hi = self._inflight
            in_flight = max(0, min(hi, self._head) - max(lo, start))
            self._inflight_evicted += in_flight
            n -= in_flight  # counted once the write's fate is known
        self.points_dropped += n

    # --- state ---
    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def stats(self) -> dict[str, int | str | None]:
        with self._cond:
            return {"points_written": self.points_written,
                    "points_dropped": self.points_dropped,
                    "points_rejected": self.points_rejected,
                    "write_errors": self.write_errors, "last_error": self.last_error,
                    "queued": len(self._queue), "input_errors": self.input_errors}

    def close(self, timeout: float = 5.0) -> bool:
        """Flush what is queued (retrying until `timeout` s), stop the thread.
        Lines still unsent then are counted as dropped. True when all went."""
        with self._cond:
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
            self._cond.notify()
        # A request started just before the deadline may run its full timeout.
        self._thread.join(timeout + self.config.timeout_ms / 1000 + 1)
        with self._cond:
            self._closed = True
            left = len(self._queue)
            if left:
                self._evict(left)
                log.warning("time-series copy closed with %d points unsent (the SQL "
                            "store has them)", left)
        self._client.close()
        log.info("time-series copy stopped: %s", self.stats())
        return left == 0

    # --- the writer thread ---
    def _run(self) -> None:
        failures = 0  # consecutive failed attempts
        while True:
            try:
                batch = self._next_batch()
                if batch is None:
                    return
                start, lines = batch
                outcome = self._send(lines)
                self._settle(start, lines, outcome)
                if outcome == "written":
                    if failures:
                        log.info("time-series writes resumed after %d failed attempts",
                                 failures)
                    failures = 0
                    continue
                # Logged when a run of failures starts and when the server refuses
                # data; the counters and last_error tell the rest.
                level = logging.WARNING if outcome == "rejected" or not failures \
                    else logging.DEBUG
                log.log(level, "time-series write of %d points failed (%s); %s",
                        len(lines), self.last_error,
                        "not retried" if outcome == "rejected" else "retrying")
                if outcome == "failed":
                    failures += 1
                    self._backoff(failures)
            except Exception:  # never let the thread die; SQL has the data
                log.exception("time-series writer: unexpected error")
                self._backoff(1)

    def _next_batch(self) -> tuple[int, list[str]] | None:
        """Wait for a full batch, the flush interval, or close; claim the
        first lines of the queue. None: closing and nothing (more) to send."""
        cfg = self.config
        with self._cond:
            deadline = time.monotonic() + cfg.flush_interval_ms / 1000
            while not self._closing and len(self._queue) < cfg.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if self._queue:
                        break
                    deadline = time.monotonic() + cfg.flush_interval_ms / 1000
                    remaining = cfg.flush_interval_ms / 1000
                self._cond.wait(remaining)
            if self._closing and (not self._queue or time.monotonic() > self._close_deadline):
                return None
            lines = list(islice(self._queue, cfg.batch_size))
            self._inflight = (self._head, self._head + len(lines))
            self._inflight_evicted = 0
            return self._head, lines

    def _send(self, lines: list[str]) -> Outcome:
        try:
            self._write_api.write(self.config.bucket, self.config.org, record="\n".join(lines),
                                  write_precision=_MS)
            return "written"
        except ApiException as e:
            # Status and reason only: the body may quote the lines (values).
            error = f"HTTP {e.status} {e.reason}"
            outcome: Outcome = "rejected" if e.status in _REJECTED_STATUSES else "failed"
        except Exception as e:  # connection refused, timeouts, DNS, TLS...
            error = f"{type(e).__name__}: {_short(e)}"
            outcome = "failed"
        with self._cond:
            self.write_errors += 1
            self.last_error = error
        return outcome

    def _settle(self, start: int, lines: list[str], outcome: Outcome) -> None:
        """Account for the claimed lines and remove the sent ones from the queue."""
        with self._cond:
            end = start + len(lines)
            if outcome == "failed":
                # The claimed lines still queued are retried; evicted ones are lost.
                self.points_dropped += self._inflight_evicted
            else:
                done = max(0, end - self._head)
                for _ in range(done):
                    self._queue.popleft()
                self._head += done
                if outcome == "written":
                    self.points_written += len(lines)
                else:
                    self.points_rejected += len(lines)
            self._inflight = None
            self._inflight_evicted = 0

    def _backoff(self, failures: int) -> None:
        cfg = self.config
        delay = min(cfg.max_retry_delay_ms, cfg.retry_interval_ms * 2 ** min(failures - 1, 30))
        delay_s = delay / 1000 * random.uniform(0.5, 1.0)  # jitter: workers do not align
        until = time.monotonic() + delay_s
        with self._cond:
            # close() shortens the wait to its deadline (and wakes us).
            while (remaining := min(until, self._close_deadline) - time.monotonic()) > 0:
                self._cond.wait(remaining)


def _short(e: Exception) -> str:
    """The first line of an exception's text, bounded (urllib3 errors name the
    host and the cause; none of ours carry values)."""
    text = str(e).splitlines()[0] if str(e) else ""
    return text[:200]
