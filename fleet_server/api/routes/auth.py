"""POST /auth/token — username and password (JSON) for an opaque bearer token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, HTTPException, status

from fleet_server import crud
from fleet_server.api.deps import SessionDep, SettingsDep
from fleet_server.api.schemas import TokenRequest, TokenResponse

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", response_model=TokenResponse)
def login(body: TokenRequest, session: SessionDep, settings: SettingsDep) -> TokenResponse:
    """No authentication. Send the token back as `Authorization: Bearer <token>`."""
    user = crud.authenticate(session, username=body.username, password=body.password)
    if user is None:
        raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED,
                            detail="Incorrect username or password",
                            headers={"WWW-Authenticate": "Bearer"})
    token, expires = crud.issue_token(
        session, user=user, secret_key=settings.secret_key, now=datetime.now(UTC),
        ttl=timedelta(minutes=settings.access_token_expire_minutes))
    session.commit()
    return TokenResponse(access_token=token, expires_at=expires, role=user.role)
