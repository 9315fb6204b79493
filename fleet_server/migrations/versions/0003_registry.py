"""Registry: reference places, instrument passports, maintenance, encounters.

Tables: regions, provinces (seeded: Morocco's 12 regions and 75 provinces
and prefectures from fleet_server/data/morocco_admin.json), instruments,
instrument_assignments, instrument_checks, maintenance_tickets,
maintenance_notes, encounters, unit_staff, registry_sync.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-29

Self-contained (no import of fleet_server.models). The seed reads the data
file with its own few lines: format 1 only, so a later format needs its own
revision rather than a silent change of this one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = sa.DateTime(timezone=True)
DATA = Path(__file__).resolve().parents[2] / "data" / "morocco_admin.json"


def _fk(table: str, column: str, target: str,
        ondelete: str | None = None) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], ondelete=ondelete,
                                   name=op.f(f"fk_{table}_{column}_{target}"))


def upgrade() -> None:
    op.create_table(
        "regions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("name_ar", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_regions")),
        sa.UniqueConstraint("code", name=op.f("uq_regions_code")),
        sa.UniqueConstraint("name", name=op.f("uq_regions_name")),
    )
    op.create_table(
        "provinces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("name_ar", sa.String(length=128), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("region_id", sa.Integer(), nullable=False),
        _fk("provinces", "region_id", "regions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provinces")),
        sa.UniqueConstraint("code", name=op.f("uq_provinces_code")),
        sa.UniqueConstraint("name", name=op.f("uq_provinces_name")),
    )
    op.create_index(op.f("ix_provinces_region_id"), "provinces", ["region_id"])

    op.create_table(
        "instruments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("addr", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("mfr", sa.String(length=64), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=True),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("first_seen_at", UTC_TIME, nullable=True),
        sa.Column("last_seen_at", UTC_TIME, nullable=True),
        sa.Column("calibration_interval_days", sa.Integer(), nullable=True),
        sa.Column("calibration_last_done", sa.Date(), nullable=True),
        sa.Column("validation_interval_days", sa.Integer(), nullable=True),
        sa.Column("validation_last_done", sa.Date(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        _fk("instruments", "unit_id", "units"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instruments")),
        sa.UniqueConstraint("key", name=op.f("uq_instruments_key")),
    )
    op.create_index(op.f("ix_instruments_serial"), "instruments", ["serial"])
    op.create_index(op.f("ix_instruments_unit_id"), "instruments", ["unit_id"])

    op.create_table(
        "instrument_assignments",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("from_at", UTC_TIME, nullable=False),
        sa.Column("to_at", UTC_TIME, nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("by", sa.String(length=64), nullable=True),
        _fk("instrument_assignments", "instrument_id", "instruments", ondelete="CASCADE"),
        _fk("instrument_assignments", "unit_id", "units"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instrument_assignments")),
    )
    op.create_index("ix_instrument_assignments_inst_from", "instrument_assignments",
                    ["instrument_id", "from_at"])
    op.create_index(op.f("ix_instrument_assignments_unit_id"), "instrument_assignments",
                    ["unit_id"])

    op.create_table(
        "instrument_checks",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("done_on", sa.Date(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_at", UTC_TIME, nullable=False),
        _fk("instrument_checks", "instrument_id", "instruments", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instrument_checks")),
    )
    op.create_index(op.f("ix_instrument_checks_instrument_id"), "instrument_checks",
                    ["instrument_id"])

    op.create_table(
        "maintenance_tickets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.Integer(), nullable=True),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("opened_at", UTC_TIME, nullable=False),
        sa.Column("opened_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.Column("closed_at", UTC_TIME, nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        _fk("maintenance_tickets", "instrument_id", "instruments"),
        _fk("maintenance_tickets", "unit_id", "units"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_tickets")),
    )
    for column in ("instrument_id", "status", "unit_id"):
        op.create_index(op.f(f"ix_maintenance_tickets_{column}"), "maintenance_tickets",
                        [column])

    op.create_table(
        "maintenance_notes",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        _fk("maintenance_notes", "ticket_id", "maintenance_tickets", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_maintenance_notes")),
    )
    op.create_index(op.f("ix_maintenance_notes_ticket_id"), "maintenance_notes", ["ticket_id"])

    op.create_table(
        "encounters",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("patient_ref", sa.String(length=40), nullable=False),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("ended_at", UTC_TIME, nullable=True),
        sa.Column("opened_by", sa.String(length=64), nullable=False),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        _fk("encounters", "unit_id", "units"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_encounters")),
    )
    op.create_index(op.f("ix_encounters_patient_ref"), "encounters", ["patient_ref"])
    op.create_index("ix_encounters_unit_started", "encounters", ["unit_id", "started_at"])
    op.create_index("uq_encounters_open_unit", "encounters", ["unit_id"], unique=True,
                    sqlite_where=sa.text("ended_at IS NULL"),
                    postgresql_where=sa.text("ended_at IS NULL"))

    op.create_table(
        "unit_staff",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("assigned_at", UTC_TIME, nullable=False),
        _fk("unit_staff", "unit_id", "units"),
        _fk("unit_staff", "user_id", "users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_unit_staff")),
    )
    op.create_index(op.f("ix_unit_staff_unit_id"), "unit_staff", ["unit_id"])

    op.create_table(
        "registry_sync",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last_reading_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_registry_sync")),
    )
    _seed_places()


def _seed_places() -> None:
    doc = json.loads(DATA.read_text(encoding="utf-8"))
    if doc.get("format") != 1:
        raise RuntimeError(f"{DATA}: format {doc.get('format')!r}, this revision reads 1")
    regions = sa.table("regions", sa.column("id", sa.Integer()), sa.column("code", sa.String()),
                       sa.column("name", sa.String()), sa.column("name_ar", sa.String()))
    provinces = sa.table("provinces", sa.column("code", sa.String()),
                         sa.column("name", sa.String()), sa.column("name_ar", sa.String()),
                         sa.column("kind", sa.String()), sa.column("region_id", sa.Integer()))
    rows = []
    for i, r in enumerate(doc["regions"], start=1):
        op.bulk_insert(regions, [{"id": i, "code": r["code"], "name": r["name"],
                                  "name_ar": r.get("name_ar")}])
        rows += [{"code": p["code"], "name": p["name"], "name_ar": p.get("name_ar"),
                  "kind": p["kind"], "region_id": i} for p in r["provinces"]]
    op.bulk_insert(provinces, rows)
    if op.get_bind().dialect.name == "postgresql":  # explicit ids: move the sequence on
        op.execute("SELECT setval(pg_get_serial_sequence('regions', 'id'), "
                   "(SELECT max(id) FROM regions))")


def downgrade() -> None:
    for table in ("registry_sync", "unit_staff", "encounters", "maintenance_notes",
                  "maintenance_tickets", "instrument_checks", "instrument_assignments",
                  "instruments", "provinces", "regions"):
        op.drop_table(table)
