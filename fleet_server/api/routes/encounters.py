"""/encounters — patient binding. Reception opens an encounter on its unit
with a pseudonymous patient reference only (registry.validate_patient_ref;
the server mints one when none is given) and closes it; readings of that
unit received inside the window belong to it (computed on query, see
registry.py). /readings/unassigned lists the rest for review. /unit-staff
says which unit each user works at (reception may act only there).

Roles: reception opens, closes and lists its own unit's encounters; nurses
read encounters and their readings; admin all."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from fleet_server import registry
from fleet_server.api.deps import SessionDep, allow, roles_note
from fleet_server.api.registry_common import (
    ENCOUNTER_READ,
    ENCOUNTER_WRITE,
    PATIENT_DATA,
    PLACES_EDIT,
    OptUtcTime,
    SafeText,
    invalid,
    now,
    raise_http,
    utc,
)
from fleet_server.api.schemas import ReadingPublic, UtcTime
from fleet_server.models import Role, Unit, User
from fleet_server.protocol import ID_PATTERN
from fleet_server.registry_models import Encounter

router = APIRouter(tags=["encounters"])

EncounterId = Annotated[int, Path(ge=1, le=2**63 - 1)]
PatientRef = Annotated[str, Field(max_length=40, description=registry.PATIENT_REF_RULE),
                       AfterValidator(registry.validate_patient_ref)]


class EncounterPublic(BaseModel):
    id: int
    unit: str
    patient_ref: str
    started_at: UtcTime
    ended_at: UtcTime | None
    status: Literal["open", "closed"]
    opened_by: str
    closed_by: str | None

    @classmethod
    def of(cls, e: Encounter) -> EncounterPublic:
        return cls(id=e.id, unit=e.unit.code, patient_ref=e.patient_ref,
                   started_at=e.started_at, ended_at=e.ended_at,
                   status="open" if e.ended_at is None else "closed", opened_by=e.opened_by,
                   closed_by=e.closed_by)


class EncounterOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: Annotated[str, Field(pattern=ID_PATTERN)] | None = Field(
        default=None, description="unit code; reception: defaults to (and must be) its own")
    patient_ref: PatientRef | None = Field(
        default=None, description="omit to have the server mint one (give it to the patient)")
    started_at: OptUtcTime = Field(default=None, description="default: now")


class EncounterClose(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ended_at: OptUtcTime = Field(default=None, description="default: now")


class StaffPublic(BaseModel):
    username: str
    role: str
    unit: str


def _own_unit(session: SessionDep, user: User) -> Unit | None:
    return registry.staff_unit(session, user) if user.role == Role.reception else None


def _visible(session: SessionDep, user: User, encounter_id: int) -> Encounter:
    """The encounter, if this user may see it (reception: own unit only; 404 otherwise)."""
    try:
        enc = registry.get_encounter(session, encounter_id)
    except registry.RegistryError as e:
        raise_http(e)
    if user.role == Role.reception:
        own = _own_unit(session, user)
        if own is None or own.id != enc.unit_id:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no encounter {encounter_id}")
    return enc


@router.post("/encounters", response_model=EncounterPublic,
             status_code=status.HTTP_201_CREATED,
             description=roles_note(*ENCOUNTER_WRITE) + " 409 while another encounter is "
                         "open on the unit.")
def open_encounter(session: SessionDep, user: Annotated[User, allow(*ENCOUNTER_WRITE)],
                   body: EncounterOpen) -> EncounterPublic:
    unit = _unit_to_open(session, user, body.unit)
    try:
        enc = registry.open_encounter(session, unit=unit,
                                      patient_ref=body.patient_ref or registry.new_patient_ref(),
                                      started_at=utc(body.started_at), by=user.username,
                                      now=now())
        session.commit()
    except registry.RegistryError as e:
        raise_http(e)
    except IntegrityError:  # another encounter was opened on the unit at the same moment
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT,
                            detail=f"another encounter is open on {unit.code}") from None
    return EncounterPublic.of(enc)


def _unit_to_open(session: SessionDep, user: User, code: str | None) -> Unit:
    if user.role != Role.reception:
        if code is None:
            raise invalid("unit", "required")
        try:
            return registry.unit_by_code(session, code)
        except registry.RegistryError as e:
            raise_http(e)
    own = _own_unit(session, user)
    if own is None:
        raise invalid("unit", f"user {user.username} is assigned to no unit (an admin "
                              f"sets it: PUT /api/v1/unit-staff/{user.username})")
    if code is not None and code != own.code:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail=f"reception of {own.code} may not open encounters on {code}")
    return own


@router.get("/encounters", response_model=list[EncounterPublic],
            description=roles_note(*ENCOUNTER_READ) + " Reception sees its own unit's only.")
def list_encounters(
    session: SessionDep, user: Annotated[User, allow(*ENCOUNTER_READ)],
    unit: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    status: Literal["open", "closed"] | None = None,
    since: Annotated[OptUtcTime, Query(description="ended after (or still open)")] = None,
    until: Annotated[OptUtcTime, Query(description="started before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EncounterPublic]:
    """Newest first."""
    if user.role == Role.reception:
        own = _own_unit(session, user)
        if own is None or (unit is not None and unit != own.code):
            return []
        unit = own.code
    rows = registry.list_encounters(session, unit=unit, status=status, since=utc(since),
                                    until=utc(until), limit=limit)
    return [EncounterPublic.of(e) for e in rows]


@router.get("/encounters/{encounter_id}", response_model=EncounterPublic,
            description=roles_note(*ENCOUNTER_READ))
def get_encounter(session: SessionDep, user: Annotated[User, allow(*ENCOUNTER_READ)],
                  encounter_id: EncounterId) -> EncounterPublic:
    return EncounterPublic.of(_visible(session, user, encounter_id))


@router.post("/encounters/{encounter_id}/close", response_model=EncounterPublic,
             description=roles_note(*ENCOUNTER_WRITE) + " 409 when already closed.")
def close_encounter(session: SessionDep, user: Annotated[User, allow(*ENCOUNTER_WRITE)],
                    encounter_id: EncounterId,
                    body: Annotated[EncounterClose | None, Body()] = None) -> EncounterPublic:
    enc = _visible(session, user, encounter_id)
    try:
        registry.close_encounter(session, enc, ended_at=utc(body.ended_at) if body else None,
                                 by=user.username, now=now())
    except registry.RegistryError as e:
        raise_http(e)
    session.commit()
    return EncounterPublic.of(enc)


@router.get("/encounters/{encounter_id}/readings", response_model=list[ReadingPublic],
            description=roles_note(*PATIENT_DATA))
def encounter_readings(session: SessionDep, user: Annotated[User, allow(*PATIENT_DATA)],
                       encounter_id: EncounterId) -> list[ReadingPublic]:
    """Readings of the unit received within the encounter's window (oldest
    first; control-solution results excluded)."""
    enc = _visible(session, user, encounter_id)
    return [ReadingPublic.of(r) for r in registry.encounter_readings(session, enc)]


@router.get("/readings/unassigned", response_model=list[ReadingPublic],
            description=roles_note(*PATIENT_DATA))
def unassigned(
    session: SessionDep, _user: Annotated[User, allow(*PATIENT_DATA)],
    unit: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    since: Annotated[OptUtcTime, Query(alias="from", description="received at >= from")]
    = None,
    until: Annotated[OptUtcTime, Query(alias="to", description="received at < to")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ReadingPublic]:
    """Patient readings in no encounter, newest first, for review."""
    rows = registry.unassigned_readings(session, unit=unit, since=utc(since), until=utc(until),
                                        limit=limit)
    return [ReadingPublic.of(r) for r in rows]


# --- which unit a user works at -------------------------------------------------------------


@router.get("/unit-staff", response_model=list[StaffPublic], description=roles_note(*PLACES_EDIT))
def list_staff(session: SessionDep,
               _user: Annotated[User, allow(*PLACES_EDIT)]) -> list[StaffPublic]:
    return [StaffPublic(username=u.username, role=u.role, unit=unit.code)
            for u, unit in registry.list_staff(session)]


def _user(session: SessionDep, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user {username}")
    return user


@router.put("/unit-staff/{username}", response_model=StaffPublic,
            description=roles_note(*PLACES_EDIT))
def set_staff(session: SessionDep, _admin: Annotated[User, allow(*PLACES_EDIT)],
              username: Annotated[str, Path(min_length=1, max_length=64), SafeText],
              unit: Annotated[str, Body(embed=True, pattern=ID_PATTERN)]) -> StaffPublic:
    user = _user(session, username)
    try:
        target = registry.unit_by_code(session, unit)
    except registry.RegistryError as e:
        raise_http(e)
    registry.set_staff_unit(session, user, target, now())
    session.commit()
    return StaffPublic(username=user.username, role=user.role, unit=target.code)


@router.delete("/unit-staff/{username}", status_code=status.HTTP_204_NO_CONTENT,
               description=roles_note(*PLACES_EDIT))
def clear_staff(session: SessionDep, _admin: Annotated[User, allow(*PLACES_EDIT)],
                username: Annotated[str, Path(min_length=1, max_length=64), SafeText]) -> None:
    registry.set_staff_unit(session, _user(session, username), None, now())
    session.commit()
