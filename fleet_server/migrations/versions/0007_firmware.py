"""Firmware bundles and OTA rollouts (fleet_server/firmware_store.py).

Tables firmware_bundles (one signed bundle per version), firmware_rollouts
(a bundle sent to a target, its download-link token and expiry) and
firmware_rollout_gateways (one row per targeted gateway, with its `ota`
command; none yet while held back behind the canary).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

Self-contained (no import of fleet_server.models): a migration is history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "firmware_bundles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("commit", sa.String(length=64), nullable=True),
        sa.Column("built_ms", sa.BigInteger(), nullable=True),
        sa.Column("uploaded_at", UTC_TIME, nullable=False),
        sa.Column("uploaded_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_bundles")),
        sa.UniqueConstraint("version", name=op.f("uq_firmware_bundles_version")),
    )
    op.create_table(
        "firmware_rollouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bundle_pk", sa.Integer(), nullable=False),
        sa.Column("target", _json(), nullable=False),
        sa.Column("canary", sa.Integer(), nullable=True),
        sa.Column("deadline_s", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("token_expires_at", UTC_TIME, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["bundle_pk"], ["firmware_bundles.id"],
                                name=op.f("fk_firmware_rollouts_bundle_pk_firmware_bundles")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_rollouts")),
        sa.UniqueConstraint("token", name=op.f("uq_firmware_rollouts_token")),
    )
    op.create_index(op.f("ix_firmware_rollouts_bundle_pk"), "firmware_rollouts",
                    ["bundle_pk"])
    op.create_table(
        "firmware_rollout_gateways",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rollout_pk", sa.Integer(), nullable=False),
        sa.Column("gateway_pk", sa.Integer(), nullable=False),
        sa.Column("command_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=True),
        sa.ForeignKeyConstraint(["rollout_pk"], ["firmware_rollouts.id"],
                                name=op.f("fk_firmware_rollout_gateways_rollout_pk_firmware_rollouts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["gateway_pk"], ["gateways.id"],
                                name=op.f("fk_firmware_rollout_gateways_gateway_pk_gateways"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["command_pk"], ["commands.id"],
                                name=op.f("fk_firmware_rollout_gateways_command_pk_commands"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_rollout_gateways")),
    )
    op.create_index(op.f("ix_firmware_rollout_gateways_rollout_pk"),
                    "firmware_rollout_gateways", ["rollout_pk"])
    op.create_index(op.f("ix_firmware_rollout_gateways_gateway_pk"),
                    "firmware_rollout_gateways", ["gateway_pk"])


def downgrade() -> None:
    op.drop_table("firmware_rollout_gateways")
    op.drop_table("firmware_rollouts")
    op.drop_table("firmware_bundles")
