# mpy-portable
# Glucose profile codecs: 0x2A18 Glucose Measurement, 0x2A34 Context, 0x2A51
# Feature, 0x2A52 RACP. Vectors are the public one in instruments.md and ones
# computed by hand from the field layout (the hex is written out, not made by
# the encoders under test).
from device_drivers import DecodeError
from device_drivers.glucose import (
    FEATURE_NAMES,
    STATUS_NAMES,
    decode_context,
    decode_measurement,
    decode_racp,
    encode_context,
    encode_feature,
    encode_measurement,
    encode_racp_count,
    encode_racp_request,
    encode_racp_response,
    is_control_solution,
    racp_abort,
    racp_delete_all,
    racp_report_all,
    racp_report_count,
    racp_report_from,
    response_name,
)
from tests.portable import raises


def decode(uuid16, data):
    # through the dispatcher, as the gateway calls it; imported here, after
    # the glucose module (compiling both at import time would not fit the heap)
    from device_drivers.gatt import decode as gatt_decode
    return gatt_decode(uuid16, data)

INF = float("inf")
NORDIC = bytes.fromhex("1B0100E307021B0B0A1EFBFF1E00120501")


def _h(s):
    return bytes.fromhex(s.replace(" ", ""))


def test_public_vector_nordic_decodes_exactly_what_the_bytes_say():
    r = decode(0x2A18, NORDIC)
    # flags 0x1B: time offset, concentration + type/location, kg/L, status, context follows
    assert r == {"sequence": 1, "base_time": (2019, 2, 27, 11, 10, 30), "time_offset": -5,
                 # raw SFLOAT 0x001E: mantissa 30, exponent 0 -> 30 kg/L (not mg/dL)
                 "concentration": 30, "concentration_unit": "kg/L",
                 # byte 0x12: type = low nibble 2 (capillary plasma), location = high 1
                 "type": 2, "sample_location": 1,
                 # 0x0105: bits 0, 2, 8
                 "status": ["battery_low", "sample_size_insufficient", "temperature_too_low"],
                 "context_follows": True}


def test_public_vector_re_encodes_to_the_same_bytes():
    r = decode_measurement(NORDIC)
    assert encode_measurement(exponent=0, **r) == NORDIC


def test_minimal_measurement_has_only_sequence_and_base_time():
    r = decode(0x2A18, _h("00 0302 EA07 0B 1D 09 05 00"))
    assert r == {"sequence": 0x0203, "base_time": (2026, 11, 29, 9, 5, 0), "time_offset": None,
                 "concentration": None, "concentration_unit": None, "type": None,
                 "sample_location": None, "status": [], "context_follows": False}


def test_mol_per_litre_venous_plasma_alternate_site():
    # 5.4 mmol/L = 0.0054 mol/L = 54 x 10^-4: SFLOAT 0xC036
    r = decode(0x2A18, _h("0E 0700 EA07 03 01 08 00 00 36C0 24 0200"))
    assert r["concentration"] == 0.0054 and r["concentration_unit"] == "mol/L"
    assert r["type"] == 4 and r["sample_location"] == 2  # 0x24: low 4, high 2
    assert r["status"] == ["sensor_malfunction"] and r["time_offset"] is None
    assert not r["context_follows"]


def test_kg_per_litre_with_positive_offset():
    # 95 mg/dL = 0.00095 kg/L = 95 x 10^-5: SFLOAT 0xB05F
    r = decode(0x2A18, _h("03 0001 EA07 0C 1F 17 3A 0A 0500 5FB0 11"))
    assert r["sequence"] == 256 and r["base_time"] == (2026, 12, 31, 23, 58, 10)
    assert r["time_offset"] == 5 and r["concentration"] == 0.00095
    assert r["concentration_unit"] == "kg/L" and r["status"] == []


