"""The device-health model for people (fleet_server/health_model.py):

- GET /fleet/health        per gateway: state, last seen, firmware, backlog,
                           clock, alarms, and its instruments (battery, drift)
- GET /fleet/availability  per gateway and instrument per day, against the
                           units' planned working days
- GET /fleet/firmware      gateways per firmware version
- GET /fleet/battery       one instrument's battery series and trend
- GET/PUT /fleet/schedules/{unit}, PUT/DELETE /fleet/schedules/{unit}/days/{day}
                           a unit's working week and its days off
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator
from sqlalchemy import select

from fleet_server import crud, health_model, protocol
from fleet_server.api.deps import SessionDep, SettingsDep, allow, roles_note
from fleet_server.api.registry_common import invalid
from fleet_server.api.schemas import UtcTime
from fleet_server.health_model import Schedule, Thresholds
from fleet_server.models import (
    Gateway,
    InstrumentHealth,
    Role,
    Unit,
    UnitCalendarDay,
    UnitSchedule,
    User,
)
from fleet_server.protocol import ID_PATTERN

router = APIRouter(prefix="/fleet", tags=["fleet health"])

ROLES = (Role.admin, Role.logistics, Role.technician)
SCHEDULE_ROLES = (Role.admin, Role.logistics)
MAX_DAYS = 92
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2199, 12, 31)


def _day_in_range(d: date) -> date:
    if not FIRST_DAY <= d <= LAST_DAY:
        raise ValueError(f"must be a day from {FIRST_DAY} to {LAST_DAY}")
    return d


CalendarDay = Annotated[date, AfterValidator(_day_in_range)]


def plain_text(v: str) -> str:
    """Text both databases store: no NUL, no lone surrogates."""
    if protocol.bad_text_path(v) is not None:
        raise ValueError("must be valid text (no NUL, no lone surrogates)")
    return v


# --- models ------------------------------------------------------------------------------------


class InstrumentHealthPublic(BaseModel):
    addr: str
    type: str | None
    model: str | None
    active: bool = Field(description="paired (listed in the last birth) or seen since")
    first_known_at: UtcTime
    last_seen_at: UtcTime | None
    battery: int | None = Field(description="percent")
    battery_at: UtcTime | None
    drift_ms: int | None = Field(description="its clock minus the gateway's")
    errors: int | None = Field(description="error counter of the gateway since its boot")

    @classmethod
    def of(cls, r: InstrumentHealth) -> InstrumentHealthPublic:
        return cls(addr=r.addr, type=r.type, model=r.model, active=r.active,
                   first_known_at=r.first_known_at, last_seen_at=r.last_seen_at,
                   battery=r.battery, battery_at=r.battery_at, drift_ms=r.drift_ms,
                   errors=r.errors)


class GatewayHealthPublic(BaseModel):
    gateway: str
    unit: str
    state: str | None = Field(description="online | offline | stale (null: never heard "
                                          "from); a down spell within the grace period "
                                          "shows online")
    link_state: str | None = Field(description="the recorded state, without grace")
    state_since: UtcTime | None
    state_reason: str | None
    last_seen_at: UtcTime | None
    fw: str | None
    boot_count: int | None
    journal_depth: int | None
    journal_oldest_age_s: int | None
    clock_offset_ms: int | None = Field(description="heartbeat ts minus receive time, "
                                                    "last sample")
    alarms: list[str]
    instruments: list[InstrumentHealthPublic]


class DayPublic(BaseModel):
    date: date
    planned_s: int = Field(description="planned working seconds (up to now, today)")
    up_s: int
    availability: float | None = Field(description="up_s / planned_s; null on a day off")
    day_off: bool


class GatewayAvailabilityPublic(BaseModel):
    gateway: str
    unit: str
    planned_s: int
    up_s: int
    availability: float | None
    days: list[DayPublic]


class InstrumentDayPublic(BaseModel):
    date: date
    planned: bool = Field(description="a planned working day since the instrument was known")
    seen: bool


class InstrumentAvailabilityPublic(BaseModel):
    gateway: str
    unit: str
    addr: str
    model: str | None
    planned_days: int
    seen_days: int = Field(description="planned working days it was seen on")
    availability: float | None
    days: list[InstrumentDayPublic]


class AvailabilityPublic(BaseModel):
    from_: date = Field(alias="from")
    to: date
    gateways: list[GatewayAvailabilityPublic]
    instruments: list[InstrumentAvailabilityPublic]


class FirmwarePublic(BaseModel):
    fw: str = Field(description="the version from the gateway's birth; 'unknown' if none yet")
    count: int
    gateways: list[str]


class BatteryPointPublic(BaseModel):
    at: UtcTime
    battery: int


class BatteryPublic(BaseModel):
    gateway: str
    addr: str
    battery: int | None
    trend_pct_per_day: float | None = Field(description="least-squares slope over the series")
    days_to_threshold: float | None = Field(
        description="at this trend, days until the battery_low alert threshold")
    points: list[BatteryPointPublic]


HHMM = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"


class ScheduleBody(BaseModel):
    weekdays: str = Field(pattern=r"^[01]{7}$", description="Mon..Sun, 1 = working day",
                          examples=["1111100"])
    start: str = Field(pattern=HHMM, examples=["08:00"])
    end: str = Field(pattern=HHMM, examples=["17:00"])
    timezone: str = Field(default="Africa/Casablanca", max_length=64)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError("unknown time zone") from None
        return v

    @model_validator(mode="after")
    def _order(self) -> ScheduleBody:
        if health_model.minutes(self.end) <= health_model.minutes(self.start):
            raise ValueError("end must be after start")
        return self


class CalendarDayPublic(BaseModel):
    date: date
    working: bool = Field(description="false: a day off; true: an extra working day")
    note: str | None


class SchedulePublic(ScheduleBody):
    unit: str
    default: bool = Field(description="no schedule of its own: the fleet's default")
    days: list[CalendarDayPublic]


class CalendarDayBody(BaseModel):
    working: bool
    note: Annotated[str, Field(max_length=128), AfterValidator(plain_text)] | None = None


# --- routes ----------------------------------------------------------------------------------


def _thresholds(settings: SettingsDep) -> Thresholds:
    return Thresholds.of(settings)


def _gateways(session: SessionDep, unit: str | None, gateway: str | None) -> Sequence[Gateway]:
    rows = crud.list_gateways(session, unit=unit)
    return [g for g in rows if gateway is None or g.gateway_id == gateway]


UnitQ = Annotated[str | None, Query(pattern=ID_PATTERN, description="unit code")]
GatewayQ = Annotated[str | None, Query(pattern=ID_PATTERN, description="gateway id")]


@router.get("/health", response_model=list[GatewayHealthPublic], description=roles_note(*ROLES))
def fleet_health(session: SessionDep, settings: SettingsDep,
                 _user: Annotated[User, allow(*ROLES)], unit: UnitQ = None,
                 gateway: GatewayQ = None) -> list[GatewayHealthPublic]:
    now = datetime.now(UTC)
    th = _thresholds(settings)
    gateways = _gateways(session, unit, gateway)
    samples = health_model.latest_samples(session)
    instruments: dict[int, list[InstrumentHealth]] = {}
    for row in session.scalars(select(InstrumentHealth).order_by(InstrumentHealth.addr)):
        instruments.setdefault(row.gateway_pk, []).append(row)
    out = []
    for gw in gateways:
        facts = health_model.heartbeat_facts(gw.last_health or {})
        sample = samples.get(gw.id)
        out.append(GatewayHealthPublic(
            gateway=gw.gateway_id, unit=gw.unit.code,
            state=health_model.effective_state(gw.link_state, gw.link_state_at, now, th.grace),
            link_state=gw.link_state, state_since=gw.link_state_at,
            state_reason=gw.last_state_reason, last_seen_at=gw.last_seen_at, fw=gw.fw,
            boot_count=gw.boot_count, journal_depth=facts.journal_depth,
            journal_oldest_age_s=facts.journal_oldest_age_s,
            clock_offset_ms=sample.clock_offset_ms if sample else None,
            alarms=list(facts.alarms),
            instruments=[InstrumentHealthPublic.of(r) for r in instruments.get(gw.id, [])]))
    return out


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 4) if den > 0 else None


@router.get("/availability", response_model=AvailabilityPublic, response_model_by_alias=True,
            description=roles_note(*ROLES))
def fleet_availability(
    session: SessionDep, settings: SettingsDep, _user: Annotated[User, allow(*ROLES)],
    first: Annotated[date | None, Query(alias="from", description="first local day "
                                        "(default: 6 days before `to`)")] = None,
    last: Annotated[date | None, Query(alias="to", description="last local day "
                                       "(default: today)")] = None,
    unit: UnitQ = None, gateway: GatewayQ = None,
) -> AvailabilityPublic:
    """Gateways: up time within each day's planned working window. Instruments:
    seen or not on each planned working day since they were first known.
    Days off (the unit's week, or its calendar) count for neither."""
    now = datetime.now(UTC)
    default = Schedule.default(settings)
    last = last or default.local_day(now)
    first = first or last - timedelta(days=6)
    for name, day in (("from", first), ("to", last)):
        if not FIRST_DAY <= day <= LAST_DAY:
            raise invalid(name, f"must be a day from {FIRST_DAY} to {LAST_DAY}", "query")
    if first > last:
        raise invalid("from", "must not be after to", "query")
    if (last - first).days >= MAX_DAYS:
        raise invalid("to", f"must be at most {MAX_DAYS} days after from", "query")
    gws, insts = health_model.availability_report(
        session, _gateways(session, unit, gateway), default=default, first=first, last=last,
        now=now, grace=_thresholds(settings).grace)
    gateways = []
    for g in gws:
        planned = sum(d.planned_s for d in g.days)
        up = sum(d.up_s for d in g.days)
        gateways.append(GatewayAvailabilityPublic(
            gateway=g.gateway.gateway_id, unit=g.gateway.unit.code, planned_s=int(planned),
            up_s=int(up), availability=_ratio(up, planned),
            days=[DayPublic(date=d.day, planned_s=int(d.planned_s), up_s=int(d.up_s),
                            availability=_ratio(d.up_s, d.planned_s),
                            day_off=d.planned_s == 0 and d.day <= default.local_day(now))
                  for d in g.days]))
    instruments = []
    for i in insts:
        planned_days = sum(1 for d in i.days if d.planned)
        seen_days = sum(1 for d in i.days if d.planned and d.seen)
        instruments.append(InstrumentAvailabilityPublic(
            gateway=i.gateway.gateway_id, unit=i.gateway.unit.code, addr=i.instrument.addr,
            model=i.instrument.model, planned_days=planned_days, seen_days=seen_days,
            availability=_ratio(seen_days, planned_days),
            days=[InstrumentDayPublic(date=d.day, planned=d.planned, seen=d.seen)
                  for d in i.days]))
    return AvailabilityPublic.model_validate({"from": first, "to": last, "gateways": gateways,
                                              "instruments": instruments})


@router.get("/firmware", response_model=list[FirmwarePublic], description=roles_note(*ROLES))
def fleet_firmware(session: SessionDep,
                   _user: Annotated[User, allow(*ROLES)]) -> list[FirmwarePublic]:
    rows = list(session.scalars(select(Gateway).order_by(Gateway.gateway_id)))
    counts = health_model.firmware_counts(g.fw for g in rows)
    return [FirmwarePublic(fw=fw, count=n, gateways=[g.gateway_id for g in rows
                                                     if (g.fw or "unknown") == fw])
            for fw, n in counts.items()]


@router.get("/battery", response_model=BatteryPublic, description=roles_note(*ROLES))
def instrument_battery(
    session: SessionDep, settings: SettingsDep, _user: Annotated[User, allow(*ROLES)],
    gateway: Annotated[str, Query(pattern=ID_PATTERN)],
    addr: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")],
    days: Annotated[int, Query(ge=1, le=365)] = 30,
) -> BatteryPublic:
    """The instrument's battery from the health time series (one point per
    sample period), its trend and the days left until the alert threshold."""
    gw = crud.get_gateway(session, gateway_id=gateway)
    row = session.get(InstrumentHealth, (gw.id, addr)) if gw is not None else None
    if gw is None or row is None:
        raise HTTPException(status_code=404, detail=f"no instrument {addr} on gateway {gateway}")
    points = health_model.battery_series(session, gw.id, addr,
                                         datetime.now(UTC) - timedelta(days=days))
    trend = health_model.battery_trend(points)
    left = None
    if trend is not None and trend < 0 and row.battery is not None:
        left = round(max(0.0, (row.battery - settings.alert_battery_pct) / -trend), 1)
    return BatteryPublic(gateway=gateway, addr=addr, battery=row.battery,
                         trend_pct_per_day=round(trend, 3) if trend is not None else None,
                         days_to_threshold=left,
                         points=[BatteryPointPublic(at=t, battery=b) for t, b in points[-2000:]])


UnitCode = Annotated[str, Path(pattern=ID_PATTERN)]


def _unit(session: SessionDep, code: str) -> Unit:
    unit = session.scalar(select(Unit).where(Unit.code == code))
    if unit is None:
        raise HTTPException(status_code=404, detail=f"no unit {code}")
    return unit


def _schedule_public(session: SessionDep, settings: SettingsDep, unit: Unit) -> SchedulePublic:
    row = session.get(UnitSchedule, unit.id)
    base = Schedule.default(settings) if row is None else Schedule(
        row.weekdays, row.start_minute, row.end_minute, row.timezone)
    days = session.scalars(select(UnitCalendarDay).where(UnitCalendarDay.unit_pk == unit.id)
                           .order_by(UnitCalendarDay.day))
    return SchedulePublic(unit=unit.code, weekdays=base.weekdays,
                          start=health_model.hhmm(base.start_minute),
                          end=health_model.hhmm(base.end_minute), timezone=base.timezone,
                          default=row is None,
                          days=[CalendarDayPublic(date=d.day, working=d.working, note=d.note)
                                for d in days])


@router.get("/schedules/{unit}", response_model=SchedulePublic, description=roles_note(*ROLES))
def get_schedule(unit: UnitCode, session: SessionDep, settings: SettingsDep,
                 _user: Annotated[User, allow(*ROLES)]) -> SchedulePublic:
    return _schedule_public(session, settings, _unit(session, unit))


@router.put("/schedules/{unit}", response_model=SchedulePublic,
            description=roles_note(*SCHEDULE_ROLES))
def put_schedule(unit: UnitCode, body: ScheduleBody, session: SessionDep,
                 settings: SettingsDep,
                 _user: Annotated[User, allow(*SCHEDULE_ROLES)]) -> SchedulePublic:
    """Set the unit's working week (local times in its time zone)."""
    u = _unit(session, unit)
    row = session.get(UnitSchedule, u.id)
    if row is None:
        row = UnitSchedule(unit_pk=u.id)
        session.add(row)
    row.weekdays = body.weekdays
    row.start_minute = health_model.minutes(body.start)
    row.end_minute = health_model.minutes(body.end)
    row.timezone = body.timezone
    row.updated_at = datetime.now(UTC)
    session.commit()
    return _schedule_public(session, settings, u)


@router.put("/schedules/{unit}/days/{day}", response_model=CalendarDayPublic,
            description=roles_note(*SCHEDULE_ROLES))
def put_calendar_day(unit: UnitCode, day: CalendarDay, body: CalendarDayBody, session: SessionDep,
                     _user: Annotated[User, allow(*SCHEDULE_ROLES)]) -> CalendarDayPublic:
    """A day off (`working: false`: holiday, leave, vehicle in repair) or an
    extra working day (`working: true`) for the unit."""
    u = _unit(session, unit)
    row = session.scalar(select(UnitCalendarDay).where(UnitCalendarDay.unit_pk == u.id,
                                                       UnitCalendarDay.day == day))
    if row is None:
        row = UnitCalendarDay(unit_pk=u.id, day=day)
        session.add(row)
    row.working = body.working
    row.note = body.note
    session.commit()
    return CalendarDayPublic(date=row.day, working=row.working, note=row.note)


@router.delete("/schedules/{unit}/days/{day}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response, description=roles_note(*SCHEDULE_ROLES))
def delete_calendar_day(unit: UnitCode, day: CalendarDay, session: SessionDep,
                        _user: Annotated[User, allow(*SCHEDULE_ROLES)]) -> Response:
    u = _unit(session, unit)
    row = session.scalar(select(UnitCalendarDay).where(UnitCalendarDay.unit_pk == u.id,
                                                       UnitCalendarDay.day == day))
    if row is None:
        raise HTTPException(status_code=404, detail=f"no calendar day {day} for unit {unit}")
    session.delete(row)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
