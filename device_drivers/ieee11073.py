# IEEE 11073-20601 numbers as used by the Bluetooth health profiles: the
# 16-bit SFLOAT and 32-bit FLOAT (signed mantissa, signed base-10 exponent,
# no bias), and the 7-byte Date Time. Decoders round to the precision the
# exponent gives, so 138 stays 138 and not 137.99999 on single-precision
# MicroPython floats. NaN, NRes and reserved decode to None; +/-INF to
# float('inf') / float('-inf'); the special values exist only with exponent
# 0 (0xF7FF is 204.7). Encoders refuse what would read back as something else.
#
# Also the pieces every profile module shares: little-endian readers that
# raise DecodeError(field, offset) instead of IndexError, the length checks,
# and named bit fields.
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


def _mantissa(value, exponent):
    return round(value * (10 ** -exponent)) if exponent < 0 else \
        round(value / (10 ** exponent))


def sfloat_to_raw(value, exponent=0):
    """Encode a number as SFLOAT with the given exponent (None -> NaN).

    ValueError when the exponent is not -8..7 or the number does not fit (a
    mantissa that would read back as a special value does not fit either)."""
    if value is None:
        return 0x07FF
    if value == _INF:
        return 0x07FE
    if value == -_INF:
        return 0x0802
    if not -8 <= exponent <= 7:
        raise ValueError("SFLOAT exponent out of range: %d" % exponent)
    mantissa = _mantissa(value, exponent)
    if not -2046 <= mantissa <= 2045:
        raise ValueError("SFLOAT mantissa out of range: %d" % mantissa)
    raw = ((exponent & 0x0F) << 12) | (mantissa & 0x0FFF)
    if raw in _SFLOAT_SPECIAL:  # -2046 x 10^0 is -INF on the wire
        raise ValueError("SFLOAT %d x 10^%d is a special value" % (mantissa, exponent))
    return raw


def float_to_raw(value, exponent=0):
    """Encode a number as 32-bit FLOAT with the given exponent (None -> NaN).

    ValueError when the exponent is not -128..127 or the mantissa not within
    +/-8388605 (the values next to the specials are left out, as for SFLOAT)."""
    if value is None:
        return 0x007FFFFF
    if value == _INF:
        return 0x007FFFFE
    if value == -_INF:
        return 0x00800002
    if not -128 <= exponent <= 127:
        raise ValueError("FLOAT exponent out of range: %d" % exponent)
    mantissa = _mantissa(value, exponent)
    if not -0x7FFFFD <= mantissa <= 0x7FFFFD:
        raise ValueError("FLOAT mantissa out of range: %d" % mantissa)
    return ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)


def uint_bytes(value, size):
    """An unsigned little-endian field of `size` bytes (ValueError when it
    does not fit)."""
    if not 0 <= value < 1 << (8 * size):
        raise ValueError("%d does not fit in %d bytes" % (value, size))
    return bytes((value >> (8 * i)) & 0xFF for i in range(size))


def sfloat_bytes(value, exponent=0):
    """SFLOAT as the 2 bytes on the wire."""
    raw = sfloat_to_raw(value, exponent)
    return bytes((raw & 0xFF, raw >> 8))


def float_bytes(value, exponent=0):
    """FLOAT as the 4 bytes on the wire."""
    return uint_bytes(float_to_raw(value, exponent), 4)


def scaled(raw, exponent):
    """An unsigned fixed-point field (weight, BMI, height) as a number:
    raw x 10^exponent, rounded to the decimals the exponent gives."""
    return _scaled(raw, exponent)


def read_u16(data, offset, field):
    if offset + 2 > len(data):
        raise DecodeError("truncated", field, offset)
    return data[offset] | (data[offset + 1] << 8)


def read_u8(data, offset, field):
    if offset >= len(data):
        raise DecodeError("truncated", field, offset)
    return data[offset]


def read_u24(data, offset, field):
    if offset + 3 > len(data):
        raise DecodeError("truncated", field, offset)
    return data[offset] | (data[offset + 1] << 8) | (data[offset + 2] << 16)


def read_u32(data, offset, field):
    if offset + 4 > len(data):
        raise DecodeError("truncated", field, offset)
    return data[offset] | (data[offset + 1] << 8) | (data[offset + 2] << 16) | \
        (data[offset + 3] << 24)


def read_sfloat(data, offset, field):
    return sfloat_from_raw(read_u16(data, offset, field))


def read_float(data, offset, field):
    return float_from_raw(read_u32(data, offset, field))


def expect_length(data, length, field):
    """DecodeError unless a fixed-size characteristic has exactly `length` bytes."""
    if len(data) != length:
        raise DecodeError("length %d, expected %d" % (len(data), length), field,
                          min(len(data), length))


def expect_end(data, offset):
    """DecodeError when bytes follow the last field the flags announced."""
    if offset != len(data):
        raise DecodeError("%d unexpected trailing bytes" % (len(data) - offset), "end", offset)


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


# --- bit fields -------------------------------------------------------------
# A bit field is described by a tuple of names indexed by bit number (None for
# a reserved bit). Decoders return the names of the bits set, in bit order;
# reserved bits are ignored on receipt, as the Bluetooth specifications say.
# Encoders take the raw int or any iterable of those names.

def bit_names(value, names):
    out = []
    for i in range(len(names)):
        if value >> i & 1 and names[i] is not None:
            out.append(names[i])
    return out


def bits_of(value, names):
    """The raw int of a bit field given as an int or as names (ValueError on
    an unknown name)."""
    if isinstance(value, int):
        return value
    bits = 0
    for name in value:
        if name is None or name not in names:
            raise ValueError("unknown flag name: %s" % name)
        bits |= 1 << names.index(name)
    return bits
