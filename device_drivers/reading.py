# Normalized readings: a decoded measurement -> the values the wire protocol
# carries (docs/protocol.md, `values` as [name, number, UCUM unit]) plus
# status flags. The gateway journals this shape; the fleet server maps the
# names to LOINC codes with LOINC below (FHIR export, issue 5).

# value name -> LOINC code
LOINC = {
    "blood_pressure": "85354-9",
    "systolic": "8480-6",
    "diastolic": "8462-4",
    "mean_arterial": "8478-0",
    "pulse_rate": "8867-4",
    "glucose": "2339-0",
    "spo2": "59408-5",
    "temperature": "8310-5",
    "weight": "29463-7",
}

_INF = float("inf")

_BP_UCUM = {"mmHg": "mm[Hg]", "kPa": "kPa"}

# Physiologic plausibility (mmHg / per minute); outside -> flag suspect
_BP_RANGES = {"systolic": (40, 300), "diastolic": (20, 200), "mean_arterial": (30, 250),
              "pulse_rate": (20, 250)}


def _plausible(name, value, unit):
    rng = _BP_RANGES.get(name)
    if rng is None:
        return True
    if unit == "kPa":
        value = value * 7.50062
    return rng[0] <= value <= rng[1]


def from_blood_pressure(decoded):
    """0x2A35 decode() dict -> (type, values, flags, instrument time)."""
    unit = decoded["unit"]
    values = []
    flags = list(decoded.get("status") or [])
    for name in ("systolic", "diastolic", "mean_arterial", "pulse_rate"):
        v = decoded.get(name)
        if v is None or v in (_INF, -_INF):
            # NaN/NRes decode to None. A pressure that is not a number is worth a
            # flag; a pulse of None is just "no pulse" (absent or NaN).
            if not (v is None and name == "pulse_rate"):
                flags.append("value_missing:" + name)
            continue
        ucum = "/min" if name == "pulse_rate" else _BP_UCUM[unit]
        values.append([name, v, ucum])
        if not _plausible(name, v, "mmHg" if name == "pulse_rate" else unit):
            flags.append("suspect:" + name + "_out_of_range")
    return {"type": "blood_pressure", "values": values, "flags": flags,
            "itime": decoded.get("timestamp")}
