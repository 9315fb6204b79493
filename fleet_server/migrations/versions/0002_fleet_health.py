"""Fleet health: link state history, health samples, instrument health,
unit schedules, alerts, commands.

Tables: gateway_state_changes, health_samples, instrument_health,
instrument_samples, unit_schedules, unit_calendar_days, alerts, commands;
columns gateways.state_ts, gateways.link_state, gateways.link_state_at.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Self-contained (no import of fleet_server.models): a migration is history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _gateway_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["gateway_pk"], ["gateways.id"],
                                   name=op.f(f"fk_{table}_gateway_pk_gateways"),
                                   ondelete="CASCADE")


def _unit_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["unit_pk"], ["units.id"],
                                   name=op.f(f"fk_{table}_unit_pk_units"), ondelete="CASCADE")


def upgrade() -> None:
    with op.batch_alter_table("gateways") as batch:
        batch.add_column(sa.Column("state_ts", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("link_state", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("link_state_at", UTC_TIME, nullable=True))

    op.create_table(
        "gateway_state_changes",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("gateway_pk", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        _gateway_fk("gateway_state_changes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_state_changes")),
    )
    op.create_index("ix_gateway_state_changes_gateway_at", "gateway_state_changes",
                    ["gateway_pk", "at"])

    op.create_table(
        "health_samples",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("gateway_pk", sa.Integer(), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("journal_depth", sa.BigInteger(), nullable=True),
        sa.Column("journal_oldest_age_s", sa.BigInteger(), nullable=True),
        sa.Column("heap_free", sa.BigInteger(), nullable=True),
        sa.Column("rssi", sa.Integer(), nullable=True),
        sa.Column("supply_mv", sa.Integer(), nullable=True),
        sa.Column("clock_offset_ms", sa.BigInteger(), nullable=True),
        sa.Column("alarms", _json(), nullable=False),
        _gateway_fk("health_samples"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_samples")),
    )
    op.create_index(op.f("ix_health_samples_at"), "health_samples", ["at"])
    op.create_index("ix_health_samples_gateway_at", "health_samples", ["gateway_pk", "at"])

    op.create_table(
        "instrument_health",
        sa.Column("gateway_pk", sa.Integer(), nullable=False),
        sa.Column("addr", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=True),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("first_known_at", UTC_TIME, nullable=False),
        sa.Column("last_seen_at", UTC_TIME, nullable=True),
        sa.Column("battery", sa.Integer(), nullable=True),
        sa.Column("battery_at", UTC_TIME, nullable=True),
        sa.Column("drift_ms", sa.BigInteger(), nullable=True),
        sa.Column("drift_at", UTC_TIME, nullable=True),
        sa.Column("errors", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        _gateway_fk("instrument_health"),
        sa.PrimaryKeyConstraint("gateway_pk", "addr", name=op.f("pk_instrument_health")),
    )

    op.create_table(
        "instrument_samples",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("gateway_pk", sa.Integer(), nullable=False),
        sa.Column("addr", sa.String(length=64), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("last_seen_at", UTC_TIME, nullable=True),
        sa.Column("battery", sa.Integer(), nullable=True),
        sa.Column("drift_ms", sa.BigInteger(), nullable=True),
        sa.Column("errors", sa.BigInteger(), nullable=True),
        _gateway_fk("instrument_samples"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instrument_samples")),
    )
    op.create_index(op.f("ix_instrument_samples_at"), "instrument_samples", ["at"])
    op.create_index("ix_instrument_samples_gateway_addr_at", "instrument_samples",
                    ["gateway_pk", "addr", "at"])

    op.create_table(
        "unit_schedules",
        sa.Column("unit_pk", sa.Integer(), nullable=False),
        sa.Column("weekdays", sa.String(length=7), nullable=False),
        sa.Column("start_minute", sa.Integer(), nullable=False),
        sa.Column("end_minute", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        _unit_fk("unit_schedules"),
        sa.PrimaryKeyConstraint("unit_pk", name=op.f("pk_unit_schedules")),
    )

    op.create_table(
        "unit_calendar_days",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("unit_pk", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("working", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(length=128), nullable=True),
        _unit_fk("unit_calendar_days"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unit_calendar_days")),
        sa.UniqueConstraint("unit_pk", "day", name=op.f("uq_unit_calendar_days_unit_pk_day")),
    )

    op.create_table(
        "alerts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=160), nullable=False),
        sa.Column("gateway_pk", sa.Integer(), nullable=True),
        sa.Column("instrument", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("opened_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.Column("acknowledged_at", UTC_TIME, nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("ack_note", sa.Text(), nullable=True),
        sa.Column("resolved_at", UTC_TIME, nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.Column("resolve_note", sa.Text(), nullable=True),
        _gateway_fk("alerts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_gateway_pk"), "alerts", ["gateway_pk"])
    op.create_index("ix_alerts_status_opened", "alerts", ["status", "opened_at"])
    op.create_index("uq_alerts_active_kind_subject", "alerts", ["kind", "subject"], unique=True,
                    sqlite_where=sa.text("status <> 'resolved'"),
                    postgresql_where=sa.text("status <> 'resolved'"))

    op.create_table(
        "commands",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=False),
        sa.Column("gateway_pk", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(length=32), nullable=False),
        sa.Column("args", _json(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.Column("published_at", UTC_TIME, nullable=True),
        sa.Column("publish_attempts", sa.Integer(), nullable=False),
        sa.Column("result_at", UTC_TIME, nullable=True),
        sa.Column("result_ts", sa.BigInteger(), nullable=True),
        sa.Column("result", _json(), nullable=True),
        sa.Column("error", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("replay", sa.Boolean(), nullable=True),
        _gateway_fk("commands"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commands")),
        sa.UniqueConstraint("command_id", name=op.f("uq_commands_command_id")),
    )
    op.create_index(op.f("ix_commands_gateway_pk"), "commands", ["gateway_pk"])
    op.create_index(op.f("ix_commands_status"), "commands", ["status"])


def downgrade() -> None:
    for table in ("commands", "alerts", "unit_calendar_days", "unit_schedules",
                  "instrument_samples", "instrument_health", "health_samples",
                  "gateway_state_changes"):
        op.drop_table(table)
    with op.batch_alter_table("gateways") as batch:
        batch.drop_column("link_state_at")
        batch.drop_column("link_state")
        batch.drop_column("state_ts")
