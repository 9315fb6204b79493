"""Join the three feature branches made side by side on 0001: fleet health
(0002), the registry (0003) and ECG samples (0004). No schema change; later
revisions build on this one.

Revision ID: 0005
Revises: 0002, 0003, 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0005"
down_revision: str | Sequence[str] | None = ("0002", "0003", "0004")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
