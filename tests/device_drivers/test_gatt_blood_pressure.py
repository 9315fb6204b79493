# mpy-portable
# Blood Pressure profile (0x2A35/0x2A36), SFLOAT, Date Time and Battery Level.
from device_drivers import DecodeError
from device_drivers.gatt import decode, encode_blood_pressure
from device_drivers.ieee11073 import float_from_raw, sfloat_from_raw, sfloat_to_raw
from device_drivers.reading import from_blood_pressure
from tests.portable import raises


def test_sfloat_public_vectors():
    assert sfloat_from_raw(0x0201) == 513
    assert sfloat_from_raw(0xFE01) == -51.1
    assert sfloat_from_raw(0x07FF) is None
    assert sfloat_from_raw(0x0800) is None
    assert sfloat_from_raw(0x0801) is None
    assert sfloat_from_raw(0x07FE) == float("inf")
    assert sfloat_from_raw(0x0802) == float("-inf")


def test_sfloat_signed_exponent_is_not_biased():
    # 120 with exponent 0; a biased reading would give 120e-8
    assert sfloat_from_raw(0x0078) == 120
    # 37.6 = 376 x 10^-1 (exponent 0xF)
    assert sfloat_from_raw(0xF178) == 37.6
    assert sfloat_from_raw(0x0FFF) == -1  # mantissa -1, exponent 0
    assert sfloat_from_raw(0x1FFF) == -10  # mantissa -1, exponent 1
    assert sfloat_from_raw(0x0801 + 1) == float("-inf")


def test_sfloat_round_trip():
    for value, exp in ((138, 0), (37.6, -1), (-51.1, -1), (0, 0), (2045, 0), (5.5, -1)):
        assert sfloat_from_raw(sfloat_to_raw(value, exp)) == value


def test_float_specials_and_value():
    assert float_from_raw(0x007FFFFF) is None
    assert float_from_raw(0x007FFFFE) == float("inf")
    assert float_from_raw(0x00800002) == float("-inf")
    assert float_from_raw(0xFE000EB0) == 37.6  # 3760 x 10^-2


def test_bp_public_vector_nordic():
    data = bytes.fromhex("1E8A00580078000000041114293B3C00012700")
    r = decode(0x2A35, data)
    assert r["systolic"] == 138 and r["diastolic"] == 88 and r["mean_arterial"] == 120
    assert r["unit"] == "mmHg"
    assert r["timestamp"] == (0, 4, 17, 20, 41, 59)
    assert r["pulse_rate"] == 60 and r["user_id"] == 1
    # status 0x0027: body movement, cuff too loose, irregular pulse, improper position
    assert r["status"] == ["body_movement", "cuff_too_loose", "irregular_pulse",
                           "improper_position"]


def test_bp_too_short_names_field():
    e = raises(DecodeError, decode, 0x2A35, bytes.fromhex("010203040506"))
    assert e.field == "mean_arterial" and e.offset == 5


def test_bp_flags_promise_more_than_sent():
    full = encode_blood_pressure(120, 80, 93, timestamp=(2026, 11, 29, 9, 5, 0),
                                 pulse_rate=70, user_id=2, status=0)
    for cut in range(len(full)):
        raises(DecodeError, decode, 0x2A35, full[:cut])
    raises(DecodeError, decode, 0x2A35, full + b"\x00")


def test_bp_minimal_kpa():
    data = encode_blood_pressure(16.0, 10.7, 12.4, unit="kPa", status=None, exponent=-1)
    r = decode(0x2A35, data)
    assert r["unit"] == "kPa" and r["systolic"] == 16.0 and r["diastolic"] == 10.7
    assert r["timestamp"] is None and r["pulse_rate"] is None and r["status"] == []


def test_bp_pulse_range_status():
    r = decode(0x2A35, encode_blood_pressure(120, 80, 93, status=0x0008))
    assert r["status"] == ["pulse_above_range"]
    r = decode(0x2A35, encode_blood_pressure(120, 80, 93, status=0x0010))
    assert r["status"] == ["pulse_below_range"]


def test_intermediate_cuff_pressure():
    r = decode(0x2A36, encode_blood_pressure(95, None, None, status=None))
    assert r["cuff_pressure"] == 95 and "systolic" not in r


def test_bad_date_time_and_battery():
    raises(DecodeError, decode, 0x2A08, bytes((0xEA, 0x07, 13, 1, 0, 0, 0)))
    assert decode(0x2A08, bytes((0xEA, 0x07, 11, 29, 9, 5, 1)))["timestamp"] == \
        (2026, 11, 29, 9, 5, 1)
    assert decode(0x2A19, b"\x50") == {"level": 80}
    raises(DecodeError, decode, 0x2A19, b"\x65")
    raises(DecodeError, decode, 0x2A19, b"")


def test_unsupported_uuid_and_non_bytes():
    raises(DecodeError, decode, 0x1234, b"\x00")
    raises(DecodeError, decode, 0x2A35, "1E8A")


def test_normalized_reading_carries_ucum_and_flags():
    r = from_blood_pressure(decode(0x2A35, bytes.fromhex("1E8A00580078000000041114293B3C00012700")))
    assert r["type"] == "blood_pressure"
    assert r["values"] == [["systolic", 138, "mm[Hg]"], ["diastolic", 88, "mm[Hg]"],
                           ["mean_arterial", 120, "mm[Hg]"], ["pulse_rate", 60, "/min"]]
    assert "irregular_pulse" in r["flags"]
    assert r["itime"] == (0, 4, 17, 20, 41, 59)


def test_normalized_reading_flags_implausible_and_missing():
    r = from_blood_pressure(decode(0x2A35, encode_blood_pressure(400, 80, None, status=None)))
    assert "suspect:systolic_out_of_range" in r["flags"]
    assert "value_missing:mean_arterial" in r["flags"]
    assert [v[0] for v in r["values"]] == ["systolic", "diastolic"]
