"""GET /metrics — Prometheus text format (fleet_server/metrics.py).

Protected: a bearer token of an admin or logistics user, or the static
`UMMC_METRICS_TOKEN` (for the Prometheus scraper). Served under /api/v1;
`root_router` serves the same at /metrics when the app includes it.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fleet_server import crud, metrics
from fleet_server.api.deps import SessionDep, SettingsDep, roles_note
from fleet_server.health_model import Thresholds
from fleet_server.models import Role

router = APIRouter(tags=["metrics"])
root_router = APIRouter(include_in_schema=False)

ROLES = (Role.admin, Role.logistics)
_bearer = HTTPBearer(auto_error=False,
                     description="A token from POST /api/v1/auth/token, or UMMC_METRICS_TOKEN")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail=detail,
                         headers={"WWW-Authenticate": "Bearer"})


def metrics_access(
    session: SessionDep, settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if credentials is None:
        raise _unauthorized("Not authenticated")
    token = credentials.credentials
    if settings.metrics_token and hmac.compare_digest(token.encode(),
                                                      settings.metrics_token.encode()):
        return
    user = crud.user_for_token(session, token=token, secret_key=settings.secret_key,
                               now=datetime.now(UTC))
    if user is None:
        raise _unauthorized("Invalid or expired token")
    if user.role not in {r.value for r in ROLES}:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN,
                            detail=f"role {user.role} may not use this route")


def _render(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    worker = getattr(request.app.state, "ingest_worker", None)
    body = metrics.render(session, Thresholds.of(settings), getattr(worker, "metrics", None))
    return Response(content=body, media_type=metrics.CONTENT_TYPE)


@router.get("/metrics", response_class=Response, dependencies=[Depends(metrics_access)],
            description=roles_note(*ROLES) + " Or the UMMC_METRICS_TOKEN bearer token.",
            responses={200: {"content": {"text/plain": {}},
                             "description": "Prometheus text exposition format"}})
def get_metrics(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    return _render(request, session, settings)


@root_router.get("/metrics", response_class=Response, dependencies=[Depends(metrics_access)])
def get_root_metrics(request: Request, session: SessionDep,
                     settings: SettingsDep) -> Response:
    return _render(request, session, settings)
