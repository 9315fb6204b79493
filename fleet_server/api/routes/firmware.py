"""Firmware bundles and OTA rollouts: /firmware/bundles, /firmware/rollouts.

Admins upload bundles (the `.ummc` file as the request body) and start
rollouts; technicians and logistics read. The bundle download also takes a
rollout's `token` instead of a bearer token: that is how a gateway, which has
only MQTT credentials, fetches it (with HTTP Range requests).
The logic is in fleet_server/firmware_store.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleet_server import commands
from fleet_server import firmware_store as store
from fleet_server.api.deps import SessionDep, SettingsDep, allow, get_current_user, roles_note
from fleet_server.api.schemas import UtcTime
from fleet_server.models import FirmwareBundle, FirmwareRollout, Role, User
from fleet_server.protocol import ID_PATTERN

router = APIRouter(prefix="/firmware", tags=["firmware"])

ADMIN = (Role.admin,)
READ_ROLES = (Role.admin, Role.technician, Role.logistics)
VERSION_PATTERN = r"^[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}$"
_bearer = HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/token")


class BundlePublic(BaseModel):
    version: str
    sha256: str
    size: int
    key_id: str = Field(description="the release key that signed it")
    commit: str | None
    built_ms: int | None
    uploaded_at: UtcTime
    uploaded_by: str | None

    @classmethod
    def of(cls, b: FirmwareBundle) -> BundlePublic:
        return cls(version=b.version, sha256=b.sha256, size=b.size, key_id=b.key_id,
                   commit=b.commit, built_ms=b.built_ms, uploaded_at=b.uploaded_at,
                   uploaded_by=b.uploaded_by)


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit: str | None = Field(default=None, pattern=ID_PATTERN)
    units: list[Annotated[str, Field(pattern=ID_PATTERN)]] | None = Field(
        default=None, min_length=1, max_length=1000)
    province: str | None = Field(default=None, min_length=1, max_length=64)
    region: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one(self) -> TargetIn:
        given = [k for k in ("unit", "units", "province", "region") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("target: give exactly one of unit, units, province, region")
        return self


class RolloutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=VERSION_PATTERN)
    target: TargetIn
    canary: int | None = Field(default=None, ge=1, le=10_000,
                               description="only this many gateways at first; the rest on "
                                           "POST .../release")
    deadline_s: int = Field(default=3600, ge=60, le=604_800,
                            description="how long the new version has to prove healthy")


class RolloutPublic(BaseModel):
    id: int
    version: str
    target: dict[str, Any]
    canary: int | None
    deadline_s: int
    created_at: UtcTime
    created_by: str | None
    link_expires_at: UtcTime
    counts: dict[str, int] = Field(description="gateways per status, and `updated`")
    gateways: list[dict[str, Any]] = Field(
        description="gateway, unit, fw (from its birth), updated, status (held | pending | ok "
                    "| error | expired), command, published, result, error, detail")

    @classmethod
    def of(cls, r: FirmwareRollout) -> RolloutPublic:
        members = [store.member_status(m, r.bundle.version) for m in r.members]
        counts: dict[str, int] = {"updated": sum(1 for m in members if m["updated"])}
        for m in members:
            counts[m["status"]] = counts.get(m["status"], 0) + 1
        return cls(id=r.id, version=r.bundle.version, target=r.target, canary=r.canary,
                   deadline_s=r.deadline_s, created_at=r.created_at, created_by=r.created_by,
                   link_expires_at=r.token_expires_at, counts=counts, gateways=members)


def _fail(e: store.FirmwareError) -> HTTPException:
    code = {"exists": status.HTTP_409_CONFLICT, "no_trust": status.HTTP_503_SERVICE_UNAVAILABLE,
            "verify_failed": status.HTTP_503_SERVICE_UNAVAILABLE,
            "expired": status.HTTP_409_CONFLICT}.get(e.code, 422)
    return HTTPException(status_code=code, detail=f"{e.code}: {e.detail}")


@router.post("/bundles", response_model=BundlePublic, status_code=status.HTTP_201_CREATED,
             description=roles_note(*ADMIN))
async def upload_bundle(request: Request, session: SessionDep, settings: SettingsDep,
                        user: Annotated[User, allow(*ADMIN)]) -> BundlePublic:
    """The `.ummc` container as the request body (application/octet-stream).
    Checked as a gateway will check it, with the release keys of
    UMMC_FIRMWARE_TRUST: 422 with the gateway's refusal code (unknown_key,
    bad_signature, hash_mismatch, ...), 409 if the version exists."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > store.MAX_BUNDLE_BYTES:
            raise HTTPException(status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                                detail=f"bundle over {store.MAX_BUNDLE_BYTES} bytes")
    try:
        b = store.store_bundle(session, settings, bytes(data), user=user.username,
                               now=datetime.now(UTC))
    except store.FirmwareError as e:
        session.rollback()
        raise _fail(e) from None
    session.commit()
    return BundlePublic.of(b)


