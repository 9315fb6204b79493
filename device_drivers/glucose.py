# Glucose profile (service 0x1808): 0x2A18 Glucose Measurement, 0x2A34
# Glucose Measurement Context, 0x2A51 Glucose Feature and 0x2A52 Record Access
# Control Point (RACP), with an encoder for each (for the meter simulators and
# tests). Field layout: ../shared/specs/instruments.md and the Bluetooth SIG
# Glucose Service. Pure functions; the decoders are reached through
# device_drivers.gatt.decode. Downloading a meter's records (which RACP
# request to write, pairing contexts, order, resuming) is glucose_download.py.
#
# Decoders check structure only: truncation, trailing bytes, a Date Time out
# of range and RACP framing raise DecodeError naming the field and offset.
# Reserved codes (a type of 0, a location of 7) are returned as they came, as
# ints; reserved status and feature bits are ignored, as the specification
# says of reserved bits. Judging plausibility is device_drivers.reading's job.
from device_drivers import DecodeError
from device_drivers.ieee11073 import (
    bit_names,
    bits_of,
    date_time_bytes,
    expect_end,
    read_date_time,
    read_sfloat,
    read_u8,
    read_u16,
    sfloat_bytes,
    uint_bytes,
)

try:
    from micropython import const
except ImportError:

    def const(x):  # type: (int) -> int
        return x


# 0x2A18 flags
_M_TIME_OFFSET = const(0x01)
_M_CONCENTRATION = const(0x02)  # concentration + type/sample location
_M_MOL_PER_L = const(0x04)  # unit of the concentration: 0 kg/L, 1 mol/L
_M_STATUS = const(0x08)  # sensor status annunciation
_M_CONTEXT_FOLLOWS = const(0x10)

# 0x2A34 flags
_C_CARBOHYDRATE = const(0x01)  # carbohydrate id + carbohydrate (kg)
_C_MEAL = const(0x02)
_C_TESTER_HEALTH = const(0x04)
_C_EXERCISE = const(0x08)  # duration (s) + intensity (%)
_C_MEDICATION = const(0x10)  # medication id + medication
_C_MEDICATION_LITRES = const(0x20)  # unit of the medication: 0 kg, 1 litres
_C_HBA1C = const(0x40)
_C_EXTENDED = const(0x80)  # an extended-flags byte follows the sequence number

_INF = float("inf")

# Sensor status annunciation, bits 0-11 (12-15 reserved)
STATUS_NAMES = ("battery_low", "sensor_malfunction", "sample_size_insufficient",
                "strip_insertion_error", "strip_type_incorrect", "result_too_high",
                "result_too_low", "temperature_too_high", "temperature_too_low",
                "read_interrupted", "general_device_fault", "time_fault")
# Glucose Feature, bits 0-10 (11-15 reserved)
FEATURE_NAMES = ("low_battery_detection", "sensor_malfunction_detection",
                 "sample_size", "strip_insertion_error_detection",
                 "strip_type_error_detection", "result_high_low_detection",
                 "temperature_high_low_detection", "read_interrupt_detection",
                 "general_device_fault", "time_fault", "multiple_bond")

# Type (low nibble of the type/sample-location byte) 10 and sample location
# (high nibble) 4 are control solution: names of the others are in reading.py.
TYPE_CONTROL_SOLUTION = 10
LOCATION_CONTROL_SOLUTION = 4

# RACP op codes, operators, filter types, response codes
RACP_REPORT = const(1)
RACP_DELETE = const(2)
RACP_ABORT = const(3)
RACP_REPORT_COUNT = const(4)
RACP_COUNT_RESPONSE = const(5)
RACP_RESPONSE = const(6)
OP_NULL = const(0)
OP_ALL = const(1)
OP_LESS_OR_EQUAL = const(2)
OP_GREATER_OR_EQUAL = const(3)
OP_WITHIN_RANGE = const(4)
OP_FIRST = const(5)
OP_LAST = const(6)
FILTER_SEQUENCE = const(1)
FILTER_USER_TIME = const(2)
RC_SUCCESS = const(1)
RC_NO_RECORDS = const(6)
# response codes 1..9
RESPONSE_NAMES = ("success", "op_code_not_supported", "invalid_operator",
                  "operator_not_supported", "invalid_operand", "no_records_found",
                  "abort_unsuccessful", "procedure_not_completed", "operand_not_supported")


