"""Commands to gateways: POST/GET /gateways/{id}/commands, GET /commands/{id}.

POST stores the command, commits, then publishes it (fleet_server/commands.py);
the gateway's `cmd/result` reaches the ingest worker, which stores it on the
command. A command the broker did not take is re-sent by the evaluator.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from fleet_server import commands, crud
from fleet_server.api.deps import SessionDep, SettingsDep, allow, roles_note
from fleet_server.api.schemas import UtcTime
from fleet_server.commands import CommandRequest
from fleet_server.models import Command, Gateway, Role, User
from fleet_server.protocol import COMMAND_ID_PATTERN, ID_PATTERN

router = APIRouter(tags=["commands"])

SEND_ROLES = (Role.admin, Role.technician)
READ_ROLES = (Role.admin, Role.technician, Role.logistics)


class CommandPublic(BaseModel):
    id: str = Field(description="the wire id, c-<16 hex digits>")
    gateway: str
    unit: str
    op: str
    args: dict[str, Any]
    status: str = Field(description="pending | ok | error | expired")
    created_at: UtcTime
    created_by: str | None
    expires_at: UtcTime
    published_at: UtcTime | None = Field(
        description="when the broker took it; null: not yet (re-sent automatically)")
    publish_attempts: int
    result_at: UtcTime | None
    result: dict[str, Any] | None = Field(description="the gateway's result, when ok")
    error: str | None = Field(description="the gateway's error code, when not ok")
    detail: str | None
    replay: bool | None = Field(description="the gateway answered with a stored result")

    @classmethod
    def of(cls, c: Command) -> CommandPublic:
        return cls(id=c.command_id, gateway=c.gateway.gateway_id, unit=c.gateway.unit.code,
                   op=c.op, args=c.args, status=c.status, created_at=c.created_at,
                   created_by=c.created_by, expires_at=c.expires_at,
                   published_at=c.published_at, publish_attempts=c.publish_attempts,
                   result_at=c.result_at, result=c.result, error=c.error, detail=c.detail,
                   replay=c.replay)


GatewayId = Annotated[str, Path(pattern=ID_PATTERN)]


def _gateway(session: SessionDep, gateway_id: str) -> Gateway:
    gw = crud.get_gateway(session, gateway_id=gateway_id)
    if gw is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND,
                            detail=f"no gateway {gateway_id}")
    return gw


@router.post("/gateways/{gateway_id}/commands", response_model=CommandPublic,
             status_code=status.HTTP_201_CREATED, description=roles_note(*SEND_ROLES))
def send_command(gateway_id: GatewayId, body: CommandRequest, session: SessionDep,
                 settings: SettingsDep,
                 user: Annotated[User, allow(*SEND_ROLES)]) -> CommandPublic:
    """Operations and their `args` as in docs/protocol.md (`cmd`):
    apply_config {version, config}, sync_now {instruments?}, set_time {time},
    reboot {delay_ms?}, diagnostics {}. `expires_in_s` (default
    UMMC_COMMAND_DEFAULT_EXPIRES_S): a gateway reached later answers
    `expired` and does nothing. 201 even when the broker is unreachable
    (`published_at` null): the command is re-sent until it expires."""
    gw = _gateway(session, gateway_id)
    now = datetime.now(UTC)
    cmd = commands.create_command(session, gw=gw, request=body, created_by=user.username,
                                  now=now, default_expires_s=settings.command_default_expires_s)
    session.commit()  # stored before it is sent: a result can always be correlated
    commands.send(session, settings, cmd, now)
    session.commit()
    return CommandPublic.of(cmd)


@router.get("/gateways/{gateway_id}/commands", response_model=list[CommandPublic],
            description=roles_note(*READ_ROLES))
def list_commands(
    gateway_id: GatewayId, session: SessionDep,
    _user: Annotated[User, allow(*READ_ROLES)],
    status: Literal["pending", "ok", "error", "expired"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CommandPublic]:
    """Newest first."""
    gw = _gateway(session, gateway_id)
    return [CommandPublic.of(c) for c in commands.list_commands(session, gw=gw, status=status,
                                                                limit=limit)]


@router.get("/commands/{command_id}", response_model=CommandPublic,
            description=roles_note(*READ_ROLES))
def get_command(command_id: Annotated[str, Path(pattern=COMMAND_ID_PATTERN)],
                session: SessionDep,
                _user: Annotated[User, allow(*READ_ROLES)]) -> CommandPublic:
    cmd = commands.get_command(session, command_id=command_id)
    if cmd is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND,
                            detail=f"no command {command_id}")
    return CommandPublic.of(cmd)
