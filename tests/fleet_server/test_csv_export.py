"""CSV exports for logistics (instruments, due lists, maintenance) and the
administrator (readings): grouped by region and province, readable by a
spreadsheet, safe against formula injection."""

from __future__ import annotations

import csv
import io
from typing import Any

from fleet_server import export_csv
from fleet_server.db import session_factory
from fleet_server.ingest import ingest_batch
from fleet_server.models import Role
from tests.fleet_server.helpers import NOW, batch
from tests.fleet_server.routes_registry import GLUCOMETER, REF, T0, call, record
from tests.fleet_server.test_api import Api, api  # noqa: F401  (fixture)

BP = [["systolic", 120, "mm[Hg]"], ["diastolic", 80, "mm[Hg]"]]


def _rows(api: Api, path: str, role: Role = Role.logistics,  # noqa: F811
          **params: Any) -> list[dict[str, str]]:
    r = call(api.client, api.tokens, "GET", path, role, **params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    return list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))


def _setup(api: Api) -> None:  # noqa: F811
    c, t = api.client, api.tokens
    # U002 in the south, U001 in the north: the export puts the region first
    call(c, t, "PUT", "/api/v1/places/units/U001", json={"province": "Chefchaouen"})
    call(c, t, "PUT", "/api/v1/places/units/U002", json={"province": "Al Haouz"})
    with session_factory(api.engine)() as s:
        ingest_batch(s, "ummc/v1/U001/gw-u001/data", batch([
            record(1, "blood_pressure", BP, rtime=T0),
            record(2, "glucose", [["glucose", 118, "mg/dL"]], rtime=T0 + 1, inst=GLUCOMETER,
                   flags=["control_solution"])]), NOW)
        ingest_batch(s, "ummc/v1/U002/gw-u002/data", batch([
            record(1, "weight", [["weight", 70, "kg"]], rtime=T0,
                   inst={"addr": "AA:BB", "serial": "=HYPERLINK(1)", "model": "BC-401"})]), NOW)


def test_instruments_and_due_lists_by_region(api: Api) -> None:  # noqa: F811
    _setup(api)
    rows = _rows(api, "/api/v1/exports/instruments.csv")
    assert [(r["region"], r["province"], r["unit"], r["type"]) for r in rows] == [
        ("Marrakech-Safi", "Al Haouz", "U002", "weight"),
        ("Tanger-Tétouan-Al Hoceïma", "Chefchaouen", "U001", "blood_pressure"),
        ("Tanger-Tétouan-Al Hoceïma", "Chefchaouen", "U001", "glucose")]
    assert rows[0]["serial"] == "'=HYPERLINK(1)"  # not a formula in a spreadsheet
    assert rows[2]["validation_last_done"] == "2026-11-29"  # the control-solution result
    assert rows[1]["calibration_due_on"] == "2027-11-29"
    assert rows[1]["first_seen_at"] == "2026-11-29T07:03:01.250Z"

    assert _rows(api, "/api/v1/exports/calibration-due.csv", within_days=0) == []
    due = _rows(api, "/api/v1/exports/calibration-due.csv", Role.technician, within_days=400)
    assert [(r["unit"], r["check"], r["due_on"]) for r in due] == [
        ("U002", "calibration", "2027-11-29"), ("U001", "calibration", "2027-11-29"),
        ("U001", "calibration", "2027-11-29"), ("U001", "validation", "2026-12-29")]

    r = call(api.client, api.tokens, "GET", "/api/v1/exports/instruments.csv", bom="true")
    assert r.content.startswith(b"\xef\xbb\xbfregion,province,unit,")


def test_maintenance_csv(api: Api) -> None:  # noqa: F811
    _setup(api)
    c, t = api.client, api.tokens
    for unit, title in (("U001", "+cmd|' /C calc'!A0"), ("U002", "scale drifts")):
        assert call(c, t, "POST", "/api/v1/maintenance", Role.technician,
                    json={"unit": unit, "kind": "repair", "title": title}).status_code == 201
    rows = _rows(api, "/api/v1/exports/maintenance.csv")
    assert [(r["region"], r["unit"], r["status"], r["title"]) for r in rows] == [
        ("Marrakech-Safi", "U002", "open", "scale drifts"),
        ("Tanger-Tétouan-Al Hoceïma", "U001", "open", "'+cmd|' /C calc'!A0")]
    assert rows[0]["days_open"] == "0" and rows[0]["opened_by"] == "technician"
    assert _rows(api, "/api/v1/exports/maintenance.csv", status="closed") == []


def test_readings_csv_for_the_admin(api: Api, monkeypatch: Any) -> None:  # noqa: F811
    monkeypatch.setattr(export_csv, "READINGS_CHUNK", 1)  # page through every reading
    _setup(api)
    call(api.client, api.tokens, "POST", "/api/v1/encounters",
         json={"unit": "U002", "patient_ref": REF, "started_at": "2026-11-29T07:00:00Z"})
    rows = _rows(api, "/api/v1/exports/readings.csv", Role.admin)
    assert [(r["unit"], r["seq"], r["name"], r["value"], r["ucum"], r["loinc"])
            for r in rows] == [
        ("U002", "1", "weight", "70", "kg", "29463-7"),
        ("U001", "1", "systolic", "120", "mm[Hg]", "8480-6"),
        ("U001", "1", "diastolic", "80", "mm[Hg]", "8462-4"),
        ("U001", "2", "glucose", "118", "mg/dL", "2339-0")]
    assert rows[0]["patient_ref"] == REF and rows[1]["patient_ref"] == ""
    assert rows[3]["flags"] == "control_solution" and rows[3]["encounter_id"] == ""
    only = _rows(api, "/api/v1/exports/readings.csv", Role.admin, unit="U001",
                 **{"from": "2026-11-29T07:03:01.251Z"})
    assert [r["seq"] for r in only] == ["2"]
