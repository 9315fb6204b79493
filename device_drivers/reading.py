# Normalized readings: one decoded measurement -> one reading, the shape the
# gateway journals and the wire protocol carries (docs/protocol.md):
#   {"type", "values": [[name, number, UCUM unit], ...], "flags": [...],
#    "itime": 6-tuple or None, "iseq": instrument sequence or None}
# plus LOINC codes per value name for the fleet server's FHIR export.
#
# Plausibility: every value is checked against a physiologic range; a value
# outside it is kept but flagged `suspect:<name>_out_of_range`, never
# silently accepted or silently dropped. A value the instrument reported as
# NaN/NRes is left out and flagged `value_missing:<name>`.
#
# normalize(uuid16, decoded) picks the right mapping; characteristics that are
# not measurements (features, battery, clocks, RACP) have none (ValueError).

# value name (or panel type) -> LOINC code
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
    "bmi": "39156-5",
    "height": "8302-2",
    "heart_rate": "8867-4",
    "ecg_strip": "11524-6",  # EKG study
}

_INF = float("inf")

# name -> (low, high) in the canonical unit named in the comment
_RANGES = {
    "systolic": (40, 300),  # mmHg
    "diastolic": (20, 200),  # mmHg
    "mean_arterial": (30, 250),  # mmHg
    "pulse_rate": (20, 250),  # /min
    "glucose": (10, 600),  # mg/dL (meters read about 20-600)
    "temperature": (25, 45),  # Cel
    "spo2": (50, 100),  # %
    "weight": (0.5, 350),  # kg
    "bmi": (8, 90),  # kg/m2
    "height": (0.3, 2.5),  # m
}

# UCUM unit -> factor to the canonical unit of the range table
_TO_CANONICAL = {
    "kPa": 7.50062,  # -> mmHg
    "mmol/L": 18.016,  # glucose -> mg/dL
    "[lb_av]": 0.45359237,  # -> kg
    "[in_i]": 0.0254,  # -> m
}

# Glucose sample type (low nibble) and location (high nibble) names
_SAMPLE_TYPES = {1: "capillary_whole_blood", 2: "capillary_plasma", 3: "venous_whole_blood",
                 4: "venous_plasma", 5: "arterial_whole_blood", 6: "arterial_plasma",
                 7: "undetermined_whole_blood", 8: "undetermined_plasma",
                 9: "interstitial_fluid", 10: "control_solution"}
_LOCATIONS = {1: "finger", 2: "alternate_site", 3: "earlobe", 4: "control_solution",
              15: "not_available"}
_CONTROL_SOLUTION = 10
_CONTROL_LOCATION = 4


def _plausible(name, value, ucum):
    rng = _RANGES.get(name)
    if rng is None:
        return True
    if ucum == "[degF]":
        value = (value - 32) / 1.8
    else:
        value = value * _TO_CANONICAL.get(ucum, 1)
    return rng[0] <= value <= rng[1]


def _number(v):
    """An int when the value is whole (138, not 138.0), else the float."""
    if isinstance(v, float) and v == int(v) and abs(v) < 1e9:
        return int(v)
    return v


class _Builder:
    def __init__(self, kind, flags=None):
        self.kind = kind
        self.values = []
        self.flags = list(flags or [])

    def add(self, name, value, ucum, required=True):
        """Add a value, or flag it missing (None/inf) when it is required."""
        if value is None or value in (_INF, -_INF):
            if required or value is not None:
                self.flags.append("value_missing:" + name)
            return
        value = _number(value)
        self.values.append([name, value, ucum])
        if not _plausible(name, value, ucum):
            self.flags.append("suspect:" + name + "_out_of_range")

    def done(self, itime=None, iseq=None):
        return {"type": self.kind, "values": self.values, "flags": self.flags,
                "itime": itime, "iseq": iseq}


def from_blood_pressure(decoded):
    """0x2A35 decode() dict -> reading."""
    ucum = "kPa" if decoded["unit"] == "kPa" else "mm[Hg]"
    b = _Builder("blood_pressure", decoded.get("status"))
    b.add("systolic", decoded.get("systolic"), ucum)
    b.add("diastolic", decoded.get("diastolic"), ucum)
    b.add("mean_arterial", decoded.get("mean_arterial"), ucum)
    # a pulse of None is just "no pulse" (absent or NaN); infinite is flagged
    b.add("pulse_rate", decoded.get("pulse_rate"), "/min", required=False)
    return b.done(decoded.get("timestamp"))


# --- glucose -------------------------------------------------------------------

def _days_from_civil(y, m, d):
    # days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    # well-known algorithm, written out for integers)
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z):
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    if m <= 2:
        y += 1
    return (y, m, d)


