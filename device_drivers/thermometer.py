# Health Thermometer profile (service 0x1809): 0x2A1C Temperature Measurement
# (indicate) and 0x2A1E Intermediate Temperature (notify, same layout), and
# their encoder (for the thermometer simulators and tests).
#
# Flags: bit 0 Fahrenheit (else Celsius), bit 1 time stamp, bit 2 temperature
# type; bits 3-7 reserved. Fields: temperature (FLOAT), time stamp (Date
# Time), temperature type (uint8: 1 armpit, 2 body, 3 ear, 4 finger,
# 5 gastro-intestinal tract, 6 mouth, 7 rectum, 8 toe, 9 tympanum; other
# values are reserved and passed on as sent).
from device_drivers.ieee11073 import (
    date_time_bytes,
    expect_end,
    float_bytes,
    read_date_time,
    read_float,
    read_u8,
)

_FAHRENHEIT = 0x01
_TIMESTAMP = 0x02
_TYPE = 0x04


def decode_measurement(data):
    """0x2A1C / 0x2A1E -> temperature, unit ("C"/"F"), timestamp, temperature_type."""
    flags = read_u8(data, 0, "flags")
    out = {"temperature": read_float(data, 1, "temperature"),  # type: dict[str, object]
           "unit": "F" if flags & _FAHRENHEIT else "C",
           "timestamp": None, "temperature_type": None}
    off = 5
    if flags & _TIMESTAMP:
        out["timestamp"] = read_date_time(data, off, "timestamp")
        off += 7
    if flags & _TYPE:
        out["temperature_type"] = read_u8(data, off, "temperature_type")
        off += 1
    expect_end(data, off)
    return out


DECODERS = {0x2A1C: decode_measurement, 0x2A1E: decode_measurement}


def encode_measurement(temperature, unit="C", timestamp=None, temperature_type=None,
                       exponent=-2):
    """0x2A1C bytes as a thermometer sends them (temperature None -> NaN)."""
    if unit not in ("C", "F"):
        raise ValueError("unit must be C or F")
    flags = _FAHRENHEIT if unit == "F" else 0
    tail = b""
    if timestamp is not None:
        flags |= _TIMESTAMP
        tail += date_time_bytes(timestamp)
    if temperature_type is not None:
        flags |= _TYPE
        tail += bytes((temperature_type,))
    return bytes((flags,)) + float_bytes(temperature, exponent) + tail
