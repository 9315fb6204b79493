"""FastAPI dependencies: the database session, the settings, the current user
and role checks. Routes use the aliases (`SessionDep`, `SettingsDep`,
`CurrentUser`) and declare their roles with `allow(...)`.

Errors keep FastAPI's shape (`{"detail": ...}`): 401 for a missing, unknown
or expired bearer token (with `WWW-Authenticate: Bearer`), 403 for a role
the route does not allow.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from fleet_server import crud
from fleet_server.models import Role, User
from fleet_server.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/token")


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SessionDep = Annotated[Session, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=status.HTTP_401_UNAUTHORIZED, detail=detail,
                         headers={"WWW-Authenticate": "Bearer"})


def get_current_user(
    session: SessionDep, settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None:
        raise _unauthorized("Not authenticated")
    user = crud.user_for_token(session, token=credentials.credentials,
                               secret_key=settings.secret_key, now=datetime.now(UTC))
    if user is None:
        raise _unauthorized("Invalid or expired token")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]

ALL_ROLES = tuple(Role)


def allow(*roles: Role) -> Any:
    """A dependency that lets only these roles through (403 for the others)."""
    allowed = frozenset(r.value for r in roles)

    def check(user: CurrentUser) -> User:
        if user.role not in allowed:
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN,
                                detail=f"role {user.role} may not use this route")
        return user

    return Depends(check)


def roles_note(*roles: Role) -> str:
    """For route descriptions (OpenAPI): which roles may call it."""
    return "Roles: " + ", ".join(r.value for r in roles) + "."

