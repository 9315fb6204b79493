"""Patient binding: reception opens an encounter on its unit with a
pseudonymous reference only; readings received on that unit within the
window belong to it; the rest are unassigned. One open encounter per unit."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleet_server import registry
from fleet_server.db import session_factory
from fleet_server.ingest import ingest_batch
from fleet_server.models import Role, Unit
from fleet_server.registry_models import Encounter
from tests.fleet_server.helpers import NOW, batch, register
from tests.fleet_server.routes_registry import GLUCOMETER, REF, T0, call, record
from tests.fleet_server.test_api import Api, api  # noqa: F401  (fixture)

BP = [["systolic", 120, "mm[Hg]"], ["diastolic", 80, "mm[Hg]"]]
MIN = 60_000


def _iso(ms: int) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("good", [REF, "p-7kd94xw2qh0w", registry.new_patient_ref(),
                                  registry.new_patient_ref(32)])
def test_pseudonymous_references_pass(good: str) -> None:
    assert registry.validate_patient_ref(good) == good.upper()


@pytest.mark.parametrize(("bad", "why"), [
    ("BE123456", "CIN"), ("P-BE123456", "CIN"), ("P-AB12345", "CIN"),
    ("Fatima Zahra Alaoui", "must be"), ("P-Mohammed", "I, L, O or U"),
    ("P-AHMEDBENNANI", "I, L, O or U"), ("P-KARAMABDEH", "2 digits"),
    ("P-7KD94XW2QH0N", "check character"), ("P-7KD94", "must be"),
    ("P-" + "7" * 33, "must be"), ("", "must be"),
])
def test_names_and_national_ids_are_refused(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        registry.validate_patient_ref(bad)


def ingest(api: Api, unit: str, records: list[dict[str, Any]], jid: str = "3f9a1c02") -> None:  # noqa: F811
    with session_factory(api.engine)() as s:
        d = ingest_batch(s, f"ummc/v1/{unit}/gw-{unit.lower()}/data", batch(records, jid=jid),
                         NOW)
        assert d.rejection is None and d.dead_lettered == 0, d.summary()


def _seqs(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return sorted((r["unit"], r["seq"]) for r in rows)


def test_encounter_window_binds_readings(api: Api) -> None:  # noqa: F811
    c, t = api.client, api.tokens
    r = call(c, t, "PUT", "/api/v1/unit-staff/reception", json={"unit": "U001"})
    assert r.status_code == 200

    r = call(c, t, "POST", "/api/v1/encounters", Role.reception,
             json={"patient_ref": REF, "started_at": _iso(T0)})
    assert r.status_code == 201, r.text
    enc = r.json()
    assert (enc["unit"], enc["patient_ref"], enc["status"], enc["opened_by"]) == \
        ("U001", REF, "open", "reception")
    # while it is open, no other encounter on U001
    r = call(c, t, "POST", "/api/v1/encounters", Role.reception, json={})
    assert r.status_code == 409 and f"encounter {enc['id']} is still open" in r.json()["detail"]
    # reception of U001 cannot act on U002
    r = call(c, t, "POST", "/api/v1/encounters", Role.reception, json={"unit": "U002"})
    assert r.status_code == 403

    qc = record(4, "glucose", [["glucose", 118, "mg/dL"]], rtime=T0 + 3 * MIN,
                inst=GLUCOMETER, flags=["control_solution"])
    ingest(api, "U001", [
        record(1, "blood_pressure", BP, rtime=T0 - MIN),  # before: unassigned
        record(2, "blood_pressure", BP, rtime=T0),  # the window starts inclusive
        record(3, "glucose", [["glucose", 99, "mg/dL"]], rtime=T0 + 2 * MIN, inst=GLUCOMETER),
        qc,  # quality control: never a patient's
    ])
    ingest(api, "U002", [record(1, "blood_pressure", BP, rtime=T0 + MIN)])  # other unit

    r = call(c, t, "POST", f"/api/v1/encounters/{enc['id']}/close", Role.reception,
             json={"ended_at": _iso(T0 + 5 * MIN)})
    assert r.status_code == 200 and r.json()["ended_at"] == "2026-11-29T07:08:01.250Z"
    assert r.json()["closed_by"] == "reception"
    ingest(api, "U001", [record(5, "blood_pressure", BP, rtime=T0 + 5 * MIN)])  # end: exclusive

    readings = call(c, t, "GET", f"/api/v1/encounters/{enc['id']}/readings", Role.nurse).json()
    assert _seqs(readings) == [("U001", 2), ("U001", 3)]
    unassigned = call(c, t, "GET", "/api/v1/readings/unassigned", Role.nurse).json()
    assert _seqs(unassigned) == [("U001", 1), ("U001", 5), ("U002", 1)]
    only = call(c, t, "GET", "/api/v1/readings/unassigned", Role.nurse, unit="U001",
                **{"from": _iso(T0), "to": _iso(T0 + 10 * MIN)}).json()
    assert _seqs(only) == [("U001", 5)]

    # a new encounter may not start inside the closed one; after its end it may
    r = call(c, t, "POST", "/api/v1/encounters", Role.reception,
             json={"started_at": _iso(T0 + 4 * MIN)})
    assert r.status_code == 409 and "falls inside" in r.json()["detail"]
    r = call(c, t, "POST", "/api/v1/encounters", Role.reception,
             json={"started_at": _iso(T0 + 5 * MIN)})
    assert r.status_code == 201
    second = r.json()
    assert registry.validate_patient_ref(second["patient_ref"])  # minted by the server
    readings = call(c, t, "GET", f"/api/v1/encounters/{second['id']}/readings").json()
    assert _seqs(readings) == [("U001", 5)]

    # closing twice, closing before the start
    r = call(c, t, "POST", f"/api/v1/encounters/{enc['id']}/close", Role.reception)
    assert r.status_code == 409
    r = call(c, t, "POST", f"/api/v1/encounters/{second['id']}/close", Role.reception,
             json={"ended_at": _iso(T0)})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "ended_at"]


def test_reception_sees_its_own_unit_only(api: Api) -> None:  # noqa: F811
    c, t = api.client, api.tokens
    r = call(c, t, "POST", "/api/v1/encounters", Role.reception, json={"patient_ref": REF})
    assert r.status_code == 422  # assigned to no unit yet
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "unit"] and "no unit" in err["msg"]
    other = call(c, t, "POST", "/api/v1/encounters", json={"unit": "U002"}).json()  # admin
    call(c, t, "PUT", "/api/v1/unit-staff/reception", json={"unit": "U001"})
    mine = call(c, t, "POST", "/api/v1/encounters", Role.reception, json={}).json()

    listed = call(c, t, "GET", "/api/v1/encounters", Role.reception).json()
    assert [e["id"] for e in listed] == [mine["id"]]
    assert call(c, t, "GET", "/api/v1/encounters", Role.reception, unit="U002").json() == []
    assert call(c, t, "GET", f"/api/v1/encounters/{other['id']}", Role.reception
                ).status_code == 404
    assert call(c, t, "POST", f"/api/v1/encounters/{other['id']}/close", Role.reception
                ).status_code == 404
    listed = call(c, t, "GET", "/api/v1/encounters", Role.nurse, status="open").json()
    assert sorted(e["unit"] for e in listed) == ["U001", "U002"]
    staff = call(c, t, "GET", "/api/v1/unit-staff").json()
    assert staff == [{"username": "reception", "role": "reception", "unit": "U001"}]
    assert call(c, t, "DELETE", "/api/v1/unit-staff/reception").status_code == 204
    assert call(c, t, "GET", "/api/v1/encounters", Role.reception).json() == []
    assert call(c, t, "PUT", "/api/v1/unit-staff/nobody", json={"unit": "U001"}
                ).status_code == 404


def test_bad_requests_name_the_field(api: Api) -> None:  # noqa: F811
    c, t = api.client, api.tokens
    for body, field in [({"unit": "U001", "patient_ref": "Fatima Zahra"}, "patient_ref"),
                        ({"unit": "U001", "patient_ref": "BE123456"}, "patient_ref"),
                        ({"unit": "U001", "name": "Fatima"}, "name"),
                        ({"unit": "U 1"}, "unit"), ({"unit": "U404"}, "unit"), ({}, "unit"),
                        ({"unit": "U001", "started_at": "2999-01-01T00:00:00Z"},
                         "started_at")]:
        r = call(c, t, "POST", "/api/v1/encounters", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", field], body
    r = call(c, t, "POST", "/api/v1/encounters", json={"unit": "U001",
                                                       "patient_ref": "BE123456"})
    assert "CIN" in r.json()["detail"][0]["msg"]
    r = call(c, t, "GET", "/api/v1/readings/unassigned", Role.nurse, **{"from": "yesterday"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "from"]


def test_the_database_refuses_two_open_encounters(registry_session: Session) -> None:
    s = registry_session
    unit = s.query(Unit).filter_by(code="U001").one()
    s.add(Encounter(unit_id=unit.id, patient_ref=REF, started_at=NOW, opened_by="a",
                    created_at=NOW))
    s.commit()
    s.add(Encounter(unit_id=unit.id, patient_ref=REF, started_at=NOW, opened_by="b",
                    created_at=NOW))
    with pytest.raises(IntegrityError):
        s.commit()


@pytest.fixture
def registry_session(session: Session) -> Session:
    register(session, ("U001", "gw-u001"))
    return session
