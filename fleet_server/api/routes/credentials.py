"""POST /gateways/{gateway_id}/credentials: a gateway's broker login, issued
by the fleet server (fleet_server/broker_accounts.py).

Roles: admin and technician. Technicians provision gateways in the workshop
(`ummc-gateway provision --fleet-url ...` calls this route), so they may
issue and rotate a gateway's password; only an admin may create a unit on
the way (a technician's unknown unit is a 422: a typo must not make a new
unit). Nobody moves a registered gateway here: another unit is a 409.

The password is in the 201 answer only (`Cache-Control: no-store`); the
server keeps its hash. Issuing again rotates it: the old password stops
working when the broker reloads. Who issued credentials for which gateway
is logged (`fleet_server.audit`) and kept on the gateway row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field

from fleet_server import broker_accounts
from fleet_server.api.deps import SessionDep, SettingsDep, allow, roles_note
from fleet_server.api.registry_common import invalid
from fleet_server.api.schemas import UtcTime
from fleet_server.models import Role, User
from fleet_server.protocol import ID_PATTERN
from fleet_server.settings import Settings

router = APIRouter(tags=["registry"])

ISSUE_ROLES = (Role.admin, Role.technician)


class CredentialsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: str = Field(pattern=ID_PATTERN, description="the unit the gateway serves (U012)")


class BrokerPublic(BaseModel):
    host: str
    port: int
    tls: bool


class CredentialsPublic(BaseModel):
    gateway: str
    unit: str
    username: str = Field(description="the broker username: the gateway id")
    password: str = Field(description="shown this once; the server keeps only its hash")
    broker: BrokerPublic = Field(description="where gateways reach the broker "
                                             "(UMMC_BROKER_PUBLIC_URL)")
    registered: bool = Field(description="the gateway was new and is registered now")
    reloaded: bool = Field(description="the broker was told to reload; false: the password "
                                       "works after its next reload or restart")
    issued_at: UtcTime


def public_broker(settings: Settings) -> BrokerPublic:
    if settings.broker_public_url is None:
        return BrokerPublic(host=settings.mqtt_host, port=settings.mqtt_port, tls=False)
    parts = urlsplit(settings.broker_public_url)
    tls = parts.scheme == "mqtts"
    return BrokerPublic(host=parts.hostname or settings.mqtt_host,
                        port=parts.port or (8883 if tls else 1883), tls=tls)


@router.post("/gateways/{gateway_id}/credentials", response_model=CredentialsPublic,
             status_code=status.HTTP_201_CREATED, description=roles_note(*ISSUE_ROLES),
             responses={409: {"description": "registered to another unit"},
                        503: {"description": "broker accounts not configured, or the "
                                             "broker's files could not be written or "
                                             "reloaded (nothing changed)"}})
def issue_credentials(gateway_id: Annotated[str, Path(pattern=ID_PATTERN)],
                      body: CredentialsRequest, session: SessionDep, settings: SettingsDep,
                      response: Response,
                      user: Annotated[User, allow(*ISSUE_ROLES)]) -> CredentialsPublic:
    """Register the gateway to `unit` if it is new, give it a new broker
    password (replacing any previous one), write the broker's password and
    ACL files and reload the broker."""
    files = broker_accounts.BrokerFiles.from_settings(settings)
    try:
        issued = broker_accounts.issue_credentials(
            session, files, gateway_id=gateway_id, unit_code=body.unit, by=user.username,
            may_create_unit=user.role == Role.admin.value, now=datetime.now(UTC))
    except broker_accounts.CredentialError as e:
        if e.kind == "conflict":
            raise HTTPException(status.HTTP_409_CONFLICT, detail=str(e)) from None
        raise invalid(e.field or "body", str(e)) from None
    except broker_accounts.NotConfigured as e:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(e)) from None
    except broker_accounts.BrokerError as e:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail=f"broker accounts unchanged: {e}") from None
    response.headers["Cache-Control"] = "no-store"
    return CredentialsPublic(gateway=issued.gateway, unit=issued.unit, username=issued.gateway,
                             password=issued.password, broker=public_broker(settings),
                             registered=issued.registered, reloaded=issued.reloaded,
                             issued_at=issued.issued_at)
