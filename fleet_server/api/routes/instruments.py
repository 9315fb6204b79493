"""/instruments — instrument passports: identity (serial, model), unit
history, calibration and validation due dates, control-solution QC results,
error history. Logistics and technicians read; technicians edit. Passports
are back-filled from the readings table on read (registry.sync_instruments)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from fleet_server import registry
from fleet_server.api.deps import SessionDep, allow, roles_note
from fleet_server.api.registry_common import (
    INSTRUMENT_EDIT,
    INSTRUMENT_READ,
    RecentDate,
    SafeText,
    now,
    raise_http,
    sync_instruments,
)
from fleet_server.api.schemas import ReadingPublic, UtcTime
from fleet_server.models import User
from fleet_server.protocol import ID_PATTERN
from fleet_server.registry_models import (
    Instrument,
    InstrumentAssignment,
    InstrumentCheck,
    MaintenanceTicket,
)

router = APIRouter(prefix="/instruments", tags=["instruments"])

InstrumentId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Days = Annotated[int, Field(ge=1, le=3650)]
DueStatus = Literal["ok", "due_soon", "overdue", "not_required"]


class DuePublic(BaseModel):
    last_done: date | None
    interval_days: int | None
    due_on: date | None = Field(description="last done (or first seen) + interval")
    status: DueStatus

    @classmethod
    def of(cls, d: registry.Due) -> DuePublic:
        return cls(last_done=d.last_done, interval_days=d.interval_days, due_on=d.due_on,
                   status=d.status)  # type: ignore[arg-type]


class InstrumentPublic(BaseModel):
    id: int
    key: str = Field(description="serial when known, else the address")
    serial: str | None
    addr: str | None
    model: str | None
    mfr: str | None
    type: str | None
    unit: str | None
    region: str | None
    province: str | None
    first_seen_at: UtcTime | None
    last_seen_at: UtcTime | None
    calibration: DuePublic
    validation: DuePublic
    open_tickets: int
    notes: str | None

    @classmethod
    def of(cls, i: Instrument, today: date, open_tickets: int = 0) -> InstrumentPublic:
        u = i.unit
        return cls(id=i.id, key=i.key, serial=i.serial, addr=i.addr, model=i.model, mfr=i.mfr,
                   type=i.type, unit=u.code if u else None, region=u.region if u else None,
                   province=u.province if u else None, first_seen_at=i.first_seen_at,
                   last_seen_at=i.last_seen_at,
                   calibration=DuePublic.of(registry.due(i, "calibration", today)),
                   validation=DuePublic.of(registry.due(i, "validation", today)),
                   open_tickets=open_tickets, notes=i.notes)


class AssignmentPublic(BaseModel):
    unit: str
    from_at: UtcTime
    to_at: UtcTime | None
    source: str = Field(description="readings (seen there) | manual")
    by: str | None

    @classmethod
    def of(cls, a: InstrumentAssignment) -> AssignmentPublic:
        return cls(unit=a.unit.code, from_at=a.from_at, to_at=a.to_at, source=a.source,
                   by=a.by)


class CheckPublic(BaseModel):
    id: int
    kind: str
    done_on: date
    passed: bool | None
    by: str
    note: str | None
    recorded_at: UtcTime

    @classmethod
    def of(cls, c: InstrumentCheck) -> CheckPublic:
        return cls(id=c.id, kind=c.kind, done_on=c.done_on, passed=c.passed, by=c.by,
                   note=c.note, recorded_at=c.recorded_at)


class TicketSummary(BaseModel):
    id: int
    kind: str
    status: str
    title: str
    opened_at: UtcTime

    @classmethod
    def of(cls, t: MaintenanceTicket) -> TicketSummary:
        return cls(id=t.id, kind=t.kind, status=t.status, title=t.title, opened_at=t.opened_at)


class ErrorPublic(BaseModel):
    at: UtcTime
    source: str = Field(description="event (sent by the gateway) | rejected_record")
    gateway: str | None
    code: str
    detail: str
    flags: list[str]

    @classmethod
    def of(cls, e: registry.InstrumentError) -> ErrorPublic:
        return cls(at=e.at, source=e.source, gateway=e.gateway, code=e.code, detail=e.detail,
                   flags=e.flags)


class PassportPublic(InstrumentPublic):
    assignments: list[AssignmentPublic]
    checks: list[CheckPublic]
    tickets: list[TicketSummary]
    qc: list[ReadingPublic] = Field(description="last control-solution results")
    errors: list[ErrorPublic] = Field(description="last errors")


class InstrumentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Annotated[str, Field(max_length=64), SafeText] | None = None
    mfr: Annotated[str, Field(max_length=64), SafeText] | None = None
    type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")] | None = None
    notes: Annotated[str, Field(max_length=4000), SafeText] | None = None
    calibration_interval_days: Days | None = None
    validation_interval_days: Days | None = None
    calibration_last_done: RecentDate | None = None
    validation_last_done: RecentDate | None = None


class AssignBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: Annotated[str, Field(pattern=ID_PATTERN)] | None = Field(
        description="unit code; null: out of service (workshop)")


class CheckCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["calibration", "validation"]
    done_on: RecentDate
    passed: bool | None = True
    note: Annotated[str, Field(max_length=4000), SafeText] | None = None


class SyncResult(BaseModel):
    observed: int


def _today() -> date:
    return datetime.now(UTC).date()


def _load(session: SessionDep, instrument_id: int) -> Instrument:
    try:
        return registry.get_instrument(session, instrument_id)
    except registry.RegistryError as e:
        raise_http(e)


@router.get("", response_model=list[InstrumentPublic], description=roles_note(*INSTRUMENT_READ))
def list_instruments(
    session: SessionDep, _user: Annotated[User, allow(*INSTRUMENT_READ)],
    unit: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    region: Annotated[str | None, Query(max_length=64), SafeText] = None,
    province: Annotated[str | None, Query(max_length=64), SafeText] = None,
    type: Annotated[str | None, Query(max_length=32), SafeText] = None,
    serial: Annotated[str | None, Query(max_length=64), SafeText] = None,
    due: Annotated[Literal["due_soon", "overdue"] | None, Query(
        description="only instruments whose calibration or validation is overdue, or due "
                    "within 30 days (due_soon includes overdue)")] = None,
) -> list[InstrumentPublic]:
    """By region, province, unit and key."""
    sync_instruments(session)
    today = _today()
    counts = registry.open_ticket_counts(session)
    out = [InstrumentPublic.of(i, today, counts.get(i.id, 0)) for i in registry.list_instruments(
        session, unit=unit, region=region, province=province, type=type, serial=serial)]
    if due is not None:
        wanted = {"overdue"} if due == "overdue" else {"overdue", "due_soon"}
        out = [i for i in out
               if i.calibration.status in wanted or i.validation.status in wanted]
    return out


@router.post("/sync", response_model=SyncResult, description=roles_note(*INSTRUMENT_EDIT))
def sync(session: SessionDep, _user: Annotated[User, allow(*INSTRUMENT_EDIT)]) -> SyncResult:
    """Back-fill passports from readings not observed yet."""
    n = registry.sync_instruments(session, now=now())
    session.commit()
    return SyncResult(observed=n)


@router.get("/{instrument_id}", response_model=PassportPublic,
            description=roles_note(*INSTRUMENT_READ))
def passport(session: SessionDep, _user: Annotated[User, allow(*INSTRUMENT_READ)],
             instrument_id: InstrumentId) -> PassportPublic:
    sync_instruments(session)
    inst = _load(session, instrument_id)
    tickets = registry.list_tickets(session, instrument_id=inst.id)
    base = InstrumentPublic.of(inst, _today(),
                               sum(1 for t in tickets if t.status != "closed"))
    return PassportPublic(
        **base.model_dump(),
        assignments=[AssignmentPublic.of(a) for a in registry.assignments(session, inst)],
        checks=[CheckPublic.of(c) for c in registry.checks(session, inst)],
        tickets=[TicketSummary.of(t) for t in tickets],
        qc=[ReadingPublic.of(r) for r in registry.qc_readings(session, inst, limit=20)],
        errors=[ErrorPublic.of(e) for e in registry.error_history(session, inst, limit=20)])


@router.patch("/{instrument_id}", response_model=InstrumentPublic,
              description=roles_note(*INSTRUMENT_EDIT))
def update_instrument(session: SessionDep, _user: Annotated[User, allow(*INSTRUMENT_EDIT)],
                      instrument_id: InstrumentId, body: InstrumentUpdate) -> InstrumentPublic:
    inst = _load(session, instrument_id)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    try:
        registry.update_instrument(session, inst, changes)
    except registry.RegistryError as e:
        raise_http(e)
    session.commit()
    return InstrumentPublic.of(inst, _today(), registry.open_ticket_counts(session).get(inst.id, 0))


@router.put("/{instrument_id}/unit", response_model=InstrumentPublic,
            description=roles_note(*INSTRUMENT_EDIT) + " Assign by hand (readings from "
                        "another unit later move it again).")
def assign(session: SessionDep, user: Annotated[User, allow(*INSTRUMENT_EDIT)],
           instrument_id: InstrumentId,
           body: AssignBody) -> InstrumentPublic:
    inst = _load(session, instrument_id)
    try:
        unit = registry.unit_by_code(session, body.unit) if body.unit is not None else None
    except registry.RegistryError as e:
        raise_http(e)
    registry.assign_instrument(session, inst, unit=unit, by=user.username, now=now())
    session.commit()
    session.refresh(inst)
    return InstrumentPublic.of(inst, _today(), registry.open_ticket_counts(session).get(inst.id, 0))


@router.post("/{instrument_id}/checks", response_model=CheckPublic,
             status_code=status.HTTP_201_CREATED, description=roles_note(*INSTRUMENT_EDIT))
def record_check(session: SessionDep,
                 user: Annotated[User, allow(*INSTRUMENT_EDIT)], instrument_id: InstrumentId,
                 body: CheckCreate) -> CheckPublic:
    """A calibration or validation done; a passed one moves the due date."""
    inst = _load(session, instrument_id)
    try:
        check = registry.record_check(session, inst, kind=body.kind, done_on=body.done_on,
                                      passed=body.passed, by=user.username, note=body.note,
                                      now=now())
    except registry.RegistryError as e:
        raise_http(e)
    session.commit()
    return CheckPublic.of(check)


@router.get("/{instrument_id}/qc", response_model=list[ReadingPublic],
            description=roles_note(*INSTRUMENT_READ))
def qc_results(session: SessionDep, _user: Annotated[User, allow(*INSTRUMENT_READ)],
               instrument_id: InstrumentId,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[ReadingPublic]:
    """Control-solution results (flag `control_solution`), newest first."""
    inst = _load(session, instrument_id)
    return [ReadingPublic.of(r) for r in registry.qc_readings(session, inst, limit=limit)]


@router.get("/{instrument_id}/errors", response_model=list[ErrorPublic],
            description=roles_note(*INSTRUMENT_READ))
def errors(session: SessionDep, _user: Annotated[User, allow(*INSTRUMENT_READ)],
           instrument_id: InstrumentId,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[ErrorPublic]:
    """Events the instrument sent and rejected records that name it, newest first."""
    inst = _load(session, instrument_id)
    return [ErrorPublic.of(e) for e in registry.error_history(session, inst, limit=limit)]
