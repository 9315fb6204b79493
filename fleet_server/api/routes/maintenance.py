"""/maintenance — tickets on instruments (or on a unit as a whole):
open -> in_progress -> closed (and reopened), each change a note with who
and when. Logistics read; technicians open and update."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from fleet_server import registry
from fleet_server.api.deps import SessionDep, allow, roles_note
from fleet_server.api.registry_common import (
    INSTRUMENT_EDIT,
    INSTRUMENT_READ,
    SafeText,
    now,
    raise_http,
)
from fleet_server.api.schemas import UtcTime
from fleet_server.models import User
from fleet_server.protocol import ID_PATTERN
from fleet_server.registry_models import MaintenanceNote, MaintenanceTicket

router = APIRouter(prefix="/maintenance", tags=["maintenance"])

Status = Literal["open", "in_progress", "closed"]
Kind = Literal["repair", "calibration", "validation", "battery", "replacement", "other"]
TicketId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Text = Annotated[str, Field(min_length=1, max_length=4000), SafeText]


class NotePublic(BaseModel):
    at: UtcTime
    by: str
    text: str
    status: str | None = Field(description="the status this note set, if any")

    @classmethod
    def of(cls, n: MaintenanceNote) -> NotePublic:
        return cls(at=n.at, by=n.by, text=n.text, status=n.status)


class TicketPublic(BaseModel):
    id: int
    instrument_id: int | None
    instrument_serial: str | None
    instrument_model: str | None
    unit: str | None
    region: str | None
    province: str | None
    kind: str
    status: str
    title: str
    opened_at: UtcTime
    opened_by: str
    updated_at: UtcTime
    closed_at: UtcTime | None
    closed_by: str | None

    @classmethod
    def of(cls, t: MaintenanceTicket) -> TicketPublic:
        i, u = t.instrument, t.unit
        return cls(id=t.id, instrument_id=t.instrument_id,
                   instrument_serial=(i.serial or i.key) if i else None,
                   instrument_model=i.model if i else None, unit=u.code if u else None,
                   region=u.region if u else None, province=u.province if u else None,
                   kind=t.kind, status=t.status, title=t.title, opened_at=t.opened_at,
                   opened_by=t.opened_by, updated_at=t.updated_at, closed_at=t.closed_at,
                   closed_by=t.closed_by)


class TicketDetail(TicketPublic):
    notes: list[NotePublic]


class TicketCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instrument_id: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    unit: Annotated[str, Field(pattern=ID_PATTERN)] | None = Field(
        default=None, description="defaults to the instrument's current unit")
    kind: Kind
    title: Annotated[str, Field(min_length=1, max_length=200), SafeText]
    note: Text | None = None


class TicketUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Status | None = None
    note: Text | None = None


def _detail(session: SessionDep, ticket_id: int) -> TicketDetail:
    t = registry.get_ticket(session, ticket_id)
    return TicketDetail(**TicketPublic.of(t).model_dump(),
                        notes=[NotePublic.of(n) for n in t.notes])


@router.get("", response_model=list[TicketPublic], description=roles_note(*INSTRUMENT_READ))
def list_tickets(
    session: SessionDep, _user: Annotated[User, allow(*INSTRUMENT_READ)],
    status: Status | None = None,
    unit: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    instrument_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    region: Annotated[str | None, Query(max_length=64), SafeText] = None,
    province: Annotated[str | None, Query(max_length=64), SafeText] = None,
) -> list[TicketPublic]:
    """By region, province and unit, newest first within a unit."""
    return [TicketPublic.of(t) for t in registry.list_tickets(
        session, status=status, unit=unit, instrument_id=instrument_id, region=region,
        province=province)]


@router.post("", response_model=TicketDetail, status_code=status.HTTP_201_CREATED,
             description=roles_note(*INSTRUMENT_EDIT))
def open_ticket(session: SessionDep, user: Annotated[User, allow(*INSTRUMENT_EDIT)],
                body: TicketCreate) -> TicketDetail:
    try:
        inst = (registry.get_instrument(session, body.instrument_id)
                if body.instrument_id is not None else None)
        unit = registry.unit_by_code(session, body.unit) if body.unit is not None else None
        t = registry.open_ticket(session, instrument=inst, unit=unit, kind=body.kind,
                                 title=body.title, note=body.note, by=user.username, now=now())
    except registry.RegistryError as e:
        if e.kind == "not_found":  # an instrument id in the body: a bad field, not a 404
            e = registry.RegistryError("invalid", str(e), "instrument_id")
        raise_http(e)
    session.commit()
    return _detail(session, t.id)


@router.get("/{ticket_id}", response_model=TicketDetail, description=roles_note(*INSTRUMENT_READ))
def get_ticket(session: SessionDep, _user: Annotated[User, allow(*INSTRUMENT_READ)],
               ticket_id: TicketId) -> TicketDetail:
    try:
        return _detail(session, ticket_id)
    except registry.RegistryError as e:
        raise_http(e)


@router.patch("/{ticket_id}", response_model=TicketDetail,
              description=roles_note(*INSTRUMENT_EDIT))
def update_ticket(session: SessionDep, user: Annotated[User, allow(*INSTRUMENT_EDIT)],
                  ticket_id: TicketId, body: TicketUpdate) -> TicketDetail:
    """New status and/or a note; closing records who and when, reopening clears it."""
    try:
        t = registry.get_ticket(session, ticket_id)
        registry.update_ticket(session, t, status=body.status, note=body.note,
                               by=user.username, now=now())
    except registry.RegistryError as e:
        raise_http(e)
    session.commit()
    return _detail(session, ticket_id)
