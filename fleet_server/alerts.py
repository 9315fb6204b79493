"""Alerts: conditions of the device-health model that need a person.

Lifecycle: `open` -> `acknowledged` (a user, with a note) -> `resolved`
(automatically when the condition clears, or by a user). One alert per
(kind, subject) is not resolved at a time (a partial unique index backs it,
so two evaluators racing cannot open it twice). A user who resolves an alert
whose condition still holds will see a new one at the next evaluation: to
silence an alert, acknowledge it.

`evaluate(session, now, settings)` is the evaluator: it marks gateways
stale (no message for `heartbeat_missed` intervals while the ingest worker
was listening), computes every condition, opens, refreshes and resolves
alerts, expires commands past their expiry, prunes the health time series,
and commits. `PeriodicEvaluator` runs it (and re-sends unpublished commands)
in `run` and `ingest`; tests call `evaluate` with their own `now`.

Kinds and subjects (thresholds in settings.py, `alert_*`):
- unit_offline        gateway:<id>       down for `alert_offline_after_s` of
                                         planned working time (nights and
                                         days off do not count)
- backlog_growing     gateway:<id>       oldest unacked record older than
                                         `alert_backlog_age_s`, or the journal
                                         grew by `alert_backlog_growth` records
                                         over `alert_backlog_window_s`
- journal_full        gateway:<id>       the heartbeat raises `journal_full`
- clock_drift         gateway:<id>       heartbeat ts - receive time, or
                      instrument:<id>/<addr>  the instrument's `drift_ms`,
                                         beyond `alert_clock_drift_ms`
- battery_low         instrument:<id>/<addr>  battery <= `alert_battery_pct`
- instrument_not_seen instrument:<id>/<addr>  not seen for
                                         `alert_instrument_unseen_days`
                                         planned working days (paired ones)
- repeated_instrument_errors instrument:<id>/<addr>  its error counter grew
                                         by `alert_errors_count` within
                                         `alert_errors_window_s`
- calibration_due     instrument:<key>   calibration or validation due within
                                         `alert_calibration_within_days`
                                         (the registry's instruments table;
                                         skipped while it does not exist)

Details carry device figures (battery percent, seconds, counts), never a
reading's values.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, joinedload, sessionmaker

from fleet_server import commands, health_model
from fleet_server.health_model import (
    DOWN_STATES,
    ONLINE,
    STALE,
    Schedule,
    Thresholds,
    counter_increase,
    effective_state,
    set_link_state,
    working_seconds,
)
from fleet_server.models import (
    Alert,
    AlertStatus,
    Gateway,
    HealthSample,
    InstrumentHealth,
    InstrumentSample,
    User,
)
from fleet_server.settings import Settings

log = logging.getLogger(__name__)

KINDS = ("unit_offline", "backlog_growing", "journal_full", "clock_drift", "battery_low",
         "instrument_not_seen", "repeated_instrument_errors", "calibration_due")
ACTIVE = (AlertStatus.open.value, AlertStatus.acknowledged.value)
# The evaluator's default idea of "listening since": always (tests, one-shot runs).
ALWAYS = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Condition:
    kind: str
    subject: str
    detail: str
    severity: str = "warning"  # warning | critical
    gateway_pk: int | None = None
    instrument: str | None = None


# kind -> provider of conditions; None from a provider: not evaluated this
# time (its open alerts are left as they are). The registry may register its
# own `calibration_due` here; otherwise the built-in one below is used.
Provider = Callable[[Session, datetime, Thresholds], list[Condition] | None]
PROVIDERS: dict[str, Provider] = {}


def register_condition(kind: str, provider: Provider) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind {kind}")
    PROVIDERS[kind] = provider


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def gateway_subject(gw: Gateway) -> str:
    return f"gateway:{gw.gateway_id}"


def instrument_subject(gw: Gateway, addr: str) -> str:
    return f"instrument:{gw.gateway_id}/{addr}"


# --- conditions ---------------------------------------------------------------------------


@dataclass
class _Fleet:
    """What one evaluation reads once."""

    gateways: list[Gateway]
    schedules: dict[int, Schedule]  # unit pk -> schedule (with exceptions)
    instruments: list[InstrumentHealth] = field(default_factory=list)


def _gateway_conditions(session: Session, fleet: _Fleet, now: datetime,
                        th: Thresholds) -> list[Condition]:
    out: list[Condition] = []
    latest = _latest_samples(session, now, th)
    for gw in fleet.gateways:
        subject = gateway_subject(gw)
        name = f"{gw.unit.code} {gw.gateway_id}"
        state = effective_state(gw.link_state, gw.link_state_at, now, th.grace)
        if state in DOWN_STATES and gw.link_state_at is not None:
            worked = working_seconds(fleet.schedules[gw.unit_id], gw.link_state_at, now)
            if worked >= max(th.offline_after_s, 1):
                why = "no heartbeat" if state == STALE else (gw.last_state_reason or "offline")
                out.append(Condition(
                    "unit_offline", subject, f"{name} {state} since {_iso(gw.link_state_at)} "
                    f"({why}); {int(worked // 60)} min of planned working time",
                    "critical", gw.id))
        health = gw.last_health or {}
        alarms = health.get("alarms")
        if isinstance(alarms, list) and "journal_full" in alarms:
            out.append(Condition("journal_full", subject, f"{name}: the journal is full; "
                                 "instruments keep their records until it drains",
                                 "critical", gw.id))
        samples = latest.get(gw.id, [])
        backlog = _backlog(samples, th)
        if backlog:
            out.append(Condition("backlog_growing", subject, f"{name}: {backlog}",
                                 "warning", gw.id))
        if samples and samples[-1].clock_offset_ms is not None and \
                abs(samples[-1].clock_offset_ms) >= th.clock_drift_ms:
            out.append(Condition(
                "clock_drift", subject, f"{name}: gateway clock off by "
                f"{samples[-1].clock_offset_ms / 1000:+.0f} s at {_iso(samples[-1].at)}",
                "warning", gw.id))
    return out


def _latest_samples(session: Session, now: datetime,
                    th: Thresholds) -> dict[int, list[HealthSample]]:
    """Health samples of the last two backlog windows, per gateway, oldest first."""
    since = now - timedelta(seconds=2 * th.backlog_window_s + th.health_sample_interval_s)
    out: dict[int, list[HealthSample]] = {}
    for s in session.scalars(select(HealthSample).where(HealthSample.at >= since)
                             .order_by(HealthSample.at, HealthSample.id)):
        out.setdefault(s.gateway_pk, []).append(s)
    return out


def _backlog(samples: list[HealthSample], th: Thresholds) -> str | None:
    if not samples:
        return None
    last = samples[-1]
    if last.journal_oldest_age_s is not None and last.journal_oldest_age_s >= th.backlog_age_s:
        return (f"oldest unacknowledged record is {last.journal_oldest_age_s // 60} min old "
                f"({last.journal_depth} records waiting)")
    window = timedelta(seconds=th.backlog_window_s)
    ref = [s for s in samples if last.at - 2 * window <= s.at <= last.at - window]
    if ref and last.journal_depth is not None and ref[-1].journal_depth is not None:
        grew = last.journal_depth - ref[-1].journal_depth
        if grew >= th.backlog_growth:
            minutes = int((last.at - ref[-1].at).total_seconds() // 60)
            return f"journal grew by {grew} records in {minutes} min to {last.journal_depth}"
    return None


def _instrument_conditions(session: Session, fleet: _Fleet, now: datetime,
                           th: Thresholds) -> list[Condition]:
    out: list[Condition] = []
    gateways = {g.id: g for g in fleet.gateways}
    newest_by_addr: dict[str, datetime] = {}
    for row in fleet.instruments:
        if row.last_seen_at is not None:
            prev = newest_by_addr.get(row.addr)
            newest_by_addr[row.addr] = max(prev, row.last_seen_at) if prev else row.last_seen_at
    errors = _error_series(session, fleet, now, th)
    for row in fleet.instruments:
        gw = gateways.get(row.gateway_pk)
        if gw is None or not row.active:
            continue
        subject = instrument_subject(gw, row.addr)
        name = f"{gw.unit.code} {gw.gateway_id} instrument {row.addr}" + \
            (f" ({row.model})" if row.model else "")
        if row.battery is not None and row.battery <= th.battery_pct:
            out.append(Condition("battery_low", subject, f"{name}: battery {row.battery} %",
                                 "critical" if row.battery <= th.battery_pct // 2 else "warning",
                                 gw.id, row.addr))
        if row.drift_ms is not None and abs(row.drift_ms) >= th.clock_drift_ms:
            out.append(Condition("clock_drift", subject, f"{name}: clock off by "
                                 f"{row.drift_ms / 1000:+.0f} s", "warning", gw.id, row.addr))
        last = row.last_seen_at or row.first_known_at
        elsewhere = newest_by_addr.get(row.addr)
        if elsewhere is not None and elsewhere > last:
            last = elsewhere  # seen since at another gateway: it moved
        missed = _working_days_between(fleet.schedules[gw.unit_id], last, now)
        if missed >= th.instrument_unseen_days:
            seen = f"last seen {_iso(last)}" if row.last_seen_at else \
                f"never seen since {_iso(row.first_known_at)}"
            out.append(Condition("instrument_not_seen", subject,
                                 f"{name}: {seen} ({missed} working days)", "warning",
                                 gw.id, row.addr))
        series = errors.get((row.gateway_pk, row.addr))
        if series:
            grew = counter_increase(series)
            if grew >= th.errors_count:
                out.append(Condition(
                    "repeated_instrument_errors", subject, f"{name}: {grew} errors in the "
                    f"last {th.errors_window_s // 3600} h", "warning", gw.id, row.addr))
    return out


def _working_days_between(schedule: Schedule, last: datetime, now: datetime) -> int:
    """Planned working days after the day of `last` up to and including today."""
    first = schedule.local_day(last) + timedelta(days=1)
    today = schedule.local_day(now)
    if today < first:
        return 0
    return sum(1 for d in health_model.days(first, today) if schedule.works_on(d))


def _error_series(session: Session, fleet: _Fleet, now: datetime,
                  th: Thresholds) -> dict[tuple[int, str], list[int]]:
    """Each instrument's error counter over the window (the last sample before
    it as the baseline, the latest heartbeat's value last)."""
    start = now - timedelta(seconds=th.errors_window_s)
    baseline_from = start - timedelta(seconds=th.health_sample_interval_s * 2)
    series: dict[tuple[int, str], list[int]] = {}
    for gw_pk, addr, at, value in session.execute(
            select(InstrumentSample.gateway_pk, InstrumentSample.addr, InstrumentSample.at,
                   InstrumentSample.errors)
            .where(InstrumentSample.at >= baseline_from, InstrumentSample.errors.is_not(None))
            .order_by(InstrumentSample.at, InstrumentSample.id)):
        key = (gw_pk, addr)
        if value is None:
            continue
        if at < start:
            series[key] = [value]  # the newest before the window is the baseline
        else:
            series.setdefault(key, []).append(value)
    for row in fleet.instruments:
        if row.errors is not None and (row.gateway_pk, row.addr) in series:
            series[(row.gateway_pk, row.addr)].append(row.errors)
    return series


