"""Shared by the registry routes (places, instruments, maintenance,
encounters, exports): roles, time parameters, and the mapping of store
errors to HTTP. A store error about a field becomes FastAPI's standard 422
(`{"detail": [{"loc": ["body", field], "msg": ..., "type": "value_error"}]}`),
so clients see one error shape whether pydantic or the store refused."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, NoReturn, TypeVar

from fastapi import HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleet_server import registry
from fleet_server.models import Role
from fleet_server.reference_data import PlaceError

ALL = tuple(Role)
INSTRUMENT_READ = (Role.admin, Role.logistics, Role.technician)
INSTRUMENT_EDIT = (Role.admin, Role.technician)
PLACES_EDIT = (Role.admin,)
ENCOUNTER_WRITE = (Role.admin, Role.reception)
ENCOUNTER_READ = (Role.admin, Role.nurse, Role.reception)
PATIENT_DATA = (Role.admin, Role.nurse)  # readings bound to patients, FHIR
EXPORT = (Role.admin, Role.logistics, Role.technician)
EXPORT_READINGS = (Role.admin,)


T = TypeVar("T", str, str | None)
EARLIEST, LATEST = 2000, 2100  # years a registry time or date may name


def clean_text(s: T) -> T:
    """Text both databases can store: PostgreSQL refuses NUL, and a lone
    surrogate is not UTF-8."""
    if s is None:
        return s
    if "\x00" in s:
        raise ValueError("must not contain NUL characters")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return s


def _utc_checked(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    if not EARLIEST <= t.year <= LATEST:
        raise ValueError(f"must be between the years {EARLIEST} and {LATEST}")
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _date_checked(d: date | None) -> date | None:
    if d is not None and not EARLIEST <= d.year <= LATEST:
        raise ValueError(f"must be between the years {EARLIEST} and {LATEST}")
    return d


# Annotated types for request fields and parameters (errors are 422s on the field).
SafeText = AfterValidator(clean_text)
OptUtcTime = Annotated[datetime | None, AfterValidator(_utc_checked)]
RecentDate = Annotated[date, AfterValidator(_date_checked)]


def now() -> datetime:
    return datetime.now(UTC)


def utc(t: datetime | None) -> datetime | None:
    """A query or body time without a zone is UTC."""
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def invalid(field: str, msg: str, where: str = "body") -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": (where, field), "msg": msg,
                                    "input": None}])


def raise_http(e: registry.RegistryError | PlaceError, where: str = "body") -> NoReturn:
    if isinstance(e, PlaceError):
        raise invalid(e.field, str(e), where) from None
    if e.kind == "not_found":
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(e)) from None
    if e.kind == "conflict":
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(e)) from None
    raise invalid(e.field or "body", str(e), where) from None


def sync_instruments(session: Session) -> None:
    """Lazy back-fill of instrument passports from readings (cheap when up to date)."""
    if registry.needs_sync(session):
        try:
            registry.sync_instruments(session, now=now())
            session.commit()
        except IntegrityError:  # another request or the ingest hook got there first
            session.rollback()
