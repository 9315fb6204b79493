"""ECG strips: the samples of an ecg_strip reading.

Column readings.ecg (JSON; JSONB on PostgreSQL), NULL for every other
reading: the record's validated `ecg` member (docs/protocol.md, "ECG
strips"), base64 samples and all.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-29

Self-contained (no import of fleet_server.models): a migration is history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("readings") as batch:
        batch.add_column(sa.Column(
            "ecg", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()),
                                          "postgresql"), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("readings") as batch:
        batch.drop_column("ecg")
