# mpy-portable
# Normalized readings: UCUM units, plausibility flags, missing values, the
# glucose time offset, control-solution results. Input dicts have the keys
# the decoders return (issue 3's public API).
from device_drivers.reading import LOINC, add_minutes, normalize
from tests.portable import raises


def _values(r):
    return {v[0]: (v[1], v[2]) for v in r["values"]}


def test_blood_pressure_units_and_whole_numbers():
    r = normalize(0x2A35, {"systolic": 138.0, "diastolic": 88, "mean_arterial": 105,
                           "unit": "mmHg", "timestamp": (2026, 11, 29, 9, 0, 0),
                           "pulse_rate": 60, "user_id": None, "status": ["irregular_pulse"]})
    assert r["type"] == "blood_pressure" and r["itime"] == (2026, 11, 29, 9, 0, 0)
    assert r["values"][0] == ["systolic", 138, "mm[Hg]"]
    assert isinstance(r["values"][0][1], int)
    assert r["flags"] == ["irregular_pulse"]


def test_kpa_plausibility_is_checked_in_mmhg():
    ok = normalize(0x2A35, {"systolic": 16.0, "diastolic": 10.7, "mean_arterial": 12.4,
                            "unit": "kPa", "status": []})
    assert _values(ok)["systolic"] == (16, "kPa") and ok["flags"] == []
    bad = normalize(0x2A35, {"systolic": 45.0, "diastolic": 10.7, "mean_arterial": 12.4,
                             "unit": "kPa", "status": []})
    assert "suspect:systolic_out_of_range" in bad["flags"]


def test_glucose_kg_per_litre_to_mg_dl_with_offset_time_and_sequence():
    r = normalize(0x2A18, {"sequence": 7, "base_time": (2026, 12, 31, 23, 58, 10),
                           "time_offset": 5, "concentration": 0.00095,
                           "concentration_unit": "kg/L", "type": 1, "sample_location": 1,
                           "status": [], "context_follows": False})
    assert _values(r)["glucose"] == (95, "mg/dL")
    assert r["itime"] == (2027, 1, 1, 0, 3, 10) and r["iseq"] == 7
    assert "sample:capillary_whole_blood" in r["flags"] and "location:finger" in r["flags"]
    assert "control_solution" not in r["flags"]


def test_glucose_mol_per_litre_and_control_solution():
    r = normalize(0x2A18, {"sequence": 8, "base_time": (2026, 3, 1, 8, 0, 0),
                           "time_offset": -90, "concentration": 0.0054,
                           "concentration_unit": "mol/L", "type": 10, "sample_location": 4,
                           "status": ["sensor_malfunction"], "context_follows": False})
    assert _values(r)["glucose"] == (5.4, "mmol/L")
    assert r["itime"] == (2026, 3, 1, 6, 30, 0)
    assert "control_solution" in r["flags"] and "sensor_malfunction" in r["flags"]


def test_glucose_unknown_date_keeps_base_time_and_says_so():
    r = normalize(0x2A18, {"sequence": 1, "base_time": (0, 4, 17, 8, 0, 0), "time_offset": 3,
                           "concentration": 0.0012, "concentration_unit": "kg/L",
                           "type": 2, "sample_location": 1, "status": []})
    assert r["itime"] == (0, 4, 17, 8, 0, 0) and "time_offset_not_applied" in r["flags"]


def test_glucose_out_of_range_and_missing():
    high = normalize(0x2A18, {"sequence": 2, "base_time": (2026, 1, 1, 0, 0, 0),
                              "time_offset": 0, "concentration": 0.0072,
                              "concentration_unit": "kg/L", "type": 2, "sample_location": 1,
                              "status": []})
    assert "suspect:glucose_out_of_range" in high["flags"]  # 720 mg/dL
    nan = normalize(0x2A18, {"sequence": 3, "base_time": (2026, 1, 1, 0, 0, 0),
                             "time_offset": 0, "concentration": None,
                             "concentration_unit": "kg/L", "type": 2, "sample_location": 1,
                             "status": []})
    assert nan["values"] == [] and "value_missing:glucose" in nan["flags"]


def test_temperature_fahrenheit_and_site():
    r = normalize(0x2A1C, {"temperature": 98.6, "unit": "F", "timestamp": None,
                           "temperature_type": 6})
    assert _values(r)["temperature"] == (98.6, "[degF]") and r["flags"] == ["site:6"]
    hot = normalize(0x2A1C, {"temperature": 47.5, "unit": "C", "timestamp": None,
                             "temperature_type": None})
    assert "suspect:temperature_out_of_range" in hot["flags"]


