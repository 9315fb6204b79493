"""Route x role rows of the registry routes (places, instruments,
maintenance, encounters, exports, FHIR), merged into test_api.ROUTES; and
small helpers the registry tests share (calling the API as a role, building
journal records)."""

from __future__ import annotations

from typing import Any

import httpx

from fleet_server.models import Role
from tests.fleet_server.helpers import RouteSpec

ALL = frozenset(Role)
ADMIN = frozenset({Role.admin})
INSTRUMENT_READ = frozenset({Role.admin, Role.logistics, Role.technician})
INSTRUMENT_EDIT = frozenset({Role.admin, Role.technician})
ENCOUNTER_WRITE = frozenset({Role.admin, Role.reception})
ENCOUNTER_READ = frozenset({Role.admin, Role.nurse, Role.reception})
PATIENT_DATA = frozenset({Role.admin, Role.nurse})

# A valid pseudonymous reference (registry.validate_patient_ref).
REF = "P-7KD94XW2QH0W"
V = "/api/v1"

ROUTES: dict[tuple[str, str], RouteSpec] = {
    ("GET", f"{V}/places/regions"): RouteSpec(ALL, status=200),
    ("PATCH", f"{V}/places/regions/{{code}}"): RouteSpec(
        ADMIN, url=f"{V}/places/regions/MA-08", body={"name_ar": "درعة - تافيلالت"}, status=200),
    ("GET", f"{V}/places/provinces"): RouteSpec(ALL, status=200),
    ("POST", f"{V}/places/provinces"): RouteSpec(ADMIN, body={
        "code": "MA-TST", "name": "Test", "kind": "province", "region_code": "MA-08"}),
    ("PATCH", f"{V}/places/provinces/{{code}}"): RouteSpec(
        ADMIN, url=f"{V}/places/provinces/MA-ZAG", body={"name_ar": ""}, status=200),
    ("GET", f"{V}/places/coverage"): RouteSpec(ALL, status=200),
    ("PUT", f"{V}/places/units/{{code}}"): RouteSpec(
        ADMIN, url=f"{V}/places/units/U001", body={"province": "Zagora"}, status=200),
    ("POST", f"{V}/places/units/apply-seed"): RouteSpec(ADMIN, body={"force": False},
                                                        status=200),
    ("GET", f"{V}/instruments"): RouteSpec(INSTRUMENT_READ, status=200),
    ("POST", f"{V}/instruments/sync"): RouteSpec(INSTRUMENT_EDIT, status=200),
    ("GET", f"{V}/instruments/{{instrument_id}}"): RouteSpec(
        INSTRUMENT_READ, url=f"{V}/instruments/1", status=404),
    ("PATCH", f"{V}/instruments/{{instrument_id}}"): RouteSpec(
        INSTRUMENT_EDIT, url=f"{V}/instruments/1", body={"notes": "x"}, status=404),
    ("PUT", f"{V}/instruments/{{instrument_id}}/unit"): RouteSpec(
        INSTRUMENT_EDIT, url=f"{V}/instruments/1/unit", body={"unit": "U001"}, status=404),
    ("POST", f"{V}/instruments/{{instrument_id}}/checks"): RouteSpec(
        INSTRUMENT_EDIT, url=f"{V}/instruments/1/checks",
        body={"kind": "calibration", "done_on": "2026-01-01"}, status=404),
    ("GET", f"{V}/instruments/{{instrument_id}}/qc"): RouteSpec(
        INSTRUMENT_READ, url=f"{V}/instruments/1/qc", status=404),
    ("GET", f"{V}/instruments/{{instrument_id}}/errors"): RouteSpec(
        INSTRUMENT_READ, url=f"{V}/instruments/1/errors", status=404),
    ("GET", f"{V}/maintenance"): RouteSpec(INSTRUMENT_READ, status=200),
    ("POST", f"{V}/maintenance"): RouteSpec(
        INSTRUMENT_EDIT, body={"unit": "U001", "kind": "repair", "title": "cuff leaks"},
        status=201),
    ("GET", f"{V}/maintenance/{{ticket_id}}"): RouteSpec(
        INSTRUMENT_READ, url=f"{V}/maintenance/999", status=404),
    ("PATCH", f"{V}/maintenance/{{ticket_id}}"): RouteSpec(
        INSTRUMENT_EDIT, url=f"{V}/maintenance/999", body={"note": "n"}, status=404),
    ("POST", f"{V}/encounters"): RouteSpec(ENCOUNTER_WRITE,
                                           body={"unit": "U002", "patient_ref": REF}),
    ("GET", f"{V}/encounters"): RouteSpec(ENCOUNTER_READ, status=200),
    ("GET", f"{V}/encounters/{{encounter_id}}"): RouteSpec(
        ENCOUNTER_READ, url=f"{V}/encounters/999", status=404),
    ("POST", f"{V}/encounters/{{encounter_id}}/close"): RouteSpec(
        ENCOUNTER_WRITE, url=f"{V}/encounters/999/close", status=404),
    ("GET", f"{V}/encounters/{{encounter_id}}/readings"): RouteSpec(
        PATIENT_DATA, url=f"{V}/encounters/999/readings", status=404),
    ("GET", f"{V}/readings/unassigned"): RouteSpec(PATIENT_DATA, status=200),
    ("GET", f"{V}/unit-staff"): RouteSpec(ADMIN, status=200),
    ("PUT", f"{V}/unit-staff/{{username}}"): RouteSpec(
        ADMIN, url=f"{V}/unit-staff/nurse", body={"unit": "U001"}, status=200),
    ("DELETE", f"{V}/unit-staff/{{username}}"): RouteSpec(
        ADMIN, url=f"{V}/unit-staff/nurse", status=204),
    ("GET", f"{V}/exports/instruments.csv"): RouteSpec(INSTRUMENT_READ, status=200),
    ("GET", f"{V}/exports/calibration-due.csv"): RouteSpec(INSTRUMENT_READ, status=200),
    ("GET", f"{V}/exports/maintenance.csv"): RouteSpec(INSTRUMENT_READ, status=200),
    ("GET", f"{V}/exports/readings.csv"): RouteSpec(ADMIN, status=200),
    ("GET", f"{V}/fhir/Observation"): RouteSpec(PATIENT_DATA, status=200),
}


def call(client: Any, tokens: dict[Role, str], method: str, path: str,
         role: Role = Role.admin, *, json: Any = None, **params: Any) -> httpx.Response:
    """One request as `role` (tests share test_api's `api` fixture)."""
    return client.request(method, path, json=json, params=params or None,
                          headers={"Authorization": f"Bearer {tokens[role]}"})


BP_CUFF = {"addr": "C4:7C:8D:6A:11:02", "model": "UA-651BLE", "serial": "5140201234"}
GLUCOMETER = {"addr": "F0:0D:00:00:00:01", "model": "Contour", "serial": "GM-7001",
              "mfr": "Ascensia"}
T0 = 1795935781250  # 2026-11-29T07:03:01.250Z (golden rtime)


def record(seq: int, type: str, values: list[list[Any]], *, rtime: int, inst: Any = None,
           flags: list[str] | None = None, kind: str = "reading",
           iseq: int | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"seq": seq, "kind": kind, "type": type, "inst": inst or BP_CUFF,
                           "iseq": iseq, "itime": None, "rtime": rtime, "values": values,
                           "flags": flags or []}
    return rec
