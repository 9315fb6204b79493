"""Initial schema (units to API tokens).

Tables: units, gateways, readings, dead_letters, ack_cursors, users,
api_tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-29

Self-contained on purpose (no import of fleet_server.models): a migration is
history and must not change when the models do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "units",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("province", sa.String(length=64), nullable=True),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_units")),
        sa.UniqueConstraint("code", name=op.f("uq_units_code")),
    )
    op.create_table(
        "gateways",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.String(length=32), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("registered_at", UTC_TIME, nullable=False),
        sa.Column("last_state", sa.String(length=16), nullable=True),
        sa.Column("last_state_reason", sa.String(length=64), nullable=True),
        sa.Column("last_state_at", UTC_TIME, nullable=True),
        sa.Column("last_seen_at", UTC_TIME, nullable=True),
        sa.Column("fw", sa.String(length=32), nullable=True),
        sa.Column("boot_count", sa.BigInteger(), nullable=True),
        sa.Column("last_birth", _json(), nullable=True),
        sa.Column("last_health", _json(), nullable=True),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"],
                                name=op.f("fk_gateways_unit_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateways")),
        sa.UniqueConstraint("gateway_id", name=op.f("uq_gateways_gateway_id")),
    )
    op.create_index(op.f("ix_gateways_unit_id"), "gateways", ["unit_id"])

    op.create_table(
        "readings",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("gateway_pk", sa.Integer(), nullable=False),
        sa.Column("unit_pk", sa.Integer(), nullable=False),
        sa.Column("jid", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=True),
        sa.Column("inst_addr", sa.String(length=64), nullable=True),
        sa.Column("inst_model", sa.String(length=64), nullable=True),
        sa.Column("inst_serial", sa.String(length=64), nullable=True),
        sa.Column("inst_mfr", sa.String(length=64), nullable=True),
        sa.Column("inst_key", sa.String(length=64), nullable=True),
        sa.Column("iseq", sa.BigInteger(), nullable=True),
        sa.Column("itime", sa.String(length=19), nullable=True),
        sa.Column("received_at", UTC_TIME, nullable=False),
        sa.Column("ingested_at", UTC_TIME, nullable=False),
        sa.Column("values", _json(), nullable=False),
        sa.Column("flags", _json(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["gateway_pk"], ["gateways.id"],
                                name=op.f("fk_readings_gateway_pk_gateways")),
        sa.ForeignKeyConstraint(["unit_pk"], ["units.id"],
                                name=op.f("fk_readings_unit_pk_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readings")),
        sa.UniqueConstraint("gateway_pk", "jid", "seq",
                            name=op.f("uq_readings_gateway_pk_jid_seq")),
    )
    op.create_index(op.f("ix_readings_received_at"), "readings", ["received_at"])
    op.create_index(op.f("ix_readings_type"), "readings", ["type"])
    op.create_index("ix_readings_unit_received", "readings", ["unit_pk", "received_at"])
    op.create_index("uq_readings_inst_key_iseq", "readings", ["inst_key", "iseq"], unique=True,
                    sqlite_where=sa.text("iseq IS NOT NULL"),
                    postgresql_where=sa.text("iseq IS NOT NULL"))

    op.create_table(
        "dead_letters",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("received_at", UTC_TIME, nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=True),
        sa.Column("unit", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("jid", sa.String(length=16), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index("ix_dead_letters_gateway_jid_seq", "dead_letters", ["gateway", "jid", "seq"])
    op.create_index("ix_dead_letters_gateway_reason", "dead_letters", ["gateway", "reason"])
    op.create_index(op.f("ix_dead_letters_received_at"), "dead_letters", ["received_at"])

    op.create_table(
        "ack_cursors",
        sa.Column("gateway_pk", sa.Integer(), nullable=False),
        sa.Column("jid", sa.String(length=16), nullable=False),
        sa.Column("upto", sa.BigInteger(), nullable=False),
        sa.Column("rejected", _json(), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["gateway_pk"], ["gateways.id"],
                                name=op.f("fk_ack_cursors_gateway_pk_gateways")),
        sa.PrimaryKeyConstraint("gateway_pk", "jid", name=op.f("pk_ack_cursors")),
    )

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_expires_at"), "api_tokens", ["expires_at"])
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_table("users")
    op.drop_table("ack_cursors")
    op.drop_table("dead_letters")
    op.drop_table("readings")
    op.drop_table("gateways")
    op.drop_table("units")
