# Blood Pressure profile (service 0x1810): 0x2A35 Blood Pressure Measurement
# (indicate), 0x2A36 Intermediate Cuff Pressure (notify), 0x2A49 Blood
# Pressure Feature (read), and their encoders (for the cuff simulators and
# tests). Field layout: ../shared/specs/instruments.md. Pure functions;
# reached through device_drivers.gatt.decode.
from device_drivers import DecodeError
from device_drivers.ieee11073 import (
    bit_names,
    bits_of,
    date_time_bytes,
    expect_length,
    read_date_time,
    read_sfloat,
    read_u8,
    read_u16,
    sfloat_bytes,
    uint_bytes,
)

# Blood pressure flags
_BP_KPA = 0x01
_BP_TIMESTAMP = 0x02
_BP_PULSE = 0x04
_BP_USER = 0x08
_BP_STATUS = 0x10

# Measurement status bits 0-5 (bits 3-4: pulse rate range)
_BP_STATUS_FLAGS = (
    (0x0001, "body_movement"),
    (0x0002, "cuff_too_loose"),
    (0x0004, "irregular_pulse"),
    (0x0020, "improper_position"),
)
_BP_PULSE_RANGE = {1: "pulse_above_range", 2: "pulse_below_range", 3: "pulse_range_reserved"}


def _bp_status_names(status):
    names = [name for bit, name in _BP_STATUS_FLAGS if status & bit]
    rng = (status >> 3) & 0x03
    if rng:
        names.append(_BP_PULSE_RANGE[rng])
    return names


def _decode_bp(data, intermediate):
    flags = read_u8(data, 0, "flags")
    unit = "kPa" if flags & _BP_KPA else "mmHg"
    first = read_sfloat(data, 1, "systolic")
    second = read_sfloat(data, 3, "diastolic")
    third = read_sfloat(data, 5, "mean_arterial")
    off = 7
    out = {"unit": unit,  # type: dict[str, object]
           "timestamp": None, "pulse_rate": None, "user_id": None,
           "status": []}
    if intermediate:
        out["cuff_pressure"] = first
    else:
        out["systolic"] = first
        out["diastolic"] = second
        out["mean_arterial"] = third
    if flags & _BP_TIMESTAMP:
        out["timestamp"] = read_date_time(data, off, "timestamp")
        off += 7
    if flags & _BP_PULSE:
        out["pulse_rate"] = read_sfloat(data, off, "pulse_rate")
        off += 2
    if flags & _BP_USER:
        out["user_id"] = read_u8(data, off, "user_id")
        off += 1
    if flags & _BP_STATUS:
        out["status"] = _bp_status_names(read_u16(data, off, "status"))
        off += 2
    if off != len(data):
        raise DecodeError("%d unexpected trailing bytes" % (len(data) - off), "end", off)
    return out


def decode_measurement(data):
    return _decode_bp(data, False)


def decode_intermediate(data):
    return _decode_bp(data, True)


# 0x2A49 bits 0-5 (6-15 reserved)
FEATURES = ("body_movement_detection", "cuff_fit_detection", "irregular_pulse_detection",
            "pulse_rate_range_detection", "measurement_position_detection", "multiple_bonds")


def decode_feature(data):
    """0x2A49 (uint16) -> {"features": [names of the supported features]}."""
    expect_length(data, 2, "features")
    return {"features": bit_names(read_u16(data, 0, "features"), FEATURES)}


def encode_feature(features):
    """0x2A49 bytes; `features` is the raw uint16 or names from FEATURES."""
    return uint_bytes(bits_of(features, FEATURES), 2)


DECODERS = {0x2A35: decode_measurement, 0x2A36: decode_intermediate,
            0x2A49: decode_feature}


def encode_measurement(systolic, diastolic, mean_arterial=None, unit="mmHg",
                          timestamp=None, pulse_rate=None, user_id=None, status=0,
                          exponent=0):
    """0x2A35 bytes, as a cuff sends them (used by simulators and tests).

    `status` is the raw 16-bit measurement status (None leaves the field out).
    """
    flags = 0
    if unit == "kPa":
        flags |= _BP_KPA
    tail = b""
    if timestamp is not None:
        flags |= _BP_TIMESTAMP
        tail += date_time_bytes(timestamp)
    if pulse_rate is not None:
        flags |= _BP_PULSE
        tail += sfloat_bytes(pulse_rate, 0)
    if user_id is not None:
        flags |= _BP_USER
        tail += bytes((user_id,))
    if status is not None:
        flags |= _BP_STATUS
        tail += bytes((status & 0xFF, status >> 8))
    head = bytes((flags,)) + sfloat_bytes(systolic, exponent) + \
        sfloat_bytes(diastolic, exponent) + sfloat_bytes(mean_arterial, exponent)
    return head + tail

