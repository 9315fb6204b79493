"""Store operations shared by the CLI, the ingest worker and the API.

Keyword-only functions over a SQLAlchemy session. They flush but never
commit (the caller owns the transaction) and never raise HTTP errors (routes
turn `None`/empty results into 401/404 themselves).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, joinedload

from fleet_server.models import ApiToken, DeadLetter, Gateway, Reading, Role, Unit, User
from fleet_server.protocol import ID_PATTERN
from fleet_server.security import hash_password, new_token, token_digest, verify_password
from fleet_server.settings import Settings

# --- registry ------------------------------------------------------------------


class Registration(BaseModel):
    """One entry of `register --accounts FILE` (extra keys, e.g. passwords, ignored)."""

    model_config = ConfigDict(extra="ignore")

    unit: str = Field(pattern=ID_PATTERN)
    gateway: str = Field(pattern=ID_PATTERN)
    name: str | None = Field(default=None, max_length=128)
    province: str | None = Field(default=None, max_length=64)
    region: str | None = Field(default=None, max_length=64)


@dataclass
class RegisterResult:
    units_created: int = 0
    gateways_created: int = 0
    gateways_moved: int = 0
    unchanged: int = 0


def register(session: Session, *, entries: Iterable[Registration],
             now: datetime) -> RegisterResult:
    """Create units and gateways that are missing; idempotent. A gateway listed
    under another unit than the registry has is moved there (the file wins)."""
    result = RegisterResult()
    units = {u.code: u for u in session.scalars(select(Unit))}
    gateways = {g.gateway_id: g for g in session.scalars(select(Gateway))}
    for e in entries:
        unit = units.get(e.unit)
        if unit is None:
            unit = Unit(code=e.unit, name=e.name, province=e.province, region=e.region,
                        created_at=now)
            session.add(unit)
            units[e.unit] = unit
            result.units_created += 1
        else:
            for attr in ("name", "province", "region"):
                value = getattr(e, attr)
                if value is not None:
                    setattr(unit, attr, value)
        gw = gateways.get(e.gateway)
        if gw is None:
            gw = Gateway(gateway_id=e.gateway, unit=unit, registered_at=now)
            session.add(gw)
            gateways[e.gateway] = gw
            result.gateways_created += 1
        elif gw.unit is not unit:
            gw.unit = unit
            result.gateways_moved += 1
        else:
            result.unchanged += 1
    session.flush()
    return result


def get_gateway(session: Session, *, gateway_id: str) -> Gateway | None:
    return session.scalar(select(Gateway).options(joinedload(Gateway.unit))
                          .where(Gateway.gateway_id == gateway_id))


def list_units(session: Session) -> Sequence[Unit]:
    return session.scalars(select(Unit).options(joinedload(Unit.gateways))
                           .order_by(Unit.code)).unique().all()


def list_gateways(session: Session, *, unit: str | None = None) -> Sequence[Gateway]:
    q = select(Gateway).join(Gateway.unit).options(joinedload(Gateway.unit))
    if unit is not None:
        q = q.where(Unit.code == unit)
    return session.scalars(q.order_by(Gateway.gateway_id)).all()


# --- readings and rejections ----------------------------------------------------


def list_readings(session: Session, *, unit: str | None = None, gateway: str | None = None,
                  type: str | None = None, kind: str | None = "reading",
                  since: datetime | None = None, limit: int = 100) -> Sequence[Reading]:
    """Newest first (by gateway receive time)."""
    q = (select(Reading).join(Reading.unit).join(Reading.gateway)
         .options(joinedload(Reading.unit), joinedload(Reading.gateway)))
    if unit is not None:
        q = q.where(Unit.code == unit)
    if gateway is not None:
        q = q.where(Gateway.gateway_id == gateway)
    if type is not None:
        q = q.where(Reading.type == type)
    if kind is not None:
        q = q.where(Reading.kind == kind)
    if since is not None:
        q = q.where(Reading.received_at >= since)
    q = q.order_by(Reading.received_at.desc(), Reading.id.desc()).limit(limit)
    return session.scalars(q).all()


def list_dead_letters(session: Session, *, gateway: str | None = None,
                      reason: str | None = None, since: datetime | None = None,
                      limit: int = 100) -> Sequence[DeadLetter]:
    q = select(DeadLetter)
    if gateway is not None:
        q = q.where(DeadLetter.gateway == gateway)
    if reason is not None:
        q = q.where(DeadLetter.reason == reason)
    if since is not None:
        q = q.where(DeadLetter.received_at >= since)
    return session.scalars(q.order_by(DeadLetter.id.desc()).limit(limit)).all()


@dataclass(frozen=True)
class RejectionCount:
    gateway: str | None  # None: the topic named no gateway (bad_topic)
    unit: str | None
    reason: str
    count: int
    last_at: datetime


def rejection_counts(session: Session, *, gateway: str | None = None) -> list[RejectionCount]:
    """Dead letters counted per gateway (as named in the topic) and reason."""
    q = (select(DeadLetter.gateway, DeadLetter.unit, DeadLetter.reason,
                func.count(), func.max(DeadLetter.received_at))
         .group_by(DeadLetter.gateway, DeadLetter.unit, DeadLetter.reason))
    if gateway is not None:
        q = q.where(DeadLetter.gateway == gateway)
    rows = [RejectionCount(gateway=g, unit=u, reason=r, count=int(n), last_at=t)
            for g, u, r, n, t in session.execute(q)]
    return sorted(rows, key=lambda c: (c.gateway or "", c.unit or "", c.reason))


# --- users and tokens -------------------------------------------------------------


def create_user(session: Session, *, username: str, role: Role, password: str,
                now: datetime) -> tuple[User, bool]:
    """Create the user, or set the role and password of an existing one.
    Returns (user, created)."""
    user = session.scalar(select(User).where(User.username == username))
    created = user is None
    if user is None:
        user = User(username=username, role=role.value, password_hash=hash_password(password),
                    is_active=True, created_at=now)
        session.add(user)
    else:
        user.role = role.value
        user.password_hash = hash_password(password)
        user.is_active = True
    session.flush()
    return user, created


def ensure_bootstrap_admin(session: Session, *, settings: Settings, now: datetime) -> bool:
    """Create the bootstrap admin if configured and missing; never overwrites."""
    if settings.bootstrap_admin_password is None:
        return False
    exists = session.scalar(select(User.id).where(
        User.username == settings.bootstrap_admin_username))
    if exists is not None:
        return False
    create_user(session, username=settings.bootstrap_admin_username, role=Role.admin,
                password=settings.bootstrap_admin_password, now=now)
    return True


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username))
    ok = verify_password(password, user.password_hash if user is not None else None)
    if user is None or not ok or not user.is_active:
        return None
    return user


def issue_token(session: Session, *, user: User, secret_key: str, ttl: timedelta,
                now: datetime) -> tuple[str, datetime]:
    """A new bearer token for the user: (token, expires_at). Also drops the
    user's expired tokens."""
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id,
                                          ApiToken.expires_at < now))
    token = new_token()
    expires = now + ttl
    session.add(ApiToken(user_id=user.id, token_hash=token_digest(token, secret_key),
                         created_at=now, expires_at=expires))
    session.flush()
    return token, expires


def user_for_token(session: Session, *, token: str, secret_key: str,
                   now: datetime) -> User | None:
    row = session.scalar(select(ApiToken).options(joinedload(ApiToken.user)).where(
        ApiToken.token_hash == token_digest(token, secret_key)))
    if row is None or row.expires_at <= now or not row.user.is_active:
        return None
    return row.user
