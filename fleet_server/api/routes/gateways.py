"""GET /gateways — registered gateways with their state and last contact."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleet_server import crud
from fleet_server.api.deps import ALL_ROLES, SessionDep, allow, roles_note
from fleet_server.api.schemas import GatewayPublic
from fleet_server.models import User
from fleet_server.protocol import ID_PATTERN

router = APIRouter(tags=["registry"])


@router.get("/gateways", response_model=list[GatewayPublic],
            description=roles_note(*ALL_ROLES))
def list_gateways(
    session: SessionDep,
    _user: Annotated[User, allow(*ALL_ROLES)],
    unit: Annotated[str | None, Query(pattern=ID_PATTERN, description="unit code")] = None,
) -> list[GatewayPublic]:
    return [GatewayPublic.of(g) for g in crud.list_gateways(session, unit=unit)]