def test_type_is_the_low_nibble_and_location_the_high_nibble():
    base = "02 0100 00000000000000 5FB0 "
    for byte, typ, loc in (("21", 1, 2), ("12", 2, 1), ("F1", 1, 15), ("1F", 15, 1),
                           ("4A", 10, 4), ("00", 0, 0), ("93", 3, 9)):
        r = decode_measurement(_h(base + byte))
        assert (r["type"], r["sample_location"]) == (typ, loc), byte


def test_control_solution_is_quality_control():
    r = decode_measurement(_h("02 0900 00000000000000 6EB0 4A"))
    assert r["type"] == 10 and r["sample_location"] == 4 and r["base_time"] == (0,) * 6
    assert is_control_solution(r)
    assert is_control_solution({"type": 10, "sample_location": 1})
    assert is_control_solution({"type": 1, "sample_location": 4})
    assert not is_control_solution(decode_measurement(NORDIC))
    assert not is_control_solution(decode_measurement(_h("00 0302 EA07 0B 1D 09 05 00")))


def test_time_offset_is_signed():
    for raw, minutes in (("0080", -32768), ("FF7F", 32767), ("FFFF", -1), ("0000", 0),
                         ("60FA", -1440)):
        r = decode_measurement(_h("01 0100 EA07 01 01 00 00 00" + raw))
        assert r["time_offset"] == minutes, raw


def test_concentration_special_values_and_precision():
    cases = (("FF07", None), ("0008", None), ("0108", None), ("FE07", INF), ("0208", -INF),
             ("01B0", 0.00001), ("FDF7", 204.5), ("0180", 1e-08), ("0000", 0),
             ("FF0F", -1), ("62B0", 0.00098), ("2CC1", 0.03))
    for raw, value in cases:
        r = decode_measurement(_h("02 0100 EA07 01 01 00 00 00" + raw + "11"))
        assert r["concentration"] == value, raw
        assert r["concentration_unit"] == "kg/L"
    # 0x012C x 10^-4 = 300 x 10^-4 (3 significant digits) -> 0.03 exactly


def test_status_bits_each_and_all():
    for bit in range(16):
        r = decode_measurement(_h("08 0100 EA07 01 01 00 00 00") + bytes((1 << bit & 0xFF,
                                                                          1 << bit >> 8)))
        assert r["status"] == ([STATUS_NAMES[bit]] if bit < 12 else []), bit
    r = decode_measurement(_h("08 0100 EA07 01 01 00 00 00 FFFF"))
    assert r["status"] == list(STATUS_NAMES)  # reserved bits 12-15 ignored


# Every flag combination of 0x2A18, built field by field from hand-made bytes
_M_SEQ = _h("2A00")
_M_TIME = _h("EA07 0B 1D 09 05 00")
_M_OFFSET = _h("F6FF")  # -10 min
_M_CONC = _h("62B0")  # 0.00098
_M_TL = _h("21")  # type 1, location 2
_M_STATUS = _h("4100")  # bits 0 and 6


def _measurement_layout(flags):
    # (bytes, [(field, offset, size)], expected dict)
    data = bytes((flags,)) + _M_SEQ + _M_TIME
    fields = [("flags", 0, 1), ("sequence", 1, 2), ("base_time", 3, 7)]
    exp = {"sequence": 42,  # type: dict[str, object]
           "base_time": (2026, 11, 29, 9, 5, 0), "time_offset": None,
           "concentration": None, "concentration_unit": None, "type": None,
           "sample_location": None, "status": [], "context_follows": bool(flags & 0x10)}
    if flags & 0x01:
        fields.append(("time_offset", len(data), 2))
        data += _M_OFFSET
        exp["time_offset"] = -10
    if flags & 0x02:
        fields.append(("concentration", len(data), 2))
        fields.append(("type_sample_location", len(data) + 2, 1))
        data += _M_CONC + _M_TL
        exp["concentration"] = 0.00098
        exp["concentration_unit"] = "mol/L" if flags & 0x04 else "kg/L"
        exp["type"] = 1
        exp["sample_location"] = 2
    if flags & 0x08:
        fields.append(("status", len(data), 2))
        data += _M_STATUS
        exp["status"] = ["battery_low", "result_too_low"]
    return data, fields, exp


