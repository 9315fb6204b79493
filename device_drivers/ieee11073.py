# IEEE 11073-20601 numbers as used by the Bluetooth health profiles: the
# 16-bit SFLOAT and 32-bit FLOAT (signed mantissa, signed base-10 exponent,
# no bias), and the 7-byte Date Time. Decoders round to the precision the
# exponent gives, so 138 stays 138 and not 137.99999 on single-precision
# MicroPython floats. NaN, NRes and reserved decode to None; +/-INF to
# float('inf') / float('-inf').
from device_drivers import DecodeError

_INF = float("inf")

# SFLOAT special raw values (before sign handling)
_SFLOAT_SPECIAL = {
    0x07FF: None,  # NaN
    0x0800: None,  # NRes
    0x07FE: _INF,  # +INF
    0x0802: -_INF,  # -INF
    0x0801: None,  # reserved
}
_FLOAT_SPECIAL = {
    0x007FFFFF: None,
    0x00800000: None,
    0x007FFFFE: _INF,
    0x00800002: -_INF,
    0x00800001: None,
}


def _scaled(mantissa, exponent):
    if exponent >= 0:
        return mantissa * (10 ** exponent)
    # round() to the number of decimals the exponent gives
    return round(mantissa / (10 ** -exponent), -exponent)


def sfloat_from_raw(raw):
    """Value of a 16-bit SFLOAT given as an unsigned int."""
    if raw in _SFLOAT_SPECIAL:
        return _SFLOAT_SPECIAL[raw]
    mantissa = raw & 0x0FFF
    if mantissa >= 0x0800:
        mantissa -= 0x1000
    exponent = raw >> 12
    if exponent >= 0x8:
        exponent -= 0x10
    return _scaled(mantissa, exponent)


def float_from_raw(raw):
    """Value of a 32-bit FLOAT given as an unsigned int."""
    if raw in _FLOAT_SPECIAL:
        return _FLOAT_SPECIAL[raw]
    mantissa = raw & 0xFFFFFF
    if mantissa >= 0x800000:
        mantissa -= 0x1000000
    exponent = raw >> 24
    if exponent >= 0x80:
        exponent -= 0x100
    return _scaled(mantissa, exponent)


def sfloat_to_raw(value, exponent=0):
    """Encode a number as SFLOAT with the given exponent (None -> NaN)."""
    if value is None:
        return 0x07FF
    if value == _INF:
        return 0x07FE
    if value == -_INF:
        return 0x0802
    mantissa = round(value * (10 ** -exponent)) if exponent < 0 else \
        round(value / (10 ** exponent))
    if not -2046 <= mantissa <= 2045:
        raise ValueError("SFLOAT mantissa out of range: %d" % mantissa)
    return ((exponent & 0x0F) << 12) | (mantissa & 0x0FFF)


def read_u16(data, offset, field):
    if offset + 2 > len(data):
        raise DecodeError("truncated", field, offset)
    return data[offset] | (data[offset + 1] << 8)


def read_u8(data, offset, field):
    if offset >= len(data):
        raise DecodeError("truncated", field, offset)
    return data[offset]


def read_sfloat(data, offset, field):
    return sfloat_from_raw(read_u16(data, offset, field))


def read_date_time(data, offset, field):
    """Date Time (7 bytes) as (year, month, day, hour, minute, second), 0 = unknown."""
    if offset + 7 > len(data):
        raise DecodeError("truncated", field, offset)
    year = data[offset] | (data[offset + 1] << 8)
    month, day, hour, minute, second = data[offset + 2:offset + 7]
    if month > 12 or day > 31 or hour > 23 or minute > 59 or second > 59:
        raise DecodeError("date/time part out of range", field, offset)
    if year != 0 and not 1582 <= year <= 9999:
        raise DecodeError("year out of range", field, offset)
    return (year, month, day, hour, minute, second)


def date_time_bytes(ts):
    year, month, day, hour, minute, second = ts
    return bytes((year & 0xFF, year >> 8, month, day, hour, minute, second))
