"""The REST API through FastAPI's TestClient on a real database: who may call
what (a table of every route x role), logins and tokens, and what a reading
looks like to a client."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from fleet_server import crud
from fleet_server.api import create_app
from fleet_server.db import session_factory
from fleet_server.ingest import ingest_batch
from fleet_server.models import ApiToken, Role, User
from fleet_server.security import hash_password
from tests.fleet_server.helpers import (
    DATA_TOPIC,
    NOW,
    RouteSpec,
    batch,
    bp_record,
    golden,
    golden_json,
    make_settings,
    register,
)

SECRET = "t" * 40
PASSWORD = "correct horse battery staple"
ALL = frozenset(Role)

# Every authenticated route and the roles that may call it (the contract of
# docs/fleet_server.md), by (method, OpenAPI path). A new route must be added
# here or in a `tests/fleet_server/routes_*.py` module's ROUTES (one per
# feature, merged below): see test_every_route_is_in_the_table.
ROUTES: dict[tuple[str, str], RouteSpec] = {
    ("GET", "/api/v1/readings"): RouteSpec(frozenset({Role.admin, Role.nurse, Role.technician})),
    ("GET", "/api/v1/readings/{reading_id}/samples"): RouteSpec(
        frozenset({Role.admin, Role.nurse, Role.technician}),
        url="/api/v1/readings/1/samples", status=404),
    ("GET", "/api/v1/units"): RouteSpec(ALL),
    ("GET", "/api/v1/gateways"): RouteSpec(ALL),
    ("GET", "/api/v1/rejections"): RouteSpec(frozenset({Role.admin, Role.technician})),
    ("GET", "/api/v1/rejections/counts"): RouteSpec(
        frozenset({Role.admin, Role.technician, Role.logistics})),
}
for _module in sorted(Path(__file__).parent.glob("routes_*.py")):
    ROUTES.update(importlib.import_module(f"tests.fleet_server.{_module.stem}").ROUTES)
OPEN_ROUTES = {("GET", "/api/v1/healthz"), ("POST", "/api/v1/auth/token")}


@lru_cache(maxsize=1)
def _password_hash() -> str:
    return hash_password(PASSWORD)


@dataclass
class Api:
    app: FastAPI
    client: TestClient
    engine: Engine
    tokens: dict[Role, str]

    def get(self, path: str, role: Role = Role.admin, /, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params,
                               headers={"Authorization": f"Bearer {self.tokens[role]}"})


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    sessions = session_factory(engine)
    tokens: dict[Role, str] = {}
    with sessions() as s:
        register(s, ("U001", "gw-u001"), ("U002", "gw-u002"))
        for role in Role:  # one Argon2 hash for all: hashing costs ~0.1 s
            user = User(username=role.value, role=role.value, password_hash=_password_hash(),
                        is_active=True, created_at=NOW)
            s.add(user)
            s.flush()
            tokens[role], _ = crud.issue_token(s, user=user, secret_key=SECRET,
                                               ttl=timedelta(hours=1), now=datetime.now(UTC))
        s.commit()
    app = create_app(make_settings(str(engine.url), secret_key=SECRET), engine=engine)
    with TestClient(app) as client:
        yield Api(app, client, engine, tokens)


def test_every_route_is_in_the_table(api: Api) -> None:
    paths = api.app.openapi()["paths"]
    found = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert found == set(ROUTES) | OPEN_ROUTES
    for method, path in ROUTES:  # documented as needing the bearer token
        assert paths[path][method.lower()]["security"] == [{"HTTPBearer": []}], (method, path)


def test_roles_per_route(api: Api) -> None:
    """Every route x role: no token, a bad token and Basic auth get 401; a
    role the route does not allow gets 403 with the standard message; an
    allowed role gets through the role check (its own status: 200, or a 404
    or 422 about the request itself, never 401/403)."""
    failures = []
    for (method, path), spec in ROUTES.items():
        url = spec.url or path

        def call(headers: dict[str, str], method: str = method, url: str = url,
                 spec: RouteSpec = spec) -> httpx.Response:
            return api.client.request(method, url, headers=headers, json=spec.body)

        r = call({})
        if r.status_code != 401 or r.headers.get("www-authenticate") != "Bearer":
            failures.append((method, path, "no token", r.status_code))
        r = call({"Authorization": "Bearer not-a-token"})
        if r.status_code != 401 or "detail" not in r.json():
            failures.append((method, path, "bad token", r.status_code))
        r = call({"Authorization": "Basic YWRtaW46eA=="})
        if r.status_code != 401:
            failures.append((method, path, "basic auth", r.status_code))
        for role in Role:
            r = call({"Authorization": f"Bearer {api.tokens[role]}"})
            if role in spec.roles:
                if r.status_code in (401, 403) or r.status_code >= 500 or (
                        spec.status is not None and r.status_code != spec.status):
                    failures.append((method, path, role.value, r.status_code))
            elif r.status_code != 403 or r.json() != {
                    "detail": f"role {role.value} may not use this route"}:
                failures.append((method, path, role.value, r.status_code))
    assert failures == []


def test_healthz_needs_no_token(api: Api) -> None:
    r = api.client.get("/api/v1/healthz")
    assert r.status_code == 200 and r.json()["database"] == "ok"


def test_login_issues_a_token_that_expires(api: Api) -> None:
    bad = api.client.post("/api/v1/auth/token", json={"username": "nurse", "password": "x"})
    assert bad.status_code == 401 and bad.json() == {"detail": "Incorrect username or password"}
    nobody = api.client.post("/api/v1/auth/token", json={"username": "nobody", "password": "x"})
    assert nobody.status_code == 401
    assert api.client.post("/api/v1/auth/token", json={"username": "nurse"}).status_code == 422
    r = api.client.post("/api/v1/auth/token", json={"username": "nurse", "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["role"] == "nurse"
    token = body["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/v1/readings", headers=headers).status_code == 200
    with Session(api.engine) as s:  # stored only as a digest
        assert s.query(ApiToken).filter(ApiToken.token_hash == token).count() == 0
        s.execute(update(ApiToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        s.commit()
    r = api.client.get("/api/v1/readings", headers=headers)
    assert r.status_code == 401 and r.json() == {"detail": "Invalid or expired token"}


def test_inactive_user_cannot_log_in_or_use_a_token(api: Api) -> None:
    with Session(api.engine) as s:
        s.execute(update(User).where(User.username == "nurse").values(is_active=False))
        s.commit()
    assert api.get("/api/v1/units", Role.nurse).status_code == 401
    r = api.client.post("/api/v1/auth/token", json={"username": "nurse", "password": PASSWORD})
    assert r.status_code == 401


def _ingest(api: Api, payload: bytes, topic: str = DATA_TOPIC) -> None:
    with session_factory(api.engine)() as s:
        ingest_batch(s, topic, payload, NOW)


def test_a_reading_as_a_client_sees_it(api: Api) -> None:
    _ingest(api, golden("data_bp.json"))
    r = api.get("/api/v1/readings", Role.nurse)
    assert r.status_code == 200
    rows = r.json()
    assert [row["seq"] for row in rows] == [102, 101]  # newest first
    row = rows[1]
    src = golden_json("data_bp.json")["records"][0]
    assert row["unit"] == "U001" and row["gateway"] == "gw-u001"
    assert row["instrument"] == {"addr": "C4:7C:8D:6A:11:02", "model": "UA-651BLE",
                                 "serial": "5140201234", "mfr": None}
    assert row["instrument_time"] == "2026-11-29T08:41:59"
    assert rows[0]["instrument_time"] == "0000-04-17T20:41:59"
    assert row["received_at"] == "2026-11-29T07:03:01.250Z"  # rtime 1795935781250
    assert datetime.fromisoformat(row["received_at"]).timestamp() * 1000 == src["rtime"]
    assert row["ingested_at"] == "2026-11-29T07:03:02.512Z"
    assert row["type"] == "blood_pressure" and row["kind"] == "reading"
    assert row["values"] == src["values"] and row["flags"] == []
    assert (row["jid"], row["iseq"]) == ("3f9a1c02", None)
    assert rows[0]["flags"] == ["irregular_pulse", "value_missing:mean_arterial"]


def test_reading_filters(api: Api) -> None:
    _ingest(api, golden("data_bp.json"))
    _ingest(api, batch([bp_record(1)]), "ummc/v1/U002/gw-u002/data")
    glucose = {"seq": 2, "kind": "reading", "type": "glucose", "inst": {"addr": "GM"},
               "rtime": 1795935781250 + 10_000, "values": [["glucose", 99, "mg/dL"]]}
    _ingest(api, batch([glucose], base=1), "ummc/v1/U002/gw-u002/data")

    def seqs(**params: Any) -> list[tuple[str, int]]:
        r = api.get("/api/v1/readings", **params)
        assert r.status_code == 200, r.text
        return sorted((row["gateway"], row["seq"]) for row in r.json())

    assert seqs(unit="U002") == [("gw-u002", 1), ("gw-u002", 2)]
    assert seqs(gateway="gw-u001") == [("gw-u001", 101), ("gw-u001", 102)]
    assert seqs(type="glucose") == [("gw-u002", 2)]
    assert seqs(since="2026-11-29T07:03:05Z") == [("gw-u001", 102), ("gw-u002", 2)]
    assert seqs(since="2026-11-29T07:03:05") == seqs(since="2026-11-29T07:03:05Z")
    assert len(seqs(limit=2)) == 2
    assert api.get("/api/v1/readings", limit=1001).status_code == 422
    assert api.get("/api/v1/readings", unit="U 1").status_code == 422
    # a time out of 2000..2100 (or one that overflows when turned into UTC) is
    # a 422 on the parameter, for readings and rejections alike
    for url in ("/api/v1/readings", "/api/v1/rejections"):
        for since in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1999-12-31"):
            r = api.get(url, since=since)
            assert r.status_code == 422, (url, since, r.text)
            assert r.json()["detail"][0]["loc"] == ["query", "since"]


def test_units_and_gateways(api: Api) -> None:
    _ingest(api, golden("data_bp.json"))
    units = api.get("/api/v1/units", Role.reception).json()
    assert [(u["code"], u["gateways"]) for u in units] == [("U001", ["gw-u001"]),
                                                           ("U002", ["gw-u002"])]
    gws = api.get("/api/v1/gateways", Role.logistics).json()
    first = gws[0]
    assert (first["gateway"], first["unit"], first["last_seen_at"]) == \
        ("gw-u001", "U001", "2026-11-29T07:03:02.512Z")
    assert gws[1]["last_seen_at"] is None and gws[1]["state"] is None
    one = api.get("/api/v1/gateways", unit="U002").json()
    assert [g["gateway"] for g in one] == ["gw-u002"]


def test_rejections_and_counts(api: Api) -> None:
    _ingest(api, golden("data_bp.json"))
    _ingest(api, golden("data_mixed_bad.json"))
    _ingest(api, b"{broken")
    rows = api.get("/api/v1/rejections", Role.technician).json()
    assert [(r["reason"], r["seq"]) for r in rows] == [("malformed_json", None),
                                                      ("invalid_record", 103)]
    assert all(r["raw_text"] is None and r["raw_base64"] is None for r in rows)
    assert rows[1]["detail"].startswith("records[0].values[0][1]: ")
    raw = api.get("/api/v1/rejections", include_raw="true", reason="malformed_json").json()
    assert [r["raw_text"] for r in raw] == ["{broken"]
    counts = api.get("/api/v1/rejections/counts", Role.logistics).json()
    assert sorted((c["gateway"], c["reason"], c["count"]) for c in counts) == \
        [("gw-u001", "invalid_record", 1), ("gw-u001", "malformed_json", 1)]
    assert api.get("/api/v1/rejections", reason="nope").status_code == 422
