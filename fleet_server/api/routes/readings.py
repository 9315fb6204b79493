"""GET /readings — stored readings, newest first (by gateway receive time)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from fleet_server import crud
from fleet_server.api.deps import SessionDep, allow, roles_note
from fleet_server.api.schemas import ReadingPublic
from fleet_server.models import Role, User
from fleet_server.protocol import ID_PATTERN

router = APIRouter(tags=["readings"])

ROLES = (Role.admin, Role.nurse, Role.technician)


@router.get("/readings", response_model=list[ReadingPublic], description=roles_note(*ROLES))
def list_readings(
    session: SessionDep,
    _user: Annotated[User, allow(*ROLES)],
    unit: Annotated[str | None, Query(pattern=ID_PATTERN, description="unit code")] = None,
    gateway: Annotated[str | None, Query(pattern=ID_PATTERN, description="gateway id")] = None,
    type: Annotated[str | None, Query(max_length=32, description="reading type")] = None,
    kind: Literal["reading", "event", "health"] = "reading",
    since: Annotated[datetime | None, Query(
        description="gateway receive time >= since (ISO 8601; UTC if no zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ReadingPublic]:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    rows = crud.list_readings(session, unit=unit, gateway=gateway, type=type, kind=kind,
                              since=since, limit=limit)
    return [ReadingPublic.of(r) for r in rows]
