# Weight Scale profile (service 0x181D): 0x2A9D Weight Measurement
# (indicate), 0x2A9E Weight Scale Feature (read), and their encoders (for the
# scale simulators and tests).
#
# Measurement flags: bit 0 imperial (lb and in, else kg and m), bit 1 time
# stamp, bit 2 user id, bit 3 BMI and height; bits 4-7 reserved. Fields:
# weight (uint16: 0.005 kg or 0.01 lb; 0xFFFF "measurement unsuccessful",
# which allows only the time stamp and user id beside it), time stamp (Date
# Time), user id (uint8, 255 unknown user), BMI (uint16, 0.1), height
# (uint16: 0.001 m or 0.1 in). The resolution a scale announces in 0x2A9E does
# not rescale these units: a scale with 0.05 kg steps still counts in 0.005 kg.
#
# Feature (uint32): bit 0 time stamp, 1 multiple users, 2 BMI supported;
# bits 3-6 weight resolution code, 7-9 height resolution code (0 not
# specified; reserved codes are passed on with no resolution value).
from device_drivers import DecodeError
from device_drivers.ieee11073 import (
    bit_names,
    bits_of,
    date_time_bytes,
    expect_end,
    expect_length,
    read_date_time,
    read_u8,
    read_u16,
    read_u32,
    scaled,
    uint_bytes,
)

_IMPERIAL = 0x01
_TIMESTAMP = 0x02
_USER = 0x04
_BMI_HEIGHT = 0x08
_UNSUCCESSFUL = 0xFFFF

FEATURES = ("time_stamp", "multiple_users", "bmi")
# resolution code -> step (index 0: not specified)
WEIGHT_RESOLUTION_KG = (None, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005)
WEIGHT_RESOLUTION_LB = (None, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
HEIGHT_RESOLUTION_M = (None, 0.01, 0.005, 0.001)
HEIGHT_RESOLUTION_IN = (None, 1, 0.5, 0.1)


def decode_measurement(data):
    """0x2A9D -> weight (None when unsuccessful), unit ("kg"/"lb"), height_unit
    ("m"/"in"), timestamp, user_id, bmi, height."""
    flags = read_u8(data, 0, "flags")
    imperial = flags & _IMPERIAL
    raw = read_u16(data, 1, "weight")
    weight = None
    if raw != _UNSUCCESSFUL:
        weight = scaled(raw, -2) if imperial else scaled(raw * 5, -3)
    out = {"weight": weight,  # type: dict[str, object]
           "unit": "lb" if imperial else "kg", "height_unit": "in" if imperial else "m",
           "timestamp": None, "user_id": None, "bmi": None, "height": None}
    off = 3
    if flags & _TIMESTAMP:
        out["timestamp"] = read_date_time(data, off, "timestamp")
        off += 7
    if flags & _USER:
        out["user_id"] = read_u8(data, off, "user_id")
        off += 1
    if flags & _BMI_HEIGHT:
        if weight is None:
            raise DecodeError("BMI and height with an unsuccessful measurement", "bmi", off)
        out["bmi"] = scaled(read_u16(data, off, "bmi"), -1)
        height = read_u16(data, off + 2, "height")
        out["height"] = scaled(height, -1) if imperial else scaled(height, -3)
        off += 4
    expect_end(data, off)
    return out


def decode_feature(data):
    """0x2A9E -> features (names), weight_resolution and height_resolution
    (codes), and the steps they mean: weight_resolution_kg / _lb,
    height_resolution_m / _in (None when not specified or reserved)."""
    expect_length(data, 4, "features")
    bits = read_u32(data, 0, "features")
    w = (bits >> 3) & 0x0F
    h = (bits >> 7) & 0x07
    known_w = w < len(WEIGHT_RESOLUTION_KG)
    known_h = h < len(HEIGHT_RESOLUTION_M)
    return {"features": bit_names(bits, FEATURES),
            "weight_resolution": w, "height_resolution": h,
            "weight_resolution_kg": WEIGHT_RESOLUTION_KG[w] if known_w else None,
            "weight_resolution_lb": WEIGHT_RESOLUTION_LB[w] if known_w else None,
            "height_resolution_m": HEIGHT_RESOLUTION_M[h] if known_h else None,
            "height_resolution_in": HEIGHT_RESOLUTION_IN[h] if known_h else None}


DECODERS = {0x2A9D: decode_measurement, 0x2A9E: decode_feature}


def encode_measurement(weight, unit="kg", timestamp=None, user_id=None, bmi=None, height=None):
    """0x2A9D bytes as a scale sends them; weight None -> "measurement
    unsuccessful". BMI and height go together, in the unit system of `unit`."""
    if unit not in ("kg", "lb"):
        raise ValueError("unit must be kg or lb")
    imperial = unit == "lb"
    if weight is None:
        raw = _UNSUCCESSFUL
    else:
        raw = round(weight * 100) if imperial else round(weight * 200)
        if not 0 <= raw < _UNSUCCESSFUL:
            raise ValueError("weight out of range: %s %s" % (weight, unit))
    flags = _IMPERIAL if imperial else 0
    tail = b""
    if timestamp is not None:
        flags |= _TIMESTAMP
        tail += date_time_bytes(timestamp)
    if user_id is not None:
        flags |= _USER
        tail += uint_bytes(user_id, 1)
    if (bmi is None) != (height is None):
        raise ValueError("BMI and height are sent together")
    if bmi is not None:
        if weight is None:
            raise ValueError("no BMI and height with an unsuccessful measurement")
        flags |= _BMI_HEIGHT
        tail += uint_bytes(round(bmi * 10), 2) + \
            uint_bytes(round(height * 10) if imperial else round(height * 1000), 2)
    return bytes((flags,)) + uint_bytes(raw, 2) + tail


def encode_feature(features=(), weight_resolution=0, height_resolution=0):
    """0x2A9E bytes; `features` is the raw bits 0-2 or names from FEATURES."""
    if not 0 <= weight_resolution <= 15 or not 0 <= height_resolution <= 7:
        raise ValueError("resolution code out of range")
    bits = bits_of(features, FEATURES) | (weight_resolution << 3) | (height_resolution << 7)
    return uint_bytes(bits, 4)
