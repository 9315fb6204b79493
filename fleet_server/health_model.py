"""The device-health model: what the fleet knows about each gateway's link and
each instrument's condition, and how available they were.

Theory of operation. A gateway's *link state* (`Gateway.link_state`, its
history in `gateway_state_changes`) is one of:

- `online`  — its retained `state` said so, or a heartbeat/birth arrived;
- `offline` — its `state` said so (the last will `connection_lost`, or a
  clean `shutdown`);
- `stale`   — nothing arrived for `heartbeat_missed` heartbeat intervals while
  the ingest worker was listening (`alerts.evaluate` decides this).

No false flaps when the broker or a worker restarts:
1. State messages are ordered by (`boot`, `ts`) from the payload: a copy older
   than the stored one (a retained message re-read by a restarted worker, a
   queue replayed late) is ignored, and the same retained state delivered
   again changes nothing.
2. Staleness is judged only after the worker has been subscribed for the
   whole timeout (the server cannot tell a silent gateway from its own deafness).
3. An offline spell shorter than `offline_grace_s` (a last will followed by
   `online` when a broker restarts) counts as up: it is not downtime and opens
   no alert.

Availability is measured against the unit's *planned working time*: its
working week (a `unit_schedules` row, or the settings' default: Mon-Fri
08:00-17:00, Africa/Casablanca) with exceptions (`unit_calendar_days`: a day
off is not downtime, an extra working day counts). A gateway's availability
for a day is its up time within that day's planned window over the window's
length; an instrument's is whether it was seen on each planned working day.

Two layers: pure functions (`now` passed in, rows or plain values in), then
the store helpers that ingest, the evaluator and the API call. Nothing here
reads or logs a reading's values: heartbeats carry device figures only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Annotated, Any, cast
from zoneinfo import ZoneInfo

from pydantic import Field, Strict, TypeAdapter, ValidationError
from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session

from fleet_server.models import (
    Gateway,
    GatewayStateChange,
    HealthSample,
    InstrumentHealth,
    InstrumentSample,
    UnitCalendarDay,
    UnitSchedule,
)
from fleet_server.protocol import MAX_BIGINT, Text64, UnixMs, from_unix_ms
from fleet_server.settings import Settings

ONLINE = "online"
OFFLINE = "offline"
STALE = "stale"
DOWN_STATES = frozenset({OFFLINE, STALE})


@dataclass(frozen=True)
class Thresholds:
    """The settings the health model and the alerts use (see settings.py)."""

    heartbeat_interval_s: int = 60
    heartbeat_missed: int = 3
    offline_grace_s: int = 180
    health_sample_interval_s: int = 600
    health_retention_days: int = 60
    offline_after_s: int = 1800
    backlog_age_s: int = 3600
    backlog_growth: int = 50
    backlog_window_s: int = 3600
    battery_pct: int = 20
    instrument_unseen_days: int = 7
    clock_drift_ms: int = 120_000
    calibration_within_days: int = 14
    errors_count: int = 5
    errors_window_s: int = 86_400

    @classmethod
    def of(cls, s: Settings) -> Thresholds:
        return cls(
            heartbeat_interval_s=s.heartbeat_interval_s, heartbeat_missed=s.heartbeat_missed,
            offline_grace_s=s.offline_grace_s,
            health_sample_interval_s=s.health_sample_interval_s,
            health_retention_days=s.health_retention_days,
            offline_after_s=s.alert_offline_after_s, backlog_age_s=s.alert_backlog_age_s,
            backlog_growth=s.alert_backlog_growth, backlog_window_s=s.alert_backlog_window_s,
            battery_pct=s.alert_battery_pct,
            instrument_unseen_days=s.alert_instrument_unseen_days,
            clock_drift_ms=s.alert_clock_drift_ms,
            calibration_within_days=s.alert_calibration_within_days,
            errors_count=s.alert_errors_count, errors_window_s=s.alert_errors_window_s)

    @property
    def stale_after(self) -> timedelta:
        return timedelta(seconds=self.heartbeat_interval_s * self.heartbeat_missed)

    @property
    def grace(self) -> timedelta:
        return timedelta(seconds=self.offline_grace_s)


# --- state messages -------------------------------------------------------------------


def state_is_older(*, stored_boot: int | None, stored_ts: int | None, boot: int | None,
                   ts: int | None) -> bool:
    """Whether a state message (boot, ts) is older than, or the same as, the
    stored one. A later boot is newer whatever the clocks say; within a boot
    the gateway's `ts` orders them. A last will carries neither: never older."""
    if boot is not None and stored_boot is not None and boot != stored_boot:
        return boot < stored_boot
    if ts is not None and stored_ts is not None:
        return ts <= stored_ts
    return False


