# Small characteristics most instruments carry beside their measurement:
# Current Time 0x2A2B, Date Time 0x2A08 and Battery Level 0x2A19, with their
# encoders (for the instrument simulators and tests).
#
# Current Time (10 bytes, nothing else is valid): Date Time (7), day of week
# (1 Monday .. 7 Sunday, 0 unknown), Fractions256 (1/256 s), adjust reason
# (bit 0 manual, 1 external reference, 2 time zone change, 3 DST change;
# bits 4-7 reserved, ignored on receipt).
from device_drivers import DecodeError
from device_drivers.ieee11073 import (
    bit_names,
    bits_of,
    date_time_bytes,
    expect_length,
    read_date_time,
)

ADJUST_REASONS = ("manual", "external_reference", "time_zone_change", "dst_change")


def decode_current_time(data):
    expect_length(data, 10, "current_time")
    timestamp = read_date_time(data, 0, "timestamp")
    day_of_week = data[7]
    if day_of_week > 7:
        raise DecodeError("day of week %d is not 0..7" % day_of_week, "day_of_week", 7)
    return {"timestamp": timestamp,
            "day_of_week": day_of_week,
            "fractions256": data[8],
            "adjust_reason": bit_names(data[9], ADJUST_REASONS)}


def decode_date_time(data):
    expect_length(data, 7, "timestamp")
    return {"timestamp": read_date_time(data, 0, "timestamp")}


def decode_battery(data):
    expect_length(data, 1, "level")
    if data[0] > 100:
        raise DecodeError("battery level %d%% over 100" % data[0], "level", 0)
    return {"level": data[0]}


DECODERS = {0x2A2B: decode_current_time, 0x2A08: decode_date_time, 0x2A19: decode_battery}


def encode_current_time(timestamp, day_of_week=0, fractions256=0, adjust_reason=0):
    """0x2A2B bytes; `adjust_reason` is the raw byte or names from ADJUST_REASONS."""
    if not 0 <= day_of_week <= 7:
        raise ValueError("day of week must be 0..7")
    return date_time_bytes(timestamp) + \
        bytes((day_of_week, fractions256, bits_of(adjust_reason, ADJUST_REASONS)))


def encode_date_time(timestamp):
    """0x2A08 bytes of a (year, month, day, hour, minute, second) tuple."""
    return date_time_bytes(timestamp)


def encode_battery(level):
    """0x2A19 byte of a level in percent (0..100)."""
    if not 0 <= level <= 100:
        raise ValueError("battery level must be 0..100")
    return bytes((level,))