def _calibration_conditions(session: Session, now: datetime,
                            th: Thresholds) -> list[Condition] | None:
    """From the registry's instruments (fleet_server.registry_models.Instrument):
    skipped (None) while that table or its calibration columns do not exist."""
    from fleet_server import registry_models

    table: Any = getattr(registry_models, "Instrument", None)
    needed = ("key", "model", "calibration_interval_days", "calibration_last_done",
              "validation_interval_days", "validation_last_done")
    if table is None or not all(hasattr(table, a) for a in needed):
        return None
    if not inspect(session.connection()).has_table(table.__tablename__):
        return None
    today = now.date()
    horizon = today + timedelta(days=th.calibration_within_days)
    out: list[Condition] = []
    for inst in session.scalars(select(table)):
        due: list[str] = []
        for what in ("calibration", "validation"):
            every: int | None = getattr(inst, f"{what}_interval_days")
            done: date | None = getattr(inst, f"{what}_last_done")
            if every and done is not None:
                when = done + timedelta(days=every)
                if when <= horizon:
                    late = (today - when).days
                    due.append(f"{what} due {when.isoformat()}" +
                               (f" (overdue by {late} days)" if late > 0 else ""))
        if due:
            name = f"instrument {inst.key}" + (f" ({inst.model})" if inst.model else "")
            overdue = any("overdue" in d for d in due)
            out.append(Condition("calibration_due", f"instrument:{inst.key}",
                                 f"{name}: " + "; ".join(due),
                                 "critical" if overdue else "warning", None, inst.key))
    return out