def _expect_truncations(decoder, data, fields):
    for cut in range(len(data)):
        e = raises(DecodeError, decoder, data[:cut])
        want = None
        for name, off, size in fields:
            if off + size > cut:
                want = (name, off)
                break
        assert (e.field, e.offset) == want, (data, cut, e.field, e.offset)
    e = raises(DecodeError, decoder, data + b"\x00")
    assert (e.field, e.offset) == ("end", len(data))


def test_measurement_every_flag_combination_and_every_truncation():
    for flags in range(32):
        data, fields, exp = _measurement_layout(flags)
        assert decode(0x2A18, data) == exp, flags
        # reserved flag bits 5-7 change nothing
        assert decode(0x2A18, bytes((flags | 0xE0,)) + data[1:]) == exp, flags
        _expect_truncations(decode_measurement, data, fields)


def test_measurement_bad_base_time_names_field_and_offset():
    for t in ("EA07 0D 01 00 00 00", "EA07 01 20 00 00 00", "EA07 01 01 18 00 00",
              "EA07 01 01 00 3C 00", "EA07 01 01 00 00 3C", "0100 01 01 00 00 00"):
        e = raises(DecodeError, decode, 0x2A18, _h("00 0100" + t))
        assert (e.field, e.offset) == ("base_time", 3), t
    # unknown parts are 0 and pass
    assert decode(0x2A18, _h("00 0100 0000 00 00 00 00 00"))["base_time"] == (0,) * 6


def test_measurement_encoder_round_trips():
    cases = (
        {"sequence": 65535, "base_time": (2026, 1, 2, 3, 4, 5), "time_offset": -32768,
         "concentration": 0.0054, "concentration_unit": "mol/L", "type": 10,
         "sample_location": 4, "status": ["time_fault", ], "context_follows": True},
        {"sequence": 0, "base_time": (0, 0, 0, 0, 0, 0), "time_offset": None,
         "concentration": None, "concentration_unit": "kg/L", "type": 15,
         "sample_location": 15, "status": [], "context_follows": False},
        {"sequence": 12, "base_time": (2026, 2, 28, 23, 59, 59), "time_offset": 0,
         "concentration": INF, "concentration_unit": "kg/L", "type": 9,
         "sample_location": 2, "status": list(STATUS_NAMES), "context_follows": False},
    )
    for c in cases:
        assert decode_measurement(encode_measurement(**c)) == c
    assert encode_measurement(1, (2019, 2, 27, 11, 10, 30), -5, 30, "kg/L", 2, 1, 0x0105,
                              True, exponent=0) == NORDIC
    raises(ValueError, encode_measurement, 1, (0,) * 6, type=1, concentration_unit="mg/dL")
    raises(ValueError, encode_measurement, 1, (0,) * 6, status=["no_such_flag"])
    raises(ValueError, encode_measurement, 70000, (0,) * 6)


# --- 0x2A34 Glucose Measurement Context ------------------------------------------

_C_PARTS = (  # flag bit -> bytes, in wire order after the sequence number
    (0x80, _h("00")),  # extended flags
    (0x01, _h("01 05E0")),  # breakfast, 0.05 kg (5 x 10^-2)
    (0x02, _h("02")),  # postprandial
    (0x04, _h("51")),  # tester 1 (self, LOW nibble), health 5 (no health issues)
    (0x08, _h("100E 32")),  # 3600 s at 50 %
    (0x10, _h("01 05B0")),  # rapid-acting insulin, 5 x 10^-5
    (0x40, _h("41F0")),  # HbA1c 6.5 %
)
_C_FIELDS = {0x80: (("extended_flags", 1),),
             0x01: (("carbohydrate_id", 1), ("carbohydrate", 2)),
             0x02: (("meal", 1),), 0x04: (("tester_health", 1),),
             0x08: (("exercise_duration", 2), ("exercise_intensity", 1)),
             0x10: (("medication_id", 1), ("medication", 2)), 0x40: (("hba1c", 2),)}


