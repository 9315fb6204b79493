"""Gateway broker credentials issued by the API (fleet_server/broker_accounts.py).

Columns gateways.broker_password_hash (Mosquitto's `$7$` PBKDF2-SHA512 hash
of the gateway's broker password, never the password), credentials_issued_at
and credentials_issued_by (the API user), all NULL for gateways whose
password was made by hand.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

Self-contained (no import of fleet_server.models): a migration is history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gateways") as batch:
        batch.add_column(sa.Column("broker_password_hash", sa.String(255), nullable=True))
        batch.add_column(sa.Column("credentials_issued_at", sa.DateTime(timezone=True),
                                   nullable=True))
        batch.add_column(sa.Column("credentials_issued_by", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateways") as batch:
        batch.drop_column("credentials_issued_by")
        batch.drop_column("credentials_issued_at")
        batch.drop_column("broker_password_hash")
