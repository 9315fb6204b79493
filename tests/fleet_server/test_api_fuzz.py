"""Fuzzing the REST API from its own OpenAPI document (issue 5, "Bad input"):
schemathesis generates valid and invalid requests for every operation and
sends them, as an admin (so the validators run, not the role checks), to the
real app on a real SQLite database seeded with two units, their gateways and
a reading, with broker account files to write. No request may get a 5xx, and
every documented response must match its schema: bad input gets a 4xx naming
the field.

Deterministic (hypothesis derandomized) and bounded per operation so CI is
stable and the file stays well under two minutes on a small machine.
PostgreSQL is covered by the other API tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from fleet_server import crud
from fleet_server.api import create_app
from fleet_server.db import make_engine, session_factory
from fleet_server.ingest import ingest_batch
from fleet_server.models import Role, User
from fleet_server.security import hash_password
from tests.fleet_server.helpers import DATA_TOPIC, NOW, golden, make_settings, register

SECRET = "t" * 40
MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def fuzz_app(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[TestClient, str]]:
    """The app on a seeded SQLite copy (shared by all operations: fuzzed writes
    pile up, as they would on a real server) and an admin bearer token."""
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / "fleet.db"
    shutil.copyfile(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    with session_factory(engine)() as s:
        register(s, ("U001", "gw-u001"), ("U002", "gw-u002"))
        ingest_batch(s, DATA_TOPIC, golden("data_bp.json"), NOW)
        admin = User(username="admin", role=Role.admin.value,
                     password_hash=hash_password("correct horse battery staple"),
                     is_active=True, created_at=NOW)
        s.add(admin)
        s.flush()
        token, _ = crud.issue_token(s, user=admin, secret_key=SECRET,
                                    ttl=timedelta(hours=1), now=datetime.now(UTC))
        s.commit()
    # broker account files (no broker to reload: applied at its next start),
    # so issuing credentials runs instead of answering 503 "not configured"
    (tmp / "passwd").write_text("")
    (tmp / "acl").write_text("")
    settings = make_settings(str(engine.url), secret_key=SECRET,
                             broker_password_file=str(tmp / "passwd"),
                             broker_acl_file=str(tmp / "acl"))
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:  # runs the lifespan once for the module
        yield client, token
    engine.dispose()


# The OpenAPI document needs no database: read it from an app on an unused
# in-memory engine at import, so pytest lists one test per operation. The
# requests go to the fixture's app on the seeded database.
schema = schemathesis.openapi.from_asgi(
    "/api/v1/openapi.json", create_app(make_settings("sqlite://", secret_key=SECRET)))


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_error(case: schemathesis.Case, fuzz_app: tuple[TestClient, str]) -> None:
    client, token = fuzz_app
    case.call_and_validate(app=client.app, headers={"Authorization": f"Bearer {token}"},
                           checks=[not_a_server_error, response_schema_conformance])