def _context_layout(flags):
    data = bytes((flags,)) + _h("0500")
    fields = [("flags", 0, 1), ("sequence", 1, 2)]
    exp = {"sequence": 5, "extended_flags": None,  # type: dict[str, object]
           "carbohydrate_id": None,
           "carbohydrate": None, "meal": None, "tester": None, "health": None,
           "exercise_duration": None, "exercise_intensity": None, "medication_id": None,
           "medication": None, "medication_unit": None, "hba1c": None}
    for bit, part in _C_PARTS:
        if flags & bit:
            off = len(data)
            for name, size in _C_FIELDS[bit]:
                fields.append((name, off, size))
                off += size
            data += part
    if flags & 0x80:
        exp["extended_flags"] = 0
    if flags & 0x01:
        exp["carbohydrate_id"] = 1
        exp["carbohydrate"] = 0.05
    if flags & 0x02:
        exp["meal"] = 2
    if flags & 0x04:
        exp["tester"] = 1
        exp["health"] = 5
    if flags & 0x08:
        exp["exercise_duration"] = 3600
        exp["exercise_intensity"] = 50
    if flags & 0x10:
        exp["medication_id"] = 1
        exp["medication"] = 0.00005
        exp["medication_unit"] = "L" if flags & 0x20 else "kg"
    if flags & 0x40:
        exp["hba1c"] = 6.5
    return data, fields, exp


def test_context_every_flag_combination_and_every_truncation():
    for flags in range(256):
        data, fields, exp = _context_layout(flags)
        assert decode(0x2A34, data) == exp, flags
        _expect_truncations(decode_context, data, fields)


def test_context_all_fields_vector():
    r = decode(0x2A34, _h("FF 0500 00 01 05E0 02 51 100E 32 01 05B0 41F0"))
    assert r["medication_unit"] == "L" and r["hba1c"] == 6.5 and r["tester"] == 1
    assert r["health"] == 5 and r["carbohydrate"] == 0.05
    r = decode(0x2A34, _h("04 0100 25"))
    assert (r["tester"], r["health"]) == (5, 2)  # tester is the low nibble
    r = decode(0x2A34, _h("40 0100 FF07"))
    assert r["hba1c"] is None
    r = decode(0x2A34, _h("08 0100 FFFF 65"))
    assert r["exercise_duration"] == 65535 and r["exercise_intensity"] == 101  # as sent


def test_context_encoder_round_trips():
    data, _, exp = _context_layout(0xFF)
    assert encode_context(**exp) == data
    for flags in (0x00, 0x15, 0x5A, 0x7F):
        data, _, exp = _context_layout(flags)
        assert decode_context(encode_context(**exp)) == exp, flags
    r = decode_context(encode_context(3, tester=2))
    assert (r["tester"], r["health"]) == (2, 15)
    r = decode_context(encode_context(3, carbohydrate_id=4, hba1c=float("nan")))
    assert r["carbohydrate_id"] == 4 and r["carbohydrate"] is None and r["hba1c"] is None
    raises(ValueError, encode_context, 3, medication_id=1, medication=1, medication_unit="mL")


def test_encoders_pick_the_sfloat_exponent():
    # the largest exponent that is exact, else the most precise that fits
    for value, raw in ((0, "0000"), (30, "0310"), (0.001, "01D0"), (0.00095, "5FB0"),
                       (2045, "FD07"), (20450, "FD17"), (1 / 3, "4DD1"), (123456, "D324"),
                       (-51.1, "01FE"), (INF, "FE07"),
                       (float("nan"), "FF07")):
        assert encode_context(1, hba1c=value)[3:] == _h(raw), value
    r = decode_context(encode_context(1, hba1c=1 / 3))
    assert r["hba1c"] == 0.333
    raises(ValueError, encode_context, 1, hba1c=3e10)  # past 2045 x 10^7


