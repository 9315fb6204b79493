# mpy-portable
# Health Thermometer: 0x2A1C Temperature Measurement (and 0x2A1E, same layout).
# Vectors are written out byte by byte from the specification; the encoder is
# checked against them, not the other way round.
from device_drivers import DecodeError, thermometer
from device_drivers.gatt import decode
from tests.portable import raises

NORDIC = bytes.fromhex("06B00E00FEDC070C050B321B04")
INF = float("inf")


def _fails(data, field, offset):
    e = raises(DecodeError, decode, 0x2A1C, data)
    assert (e.field, e.offset) == (field, offset), (e.field, e.offset)
    return e


def test_public_vector_nordic():
    # flags 0x06 (Celsius, time stamp, type); FLOAT 0xFE000EB0 = 3760 x 10^-2;
    # 0x07DC = 2012, 12, 5, 11:50:27; type 4 = finger
    r = decode(0x2A1C, NORDIC)
    assert r == {"temperature": 37.6, "unit": "C", "timestamp": (2012, 12, 5, 11, 50, 27),
                 "temperature_type": 4}
    assert repr(r["temperature"]) == "37.6"
    assert thermometer.encode_measurement(37.6, timestamp=(2012, 12, 5, 11, 50, 27),
                                          temperature_type=4, exponent=-2) == NORDIC


def test_minimal_celsius():
    # 370 x 10^-1
    r = decode(0x2A1C, bytes.fromhex("00720100FF"))
    assert r == {"temperature": 37.0, "unit": "C", "timestamp": None, "temperature_type": None}


def test_fahrenheit():
    # 986 x 10^-1 = 98.6 F
    r = decode(0x2A1C, bytes.fromhex("01DA0300FF"))
    assert r["temperature"] == 98.6 and r["unit"] == "F"
    assert thermometer.encode_measurement(98.6, unit="F", exponent=-1) == \
        bytes.fromhex("01DA0300FF")


def test_negative_mantissa_and_exponents():
    # -525 (0xFFFDF3 as 24-bit two's complement) x 10^-2
    assert decode(0x2A1C, bytes.fromhex("00F3FDFFFE"))["temperature"] == -5.25
    # 4 x 10^1
    assert decode(0x2A1C, bytes.fromhex("0004000001"))["temperature"] == 40
    # 36 x 10^0
    assert decode(0x2A1C, bytes.fromhex("0024000000"))["temperature"] == 36
    # 36512 x 10^-3 -> 36.512, not 36.511999...
    t = decode(0x2A1C, bytes.fromhex("00A08E00FD"))["temperature"]
    assert t == 36.512 and repr(t) == "36.512"
    # mantissa -8388605 (0x800003) x 10^-1, the most negative non-special one
    assert decode(0x2A1C, bytes.fromhex("00030080FF"))["temperature"] == -838860.5


def test_special_values():
    cases = (("FFFF7F00", None), ("00008000", None), ("01008000", None),
             ("FEFF7F00", INF), ("02008000", -INF))
    for raw, want in cases:
        r = decode(0x2A1C, bytes.fromhex("00" + raw))
        assert r["temperature"] == want if want is not None else r["temperature"] is None
    # the special mantissas with a non-zero exponent are plain numbers
    assert decode(0x2A1C, bytes.fromhex("00FFFF7FFF"))["temperature"] == 838860.7


def test_every_flag_combination():
    value = bytes.fromhex("720100FF")  # 37.0
    stamp = bytes.fromhex("EA070B1D090500")  # 2026-11-29 09:05:00
    for flags in range(8):
        for reserved in (0x00, 0xF8):  # bits 3-7 are reserved: ignored
            data = bytes((flags | reserved,)) + value
            if flags & 2:
                data += stamp
            if flags & 4:
                data += b"\x06"  # mouth
            r = decode(0x2A1C, data)
            assert r["temperature"] == 37.0
            assert r["unit"] == ("F" if flags & 1 else "C")
            assert r["timestamp"] == ((2026, 11, 29, 9, 5, 0) if flags & 2 else None)
            assert r["temperature_type"] == (6 if flags & 4 else None)
            assert sorted(r) == ["temperature", "temperature_type", "timestamp", "unit"]
            if not reserved:
                assert thermometer.encode_measurement(
                    37.0, unit=r["unit"], timestamp=r["timestamp"],
                    temperature_type=r["temperature_type"], exponent=-1) == data


def test_truncation_at_every_length():
    names = ["flags"] + ["temperature"] * 4 + ["timestamp"] * 7 + ["temperature_type"]
    for cut in range(len(NORDIC)):
        e = raises(DecodeError, decode, 0x2A1C, NORDIC[:cut])
        assert e.field == names[cut], (cut, e.field)
        assert e.offset == (0, 1, 1, 1, 1, 5, 5, 5, 5, 5, 5, 5, 12)[cut]


def test_flags_promise_fields_not_sent():
    _fails(bytes.fromhex("02B00E00FE"), "timestamp", 5)
    _fails(bytes.fromhex("04B00E00FE"), "temperature_type", 5)
    _fails(bytes.fromhex("06B00E00FE04"), "timestamp", 5)  # a type where the stamp goes


def test_trailing_bytes():
    e = _fails(NORDIC + b"\x00", "end", 13)
    assert "trailing" in str(e)
    _fails(bytes.fromhex("00B00E00FE04"), "end", 5)  # a type byte without its flag


def test_reserved_temperature_type_is_passed_on():
    for t in (0, 10, 255):
        r = decode(0x2A1C, bytes.fromhex("04B00E00FE") + bytes((t,)))
        assert r["temperature_type"] == t


def test_bad_timestamp_names_the_field():
    for bad in ("DC070D050B321B", "DC070C200B321B", "DC070C05183200", "DC070C050B3C00",
                "DC070C050B323C", "2D060C050B321B"):  # month 13, day 32, 24 h, 60 min, 60 s, 1581
        _fails(bytes.fromhex("02B00E00FE" + bad), "timestamp", 5)
    # unknown parts are 0 and are kept as sent
    r = decode(0x2A1C, bytes.fromhex("02B00E00FE" + "00000000000000"))
    assert r["timestamp"] == (0, 0, 0, 0, 0, 0)


def test_intermediate_temperature_has_the_same_layout():
    assert thermometer.DECODERS[0x2A1E](NORDIC) == decode(0x2A1C, NORDIC)


def test_encoder():
    assert thermometer.encode_measurement(None) == bytes.fromhex("00FFFF7F00")
    assert thermometer.encode_measurement(INF) == bytes.fromhex("00FEFF7F00")
    assert thermometer.encode_measurement(-INF) == bytes.fromhex("0002008000")
    assert thermometer.encode_measurement(37.6) == bytes.fromhex("00B00E00FE")
    raises(ValueError, thermometer.encode_measurement, 37.6, unit="K")
    raises(ValueError, thermometer.encode_measurement, 37.6, exponent=-200)
    raises(ValueError, thermometer.encode_measurement, 9e6, exponent=0)
