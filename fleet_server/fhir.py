"""HL7 FHIR R4 export: stored readings -> Observation resources in a
searchset Bundle (plain dicts, JSON-ready; the tests validate them with
`fhir.resources`). No database access here: the route passes
(reading, encounter) pairs from registry.readings_with_encounters.

Mapping (codes from device_drivers.reading.LOINC, units are the readings'
own UCUM codes, system http://unitsofmeasure.org):
- blood_pressure: one panel Observation 85354-9 whose components are
  systolic 8480-6, diastolic 8462-4 and mean 8478-0; the pulse rate is its
  own Observation 8867-4;
- glucose 2339-0 (mass/volume, mg/dL); a value in mmol/L is coded 15074-8
  (moles/volume), since 2339-0 would contradict its unit;
- spo2 59408-5 (+ pulse 8867-4), temperature 8310-5, weight 29463-7
  (+ bmi 39156-5, height 8302-2): one Observation per value;
- a value the instrument sent as NaN (`value_missing:<name>` flag) gets a
  dataAbsentReason `not-a-number` instead of a value; value names without a
  LOINC code are left out.
Each Observation: status final, category vital-signs (laboratory for
glucose), effectiveDateTime = gateway receive time (the instrument clock has
no zone), issued = server commit time, identifier = gateway/jid/seq[/name],
device = the instrument's serial (or address) as an identifier + display,
subject = the encounter's pseudonymous patient reference as a logical
reference (identifier only) when the reading is bound, else none. Never a
name or any other patient detail. Control-solution (QC) readings are not
exported; the route filters them out.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from device_drivers.reading import LOINC
from fleet_server.models import Reading
from fleet_server.registry_models import Encounter

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
ABSENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
READING_ID_SYSTEM = "urn:ummc:reading"
PATIENT_REF_SYSTEM = "urn:ummc:patient-ref"
ENCOUNTER_SYSTEM = "urn:ummc:encounter"
SERIAL_SYSTEM = "urn:ummc:instrument-serial"
ADDRESS_SYSTEM = "urn:ummc:instrument-address"
GLUCOSE_MOLAR = "15074-8"

DISPLAY = {
    "85354-9": "Blood pressure panel with all children optional",
    "8480-6": "Systolic blood pressure",
    "8462-4": "Diastolic blood pressure",
    "8478-0": "Mean blood pressure",
    "8867-4": "Heart rate",
    "2339-0": "Glucose [Mass/volume] in Blood",
    GLUCOSE_MOLAR: "Glucose [Moles/volume] in Blood",
    "59408-5": "Oxygen saturation in Arterial blood by Pulse oximetry",
    "8310-5": "Body temperature",
    "29463-7": "Body weight",
    "39156-5": "Body mass index (BMI) [Ratio]",
    "8302-2": "Body height",
}
# value names that are components of the blood-pressure panel
BP_COMPONENTS = ("systolic", "diastolic", "mean_arterial")
_NAMESPACE = uuid.UUID("9a4c7f52-3f0e-4c55-9d0c-6e6a1d2b7c11")


def _time(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _code(name: str, ucum: str | None = None) -> dict[str, Any] | None:
    code = LOINC.get(name)
    if name == "glucose" and ucum == "mmol/L":
        code = GLUCOSE_MOLAR
    if code is None:
        return None
    coding: dict[str, Any] = {"system": LOINC_SYSTEM, "code": code}
    if code in DISPLAY:
        coding["display"] = DISPLAY[code]
    return {"coding": [coding], "text": DISPLAY.get(code, name)}


def _quantity(value: float, ucum: str) -> dict[str, Any]:
    return {"value": value, "unit": ucum, "system": UCUM_SYSTEM, "code": ucum}


def _absent() -> dict[str, Any]:
    return {"coding": [{"system": ABSENT_SYSTEM, "code": "not-a-number",
                        "display": "Not a Number (NaN)"}]}


def _device(r: Reading) -> dict[str, Any] | None:
    if r.inst_serial:
        ident = {"system": SERIAL_SYSTEM, "value": r.inst_serial}
        display = f"{r.inst_model or r.type or 'instrument'} serial {r.inst_serial}"
    elif r.inst_addr:
        ident = {"system": ADDRESS_SYSTEM, "value": r.inst_addr}
        display = f"{r.inst_model or r.type or 'instrument'} at {r.inst_addr}"
    else:
        return None
    return {"identifier": ident, "display": display}


def _base(r: Reading, enc: Encounter | None, obs_id: str, ident: str, name: str,
          ucum: str | None) -> dict[str, Any] | None:
    code = _code(name, ucum)
    if code is None:
        return None
    category = "laboratory" if r.type == "glucose" else "vital-signs"
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": obs_id,
        "identifier": [{"system": READING_ID_SYSTEM, "value": ident}],
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}],
        "code": code,
        "effectiveDateTime": _time(r.received_at),
        "issued": _time(r.ingested_at),
    }
    if enc is not None:
        obs["subject"] = {"type": "Patient", "identifier": {
            "system": PATIENT_REF_SYSTEM, "value": enc.patient_ref}}
        obs["encounter"] = {"type": "Encounter", "identifier": {
            "system": ENCOUNTER_SYSTEM, "value": str(enc.id)}}
    device = _device(r)
    if device is not None:
        obs["device"] = device
    if r.flags:
        obs["note"] = [{"text": "flags: " + ", ".join(r.flags)}]
    return obs


def observations(r: Reading, enc: Encounter | None) -> list[dict[str, Any]]:
    """The Observations of one stored reading (none when nothing maps)."""
    gateway = r.gateway.gateway_id
    ident = f"{gateway}/{r.jid}/{r.seq}"
    values = {str(n): (v, str(u)) for n, v, u in r.values}
    missing = [f.split(":", 1)[1] for f in r.flags if f.startswith("value_missing:")]
    names = list(values) + [m for m in missing if m not in values]
    out: list[dict[str, Any]] = []
    rest = names
    if r.type == "blood_pressure":
        panel = _base(r, enc, f"r{r.id}", ident, "blood_pressure", None)
        components = []
        for name in BP_COMPONENTS:
            code = _code(name)
            if name in values and code is not None:
                components.append({"code": code, "valueQuantity": _quantity(*values[name])})
            elif name in missing and code is not None:
                components.append({"code": code, "dataAbsentReason": _absent()})
        if panel is not None and components:
            panel["component"] = components
            out.append(panel)
        rest = [n for n in names if n not in BP_COMPONENTS]
    for name in rest:
        main = name == r.type
        obs_id = f"r{r.id}" if main else f"r{r.id}-{name.replace('_', '-')}"
        obs = _base(r, enc, obs_id, ident if main else f"{ident}/{name}", name,
                    values[name][1] if name in values else None)
        if obs is None:
            continue
        if name in values:
            obs["valueQuantity"] = _quantity(*values[name])
        else:
            obs["dataAbsentReason"] = _absent()
        out.append(obs)
    return out


def bundle(pairs: list[tuple[Reading, Encounter | None]], *, self_url: str,
           next_url: str | None, now: datetime) -> dict[str, Any]:
    """A searchset Bundle of the readings' Observations."""
    entries = []
    for r, enc in pairs:
        for obs in observations(r, enc):
            entries.append({
                "fullUrl": "urn:uuid:" + str(uuid.uuid5(_NAMESPACE, obs["id"])),
                "resource": obs,
                "search": {"mode": "match"},
            })
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    return {"resourceType": "Bundle", "type": "searchset", "timestamp": _time(now),
            "link": links, "entry": entries}