def add_minutes(ts, minutes):
    """A 6-tuple timestamp plus a number of minutes; None when a date part is
    unknown (0), since the result would be a guess."""
    y, mo, d, h, mi, s = ts
    if not (y and mo and d) or not minutes:
        return ts if not minutes else None
    total = (_days_from_civil(y, mo, d) * 1440 + h * 60 + mi) + minutes
    days, rest = divmod(total, 1440)
    y, mo, d = _civil_from_days(days)
    return (y, mo, d, rest // 60, rest % 60, s)


def from_glucose(decoded):
    """0x2A18 decode() dict -> reading (mg/dL or mmol/L).

    The instrument time is base time + time offset. Control-solution results
    (type 10 or location 4) are quality-control evidence, not patient data:
    they carry the flag `control_solution` for the fleet server to route."""
    flags = list(decoded.get("status") or [])
    sample = decoded.get("type")
    location = decoded.get("sample_location")
    if sample == _CONTROL_SOLUTION or location == _CONTROL_LOCATION:
        flags.append("control_solution")
    if sample in _SAMPLE_TYPES:
        flags.append("sample:" + _SAMPLE_TYPES[sample])
    if location in _LOCATIONS:
        flags.append("location:" + _LOCATIONS[location])
    b = _Builder("glucose", flags)
    conc = decoded.get("concentration")
    if conc is not None and conc not in (_INF, -_INF):
        if decoded.get("concentration_unit") == "mol/L":
            conc, ucum = round(conc * 1000, 2), "mmol/L"
        else:
            conc, ucum = round(conc * 100000, 1), "mg/dL"
    else:
        ucum = "mg/dL"
    b.add("glucose", conc, ucum)
    itime = None
    base = decoded.get("base_time")
    if base is not None:
        itime = add_minutes(base, decoded.get("time_offset") or 0)
        if itime is None:
            itime = base
            b.flags.append("time_offset_not_applied")
    return b.done(itime, decoded.get("sequence"))


# --- temperature, pulse oximetry, weight ------------------------------------------

def from_temperature(decoded):
    """0x2A1C decode() dict -> reading (Cel or [degF])."""
    b = _Builder("temperature")
    t = decoded.get("temperature_type")
    if t is not None:
        b.flags.append("site:%s" % t)
    b.add("temperature", decoded.get("temperature"),
          "[degF]" if decoded.get("unit") == "F" else "Cel")
    return b.done(decoded.get("timestamp"))


def from_pulse_oximeter(decoded):
    """0x2A5E / 0x2A5F decode() dict -> reading (% and /min)."""
    b = _Builder("spo2")
    if decoded.get("device_clock_not_set"):
        b.flags.append("instrument_clock_not_set")
    b.add("spo2", decoded.get("spo2"), "%")
    b.add("pulse_rate", decoded.get("pulse_rate"), "/min", required=False)
    return b.done(decoded.get("timestamp"))


def from_weight(decoded):
    """0x2A9D decode() dict -> reading (kg/m or [lb_av]/[in_i])."""
    imperial = decoded.get("unit") == "lb"
    b = _Builder("weight")
    b.add("weight", decoded.get("weight"), "[lb_av]" if imperial else "kg")
    b.add("bmi", decoded.get("bmi"), "kg/m2", required=False)
    b.add("height", decoded.get("height"), "[in_i]" if imperial else "m", required=False)
    return b.done(decoded.get("timestamp"))


# --- serial meters -------------------------------------------------------------

_METER_FLAGS = ("control_solution", "hi", "lo", "parity_error")


def from_meter_glucose(rec):
    """A OneTouch Ultra2 dump record (device_drivers.onetouch) -> reading.
    The meter always reports mg/dL; its HI/LO limits become flags."""
    b = _Builder("glucose", [f for f in rec.get("flags") or () if f in _METER_FLAGS])
    b.add("glucose", rec.get("glucose"), "mg/dL")
    return b.done(rec.get("timestamp"))


_ASTM_UNITS = {"mg/dl": "mg/dL", "mmol/l": "mmol/L"}


def from_astm_result(rec):
    """An ASTM E1394 result (device_drivers.astm.result_to_reading) -> reading.

    Protocol v1 carries glucose from analysers; other analytes have no reading
    type yet (ValueError, so the caller counts them rather than sending a
    record the server would refuse). The patient id the analyser may send is
    not kept: readings bind to patients through the unit's encounters."""
    analyte = (rec.get("analyte") or "").strip().lower()
    if analyte not in ("glucose", "glu", "gluc"):
        raise ValueError("analyte %r has no reading type in protocol v1" % analyte)
    ucum = _ASTM_UNITS.get((rec.get("unit") or "").strip().lower())
    if ucum is None:
        raise ValueError("glucose unit %r is not mg/dL or mmol/L" % rec.get("unit"))
    b = _Builder("glucose", list(rec.get("flags") or ()))
    b.add("glucose", rec.get("value"), ucum)
    return b.done(rec.get("timestamp"), rec.get("sequence"))


# --- urgency -------------------------------------------------------------------

# Readings that must reach the fleet before any backlog: hypertensive crisis
# (systolic above 180 or diastolic above 120 mmHg), hypoglycaemia (below
# 70 mg/dL = 3.9 mmol/L), SpO2 below 90 %. Control-solution results never are.
_URGENT_ABOVE = {"systolic": 180, "diastolic": 120}
_URGENT_BELOW = {"glucose": 70, "spo2": 90}


def is_urgent(reading):
    """True when a normalized reading shows a value needing attention now."""
    if "control_solution" in reading.get("flags", ()):
        return False
    for name, value, ucum in reading.get("values", ()):
        if ucum == "[degF]":
            continue
        canonical = value * _TO_CANONICAL.get(ucum, 1)
        if name in _URGENT_ABOVE and canonical > _URGENT_ABOVE[name]:
            return True
        if name in _URGENT_BELOW and canonical < _URGENT_BELOW[name]:
            return True
    return False


_BY_UUID = {
    0x2A35: from_blood_pressure,
    0x2A18: from_glucose,
    0x2A1C: from_temperature,
    0x2A5E: from_pulse_oximeter,
    0x2A5F: from_pulse_oximeter,
    0x2A9D: from_weight,
}

MEASUREMENTS = tuple(_BY_UUID)


def normalize(uuid16, decoded):
    """The reading of one decoded measurement characteristic."""
    fn = _BY_UUID.get(uuid16)
    if fn is None:
        raise ValueError("0x%04X is not a measurement characteristic" % uuid16)
    return fn(decoded)
