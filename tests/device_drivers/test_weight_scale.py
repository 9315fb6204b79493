# mpy-portable
# Weight Scale: 0x2A9D Weight Measurement and 0x2A9E Weight Scale Feature.
# Vectors are written out byte by byte from the specification.
from device_drivers import DecodeError
from device_drivers.gatt import decode
from device_drivers.weight_scale import encode_feature, encode_measurement
from tests.portable import raises

STAMP = bytes.fromhex("EA070B1D090500")  # 2026-11-29 09:05:00
TS = (2026, 11, 29, 9, 5, 0)
# flags 0x0E (kg): 13946 x 0.005 = 69.73 kg, stamp, user 2, BMI 229 x 0.1,
# height 1752 x 0.001 m
SI_FULL = bytes.fromhex("0E" "7A36" "EA070B1D090500" "02" "E500" "D806")
# flags 0x0F (lb): 15400 x 0.01 = 154 lb, stamp, user 255 (unknown), BMI 22.0,
# height 700 x 0.1 in
IMPERIAL_FULL = bytes.fromhex("0F" "283C" "EA070B1D090500" "FF" "DC00" "BC02")


def _fails(uuid, data, field, offset):
    e = raises(DecodeError, decode, uuid, data)
    assert (e.field, e.offset) == (field, offset), (e.field, e.offset)
    return e


def test_minimal_kg_and_lb():
    # 12000 x 0.005 kg
    assert decode(0x2A9D, bytes.fromhex("00E02E")) == {
        "weight": 60.0, "unit": "kg", "height_unit": "m", "timestamp": None,
        "user_id": None, "bmi": None, "height": None}
    # 15004 x 0.01 lb
    r = decode(0x2A9D, bytes.fromhex("019C3A"))
    assert r["weight"] == 150.04 and r["unit"] == "lb" and r["height_unit"] == "in"


def test_every_field_si_and_imperial():
    r = decode(0x2A9D, SI_FULL)
    assert r == {"weight": 69.73, "unit": "kg", "height_unit": "m", "timestamp": TS,
                 "user_id": 2, "bmi": 22.9, "height": 1.752}
    assert repr(r["weight"]) == "69.73" and repr(r["height"]) == "1.752"
    assert encode_measurement(69.73, timestamp=TS, user_id=2, bmi=22.9, height=1.752) == SI_FULL
    r = decode(0x2A9D, IMPERIAL_FULL)
    assert r == {"weight": 154, "unit": "lb", "height_unit": "in", "timestamp": TS,
                 "user_id": 255, "bmi": 22, "height": 70}
    assert encode_measurement(154, unit="lb", timestamp=TS, user_id=255, bmi=22.0,
                              height=70.0) == IMPERIAL_FULL


def test_resolution_and_range():
    # the unit is 0.005 kg whatever 0x2A9E announces; rounded to 3 decimals
    for raw, kg, lb in ((0, 0, 0), (1, 0.005, 0.01), (3, 0.015, 0.03), (14051, 70.255, 140.51),
                        (0xFFFE, 327.67, 655.34)):
        data = bytes((raw & 0xFF, raw >> 8))
        assert decode(0x2A9D, b"\x00" + data)["weight"] == kg
        assert decode(0x2A9D, b"\x01" + data)["weight"] == lb
    assert repr(decode(0x2A9D, bytes.fromhex("00E336"))["weight"]) == "70.255"


def test_measurement_unsuccessful():
    r = decode(0x2A9D, bytes.fromhex("00FFFF"))
    assert r["weight"] is None and r["unit"] == "kg"
    # the time stamp and user id may come with it
    r = decode(0x2A9D, bytes.fromhex("07FFFF") + STAMP + b"\x01")
    assert r["weight"] is None and r["timestamp"] == TS and r["user_id"] == 1
    assert r["unit"] == "lb"
    assert encode_measurement(None, unit="lb", timestamp=TS, user_id=1) == \
        bytes.fromhex("07FFFF") + STAMP + b"\x01"
    # BMI and height may not: a scale that sends them is not believed
    _fails(0x2A9D, bytes.fromhex("08FFFFE500D806"), "bmi", 3)
    raises(ValueError, encode_measurement, None, bmi=22.9, height=1.75)


