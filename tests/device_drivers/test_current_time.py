# mpy-portable
# Current Time 0x2A2B, Date Time 0x2A08 and Battery Level 0x2A19, with their
# encoders. Vectors are written out byte by byte from the specification.
from device_drivers import DecodeError
from device_drivers.common_chars import (
    ADJUST_REASONS,
    encode_battery,
    encode_current_time,
    encode_date_time,
)
from device_drivers.gatt import decode
from tests.portable import raises

# 2026-11-29 09:05:00, Sunday (7), 128/256 s, adjusted manually
CURRENT = bytes.fromhex("EA070B1D090500" "07" "80" "01")


def _fails(uuid, data, field, offset):
    e = raises(DecodeError, decode, uuid, data)
    assert (e.field, e.offset) == (field, offset), (e.field, e.offset)
    return e


def test_current_time():
    assert decode(0x2A2B, CURRENT) == {"timestamp": (2026, 11, 29, 9, 5, 0), "day_of_week": 7,
                                       "fractions256": 128, "adjust_reason": ["manual"]}
    assert encode_current_time((2026, 11, 29, 9, 5, 0), 7, 128, ["manual"]) == CURRENT
    assert encode_current_time((2026, 11, 29, 9, 5, 0), 7, 128, 1) == CURRENT


def test_current_time_unknown_parts_and_limits():
    r = decode(0x2A2B, bytes(10))
    assert r == {"timestamp": (0, 0, 0, 0, 0, 0), "day_of_week": 0, "fractions256": 0,
                 "adjust_reason": []}
    # 9999-12-31 23:59:59, Monday, 255/256
    r = decode(0x2A2B, bytes.fromhex("0F270C1F173B3B" "01" "FF" "00"))
    assert r["timestamp"] == (9999, 12, 31, 23, 59, 59)
    assert r["day_of_week"] == 1 and r["fractions256"] == 255
    # 1582 is the first year the Date Time allows
    assert decode(0x2A2B, bytes.fromhex("2E06010100000000" "0000"))["timestamp"][0] == 1582


def test_adjust_reason_bits():
    for bit in range(4):
        data = CURRENT[:9] + bytes((1 << bit,))
        assert decode(0x2A2B, data)["adjust_reason"] == [ADJUST_REASONS[bit]]
    assert decode(0x2A2B, CURRENT[:9] + b"\x0F")["adjust_reason"] == \
        ["manual", "external_reference", "time_zone_change", "dst_change"]
    # bits 4-7 reserved: ignored
    assert decode(0x2A2B, CURRENT[:9] + b"\xF0")["adjust_reason"] == []
    assert decode(0x2A2B, CURRENT[:9] + b"\xFA")["adjust_reason"] == \
        ["external_reference", "dst_change"]


def test_day_of_week():
    for day in range(8):
        data = CURRENT[:7] + bytes((day,)) + CURRENT[8:]
        assert decode(0x2A2B, data)["day_of_week"] == day
    for day in (8, 9, 255):
        _fails(0x2A2B, CURRENT[:7] + bytes((day,)) + CURRENT[8:], "day_of_week", 7)


def test_current_time_is_ten_bytes_exactly():
    for n in range(10):
        e = _fails(0x2A2B, CURRENT[:n], "current_time", n)
        assert "expected 10" in str(e)
    _fails(0x2A2B, CURRENT + b"\x00", "current_time", 10)
    _fails(0x2A2B, CURRENT + CURRENT, "current_time", 10)


def test_current_time_bad_date_parts():
    for bad in ("EA070D1D090500", "EA070B20090500", "EA070B1D180500", "EA070B1D093C00",
                "EA070B1D09053C", "2D060B1D090500", "10270B1D090500"):
        # month 13, day 32, hour 24, minute 60, second 60, year 1581, year 10000
        _fails(0x2A2B, bytes.fromhex(bad) + CURRENT[7:], "timestamp", 0)


def test_date_time():
    data = bytes.fromhex("EA070B1D090501")
    assert decode(0x2A08, data) == {"timestamp": (2026, 11, 29, 9, 5, 1)}
    assert encode_date_time((2026, 11, 29, 9, 5, 1)) == data
    assert decode(0x2A08, bytes(7)) == {"timestamp": (0, 0, 0, 0, 0, 0)}
    for n in range(7):
        _fails(0x2A08, data[:n], "timestamp", n)
    _fails(0x2A08, data + b"\x00", "timestamp", 7)
    _fails(0x2A08, bytes.fromhex("EA070B1D090560"), "timestamp", 0)


def test_battery():
    for level in (0, 1, 50, 100):
        assert decode(0x2A19, encode_battery(level)) == {"level": level}
    assert encode_battery(80) == b"\x50"
    _fails(0x2A19, b"\x65", "level", 0)
    _fails(0x2A19, b"\xFF", "level", 0)
    _fails(0x2A19, b"", "level", 0)
    _fails(0x2A19, b"\x50\x00", "level", 1)


def test_encoders_reject_what_they_cannot_send():
    raises(ValueError, encode_battery, 101)
    raises(ValueError, encode_battery, -1)
    raises(ValueError, encode_current_time, (2026, 1, 1, 0, 0, 0), 8)
    raises(ValueError, encode_current_time, (2026, 1, 1, 0, 0, 0), 1, 0, ["leap_second"])
