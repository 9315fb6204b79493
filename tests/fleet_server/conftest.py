"""Fixtures for the fleet server tests.

Databases are real: every database test runs on SQLite (a file in the test's
tmp dir) and on PostgreSQL (a throwaway server from devharness.postgres,
started once per session; `UMMC_TEST_POSTGRES_DSN` names another one), with
one fresh database per test:
- `db_url`: an empty database (migration tests);
- `migrated_url`: a database at head, copied from a template migrated once
  per session (a file copy on SQLite, CREATE DATABASE ... TEMPLATE on
  PostgreSQL), so the schema costs milliseconds per test.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from devharness.postgres import ServerBase, postgres_available, server_for_tests
from fleet_server.db import make_engine, migrate, session_factory
from tests.fleet_server.helpers import register

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ServerBase]:
    if not postgres_available():
        pytest.skip("PostgreSQL binaries not found (apt-get install postgresql) and "
                    "UMMC_TEST_POSTGRES_DSN not set")
    server = server_for_tests()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_template(pg_server: ServerBase) -> Iterator[str]:
    name = pg_server.create_database("ummc_template_" + uuid.uuid4().hex[:8])
    migrate(pg_server.url(name))
    yield name
    pg_server.drop_database(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "fleet.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fleet.db'}"
        return
    server: ServerBase = request.getfixturevalue("pg_server")
    name = server.create_database()
    yield server.url(name)
    server.drop_database(name)


@pytest.fixture(params=BACKENDS)
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database at the head revision on each backend."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "fleet.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    server: ServerBase = request.getfixturevalue("pg_server")
    name = server.create_database(template=request.getfixturevalue("pg_template"))
    yield server.url(name)
    server.drop_database(name)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite database only (for the tests that need one backend)."""
    path = tmp_path / "fleet.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    e = make_engine(migrated_url)
    yield e
    e.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as s:
        yield s


@pytest.fixture
def registry(session: Session) -> Session:
    """The session, with U001/gw-u001 and U002/gw-u002 registered."""
    register(session, ("U001", "gw-u001"), ("U002", "gw-u002"))
    return session