def test_every_flag_combination():
    for flags in range(16):
        for reserved in (0x00, 0xF0):  # bits 4-7 reserved: ignored
            data = bytes((flags | reserved,)) + bytes.fromhex("A00F")  # 4000
            if flags & 2:
                data += STAMP
            if flags & 4:
                data += b"\x07"
            if flags & 8:
                data += bytes.fromhex("FA00" "7017")  # 250, 6000
            r = decode(0x2A9D, data)
            imperial = flags & 1
            assert r["weight"] == (40 if imperial else 20)
            assert r["unit"] == ("lb" if imperial else "kg")
            assert r["timestamp"] == (TS if flags & 2 else None)
            assert r["user_id"] == (7 if flags & 4 else None)
            assert r["bmi"] == (25 if flags & 8 else None)
            assert r["height"] == ((600 if imperial else 6) if flags & 8 else None)
            if not reserved:
                assert encode_measurement(r["weight"], r["unit"], r["timestamp"], r["user_id"],
                                          r["bmi"], r["height"]) == data


def test_truncation_at_every_length():
    fields = [(0, "flags"), (1, "weight"), (1, "weight")] + [(3, "timestamp")] * 7 + \
        [(10, "user_id"), (11, "bmi"), (11, "bmi"), (13, "height"), (13, "height")]
    assert len(fields) == len(SI_FULL)
    for data in (SI_FULL, IMPERIAL_FULL):
        for cut in range(len(data)):
            _fails(0x2A9D, data[:cut], fields[cut][1], fields[cut][0])
        _fails(0x2A9D, data + b"\x00", "end", len(data))
    _fails(0x2A9D, bytes.fromhex("00E02E01"), "end", 3)  # a user id without its flag


def test_bad_timestamp():
    _fails(0x2A9D, bytes.fromhex("02E02EEA07000000003C"), "timestamp", 3)  # second 60


def test_feature():
    assert decode(0x2A9E, bytes.fromhex("00000000")) == {
        "features": [], "weight_resolution": 0, "height_resolution": 0,
        "weight_resolution_kg": None, "weight_resolution_lb": None,
        "height_resolution_m": None, "height_resolution_in": None}
    # bits 0-2 set, weight code 7 (bits 3-6), height code 3 (bits 7-9): 0x1BF
    r = decode(0x2A9E, bytes.fromhex("BF010000"))
    assert r["features"] == ["time_stamp", "multiple_users", "bmi"]
    assert (r["weight_resolution"], r["height_resolution"]) == (7, 3)
    assert (r["weight_resolution_kg"], r["weight_resolution_lb"]) == (0.005, 0.01)
    assert (r["height_resolution_m"], r["height_resolution_in"]) == (0.001, 0.1)
    assert encode_feature(["time_stamp", "multiple_users", "bmi"], 7, 3) == \
        bytes.fromhex("BF010000")
    # code 4: 0.05 kg / 0.1 lb; code 1 height: 0.01 m / 1 in
    r = decode(0x2A9E, bytes.fromhex("A0000000"))
    assert r["features"] == [] and r["weight_resolution"] == 4
    assert r["weight_resolution_kg"] == 0.05 and r["height_resolution_in"] == 1
    # reserved codes are passed on without a step; bits 10-31 are ignored
    r = decode(0x2A9E, bytes.fromhex("F8FFFFFF"))
    assert (r["weight_resolution"], r["height_resolution"]) == (15, 7)
    assert r["weight_resolution_kg"] is None and r["height_resolution_m"] is None
    assert r["features"] == []


def test_feature_length():
    for data in ("", "00", "0000", "000000", "0000000000"):
        e = raises(DecodeError, decode, 0x2A9E, bytes.fromhex(data))
        assert e.field == "features" and e.offset == min(len(data) // 2, 4)


def test_encoder_rejects_what_it_cannot_send():
    raises(ValueError, encode_measurement, 70, unit="st")
    raises(ValueError, encode_measurement, 400)  # over 327.67 kg
    raises(ValueError, encode_measurement, -1)
    raises(ValueError, encode_measurement, 70, bmi=22.9)  # no height
    raises(ValueError, encode_measurement, 70, user_id=256)
    raises(ValueError, encode_feature, (), 16, 0)
    raises(ValueError, encode_feature, (), 0, 8)
