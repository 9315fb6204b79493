"""FHIR R4 export: GET /fhir/Observation returns a searchset Bundle whose
Observations carry LOINC codes and UCUM units, validated with fhir.resources.

fhir.resources 8 ships no 4.0.1 package: its `R4B` models (4.3.0, R4's
technical correction) are used; Observation and Bundle are the same in R4
and R4B for every element written here, and the test also checks that no
element outside R4's Observation and Bundle is used."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation

from fleet_server.db import session_factory
from fleet_server.ingest import ingest_batch
from fleet_server.models import Role
from tests.fleet_server.helpers import NOW, batch
from tests.fleet_server.routes_registry import GLUCOMETER, REF, T0, call, record
from tests.fleet_server.test_api import Api, api  # noqa: F401  (fixture)

MIN = 60_000
OXIMETER = {"addr": "00:1C:05:00:00:09", "model": "Nonin 3230"}  # no serial known
R4_OBSERVATION = {"resourceType", "id", "identifier", "status", "category", "code", "subject",
                  "encounter", "effectiveDateTime", "issued", "valueQuantity",
                  "dataAbsentReason", "note", "device", "component"}
R4_BUNDLE = {"resourceType", "type", "timestamp", "link", "entry", "total"}
STATUSES = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
            "entered-in-error", "unknown"}


def _iso(ms: int) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _fixture_data(api: Api) -> int:  # noqa: F811
    c, t = api.client, api.tokens
    enc = call(c, t, "POST", "/api/v1/encounters",
               json={"unit": "U001", "patient_ref": REF, "started_at": _iso(T0)}).json()
    records = [
        record(1, "blood_pressure", [["systolic", 138, "mm[Hg]"], ["diastolic", 88, "mm[Hg]"],
                                     ["pulse_rate", 60, "/min"]], rtime=T0,
               flags=["irregular_pulse", "value_missing:mean_arterial"]),
        record(2, "glucose", [["glucose", 5.4, "mmol/L"]], rtime=T0 + MIN, inst=GLUCOMETER),
        record(3, "glucose", [["glucose", 118, "mg/dL"]], rtime=T0 + 2 * MIN, inst=GLUCOMETER,
               flags=["control_solution"]),
        record(4, "spo2", [["spo2", 97, "%"], ["pulse_rate", 72, "/min"]], rtime=T0 + 3 * MIN,
               inst=OXIMETER),
        record(5, "temperature", [["temperature", 37.2, "Cel"]], rtime=T0 + 4 * MIN),
        record(6, "weight", [["weight", 71.5, "kg"], ["bmi", 24.1, "kg/m2"]],
               rtime=T0 + 5 * MIN),
    ]
    with session_factory(api.engine)() as s:
        ingest_batch(s, "ummc/v1/U001/gw-u001/data", batch(records), NOW)
        ingest_batch(s, "ummc/v1/U002/gw-u002/data",
                     batch([record(1, "glucose", [["glucose", 99, "mg/dL"]], rtime=T0)]), NOW)
    return int(enc["id"])


def _get(api: Api, **params: Any) -> dict[str, Any]:  # noqa: F811
    r = call(api.client, api.tokens, "GET", "/api/v1/fhir/Observation", Role.nurse, **params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/fhir+json"
    doc: dict[str, Any] = r.json()
    Bundle.model_validate(doc)  # raises on anything that is not valid FHIR
    assert set(doc) <= R4_BUNDLE and doc["type"] == "searchset"
    for entry in doc["entry"]:
        obs = entry["resource"]
        Observation.model_validate(obs)
        assert set(obs) <= R4_OBSERVATION and obs["status"] in STATUSES
        assert entry["search"] == {"mode": "match"}
    return doc


def test_bundle_of_observations_validates_against_r4(api: Api) -> None:  # noqa: F811
    enc_id = _fixture_data(api)
    doc = _get(api, unit="U001")
    obs = {e["resource"]["id"]: e["resource"] for e in doc["entry"]}
    codes = {i: (o["code"]["coding"][0]["system"], o["code"]["coding"][0]["code"])
             for i, o in obs.items()}
    assert sorted(codes.values()) == sorted(("http://loinc.org", c) for c in [
        "85354-9", "8867-4", "15074-8", "59408-5", "8867-4", "8310-5", "29463-7", "39156-5"])
    assert len({e["fullUrl"] for e in doc["entry"]}) == len(doc["entry"])

    bp = next(o for o in obs.values() if o["code"]["coding"][0]["code"] == "85354-9")
    parts = {c["code"]["coding"][0]["code"]: c for c in bp["component"]}
    assert parts["8480-6"]["valueQuantity"] == {
        "value": 138, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org",
        "code": "mm[Hg]"}
    assert parts["8462-4"]["valueQuantity"]["value"] == 88
    assert parts["8478-0"]["dataAbsentReason"]["coding"][0]["code"] == "not-a-number"
    assert bp["effectiveDateTime"] == "2026-11-29T07:03:01.250Z"
    assert bp["category"][0]["coding"][0]["code"] == "vital-signs"
    assert bp["device"] == {"identifier": {"system": "urn:ummc:instrument-serial",
                                           "value": "5140201234"},
                            "display": "UA-651BLE serial 5140201234"}
    assert bp["note"] == [{"text": "flags: irregular_pulse, value_missing:mean_arterial"}]
    # bound to the encounter: the pseudonymous reference and nothing more
    assert bp["subject"] == {"type": "Patient", "identifier": {
        "system": "urn:ummc:patient-ref", "value": REF}}
    assert bp["encounter"]["identifier"]["value"] == str(enc_id)
    pulse = obs[bp["id"] + "-pulse-rate"]
    assert pulse["valueQuantity"]["code"] == "/min" and pulse["subject"] == bp["subject"]

    glucose = next(o for o in obs.values() if o["code"]["coding"][0]["code"] == "15074-8")
    assert glucose["valueQuantity"]["code"] == "mmol/L"
    assert glucose["category"][0]["coding"][0]["code"] == "laboratory"
    spo2 = next(o for o in obs.values() if o["code"]["coding"][0]["code"] == "59408-5")
    assert spo2["device"]["identifier"] == {"system": "urn:ummc:instrument-address",
                                            "value": OXIMETER["addr"]}
    # the control-solution result is not patient data: not exported
    assert all(o.get("valueQuantity", {}).get("value") != 118 for o in obs.values())

    other = _get(api, unit="U002")
    [entry] = other["entry"]
    assert entry["resource"]["code"]["coding"][0]["code"] == "2339-0"
    assert "subject" not in entry["resource"]  # bound to no encounter


def test_paging_and_window(api: Api) -> None:  # noqa: F811
    _fixture_data(api)
    first = _get(api, unit="U001", _count=2)
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert "_offset=2" in links["next"] and "_count=2" in links["next"]
    ids = [e["resource"]["id"] for e in first["entry"]]
    assert ids[0].startswith("r")
    seen = set(ids)
    page, pages = first, 1
    while "next" in {link["relation"] for link in page["link"]}:
        url = next(link["url"] for link in page["link"] if link["relation"] == "next")
        r = api.client.get(url, headers={"Authorization": f"Bearer {api.tokens[Role.admin]}"})
        page = r.json()
        Bundle.model_validate(page)
        new = {e["resource"]["id"] for e in page["entry"]}
        assert not new & seen
        seen |= new
        pages += 1
    assert pages == 3 and len(seen) == 8
    windowed = _get(api, **{"from": _iso(T0 + 3 * MIN), "to": _iso(T0 + 5 * MIN)})
    assert sorted(e["resource"]["code"]["coding"][0]["code"] for e in windowed["entry"]) == \
        ["59408-5", "8310-5", "8867-4"]
    r = call(api.client, api.tokens, "GET", "/api/v1/fhir/Observation", Role.nurse,
             _count=0)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "_count"]
