"""The Alembic history builds exactly the schema the models describe, on
SQLite and PostgreSQL, from any working directory, and can be walked back."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from fleet_server.db import alembic_config, make_engine, migrate
from fleet_server.models import Base

# every table the models declare (all model modules are imported by
# fleet_server.models), plus Alembic's own
TABLES = set(Base.metadata.tables) | {"alembic_version"}
# the first tables, which must never disappear
assert {"units", "gateways", "readings", "dead_letters", "ack_cursors", "users",
        "api_tokens"} <= TABLES


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    migrate(db_url)
    assert _diff(db_url) == []
    engine = make_engine(db_url)
    try:
        assert set(inspect(engine).get_table_names()) == TABLES
    finally:
        engine.dispose()


def test_migrate_from_another_directory_twice_and_back(db_url: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # script_location must not depend on the cwd
    migrate(db_url)
    migrate(db_url)  # idempotent
    command.downgrade(alembic_config(db_url), "base")
    engine = make_engine(db_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    migrate(db_url)
    assert _diff(db_url) == []


def test_sqlite_runs_wal_with_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'dir' / 'fleet.db'}"  # parents created
    migrate(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    finally:
        engine.dispose()
