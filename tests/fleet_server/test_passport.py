"""Instrument passports learnt from ingested readings: identity by serial,
the unit history, calibration and validation due dates, control-solution QC,
error history, and maintenance tickets through their lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet_server import registry
from fleet_server.db import session_factory
from fleet_server.ingest import ingest_batch
from fleet_server.models import Reading, Role, Unit
from fleet_server.registry_models import Instrument, InstrumentAssignment
from tests.fleet_server.helpers import NOW, batch, register
from tests.fleet_server.routes_registry import BP_CUFF, GLUCOMETER, T0, call, record
from tests.fleet_server.test_api import Api, api  # noqa: F401  (fixture)

HOUR = 3_600_000
BP = [["systolic", 120, "mm[Hg]"], ["diastolic", 80, "mm[Hg]"]]


def ingest(api: Api, unit: str, records: list[dict[str, Any]], jid: str = "3f9a1c02") -> None:  # noqa: F811
    topic = f"ummc/v1/{unit}/gw-{unit.lower()}/data"
    with session_factory(api.engine)() as s:
        d = ingest_batch(s, topic, batch(records, jid=jid), NOW)
        assert d.rejection is None, d.summary()


def instruments(api: Api, role: Role = Role.logistics, **params: Any) -> list[dict[str, Any]]:  # noqa: F811
    r = call(api.client, api.tokens, "GET", "/api/v1/instruments", role, **params)
    assert r.status_code == 200, r.text
    return list(r.json())


def passport(api: Api, instrument_id: int) -> dict[str, Any]:  # noqa: F811
    r = call(api.client, api.tokens, "GET", f"/api/v1/instruments/{instrument_id}",
             Role.technician)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_instruments_follow_their_readings(api: Api) -> None:  # noqa: F811
    meter_no_serial = {"addr": GLUCOMETER["addr"], "model": "Contour"}
    ingest(api, "U001", [record(1, "blood_pressure", BP, rtime=T0),
                         record(2, "glucose", [["glucose", 99, "mg/dL"]], rtime=T0 + 1000,
                                inst=meter_no_serial)])
    rows = instruments(api)
    assert [(i["key"], i["serial"], i["unit"], i["type"]) for i in rows] == [
        ("5140201234", "5140201234", "U001", "blood_pressure"),
        (GLUCOMETER["addr"], None, "U001", "glucose")]
    cuff = rows[0]
    assert cuff["model"] == "UA-651BLE" and cuff["first_seen_at"] == "2026-11-29T07:03:01.250Z"
    assert cuff["calibration"]["interval_days"] == 365
    assert cuff["validation"]["status"] == "not_required"
    assert rows[1]["validation"]["interval_days"] == 30  # glucose meters

    # the meter's serial arrives (Device Information read): same instrument
    ingest(api, "U001", [record(3, "glucose", [["glucose", 101, "mg/dL"]], rtime=T0 + 2000,
                                inst=GLUCOMETER)])
    rows = instruments(api)
    assert len(rows) == 2 and rows[1]["key"] == "GM-7001" and rows[1]["mfr"] == "Ascensia"

    # the cuff moves to U002 an hour later; a late record from U001 does not move it back
    ingest(api, "U002", [record(1, "blood_pressure", BP, rtime=T0 + HOUR)])
    ingest(api, "U001", [record(1, "blood_pressure", BP, rtime=T0 + 600_000)], jid="00000002")
    p = passport(api, cuff["id"])
    assert p["unit"] == "U002" and p["last_seen_at"] == "2026-11-29T08:03:01.250Z"
    assert [(a["unit"], a["from_at"], a["to_at"], a["source"]) for a in p["assignments"]] == [
        ("U001", "2026-11-29T07:03:01.250Z", "2026-11-29T08:03:01.250Z", "readings"),
        ("U002", "2026-11-29T08:03:01.250Z", None, "readings")]

    # observing again changes nothing
    r = call(api.client, api.tokens, "POST", "/api/v1/instruments/sync", Role.technician)
    assert r.json() == {"observed": 0}
    with session_factory(api.engine)() as s:
        cursor_before = s.scalar(select(func.count()).select_from(InstrumentAssignment))
        for row in s.scalars(select(Reading)):
            registry.observe_instrument(s, row, row.unit_pk, NOW)  # the ingest hook, again
        s.commit()
        assert s.scalar(select(func.count()).select_from(InstrumentAssignment)) == cursor_before
        assert s.scalar(select(func.count()).select_from(Instrument)) == 2
    assert instruments(api, unit="U002")[0]["serial"] == "5140201234"
    assert instruments(api, serial="GM-7001")[0]["type"] == "glucose"
    assert instruments(api, region="Souss-Massa") == []


def test_observe_instrument_is_what_ingest_calls(session: Session) -> None:
    register(session, ("U001", "gw-u001"))
    fields: dict[str, Any] = {
        "inst_addr": "AA", "inst_serial": "SN1", "inst_model": "M", "inst_mfr": None,
        "type": "spo2", "kind": "reading", "flags": [],
        "received_at": datetime(2026, 11, 29, 7, tzinfo=UTC)}
    unit = session.scalars(select(Unit)).one()
    first = registry.observe_instrument(session, fields, unit, NOW)
    again = registry.observe_instrument(session, fields, unit.id, NOW)
    assert first is again and first is not None and first.key == "SN1"
    assert registry.observe_instrument(session, {"inst_addr": None}, unit, NOW) is None
    session.commit()
    assert registry.sync_instruments(session, now=NOW) == 0  # no readings table rows


def test_qc_results_and_due_dates(api: Api) -> None:  # noqa: F811
    qc = record(1, "glucose", [["glucose", 118, "mg/dL"]], rtime=T0, inst=GLUCOMETER,
                flags=["control_solution", "sample:control_solution"], iseq=41)
    ingest(api, "U001", [qc, record(2, "glucose", [["glucose", 95, "mg/dL"]], rtime=T0 + 5,
                                    inst=GLUCOMETER, iseq=42)])
    [meter] = instruments(api)
    first_seen = datetime(2026, 11, 29).date()
    assert meter["validation"] == {"last_done": "2026-11-29", "interval_days": 30,
                                   "due_on": str(first_seen + timedelta(days=30)),
                                   "status": meter["validation"]["status"]}
    assert meter["calibration"]["last_done"] is None  # due one year after first seen
    assert meter["calibration"]["due_on"] == str(first_seen + timedelta(days=365))
    r = call(api.client, api.tokens, "GET", f"/api/v1/instruments/{meter['id']}/qc")
    assert [(q["iseq"], q["values"]) for q in r.json()] == [(41, [["glucose", 118, "mg/dL"]])]

    path = f"/api/v1/instruments/{meter['id']}"
    r = call(api.client, api.tokens, "POST", path + "/checks", Role.technician,
             json={"kind": "calibration", "done_on": "2026-11-01", "note": "lab bench"})
    assert r.status_code == 201 and r.json()["by"] == "technician"
    r = call(api.client, api.tokens, "POST", path + "/checks", Role.technician,
             json={"kind": "calibration", "done_on": "2026-11-20", "passed": False})
    assert r.status_code == 201
    p = passport(api, meter["id"])
    assert p["calibration"]["last_done"] == "2026-11-01"  # the failed one does not count
    assert p["calibration"]["due_on"] == "2027-11-01"
    assert [c["done_on"] for c in p["checks"]] == ["2026-11-20", "2026-11-01"]
    r = call(api.client, api.tokens, "POST", path + "/checks", Role.technician,
             json={"kind": "calibration", "done_on": "2999-01-01"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "done_on"]
    r = call(api.client, api.tokens, "POST", path + "/checks", Role.technician,
             json={"kind": "calibrate", "done_on": "2026-11-01"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "kind"]

    # an interval shortened so that the calibration is overdue
    r = call(api.client, api.tokens, "PATCH", path, Role.technician,
             json={"calibration_interval_days": 1, "notes": "dropped once"})
    assert r.status_code == 200 and r.json()["calibration"]["status"] == "overdue"
    assert [i["id"] for i in instruments(api, due="overdue")] == [meter["id"]]
    r = call(api.client, api.tokens, "PATCH", path, Role.technician,
             json={"calibration_interval_days": 0})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "calibration_interval_days"]


def test_manual_assignment(api: Api) -> None:  # noqa: F811
    ingest(api, "U001", [record(1, "blood_pressure", BP, rtime=T0)])
    [cuff] = instruments(api)
    path = f"/api/v1/instruments/{cuff['id']}/unit"
    r = call(api.client, api.tokens, "PUT", path, Role.technician, json={"unit": None})
    assert r.status_code == 200 and r.json()["unit"] is None
    r = call(api.client, api.tokens, "PUT", path, Role.technician, json={"unit": "U404"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "unit"]
    r = call(api.client, api.tokens, "PUT", path, Role.technician, json={"unit": "U002"})
    assert r.json()["unit"] == "U002"
    p = passport(api, cuff["id"])
    assert [(a["unit"], a["source"], a["by"]) for a in p["assignments"]] == [
        ("U001", "readings", None), ("U002", "manual", "technician")]
    assert p["assignments"][0]["to_at"] is not None


def test_error_history(api: Api) -> None:  # noqa: F811
    event = record(2, "cuff_error", [], rtime=T0 + 10, kind="event", flags=["err:E3"])
    bad = record(3, "blood_pressure", [["systolic", "high", "mm[Hg]"]], rtime=T0 + 20)
    ingest(api, "U001", [record(1, "blood_pressure", BP, rtime=T0), event, bad])
    [cuff] = instruments(api)
    r = call(api.client, api.tokens, "GET", f"/api/v1/instruments/{cuff['id']}/errors",
             Role.logistics)
    errors = r.json()
    # newest first: the dead letter is dated at the server's receipt, after the event
    assert [(e["source"], e["code"], e["gateway"]) for e in errors] == [
        ("rejected_record", "invalid_record", "gw-u001"), ("event", "cuff_error", "gw-u001")]
    assert errors[1]["flags"] == ["err:E3"]
    assert errors[0]["detail"].startswith("records[2].values[0][1]")
    assert len(passport(api, cuff["id"])["errors"]) == 2


def test_maintenance_lifecycle(api: Api) -> None:  # noqa: F811
    c, t = api.client, api.tokens
    ingest(api, "U001", [record(1, "blood_pressure", BP, rtime=T0)])
    [cuff] = instruments(api)
    r = call(c, t, "POST", "/api/v1/maintenance", Role.technician,
             json={"instrument_id": cuff["id"], "kind": "repair", "title": "cuff leaks"})
    assert r.status_code == 201, r.text
    ticket = r.json()
    assert (ticket["status"], ticket["unit"], ticket["instrument_serial"]) == \
        ("open", "U001", BP_CUFF["serial"])
    assert [n["status"] for n in ticket["notes"]] == ["open"]
    path = f"/api/v1/maintenance/{ticket['id']}"

    r = call(c, t, "PATCH", path, Role.technician, json={"status": "in_progress",
                                                        "note": "new bladder ordered"})
    assert r.json()["status"] == "in_progress" and r.json()["closed_at"] is None
    r = call(c, t, "PATCH", path, Role.technician, json={"status": "closed"})
    closed = r.json()
    assert closed["status"] == "closed" and closed["closed_by"] == "technician"
    assert closed["closed_at"] is not None
    assert [n["status"] for n in closed["notes"]] == ["open", "in_progress", "closed"]
    r = call(c, t, "PATCH", path, Role.technician, json={})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "status"]
    r = call(c, t, "PATCH", path, Role.technician, json={"status": "done"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "status"]
    r = call(c, t, "PATCH", path, Role.admin, json={"status": "open", "note": "leaks again"})
    assert r.json()["status"] == "open" and r.json()["closed_at"] is None

    r = call(c, t, "POST", "/api/v1/maintenance", Role.technician,
             json={"instrument_id": 999, "kind": "repair", "title": "x"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "instrument_id"]
    r = call(c, t, "POST", "/api/v1/maintenance", Role.technician,
             json={"kind": "battery", "title": "x"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "instrument_id"]
    r = call(c, t, "POST", "/api/v1/maintenance", Role.technician,
             json={"unit": "U002", "kind": "battery", "title": "gateway battery swollen"})
    assert r.status_code == 201 and r.json()["instrument_id"] is None

    listed = call(c, t, "GET", "/api/v1/maintenance", Role.logistics, status="open").json()
    assert [(x["unit"], x["kind"]) for x in listed] == [("U001", "repair"), ("U002", "battery")]
    assert call(c, t, "GET", "/api/v1/maintenance", Role.logistics,
                instrument_id=cuff["id"]).json()[0]["id"] == ticket["id"]
    p = passport(api, cuff["id"])
    assert p["open_tickets"] == 1 and [x["id"] for x in p["tickets"]] == [ticket["id"]]