@dataclass(frozen=True)
class StateDecision:
    store: bool  # update the gateway's stored state (last_state, reason, ts)
    link: str | None  # the link state to record, or None: unchanged
    at: datetime  # when it took effect


def decide_state(*, last_state: str | None, last_reason: str | None, state_ts: int | None,
                 boot_count: int | None, link_state: str | None,
                 link_state_at: datetime | None, state: str, reason: str | None,
                 ts: int | None, boot: int | None, retained: bool,
                 now: datetime) -> StateDecision:
    """What a `state` message does. Live messages take effect now (server
    time); a retained copy read at subscription takes effect at its own `ts`
    (no earlier than the last change, no later than now), or now. A copy of
    the stored message (same state, reason and ts: a QoS 1 re-delivery, e.g.
    the last will sent again after a broker restart) changes nothing, even
    if a heartbeat came in between."""
    at = now
    if retained and ts is not None:
        at = min(now, from_unix_ms(ts))
    if link_state_at is not None:
        at = max(at, link_state_at)
    same = state == last_state and reason == last_reason and ts == state_ts
    if same or state_is_older(stored_boot=boot_count, stored_ts=state_ts, boot=boot, ts=ts):
        first = link_state is None and state == last_state
        return StateDecision(False, state if first else None, at)
    if retained and state == last_state:
        # Re-read after a worker or broker restart: not news, but the link
        # state starts from it if none was recorded yet.
        return StateDecision(ts is not None, state if link_state is None else None, at)
    return StateDecision(True, state if link_state != state else None, at)


# --- heartbeat and birth facts (lenient: a bad field is dropped, not the heartbeat) ----

_Count = Annotated[int, Strict(), Field(ge=0, le=MAX_BIGINT)]
_Int = Annotated[int, Strict(), Field(ge=-MAX_BIGINT, le=MAX_BIGINT)]
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "ts": TypeAdapter(UnixMs),
    "count": TypeAdapter(_Count),
    "int": TypeAdapter(_Int),
    "rssi": TypeAdapter(Annotated[int, Strict(), Field(ge=-200, le=50)]),
    "mv": TypeAdapter(Annotated[int, Strict(), Field(ge=0, le=100_000)]),
    "battery": TypeAdapter(Annotated[int, Strict(), Field(ge=0, le=100)]),
    "alarms": TypeAdapter(Annotated[list[Text64], Field(max_length=32)]),
    "text": TypeAdapter(Text64),
    "errors": TypeAdapter(_Count | Annotated[dict[Text64, _Count], Field(max_length=64)]),
}
MAX_INSTRUMENTS = 64