def test_spo2_and_weight():
    r = normalize(0x2A5E, {"spo2": 97, "pulse_rate": 72, "timestamp": None,
                           "device_clock_not_set": True})
    assert _values(r) == {"spo2": (97, "%"), "pulse_rate": (72, "/min")}
    assert "instrument_clock_not_set" in r["flags"]
    assert "suspect:spo2_out_of_range" in normalize(0x2A5F, {"spo2": 104, "pulse_rate": 70})[
        "flags"]
    w = normalize(0x2A9D, {"weight": 154.3, "unit": "lb", "timestamp": None, "user_id": 1,
                           "bmi": 22.1, "height": 70.0})
    assert _values(w) == {"weight": (154.3, "[lb_av]"), "bmi": (22.1, "kg/m2"),
                          "height": (70, "[in_i]")}
    assert w["flags"] == []


def test_add_minutes_across_leap_day_and_backwards():
    assert add_minutes((2028, 2, 28, 23, 30, 0), 60) == (2028, 2, 29, 0, 30, 0)
    assert add_minutes((2027, 3, 1, 0, 10, 5), -20) == (2027, 2, 28, 23, 50, 5)
    assert add_minutes((2026, 5, 5, 5, 5, 5), 0) == (2026, 5, 5, 5, 5, 5)


def test_not_a_measurement_and_loinc_codes():
    raises(ValueError, normalize, 0x2A19, {"level": 50})
    assert LOINC["systolic"] == "8480-6" and LOINC["glucose"] == "2339-0"


def test_onetouch_dump_record_to_reading():
    from device_drivers.reading import from_meter_glucose

    r = from_meter_glucose({"index": 1, "timestamp": (2026, 11, 28, 9, 15, 0), "glucose": 612,
                            "unit": "mg/dL", "flags": ["hi", "control_solution"],
                            "meal": "N", "comment": 0})
    assert r["type"] == "glucose" and _values(r)["glucose"] == (612, "mg/dL")
    assert "hi" in r["flags"] and "control_solution" in r["flags"]
    assert "suspect:glucose_out_of_range" in r["flags"]
    assert r["itime"] == (2026, 11, 28, 9, 15, 0)


def test_astm_glucose_result_keeps_no_patient_id_and_refuses_other_analytes():
    from device_drivers.reading import from_astm_result

    rec = {"sequence": 8, "analyte": "Glucose", "value": 133, "unit": "mg/dL",
           "flags": [], "timestamp": (2012, 2, 5, 20, 34, 0), "patient_id": "P-1234"}
    r = from_astm_result(rec)
    assert _values(r)["glucose"] == (133, "mg/dL") and r["iseq"] == 8
    assert "P-1234" not in repr(r)
    missing = from_astm_result({"analyte": "GLU", "value": None, "unit": "mmol/L",
                                "flags": ["lo"], "timestamp": None})
    assert missing["values"] == [] and "value_missing:glucose" in missing["flags"]
    raises(ValueError, from_astm_result, {"analyte": "HbA1c", "value": 6.1, "unit": "%"})
    raises(ValueError, from_astm_result, {"analyte": "glucose", "value": 5, "unit": "g/L"})


def test_urgent_readings():
    from device_drivers.reading import is_urgent

    def bp(s, d, unit="mmHg"):
        return normalize(0x2A35, {"systolic": s, "diastolic": d, "mean_arterial": None,
                                  "unit": unit, "status": []})

    assert is_urgent(bp(185, 95)) and is_urgent(bp(150, 125)) and not is_urgent(bp(180, 120))
    assert is_urgent(bp(25.0, 13.0, "kPa"))  # 187.5 mmHg
    glucose = {"sequence": 1, "base_time": (2026, 1, 1, 0, 0, 0), "time_offset": 0,
               "concentration_unit": "kg/L", "type": 1, "sample_location": 1, "status": []}
    glucose["concentration"] = 0.00065
    assert is_urgent(normalize(0x2A18, glucose))  # 65 mg/dL
    glucose["type"] = 10  # the same value on control solution is QC, not a patient
    assert not is_urgent(normalize(0x2A18, glucose))
    assert is_urgent(normalize(0x2A18, dict(glucose, type=1, concentration=0.0035,
                                            concentration_unit="mol/L")))  # 3.5 mmol/L
    assert is_urgent(normalize(0x2A5E, {"spo2": 88, "pulse_rate": 110}))
    assert not is_urgent(normalize(0x2A5E, {"spo2": 95, "pulse_rate": 80}))
