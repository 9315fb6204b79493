"""The fleet server's tables (SQLAlchemy 2, typed declarative).

Every schema change here needs an Alembic revision in `migrations/versions/`
(`tests/fleet_server/test_migrations.py` fails when the migrated schema and
these models differ). Works on SQLite and PostgreSQL: times are stored as
UTC (`UTCDateTime`), JSON as JSON (JSONB on PostgreSQL), ids as BIGINT
(INTEGER on SQLite, so that they autoincrement).

Idempotency keys (docs/protocol.md): a reading is unique by
(gateway, jid, seq), and by (instrument key, iseq) when the instrument numbers
its records; the instrument key is its serial when known, else its address.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in, an aware UTC datetime out, on every backend
    (SQLite keeps no zone: values are stored as naive UTC there)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None,
                             dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# BIGINT ids that still autoincrement on SQLite (only INTEGER PRIMARY KEY does).
BigId = BigInteger().with_variant(Integer(), "sqlite")
JSONDoc = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Role(enum.StrEnum):
    """API roles (docs/fleet_server.md lists which routes each may call)."""

    admin = "admin"
    logistics = "logistics"
    technician = "technician"
    nurse = "nurse"
    reception = "reception"


class Unit(Base):
    """A mobile medical unit (U001 ... U100)."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str | None] = mapped_column(String(128))
    province: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    gateways: Mapped[list[Gateway]] = relationship(back_populates="unit",
                                                   order_by="Gateway.gateway_id")