def _field(doc: dict[str, Any], key: str, kind: str, path: str,
           problems: list[str]) -> Any:
    if key not in doc or doc[key] is None:
        return None
    try:
        return _ADAPTERS[kind].validate_python(doc[key])
    except ValidationError as e:
        err = e.errors(include_url=False, include_input=False)[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        problems.append(f"{path}{key}{where}: {err['msg']}")
        return None


@dataclass(frozen=True)
class InstrumentFacts:
    addr: str
    last_seen_ms: int | None = None
    battery: int | None = None
    drift_ms: int | None = None
    errors: int | None = None  # a counter; per-code counts are summed


@dataclass(frozen=True)
class HeartbeatFacts:
    ts: int | None = None
    journal_depth: int | None = None
    journal_oldest_age_s: int | None = None
    heap_free: int | None = None
    rssi: int | None = None
    supply_mv: int | None = None
    alarms: tuple[str, ...] = ()
    instruments: tuple[InstrumentFacts, ...] = ()
    # "path: rule" of each field dropped (never the value)
    problems: tuple[str, ...] = ()


def heartbeat_facts(doc: dict[str, Any]) -> HeartbeatFacts:
    """The fields of a `health` payload the model uses, each validated on its
    own: one bad field is dropped (and named in `problems`), the rest kept."""
    p: list[str] = []
    oldest = _field(doc, "journal_oldest_age_s", "count", "", p)
    if oldest is None:  # the name before docs/protocol.md settled on it
        oldest = _field(doc, "oldest_unacked_age", "count", "", p)
    instruments: list[InstrumentFacts] = []
    raw = doc.get("instruments")
    if raw is not None and not isinstance(raw, list):
        p.append("instruments: must be a list")
    elif raw:
        if len(raw) > MAX_INSTRUMENTS:
            p.append(f"instruments: more than {MAX_INSTRUMENTS}, the rest ignored")
        for i, entry in enumerate(raw[:MAX_INSTRUMENTS]):
            path = f"instruments[{i}]."
            if not isinstance(entry, dict):
                p.append(f"instruments[{i}]: must be an object")
                continue
            addr = _field(entry, "addr", "text", path, p)
            if addr is None:
                if "addr" not in entry:
                    p.append(f"{path}addr: required field is missing")
                continue
            errors = _field(entry, "errors", "errors", path, p)
            if isinstance(errors, dict):
                errors = sum(errors.values())
            instruments.append(InstrumentFacts(
                addr=addr, last_seen_ms=_field(entry, "last_seen", "ts", path, p),
                battery=_field(entry, "battery", "battery", path, p),
                drift_ms=_field(entry, "drift_ms", "int", path, p), errors=errors))
    return HeartbeatFacts(
        ts=_field(doc, "ts", "ts", "", p),
        journal_depth=_field(doc, "journal_depth", "count", "", p),
        journal_oldest_age_s=oldest,
        heap_free=_field(doc, "heap_free", "count", "", p),
        rssi=_field(doc, "rssi", "rssi", "", p),
        supply_mv=_field(doc, "supply_mv", "mv", "", p),
        alarms=tuple(_field(doc, "alarms", "alarms", "", p) or ()),
        instruments=tuple(instruments), problems=tuple(p))


@dataclass(frozen=True)
class PairedInstrument:
    addr: str
    type: str | None = None
    model: str | None = None


def birth_instruments(doc: dict[str, Any]) -> tuple[list[PairedInstrument] | None, list[str]]:
    """The instruments a `birth` lists as paired (None: the birth lists none),
    and the problems of the entries dropped."""
    raw = doc.get("instruments")
    if raw is None:
        return None, []
    if not isinstance(raw, list):
        return None, ["instruments: must be a list"]
    out: list[PairedInstrument] = []
    problems: list[str] = []
    for i, entry in enumerate(raw[:MAX_INSTRUMENTS]):
        if not isinstance(entry, dict):
            problems.append(f"instruments[{i}]: must be an object")
            continue
        path = f"instruments[{i}]."
        addr = _field(entry, "addr", "text", path, problems)
        if addr is None:
            continue
        out.append(PairedInstrument(addr, _field(entry, "type", "text", path, problems),
                                    _field(entry, "model", "text", path, problems)))
    return out, problems


# --- link state over time ---------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    at: datetime
    state: str
    reason: str | None = None


Interval = tuple[datetime, datetime]


def up_intervals(changes: Sequence[Change], start: datetime, end: datetime,
                 grace: timedelta, now: datetime | None = None) -> list[Interval]:
    """When the gateway was up within [start, end): online spells, joined
    across down spells shorter than `grace` (the last spell runs until `now`,
    default `end`; one still open and shorter than grace counts as up). Before
    its first change a gateway's state is unknown: down."""
    last = now or end
    spells: list[list[Any]] = []  # [from, to, up], consecutive alike merged
    ordered = sorted(changes, key=lambda c: c.at)
    for i, c in enumerate(ordered):
        to = ordered[i + 1].at if i + 1 < len(ordered) else max(last, c.at)
        is_up = c.state == ONLINE
        if spells and spells[-1][2] == is_up:
            spells[-1][1] = to
        else:
            spells.append([c.at, to, is_up])
    up: list[Interval] = []
    for i, (a, b, is_up) in enumerate(spells):
        flap = not is_up and i > 0 and (b - a) < grace  # a restart, not downtime
        if not (is_up or flap):
            continue
        a, b = max(a, start), min(b, end)
        if b <= a:
            continue
        if up and up[-1][1] >= a:
            up[-1] = (up[-1][0], max(up[-1][1], b))
        else:
            up.append((a, b))
    return up


def effective_state(link_state: str | None, link_state_at: datetime | None, now: datetime,
                    grace: timedelta) -> str | None:
    """The link state as people should see it: a down spell younger than the
    grace period still shows `online` (it may be a restart)."""
    if link_state in DOWN_STATES and link_state_at is not None and \
            now - link_state_at < grace:
        return ONLINE
    return link_state


# --- schedules and planned working time -----------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    weekdays: str = "1111100"  # Mon..Sun
    start_minute: int = 8 * 60
    end_minute: int = 17 * 60
    timezone: str = "Africa/Casablanca"
    # exceptions: day -> working (False: a day off; True: an extra working day)
    days: dict[date, bool] = field(default_factory=dict)

    @classmethod
    def default(cls, s: Settings) -> Schedule:
        return cls(weekdays=s.schedule_weekdays, start_minute=minutes(s.schedule_start),
                   end_minute=minutes(s.schedule_end), timezone=s.fleet_timezone)

    def works_on(self, day: date) -> bool:
        if day in self.days:
            return self.days[day]
        return self.weekdays[day.weekday()] == "1"

    def window(self, day: date) -> Interval | None:
        """The planned working window of a local day, in UTC; None: no work."""
        if not self.works_on(day):
            return None
        tz = ZoneInfo(self.timezone)
        midnight = datetime.combine(day, time(0), tzinfo=tz)
        start = (midnight + timedelta(minutes=self.start_minute)).astimezone(UTC)
        end = (midnight + timedelta(minutes=self.end_minute)).astimezone(UTC)
        return start, end

    def local_day(self, t: datetime) -> date:
        return t.astimezone(ZoneInfo(self.timezone)).date()


def minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def overlap(intervals: Iterable[Interval], a: datetime, b: datetime) -> float:
    """Seconds of the intervals within [a, b)."""
    total = 0.0
    for s, e in intervals:
        lo, hi = max(s, a), min(e, b)
        if hi > lo:
            total += (hi - lo).total_seconds()
    return total


def working_seconds(schedule: Schedule, start: datetime, end: datetime) -> float:
    """Planned working seconds between two instants."""
    if end <= start:
        return 0.0
    total = 0.0
    for day in days(schedule.local_day(start) - timedelta(days=1),
                    schedule.local_day(end) + timedelta(days=1)):
        w = schedule.window(day)
        if w is not None:
            total += overlap([w], start, end)
    return total


@dataclass(frozen=True)
class DayAvailability:
    day: date
    planned_s: float  # planned working seconds (so far, for today)
    up_s: float

    @property
    def ratio(self) -> float | None:
        return self.up_s / self.planned_s if self.planned_s > 0 else None


def availability(changes: Sequence[Change], schedule: Schedule, first: date, last: date,
                 now: datetime, grace: timedelta) -> list[DayAvailability]:
    """Per local day: planned working seconds (up to `now`) and up seconds
    within them. A day off has planned_s 0 (ratio None): not downtime."""
    out: list[DayAvailability] = []
    windows = {d: schedule.window(d) for d in days(first, last)}
    spans = [w for w in windows.values() if w is not None]
    up = up_intervals(changes, min(w[0] for w in spans), min(max(w[1] for w in spans), now),
                      grace, now) if spans else []
    for d, w in windows.items():
        if w is None or w[0] >= now:
            out.append(DayAvailability(d, 0.0, 0.0))
            continue
        a, b = w[0], min(w[1], now)
        out.append(DayAvailability(d, (b - a).total_seconds(), overlap(up, a, b)))
    return out


@dataclass(frozen=True)
class InstrumentDay:
    day: date
    planned: bool
    seen: bool


def instrument_days(seen: Iterable[datetime], schedule: Schedule, first: date, last: date,
                    known_from: datetime | None, now: datetime) -> list[InstrumentDay]:
    """Per local day: was it a planned working day (since the instrument was
    known, up to today), and was the instrument seen that day."""
    seen_days = {schedule.local_day(t) for t in seen}
    start = schedule.local_day(known_from) if known_from is not None else first
    today = schedule.local_day(now)
    return [InstrumentDay(d, schedule.works_on(d) and start <= d <= today, d in seen_days)
            for d in days(first, last)]


# --- trends and counts ------------------------------------------------------------------------


def battery_trend(points: Sequence[tuple[datetime, int]]) -> float | None:
    """Least-squares slope of battery percent per day; None under 2 points or
    under an hour of span."""
    if len(points) < 2:
        return None
    t0 = points[0][0]
    xs = [(t - t0).total_seconds() / 86_400 for t, _ in points]
    ys = [float(v) for _, v in points]
    if xs[-1] - xs[0] < 1 / 24:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def counter_increase(values: Sequence[int]) -> int:
    """How much a counter grew over a series, across resets (a reboot starts
    the gateway's counters again at 0)."""
    total = 0
    for prev, cur in pairwise(values):
        total += cur - prev if cur >= prev else cur
    return total


def firmware_counts(fws: Iterable[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for fw in fws:
        key = fw or "unknown"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


# --- store helpers (flush, never commit) --------------------------------------------------------


def set_link_state(session: Session, gw: Gateway, state: str, at: datetime,
                   reason: str | None) -> bool:
    """Record a change of the gateway's link state; False if it is the same."""
    if gw.link_state == state:
        return False
    if gw.link_state_at is not None and at < gw.link_state_at:
        at = gw.link_state_at  # keep the history ordered
    gw.link_state = state
    gw.link_state_at = at
    session.add(GatewayStateChange(gateway_pk=gw.id, state=state, at=at, reason=reason))
    return True


def _instrument(session: Session, gw: Gateway, addr: str, now: datetime) -> InstrumentHealth:
    row = session.get(InstrumentHealth, (gw.id, addr))
    if row is None:
        row = InstrumentHealth(gateway_pk=gw.id, addr=addr, active=True, first_known_at=now,
                               updated_at=now)
        session.add(row)
    return row


def record_birth(session: Session, gw: Gateway, doc: dict[str, Any],
                 now: datetime) -> list[str]:
    """Paired instruments from a birth: listed ones become active, unlisted
    ones inactive (unpaired). Returns the problems of entries dropped."""
    paired, problems = birth_instruments(doc)
    if paired is None:
        return problems
    listed = {p.addr for p in paired}
    for p in paired:
        row = _instrument(session, gw, p.addr, now)
        row.active = True
        row.type = p.type or row.type
        row.model = p.model or row.model
        row.updated_at = now
    for row in session.scalars(select(InstrumentHealth).where(
            InstrumentHealth.gateway_pk == gw.id, InstrumentHealth.active.is_(True))):
        if row.addr not in listed:
            row.active = False
            row.updated_at = now
    return problems


def record_heartbeat(session: Session, gw: Gateway, facts: HeartbeatFacts, now: datetime,
                     sample_every: timedelta) -> bool:
    """Apply a heartbeat's facts: instruments' latest figures, and a time series
    point when the gateway's last one is older than `sample_every`. Returns
    whether a sample was kept."""
    for f in facts.instruments:
        row = _instrument(session, gw, f.addr, now)
        row.active = True
        row.updated_at = now
        if f.last_seen_ms is not None:
            seen = min(from_unix_ms(f.last_seen_ms), now)
            if row.last_seen_at is None or seen > row.last_seen_at:
                row.last_seen_at = seen
        if f.battery is not None:
            row.battery, row.battery_at = f.battery, now
        if f.drift_ms is not None:
            row.drift_ms, row.drift_at = f.drift_ms, now
        if f.errors is not None:
            row.errors = f.errors
    last = session.scalar(select(func.max(HealthSample.at)).where(
        HealthSample.gateway_pk == gw.id))
    if last is not None and now - last < sample_every:
        return False
    offset = facts.ts - (now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1) \
        if facts.ts is not None else None
    session.add(HealthSample(
        gateway_pk=gw.id, at=now, journal_depth=facts.journal_depth,
        journal_oldest_age_s=facts.journal_oldest_age_s, heap_free=facts.heap_free,
        rssi=facts.rssi, supply_mv=facts.supply_mv, clock_offset_ms=offset,
        alarms=list(facts.alarms)))
    for f in facts.instruments:
        latest = session.get(InstrumentHealth, (gw.id, f.addr))
        session.add(InstrumentSample(
            gateway_pk=gw.id, addr=f.addr, at=now,
            last_seen_at=latest.last_seen_at if latest is not None else None,
            battery=f.battery, drift_ms=f.drift_ms, errors=f.errors))
    return True


def prune_samples(session: Session, now: datetime, retention_days: int) -> int:
    """Delete time series points older than the retention; the count deleted."""
    cutoff = now - timedelta(days=retention_days)
    n = 0
    for table in (HealthSample, InstrumentSample):
        result = cast(CursorResult[Any], session.execute(delete(table).where(table.at < cutoff)))
        n += result.rowcount or 0
    return n


def schedule_for(session: Session, unit_pk: int, default: Schedule, first: date,
                 last: date) -> Schedule:
    """The unit's schedule with its exceptions between two days."""
    row = session.get(UnitSchedule, unit_pk)
    base = default if row is None else Schedule(row.weekdays, row.start_minute,
                                                row.end_minute, row.timezone)
    exceptions = {d.day: d.working for d in session.scalars(select(UnitCalendarDay).where(
        UnitCalendarDay.unit_pk == unit_pk, UnitCalendarDay.day >= first,
        UnitCalendarDay.day <= last))}
    return Schedule(base.weekdays, base.start_minute, base.end_minute, base.timezone,
                    exceptions)


def changes_for(session: Session, gateway_pk: int, start: datetime,
                end: datetime) -> list[Change]:
    """The changes within [start, end) and the one in force at `start`."""
    before = session.scalars(select(GatewayStateChange).where(
        GatewayStateChange.gateway_pk == gateway_pk, GatewayStateChange.at < start)
        .order_by(GatewayStateChange.at.desc(), GatewayStateChange.id.desc()).limit(1)).all()
    within = session.scalars(select(GatewayStateChange).where(
        GatewayStateChange.gateway_pk == gateway_pk, GatewayStateChange.at >= start,
        GatewayStateChange.at < end).order_by(GatewayStateChange.at, GatewayStateChange.id))
    return [Change(c.at, c.state, c.reason) for c in [*before, *within]]


# --- reports (the API's fleet routes) ------------------------------------------------------------


def latest_samples(session: Session) -> dict[int, HealthSample]:
    """Each gateway's newest health sample."""
    newest = (select(HealthSample.gateway_pk, func.max(HealthSample.at).label("at"))
              .group_by(HealthSample.gateway_pk).subquery())
    rows = session.scalars(select(HealthSample).join(
        newest, (HealthSample.gateway_pk == newest.c.gateway_pk) &
        (HealthSample.at == newest.c.at)))
    return {s.gateway_pk: s for s in rows}


@dataclass(frozen=True)
class GatewayAvailability:
    gateway: Gateway
    days: list[DayAvailability]


@dataclass(frozen=True)
class InstrumentAvailability:
    gateway: Gateway
    instrument: InstrumentHealth
    days: list[InstrumentDay]


def availability_report(session: Session, gateways: Sequence[Gateway], *, default: Schedule,
                        first: date, last: date, now: datetime, grace: timedelta,
                        ) -> tuple[list[GatewayAvailability], list[InstrumentAvailability]]:
    """Availability of the gateways and their instruments per local day."""
    start = datetime.combine(first - timedelta(days=1), time(0), tzinfo=UTC)
    end = min(datetime.combine(last + timedelta(days=2), time(0), tzinfo=UTC), now)
    schedules: dict[int, Schedule] = {}
    out_gw: list[GatewayAvailability] = []
    for gw in gateways:
        if gw.unit_id not in schedules:
            schedules[gw.unit_id] = schedule_for(session, gw.unit_id, default, first, last)
        changes = changes_for(session, gw.id, start, end + grace)
        out_gw.append(GatewayAvailability(gw, availability(
            changes, schedules[gw.unit_id], first, last, now, grace)))
    by_pk = {gw.id: gw for gw in gateways}
    seen: dict[tuple[int, str], list[datetime]] = {}
    if by_pk:
        for gw_pk, addr, at in session.execute(
                select(InstrumentSample.gateway_pk, InstrumentSample.addr,
                       InstrumentSample.last_seen_at)
                .where(InstrumentSample.gateway_pk.in_(by_pk),
                       InstrumentSample.last_seen_at >= start,
                       InstrumentSample.last_seen_at < end).distinct()):
            if at is not None:
                seen.setdefault((gw_pk, addr), []).append(at)
    out_inst: list[InstrumentAvailability] = []
    if by_pk:
        for row in session.scalars(select(InstrumentHealth).where(
                InstrumentHealth.gateway_pk.in_(by_pk)).order_by(
                InstrumentHealth.gateway_pk, InstrumentHealth.addr)):
            gw = by_pk[row.gateway_pk]
            times = seen.get((row.gateway_pk, row.addr), [])
            if row.last_seen_at is not None:
                times = [*times, row.last_seen_at]
            out_inst.append(InstrumentAvailability(gw, row, instrument_days(
                times, schedules[gw.unit_id], first, last, row.first_known_at, now)))
    return out_gw, out_inst


def battery_series(session: Session, gateway_pk: int, addr: str,
                   since: datetime) -> list[tuple[datetime, int]]:
    rows = session.execute(select(InstrumentSample.at, InstrumentSample.battery).where(
        InstrumentSample.gateway_pk == gateway_pk, InstrumentSample.addr == addr,
        InstrumentSample.at >= since, InstrumentSample.battery.is_not(None))
        .order_by(InstrumentSample.at))
    return [(at, int(b)) for at, b in rows if b is not None]