# --- 0x2A51 Glucose Feature -------------------------------------------------------


def test_feature():
    assert decode(0x2A51, _h("0000")) == {"features": []}
    assert decode(0x2A51, _h("FF07")) == {"features": list(FEATURE_NAMES)}
    assert decode(0x2A51, _h("0004"))["features"] == ["multiple_bond"]
    assert decode(0x2A51, _h("01F8"))["features"] == ["low_battery_detection"]  # 11-15 reserved
    assert decode(0x2A51, _h("8002"))["features"] == ["read_interrupt_detection", "time_fault"]
    for bad, field, off in (("", "features", 0), ("01", "features", 0), ("010000", "end", 2)):
        e = raises(DecodeError, decode, 0x2A51, _h(bad))
        assert (e.field, e.offset) == (field, off), bad
    assert encode_feature(["multiple_bond", "time_fault"]) == _h("0006")
    assert encode_feature(0x07FF) == _h("FF07")


# --- 0x2A52 Record Access Control Point -------------------------------------------


def test_racp_requests_public_vectors_and_the_rest():
    assert racp_report_all() == _h("0101")
    assert racp_report_from(0x0102) == _h("0103010201")  # xDrip+ vector
    assert racp_report_count() == _h("0401")
    assert racp_report_count(7) == _h("0403010700")
    assert racp_delete_all() == _h("0201")
    assert racp_abort() == _h("0300")
    assert encode_racp_request(1, 4, 1, (3, 0x0105)) == _h("01040103000501")
    assert encode_racp_request(1, 5) == _h("0105")
    assert encode_racp_request(1, 2, 2, (2026, 1, 2, 3, 4, 5)) == _h("010202EA07010203040 5")


def test_racp_responses():
    assert decode(0x2A52, _h("06000101")) == {"opcode": 6, "request_opcode": 1,
                                              "response_code": 1, "response": "success"}
    assert decode(0x2A52, _h("06000106"))["response"] == "no_records_found"
    assert decode(0x2A52, _h("06000301"))["request_opcode"] == 3
    names = ("success", "op_code_not_supported", "invalid_operator", "operator_not_supported",
             "invalid_operand", "no_records_found", "abort_unsuccessful",
             "procedure_not_completed", "operand_not_supported")
    for code in range(1, 10):
        r = decode_racp(encode_racp_response(1, code))
        assert r["response_code"] == code and r["response"] == names[code - 1]
        assert response_name(code) == names[code - 1]
    assert decode_racp(_h("06000100"))["response"] == "reserved"
    assert decode_racp(_h("0600010A"))["response"] == "reserved"
    assert decode(0x2A52, _h("05002A00")) == {"opcode": 5, "count": 42}
    assert decode(0x2A52, encode_racp_count(65535))["count"] == 65535
    assert encode_racp_count(0) == _h("05000000")


def test_racp_malformed_responses():
    for bad, field, off in (("", "opcode", 0), ("0101", "opcode", 0), ("0300", "opcode", 0),
                            ("06", "operator", 1), ("0601", "operator", 1),
                            ("06010101", "operator", 1), ("0600", "request_opcode", 2),
                            ("060001", "response_code", 3), ("0600010100", "end", 4),
                            ("0500", "count", 2), ("05002A", "count", 2),
                            ("05002A0000", "end", 4)):
        e = raises(DecodeError, decode, 0x2A52, _h(bad))
        assert (e.field, e.offset) == (field, off), bad


def test_dispatcher_serves_every_glucose_characteristic():
    for uuid in (0x2A18, 0x2A34, 0x2A51, 0x2A52):
        raises(DecodeError, decode, uuid, b"")
    assert decode(0x2A18, bytearray(NORDIC))["sequence"] == 1