# --- the evaluator ------------------------------------------------------------------------------


@dataclass
class Evaluation:
    opened: list[tuple[str, str]] = field(default_factory=list)
    resolved: list[tuple[str, str]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # gateway ids marked stale
    commands_expired: int = 0
    samples_pruned: int = 0


def _load_fleet(session: Session, now: datetime, default: Schedule) -> _Fleet:
    gateways = list(session.scalars(select(Gateway).options(joinedload(Gateway.unit))
                                    .order_by(Gateway.gateway_id)))
    back = now.date() - timedelta(days=400)
    schedules = {gw.unit_id: health_model.schedule_for(session, gw.unit_id, default, back,
                                                       now.date() + timedelta(days=1))
                 for gw in gateways}
    instruments = list(session.scalars(select(InstrumentHealth)))
    return _Fleet(gateways, schedules, instruments)


def mark_stale(session: Session, gateways: list[Gateway], now: datetime, th: Thresholds,
               listening_since: datetime | None) -> list[str]:
    """Gateways online but silent for the timeout become stale (only when the
    worker has listened for the whole timeout itself)."""
    if listening_since is None or now - listening_since < th.stale_after:
        return []
    out = []
    for gw in gateways:
        ref = gw.last_seen_at or gw.link_state_at
        if gw.link_state == ONLINE and ref is not None and now - ref >= th.stale_after:
            set_link_state(session, gw, STALE, max(ref, listening_since), "heartbeat_timeout")
            out.append(gw.gateway_id)
    return out


def evaluate(session: Session, now: datetime, settings: Settings | None = None, *,
             listening_since: datetime | None = ALWAYS) -> Evaluation:
    """One evaluation (see the module header); commits."""
    th = Thresholds.of(settings) if settings is not None else Thresholds()
    default = Schedule.default(settings) if settings is not None else Schedule()
    result = Evaluation()
    fleet = _load_fleet(session, now, default)
    result.stale = mark_stale(session, fleet.gateways, now, th, listening_since)
    session.flush()

    found: dict[str, list[Condition]] = {
        "gateway": _gateway_conditions(session, fleet, now, th),
        "instrument": _instrument_conditions(session, fleet, now, th)}
    evaluated = set(KINDS) - {"calibration_due"} - set(PROVIDERS)
    for kind, provider in {"calibration_due": _calibration_conditions, **PROVIDERS}.items():
        extra = provider(session, now, th)
        if extra is not None:
            evaluated.add(kind)
            found[kind] = extra
    conditions = {(c.kind, c.subject): c for group in found.values() for c in group}

    active = {(a.kind, a.subject): a for a in session.scalars(
        select(Alert).where(Alert.status.in_(ACTIVE)))}
    for key, c in conditions.items():
        alert = active.get(key)
        if alert is not None:
            alert.detail, alert.severity, alert.updated_at = c.detail, c.severity, now
            continue
        try:
            with session.begin_nested():
                session.add(Alert(kind=c.kind, subject=c.subject, gateway_pk=c.gateway_pk,
                                  instrument=c.instrument, status=AlertStatus.open.value,
                                  severity=c.severity, detail=c.detail, opened_at=now,
                                  updated_at=now))
            result.opened.append(key)
        except IntegrityError:  # another evaluator opened it first
            continue
    for key, alert in active.items():
        if key[0] in evaluated and key not in conditions:
            alert.status = AlertStatus.resolved.value
            alert.resolved_at = now
            alert.resolved_by = None
            alert.resolve_note = "condition cleared"
            alert.updated_at = now
            result.resolved.append(key)

    result.commands_expired = commands.expire_pending(session, now)
    result.samples_pruned = health_model.prune_samples(session, now, th.health_retention_days)
    session.commit()
    for kind, subject in result.opened:
        log.warning("alert opened: %s %s", kind, subject)
    for kind, subject in result.resolved:
        log.info("alert resolved: %s %s (condition cleared)", kind, subject)
    return result


# --- people acting on alerts -------------------------------------------------------------------


class AlertStateError(Exception):
    """The alert's status does not allow the action (e.g. it is resolved)."""


def acknowledge(session: Session, alert: Alert, user: User, note: str | None,
                now: datetime) -> Alert:
    if alert.status == AlertStatus.resolved.value:
        raise AlertStateError(f"alert {alert.id} is resolved")
    alert.status = AlertStatus.acknowledged.value
    alert.acknowledged_at = now
    alert.acknowledged_by = user.username
    alert.ack_note = note
    return alert


def resolve(session: Session, alert: Alert, user: User, note: str | None,
            now: datetime) -> Alert:
    if alert.status == AlertStatus.resolved.value:
        raise AlertStateError(f"alert {alert.id} is already resolved")
    alert.status = AlertStatus.resolved.value
    alert.resolved_at = now
    alert.resolved_by = user.username
    alert.resolve_note = note
    alert.updated_at = now
    return alert


def list_alerts(session: Session, *, status: str | None = None, kind: str | None = None,
                gateway: str | None = None, limit: int = 100) -> list[Alert]:
    """Newest first; status `active` = open or acknowledged."""
    q = select(Alert).options(joinedload(Alert.gateway).joinedload(Gateway.unit))
    if status == "active":
        q = q.where(Alert.status.in_(ACTIVE))
    elif status is not None:
        q = q.where(Alert.status == status)
    if kind is not None:
        q = q.where(Alert.kind == kind)
    if gateway is not None:
        q = q.join(Alert.gateway).where(Gateway.gateway_id == gateway)
    return list(session.scalars(q.order_by(Alert.opened_at.desc(), Alert.id.desc())
                                .limit(limit)))


# --- the periodic runner ------------------------------------------------------------------------


class PeriodicEvaluator:
    """Runs `evaluate` and the command outbox every `evaluate_interval_s` in a
    thread. `listening` says since when the ingest worker in the same process
    has been subscribed (None: it is not)."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], *,
                 listening: Callable[[], datetime | None] = lambda: ALWAYS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.sessions = sessions
        self.listening = listening
        self.clock = clock
        self.runs = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> Evaluation | None:
        try:
            with self.sessions() as session:
                result = evaluate(session, self.clock(), self.settings,
                                  listening_since=self.listening())
            commands.publish_outbox(self.sessions, self.settings, self.clock())
            self.runs += 1
            return result
        except (OperationalError, IntegrityError) as e:
            self.errors += 1
            log.warning("alert evaluation failed (%s); next round in %.0f s",
                        type(e).__name__, self.settings.evaluate_interval_s)
        except Exception:
            self.errors += 1
            log.exception("alert evaluation failed")
        return None

    def start(self) -> None:
        if self.settings.evaluate_interval_s <= 0:
            return
        self._thread = threading.Thread(target=self._loop, name="alerts", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.evaluate_interval_s):
            self.run_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