def response_name(code):  # type: (int) -> str
    # Name of an RACP response code; codes 0 and 10-255 are reserved.
    return RESPONSE_NAMES[code - 1] if 1 <= code <= len(RESPONSE_NAMES) else "reserved"


def is_control_solution(measurement):  # type: (dict) -> bool
    """A control-solution reading (type 10 or location 4): quality control, not patient data."""
    return (measurement.get("type") == TYPE_CONTROL_SOLUTION
            or measurement.get("sample_location") == LOCATION_CONTROL_SOLUTION)


# --- 0x2A18 Glucose Measurement ----------------------------------------------


def decode_measurement(data):  # type: (bytes) -> dict
    flags = read_u8(data, 0, "flags")
    out = {"sequence": read_u16(data, 1, "sequence"),  # type: dict[str, object]
           "base_time": read_date_time(data, 3, "base_time"),
           "time_offset": None, "concentration": None, "concentration_unit": None,
           "type": None, "sample_location": None, "status": [],
           "context_follows": bool(flags & _M_CONTEXT_FOLLOWS)}
    off = 10
    if flags & _M_TIME_OFFSET:
        raw = read_u16(data, off, "time_offset")
        out["time_offset"] = raw - 0x10000 if raw & 0x8000 else raw
        off += 2
    if flags & _M_CONCENTRATION:  # else the unit bit means nothing: unit None
        out["concentration"] = read_sfloat(data, off, "concentration")
        out["concentration_unit"] = "mol/L" if flags & _M_MOL_PER_L else "kg/L"
        b = read_u8(data, off + 2, "type_sample_location")
        out["type"] = b & 0x0F  # type is the LOW nibble
        out["sample_location"] = b >> 4
        off += 3
    if flags & _M_STATUS:
        out["status"] = bit_names(read_u16(data, off, "status"), STATUS_NAMES)
        off += 2
    expect_end(data, off)
    return out


def encode_measurement(sequence, base_time, time_offset=None, concentration=None,
                       concentration_unit="kg/L", type=None, sample_location=None,
                       status=None, context_follows=False, exponent=None):
    """0x2A18 bytes as a meter sends them. Keyword names are decode_measurement's keys.

    The concentration block is present when `type` or `sample_location` is
    given (a missing one of the two is sent as 15, "not available"); a
    concentration of None is then sent as NaN. `status` is the raw 16-bit
    annunciation or a list of names (None leaves the field out). The SFLOAT
    exponent defaults to the largest that represents the value exactly.
    """
    flags = 0
    tail = b""
    if time_offset is not None:
        flags |= _M_TIME_OFFSET
        tail += uint_bytes(time_offset & 0xFFFF, 2)
    if type is not None or sample_location is not None:
        flags |= _M_CONCENTRATION
        if concentration_unit == "mol/L":
            flags |= _M_MOL_PER_L
        elif concentration_unit not in ("kg/L", None):
            raise ValueError("unit must be kg/L or mol/L")
        t = 15 if type is None else type
        loc = 15 if sample_location is None else sample_location
        tail += _sfloat_bytes(concentration, exponent) + bytes(((loc << 4) | t,))
    if status is not None and status != []:
        flags |= _M_STATUS
        tail += uint_bytes(bits_of(status, STATUS_NAMES), 2)
    if context_follows:
        flags |= _M_CONTEXT_FOLLOWS
    return bytes((flags,)) + uint_bytes(sequence, 2) + date_time_bytes(base_time) + tail


# --- 0x2A34 Glucose Measurement Context --------------------------------------