class Gateway(Base):
    """A registered gateway; its health fields follow `state`/`birth`/`health`."""

    __tablename__ = "gateways"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gateway_id: Mapped[str] = mapped_column(String(32), unique=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_state: Mapped[str | None] = mapped_column(String(16))  # online | offline
    last_state_reason: Mapped[str | None] = mapped_column(String(64))
    last_state_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fw: Mapped[str | None] = mapped_column(String(32))
    boot_count: Mapped[int | None] = mapped_column(BigInteger)
    last_birth: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    last_health: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    # The `ts` (unix ms) of the state message stored above: an older one
    # delivered later (a retained copy, a worker's queue) is ignored.
    state_ts: Mapped[int | None] = mapped_column(BigInteger)
    # The health model's view (health_model.py): online | offline | stale,
    # with its history in gateway_state_changes.
    link_state: Mapped[str | None] = mapped_column(String(16))
    link_state_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Broker credentials issued by the API (broker_accounts.py): Mosquitto's
    # `$7$` PBKDF2 hash of the password (never the password), when and by whom.
    broker_password_hash: Mapped[str | None] = mapped_column(String(255))
    credentials_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    credentials_issued_by: Mapped[str | None] = mapped_column(String(64))  # username

    unit: Mapped[Unit] = relationship(back_populates="gateways")


class Reading(Base):
    """One journal record the server accepted (kind reading, event or health)."""

    __tablename__ = "readings"
    __table_args__ = (
        UniqueConstraint("gateway_pk", "jid", "seq"),
        Index("uq_readings_inst_key_iseq", "inst_key", "iseq", unique=True,
              sqlite_where="iseq IS NOT NULL", postgresql_where="iseq IS NOT NULL"),
        Index("ix_readings_unit_received", "unit_pk", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway_pk: Mapped[int] = mapped_column(ForeignKey("gateways.id"))
    unit_pk: Mapped[int] = mapped_column(ForeignKey("units.id"))
    jid: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    type: Mapped[str | None] = mapped_column(String(32), index=True)
    inst_addr: Mapped[str | None] = mapped_column(String(64))
    inst_model: Mapped[str | None] = mapped_column(String(64))
    inst_serial: Mapped[str | None] = mapped_column(String(64))
    inst_mfr: Mapped[str | None] = mapped_column(String(64))
    inst_key: Mapped[str | None] = mapped_column(String(64))
    iseq: Mapped[int | None] = mapped_column(BigInteger)
    # The instrument's own clock, lossless: 'YYYY-MM-DDTHH:MM:SS' with unknown
    # parts kept as 0 (e.g. '0000-04-17T20:41:59'); NULL when it sent none.
    itime: Mapped[str | None] = mapped_column(String(19))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # gateway rtime
    ingested_at: Mapped[datetime] = mapped_column(UTCDateTime)  # server commit
    values: Mapped[list[list[Any]]] = mapped_column(JSONDoc)  # [[name, number, UCUM]]
    flags: Mapped[list[str]] = mapped_column(JSONDoc)
    # An ecg_strip's samples: the record's validated `ecg` member
    # (docs/protocol.md, "ECG strips"); NULL for every other reading.
    ecg: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    # sha256 of the record's canonical JSON: tells a harmless re-send (same
    # content) from a conflict (same key, other content).
    content_hash: Mapped[str] = mapped_column(String(64))

    gateway: Mapped[Gateway] = relationship()
    unit: Mapped[Unit] = relationship()


class DeadLetter(Base):
    """A message or record that was not accepted, kept whole with the reason."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_gateway_jid_seq", "gateway", "jid", "seq"),
        Index("ix_dead_letters_gateway_reason", "gateway", "reason"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    topic: Mapped[str] = mapped_column(Text)
    # As named in the topic: may be unknown to the registry, so no foreign keys.
    gateway: Mapped[str | None] = mapped_column(String(64))
    unit: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)  # names the offending field
    jid: Mapped[str | None] = mapped_column(String(16))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    # The whole message (message-level reasons) or the one record's JSON.
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class AckCursor(Base):
    """Per (gateway, jid): everything up to `upto` is committed; `rejected` is
    what the last ack listed (re-sent unchanged when nothing new is covered)."""

    __tablename__ = "ack_cursors"

    gateway_pk: Mapped[int] = mapped_column(ForeignKey("gateways.id"), primary_key=True)
    jid: Mapped[str] = mapped_column(String(16), primary_key=True)
    upto: Mapped[int] = mapped_column(BigInteger)
    rejected: Mapped[list[int]] = mapped_column(JSONDoc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # a Role value
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """An opaque bearer token, stored only as its HMAC (security.token_digest)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    user: Mapped[User] = relationship()


# --- the device-health model, alerts and commands (fleet_server/health_model.py,
# alerts.py, commands.py; docs/operations.md) ----------------------------------------


class GatewayStateChange(Base):
    """A change of a gateway's tracked link state (`Gateway.link_state`):
    online, offline (its `state` said so: last will, shutdown) or stale (no
    message for `heartbeat_missed` heartbeat intervals). Availability is
    computed from these rows."""

    __tablename__ = "gateway_state_changes"
    __table_args__ = (Index("ix_gateway_state_changes_gateway_at", "gateway_pk", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway_pk: Mapped[int] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))  # online | offline | stale
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(64))


class HealthSample(Base):
    """A heartbeat kept as a time series point (one per gateway per
    `health_sample_interval_s`; pruned after `health_retention_days`)."""

    __tablename__ = "health_samples"
    __table_args__ = (Index("ix_health_samples_gateway_at", "gateway_pk", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway_pk: Mapped[int] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # server receive time
    journal_depth: Mapped[int | None] = mapped_column(BigInteger)
    journal_oldest_age_s: Mapped[int | None] = mapped_column(BigInteger)
    heap_free: Mapped[int | None] = mapped_column(BigInteger)
    rssi: Mapped[int | None] = mapped_column(Integer)
    supply_mv: Mapped[int | None] = mapped_column(Integer)
    clock_offset_ms: Mapped[int | None] = mapped_column(BigInteger)  # gateway ts - receive
    alarms: Mapped[list[str]] = mapped_column(JSONDoc)


class InstrumentHealth(Base):
    """The latest that heartbeats and births said about one instrument of one
    gateway (by address: a BLE address or a serial port name)."""

    __tablename__ = "instrument_health"

    gateway_pk: Mapped[int] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"),
                                            primary_key=True)
    addr: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(64))
    # Listed in the gateway's last birth (paired), or seen in a heartbeat since;
    # False once a birth no longer lists it (unpaired: no not-seen alert).
    active: Mapped[bool] = mapped_column(Boolean)
    first_known_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    battery: Mapped[int | None] = mapped_column(Integer)  # percent
    battery_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    drift_ms: Mapped[int | None] = mapped_column(BigInteger)  # its clock - the gateway's
    drift_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    errors: Mapped[int | None] = mapped_column(BigInteger)  # error counter (since boot)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InstrumentSample(Base):
    """Battery, drift and error counter of an instrument over time (sampled
    with HealthSample, same retention)."""

    __tablename__ = "instrument_samples"
    __table_args__ = (Index("ix_instrument_samples_gateway_addr_at", "gateway_pk", "addr",
                            "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway_pk: Mapped[int] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"))
    addr: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    battery: Mapped[int | None] = mapped_column(Integer)
    drift_ms: Mapped[int | None] = mapped_column(BigInteger)
    errors: Mapped[int | None] = mapped_column(BigInteger)


class UnitSchedule(Base):
    """A unit's planned working week (no row: the settings' default)."""

    __tablename__ = "unit_schedules"

    unit_pk: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"),
                                         primary_key=True)
    weekdays: Mapped[str] = mapped_column(String(7))  # Mon..Sun, e.g. "1111100"
    start_minute: Mapped[int] = mapped_column(Integer)  # local time of day
    end_minute: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UnitCalendarDay(Base):
    """An exception to a unit's working week: a day off (holiday, leave) or
    an extra working day."""

    __tablename__ = "unit_calendar_days"
    __table_args__ = (UniqueConstraint("unit_pk", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_pk: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    working: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(String(128))


class AlertStatus(enum.StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


class Alert(Base):
    """One alert: open -> acknowledged (by a user, with a note) -> resolved
    (automatically when its condition clears, or by a user). At most one
    alert per (kind, subject) is not resolved (partial unique index)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("uq_alerts_active_kind_subject", "kind", "subject", unique=True,
              sqlite_where="status <> 'resolved'", postgresql_where="status <> 'resolved'"),
        Index("ix_alerts_status_opened", "status", "opened_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(160))  # e.g. gateway:gw-u001
    gateway_pk: Mapped[int | None] = mapped_column(
        ForeignKey("gateways.id", ondelete="CASCADE"), index=True)
    instrument: Mapped[str | None] = mapped_column(String(64))  # addr or instrument key
    status: Mapped[str] = mapped_column(String(16))  # an AlertStatus value
    severity: Mapped[str] = mapped_column(String(16))  # warning | critical
    detail: Mapped[str] = mapped_column(Text)  # device figures only, never medical data
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)  # last evaluation that held
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))  # username
    ack_note: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(64))  # None: automatically
    resolve_note: Mapped[str | None] = mapped_column(Text)

    gateway: Mapped[Gateway | None] = relationship()


class Command(Base):
    """A command to a gateway (docs/protocol.md, `cmd`) and its correlated result."""

    __tablename__ = "commands"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    command_id: Mapped[str] = mapped_column(String(64), unique=True)  # c-<16 hex digits>
    gateway_pk: Mapped[int] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"),
                                            index=True)
    op: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    # pending -> ok | error (the gateway's result); expired: no result by then
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(64))  # username
    ts: Mapped[int] = mapped_column(BigInteger)  # the wire `ts` (unix ms)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # broker PUBACK
    publish_attempts: Mapped[int] = mapped_column(Integer)
    result_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # server receive time
    result_ts: Mapped[int | None] = mapped_column(BigInteger)  # gateway time (unix ms)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    error: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    replay: Mapped[bool | None] = mapped_column(Boolean)

    gateway: Mapped[Gateway] = relationship()


class FirmwareBundle(Base):
    """A signed firmware bundle uploaded for OTA (fleet_server/firmware_store.py)."""

    __tablename__ = "firmware_bundles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32), unique=True)  # MAJOR.MINOR.PATCH
    sha256: Mapped[str] = mapped_column(String(64))  # of the .ummc file
    size: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[str] = mapped_column(String(16))  # the release key that signed it
    commit: Mapped[str | None] = mapped_column(String(64))
    built_ms: Mapped[int | None] = mapped_column(BigInteger)  # manifest `created`
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    uploaded_by: Mapped[str | None] = mapped_column(String(64))


class FirmwareRollout(Base):
    """An OTA rollout of one bundle to a set of gateways: `ota` commands, the
    first `canary` of them at once, the rest when released."""

    __tablename__ = "firmware_rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bundle_pk: Mapped[int] = mapped_column(ForeignKey("firmware_bundles.id"), index=True)
    target: Mapped[dict[str, Any]] = mapped_column(JSONDoc)  # as requested
    canary: Mapped[int | None] = mapped_column(Integer)
    deadline_s: Mapped[int] = mapped_column(Integer)
    token: Mapped[str] = mapped_column(String(64), unique=True)  # download link secret
    token_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(String(64))

    bundle: Mapped[FirmwareBundle] = relationship()
    members: Mapped[list[FirmwareRolloutGateway]] = relationship(
        back_populates="rollout", order_by="FirmwareRolloutGateway.id")


class FirmwareRolloutGateway(Base):
    """One gateway of a rollout; no command yet: held back behind the canary."""

    __tablename__ = "firmware_rollout_gateways"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_pk: Mapped[int] = mapped_column(ForeignKey("firmware_rollouts.id",
                                                       ondelete="CASCADE"), index=True)
    gateway_pk: Mapped[int] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"),
                                            index=True)
    command_pk: Mapped[int | None] = mapped_column(BigId, ForeignKey("commands.id",
                                                              ondelete="SET NULL"))

    rollout: Mapped[FirmwareRollout] = relationship(back_populates="members")
    gateway: Mapped[Gateway] = relationship()
    command: Mapped[Command | None] = relationship()


# Tables of the registry (reference places, instruments, maintenance,
# encounters) live in their own module on the same Base; imported here so that
# `Base.metadata` always holds every table.
from fleet_server import registry_models  # noqa: E402,F401