@router.get("/bundles", response_model=list[BundlePublic], description=roles_note(*READ_ROLES))
def list_bundles(session: SessionDep,
                 _user: Annotated[User, allow(*READ_ROLES)]) -> list[BundlePublic]:
    """Newest version first."""
    from sqlalchemy import select

    rows = session.scalars(select(FirmwareBundle).order_by(FirmwareBundle.id.desc())).all()
    return [BundlePublic.of(b) for b in rows]


@router.get("/bundles/{version}", response_class=Response,
            description=roles_note(*READ_ROLES) + " Or `?token=` of a rollout of this version.",
            responses={200: {"content": {"application/octet-stream": {}}},
                       206: {"content": {"application/octet-stream": {}}}})
def download_bundle(
    version: Annotated[str, Path(pattern=VERSION_PATTERN)], request: Request,
    session: SessionDep, settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """The bundle file; `Range: bytes=a-b` answers 206 with that part (one
    range), as the gateway downloads it."""
    now = datetime.now(UTC)
    if not (token and store.token_allows(session, token, version, now)):
        if token and credentials is None:
            raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED,
                                detail="download link unknown or expired",
                                headers={"WWW-Authenticate": "Bearer"})
        user = get_current_user(session, settings, credentials)
        if user.role not in {r.value for r in READ_ROLES}:
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN,
                                detail=f"role {user.role} may not use this route")
    b = store.get_bundle(session, version)
    path = store.bundle_path(settings, version)
    if b is None or not path.exists():
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND,
                            detail=f"no firmware bundle {version}")
    size = path.stat().st_size
    try:
        rng = store.parse_range(request.headers.get("range"), size)
    except ValueError as e:
        raise HTTPException(status_code=416,
                            detail=f"Range: {e}", headers={"Content-Range": f"bytes */{size}"}) \
            from None
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{b.sha256}"'}
    with path.open("rb") as f:
        if rng is None:
            return Response(f.read(), media_type="application/octet-stream", headers=headers)
        first, last = rng
        f.seek(first)
        data = f.read(last + 1 - first)
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return Response(data, status_code=status.HTTP_206_PARTIAL_CONTENT,
                    media_type="application/octet-stream", headers=headers)


@router.post("/rollouts", response_model=RolloutPublic, status_code=status.HTTP_201_CREATED,
             description=roles_note(*ADMIN))
def create_rollout(body: RolloutRequest, session: SessionDep, settings: SettingsDep,
                   user: Annotated[User, allow(*ADMIN)]) -> RolloutPublic:
    """An `ota` command to every gateway of the target (the first `canary`
    of them only, when given). 404: no such bundle; 422: no gateway there."""
    b = store.get_bundle(session, body.version)
    if b is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND,
                            detail=f"no firmware bundle {body.version}")
    now = datetime.now(UTC)
    t = body.target
    try:
        r, sent = store.create_rollout(
            session, settings, bundle=b,
            target=store.Target(unit=t.unit, units=t.units, province=t.province,
                                region=t.region),
            canary=body.canary, deadline_s=body.deadline_s, user=user.username, now=now)
    except store.FirmwareError as e:
        session.rollback()
        raise _fail(e) from None
    session.commit()  # stored before sent, as every command
    _send(session, settings, sent, now)
    return RolloutPublic.of(r)


def _send(session: SessionDep, settings: SettingsDep, sent: list[Any], now: datetime) -> None:
    for cmd in sent:
        if not commands.send(session, settings, cmd, now):
            break  # broker down: the evaluator's outbox round sends the rest
    session.commit()


@router.get("/rollouts", response_model=list[RolloutPublic], description=roles_note(*READ_ROLES))
def list_rollouts(session: SessionDep,
                  _user: Annotated[User, allow(*READ_ROLES)]) -> list[RolloutPublic]:
    """Newest first (the last 100)."""
    return [RolloutPublic.of(r) for r in store.list_rollouts(session)]


def _rollout(session: SessionDep, rollout_id: int) -> FirmwareRollout:
    r = store.get_rollout(session, rollout_id)
    if r is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND,
                            detail=f"no rollout {rollout_id}")
    return r


@router.get("/rollouts/{rollout_id}", response_model=RolloutPublic,
            description=roles_note(*READ_ROLES))
def get_rollout(rollout_id: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep,
                _user: Annotated[User, allow(*READ_ROLES)]) -> RolloutPublic:
    return RolloutPublic.of(_rollout(session, rollout_id))


@router.post("/rollouts/{rollout_id}/release", response_model=RolloutPublic,
             description=roles_note(*ADMIN))
def release_rollout(rollout_id: Annotated[int, Path(ge=1, le=2**31 - 1)], session: SessionDep,
                    settings: SettingsDep,
                    user: Annotated[User, allow(*ADMIN)]) -> RolloutPublic:
    """Send the `ota` command to the gateways held behind the canary."""
    r = _rollout(session, rollout_id)
    now = datetime.now(UTC)
    try:
        sent = store.release(session, settings, r, user=user.username, now=now)
    except store.FirmwareError as e:
        session.rollback()
        raise _fail(e) from None
    session.commit()
    _send(session, settings, sent, now)
    return RolloutPublic.of(r)