def decode_context(data):  # type: (bytes) -> dict
    flags = read_u8(data, 0, "flags")
    out = {"sequence": read_u16(data, 1, "sequence"),  # type: dict[str, object]
           "extended_flags": None, "carbohydrate_id": None, "carbohydrate": None,
           "meal": None, "tester": None, "health": None, "exercise_duration": None,
           "exercise_intensity": None, "medication_id": None, "medication": None,
           "medication_unit": None, "hba1c": None}
    off = 3
    if flags & _C_EXTENDED:
        out["extended_flags"] = read_u8(data, off, "extended_flags")
        off += 1
    if flags & _C_CARBOHYDRATE:
        out["carbohydrate_id"] = read_u8(data, off, "carbohydrate_id")
        out["carbohydrate"] = read_sfloat(data, off + 1, "carbohydrate")  # kg
        off += 3
    if flags & _C_MEAL:
        out["meal"] = read_u8(data, off, "meal")
        off += 1
    if flags & _C_TESTER_HEALTH:
        b = read_u8(data, off, "tester_health")
        out["tester"] = b & 0x0F  # tester is the LOW nibble
        out["health"] = b >> 4
        off += 1
    if flags & _C_EXERCISE:
        out["exercise_duration"] = read_u16(data, off, "exercise_duration")  # s
        out["exercise_intensity"] = read_u8(data, off + 2, "exercise_intensity")  # %
        off += 3
    if flags & _C_MEDICATION:
        out["medication_id"] = read_u8(data, off, "medication_id")
        out["medication"] = read_sfloat(data, off + 1, "medication")
        out["medication_unit"] = "L" if flags & _C_MEDICATION_LITRES else "kg"
        off += 3
    if flags & _C_HBA1C:
        out["hba1c"] = read_sfloat(data, off, "hba1c")  # percent
        off += 2
    expect_end(data, off)
    return out


def encode_context(sequence, extended_flags=None, carbohydrate_id=None, carbohydrate=None,
                   meal=None, tester=None, health=None, exercise_duration=None,
                   exercise_intensity=None, medication_id=None, medication=None,
                   medication_unit="kg", hba1c=None):
    """0x2A34 bytes. Keyword names are decode_context's keys.

    A pair is present when its id (or duration) is given; its value None is
    sent as NaN. Tester/health: a missing half is sent as 15 (not available).
    HbA1c is present when not None (float('nan') sends NaN).
    """
    flags = 0
    body = b""
    if extended_flags is not None:
        flags |= _C_EXTENDED
        body += bytes((extended_flags,))
    if carbohydrate_id is not None:
        flags |= _C_CARBOHYDRATE
        body += bytes((carbohydrate_id,)) + _sfloat_bytes(carbohydrate, None)
    if meal is not None:
        flags |= _C_MEAL
        body += bytes((meal,))
    if tester is not None or health is not None:
        flags |= _C_TESTER_HEALTH
        t = 15 if tester is None else tester
        h = 15 if health is None else health
        body += bytes(((h << 4) | t,))
    if exercise_duration is not None:
        flags |= _C_EXERCISE
        body += uint_bytes(exercise_duration, 2) + bytes((exercise_intensity or 0,))
    if medication_id is not None:
        flags |= _C_MEDICATION
        if medication_unit == "L":
            flags |= _C_MEDICATION_LITRES
        elif medication_unit not in ("kg", None):
            raise ValueError("medication unit must be kg or L")
        body += bytes((medication_id,)) + _sfloat_bytes(medication, None)
    if hba1c is not None:
        flags |= _C_HBA1C
        body += _sfloat_bytes(hba1c, None)
    return bytes((flags,)) + uint_bytes(sequence, 2) + body


# --- 0x2A51 Glucose Feature --------------------------------------------------


def decode_feature(data):  # type: (bytes) -> dict
    features = read_u16(data, 0, "features")
    expect_end(data, 2)
    return {"features": bit_names(features, FEATURE_NAMES)}


def encode_feature(features):  # type: (object) -> bytes
    """0x2A51 bytes from a raw int or a list of feature names."""
    return uint_bytes(bits_of(features, FEATURE_NAMES), 2)


