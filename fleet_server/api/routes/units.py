"""GET /units — the registered units and their gateways."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from fleet_server import crud
from fleet_server.api.deps import ALL_ROLES, SessionDep, allow, roles_note
from fleet_server.api.schemas import UnitPublic
from fleet_server.models import User

router = APIRouter(tags=["registry"])


@router.get("/units", response_model=list[UnitPublic], description=roles_note(*ALL_ROLES))
def list_units(session: SessionDep,
               _user: Annotated[User, allow(*ALL_ROLES)]) -> list[UnitPublic]:
    return [UnitPublic.of(u) for u in crud.list_units(session)]
