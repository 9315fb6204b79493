"""GET /rejections (dead letters) and GET /rejections/counts (per gateway and
reason). The raw payload is returned only on request (`include_raw=true`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleet_server import crud
from fleet_server.api.deps import SessionDep, allow, roles_note
from fleet_server.api.registry_common import EARLIEST, LATEST, OptUtcTime
from fleet_server.api.schemas import DeadLetterPublic, RejectionCountPublic
from fleet_server.models import Role, User
from fleet_server.protocol import ID_PATTERN, Reason

router = APIRouter(prefix="/rejections", tags=["rejections"])

ROLES = (Role.admin, Role.technician)
COUNT_ROLES = (Role.admin, Role.technician, Role.logistics)


@router.get("", response_model=list[DeadLetterPublic], description=roles_note(*ROLES))
def list_rejections(
    session: SessionDep,
    _user: Annotated[User, allow(*ROLES)],
    gateway: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    reason: Reason | None = None,
    since: Annotated[OptUtcTime, Query(
        description="received at >= since (ISO 8601; UTC if no zone; "
                    f"years {EARLIEST} to {LATEST})")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    include_raw: Annotated[bool, Query(description="include the raw payload")] = False,
) -> list[DeadLetterPublic]:
    rows = crud.list_dead_letters(session, gateway=gateway,
                                  reason=reason.value if reason else None, since=since,
                                  limit=limit)
    return [DeadLetterPublic.of(d, include_raw) for d in rows]


@router.get("/counts", response_model=list[RejectionCountPublic],
            description=roles_note(*COUNT_ROLES))
def rejection_counts(
    session: SessionDep,
    _user: Annotated[User, allow(*COUNT_ROLES)],
    gateway: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> list[RejectionCountPublic]:
    return [RejectionCountPublic.of(c) for c in crud.rejection_counts(session, gateway=gateway)]