# --- 0x2A52 Record Access Control Point ---------------------------------------


def decode_racp(data):  # type: (bytes) -> dict
    """An RACP indication (what a meter sends): the count or the response code."""
    opcode = read_u8(data, 0, "opcode")
    if opcode not in (RACP_COUNT_RESPONSE, RACP_RESPONSE):
        raise DecodeError("op code %d is not an RACP response" % opcode, "opcode", 0)
    operator = read_u8(data, 1, "operator")
    if operator != OP_NULL:
        raise DecodeError("operator of a response must be 0, got %d" % operator, "operator", 1)
    if opcode == RACP_COUNT_RESPONSE:
        out = {"opcode": opcode, "count": read_u16(data, 2, "count")}  # type: dict[str, object]
    else:
        request = read_u8(data, 2, "request_opcode")
        code = read_u8(data, 3, "response_code")
        out = {"opcode": opcode, "request_opcode": request, "response_code": code,
               "response": response_name(code)}
    expect_end(data, 4)
    return out


def encode_racp_response(request_opcode, response_code):  # type: (int, int) -> bytes
    return bytes((RACP_RESPONSE, OP_NULL, request_opcode, response_code))


def encode_racp_count(count):  # type: (int) -> bytes
    return bytes((RACP_COUNT_RESPONSE, OP_NULL)) + uint_bytes(count, 2)


def encode_racp_request(opcode, operator, filter_type=None, operand=None):
    """RACP write bytes. `operand`: a sequence number or a Date Time tuple, or
    a (low, high) pair of them for OP_WITHIN_RANGE."""
    out = bytes((opcode, operator))
    if filter_type is None:
        return out
    out += bytes((filter_type,))
    pair = operand if operator == OP_WITHIN_RANGE else (operand,)
    for item in pair:
        out += uint_bytes(item, 2) if filter_type == FILTER_SEQUENCE else date_time_bytes(item)
    return out


def racp_report_all():  # type: () -> bytes
    return bytes((RACP_REPORT, OP_ALL))


def racp_report_from(sequence):  # type: (int) -> bytes
    """Report the records with sequence number >= `sequence`."""
    return encode_racp_request(RACP_REPORT, OP_GREATER_OR_EQUAL, FILTER_SEQUENCE, sequence)


def racp_report_count(from_sequence=None):  # type: (int | None) -> bytes
    """Report the number of records (all, or with sequence number >= from_sequence)."""
    if from_sequence is None:
        return bytes((RACP_REPORT_COUNT, OP_ALL))
    return encode_racp_request(RACP_REPORT_COUNT, OP_GREATER_OR_EQUAL, FILTER_SEQUENCE,
                               from_sequence)


def racp_delete_all():  # type: () -> bytes
    return bytes((RACP_DELETE, OP_ALL))


def racp_abort():  # type: () -> bytes
    return bytes((RACP_ABORT, OP_NULL))


DECODERS = {0x2A18: decode_measurement, 0x2A34: decode_context, 0x2A51: decode_feature,
            0x2A52: decode_racp}


# --- encoding helpers ----------------------------------------------------------


def _exponent_for(value):  # type: (float) -> int
    # The largest exponent giving an exact mantissa, else the most precise fit.
    if value == 0:
        return 0
    best = None
    for e in range(7, -9, -1):
        m = value / (10 ** e) if e >= 0 else value * (10 ** -e)
        r = round(m)
        if not -2045 <= r <= 2045:
            break
        if r and abs(m - r) <= 1e-6 * abs(m):
            return e
        best = e
    if best is None:
        raise ValueError("%r does not fit an SFLOAT" % value)
    return best


def _sfloat_bytes(value, exponent):  # type: (float | None, int | None) -> bytes
    if value is not None and value != value:  # NaN
        value = None
    if exponent is None:
        exponent = 0 if value is None or value in (_INF, -_INF) else _exponent_for(value)
    return sfloat_bytes(value, exponent)
