# Pulse Oximeter profile (service 0x1822): 0x2A5E PLX Spot-check Measurement
# (indicate), 0x2A5F PLX Continuous Measurement (notify), 0x2A60 PLX Features
# (read), and their encoders (for the oximeter simulators and tests).
#
# Spot-check flags: bit 0 timestamp, 1 measurement status, 2 device and
# sensor status, 3 pulse amplitude index, 4 device clock not set. Fields:
# SpO2, PR (SFLOAT), timestamp (Date Time), measurement status (16 bit),
# device and sensor status (24 bit), PAI (SFLOAT).
# Continuous flags: bit 0 SpO2PR-Fast, 1 SpO2PR-Slow, 2 measurement status,
# 3 device and sensor status, 4 PAI. Fields: SpO2, PR, [fast SpO2, PR],
# [slow SpO2, PR], measurement status, device and sensor status, PAI.
# Features: supported features (16 bit), then the measurement status support
# (16 bit) when bit 0 is set and the device and sensor status support (24 bit)
# when bit 1 is set.
#
# An optional field that was not sent decodes to None (a status that was
# sent with no bit set is []); reserved flag and status bits are ignored.
from device_drivers.ieee11073 import (
    bit_names,
    bits_of,
    date_time_bytes,
    expect_end,
    read_date_time,
    read_sfloat,
    read_u8,
    read_u16,
    read_u24,
    sfloat_bytes,
    uint_bytes,
)

# Measurement Status bits 5-15 (0-4 reserved)
MEASUREMENT_STATUS = (
    None, None, None, None, None,
    "measurement_ongoing", "early_estimated_data", "validated_data",
    "fully_qualified_data", "data_from_measurement_storage", "data_for_demonstration",
    "data_for_testing", "calibration_ongoing", "measurement_unavailable",
    "questionable_measurement_detected", "invalid_measurement_detected",
)
# Device and Sensor Status bits 0-15 (16-23 reserved)
DEVICE_AND_SENSOR_STATUS = (
    "extended_display_update_ongoing", "equipment_malfunction_detected",
    "signal_processing_irregularity_detected", "inadequate_signal_detected",
    "poor_signal_detected", "low_perfusion_detected", "erratic_signal_detected",
    "non_pulsatile_signal_detected", "questionable_pulse_detected", "signal_analysis_ongoing",
    "sensor_interference_detected", "sensor_unconnected_to_user", "unknown_sensor_connected",
    "sensor_displaced", "sensor_malfunctioning", "sensor_disconnected",
)
# PLX Features supported-features bits 0-7 (8-15 reserved)
FEATURES = (
    "measurement_status", "device_and_sensor_status", "measurement_storage",
    "spot_check_timestamp", "spo2pr_fast", "spo2pr_slow", "pulse_amplitude_index",
    "multiple_bonds",
)

# spot-check flags
_SC_TIMESTAMP = 0x01
_SC_STATUS = 0x02
_SC_DEVICE = 0x04
_SC_PAI = 0x08
_SC_CLOCK_NOT_SET = 0x10
# continuous flags
_C_FAST = 0x01
_C_SLOW = 0x02
_C_STATUS = 0x04
_C_DEVICE = 0x08
_C_PAI = 0x10


def _statuses(data, off, flags, status_bit, device_bit, pai_bit, out):
    # the three optional fields both measurements end with
    out["measurement_status"] = out["device_and_sensor_status"] = None
    out["pulse_amplitude_index"] = None
    if flags & status_bit:
        out["measurement_status"] = bit_names(read_u16(data, off, "measurement_status"),
                                              MEASUREMENT_STATUS)
        off += 2
    if flags & device_bit:
        out["device_and_sensor_status"] = bit_names(
            read_u24(data, off, "device_and_sensor_status"), DEVICE_AND_SENSOR_STATUS)
        off += 3
    if flags & pai_bit:
        out["pulse_amplitude_index"] = read_sfloat(data, off, "pulse_amplitude_index")
        off += 2
    expect_end(data, off)
    return out


def decode_spot_check(data):
    """0x2A5E -> spo2, pulse_rate, timestamp, measurement_status,
    device_and_sensor_status, pulse_amplitude_index, device_clock_not_set."""
    flags = read_u8(data, 0, "flags")
    out = {"spo2": read_sfloat(data, 1, "spo2"),  # type: dict[str, object]
           "pulse_rate": read_sfloat(data, 3, "pulse_rate"),
           "timestamp": None,
           "device_clock_not_set": bool(flags & _SC_CLOCK_NOT_SET)}
    off = 5
    if flags & _SC_TIMESTAMP:
        out["timestamp"] = read_date_time(data, off, "timestamp")
        off += 7
    return _statuses(data, off, flags, _SC_STATUS, _SC_DEVICE, _SC_PAI, out)


def decode_continuous(data):
    """0x2A5F -> spo2, pulse_rate, spo2pr_fast and spo2pr_slow ((spo2,
    pulse_rate) pairs), measurement_status, device_and_sensor_status,
    pulse_amplitude_index."""
    flags = read_u8(data, 0, "flags")
    out = {"spo2": read_sfloat(data, 1, "spo2"),  # type: dict[str, object]
           "pulse_rate": read_sfloat(data, 3, "pulse_rate"),
           "spo2pr_fast": None, "spo2pr_slow": None}
    off = 5
    if flags & _C_FAST:
        out["spo2pr_fast"] = (read_sfloat(data, off, "spo2_fast"),
                              read_sfloat(data, off + 2, "pulse_rate_fast"))
        off += 4
    if flags & _C_SLOW:
        out["spo2pr_slow"] = (read_sfloat(data, off, "spo2_slow"),
                              read_sfloat(data, off + 2, "pulse_rate_slow"))
        off += 4
    return _statuses(data, off, flags, _C_STATUS, _C_DEVICE, _C_PAI, out)


def decode_features(data):
    """0x2A60 -> features (names), measurement_status_support and
    device_and_sensor_status_support (names of the status bits the oximeter
    can report, or None when the field is absent)."""
    bits = read_u16(data, 0, "features")
    out = {"features": bit_names(bits, FEATURES),  # type: dict[str, object]
           "measurement_status_support": None, "device_and_sensor_status_support": None}
    off = 2
    if bits & 0x01:
        out["measurement_status_support"] = bit_names(
            read_u16(data, off, "measurement_status_support"), MEASUREMENT_STATUS)
        off += 2
    if bits & 0x02:
        out["device_and_sensor_status_support"] = bit_names(
            read_u24(data, off, "device_and_sensor_status_support"), DEVICE_AND_SENSOR_STATUS)
        off += 3
    expect_end(data, off)
    return out


DECODERS = {0x2A5E: decode_spot_check, 0x2A5F: decode_continuous, 0x2A60: decode_features}


# --- encoders -------------------------------------------------------------------
# Status arguments are the raw int or names from the tables above; None
# leaves the field out. SpO2 and PR share `exponent`; the PAI has its own.

def _status_bytes(flags, status, device, pai, bits, pai_exponent):
    # (flags, bytes) of the optional fields both measurements end with
    tail = b""
    if status is not None:
        flags |= bits[0]
        tail += uint_bytes(bits_of(status, MEASUREMENT_STATUS), 2)
    if device is not None:
        flags |= bits[1]
        tail += uint_bytes(bits_of(device, DEVICE_AND_SENSOR_STATUS), 3)
    if pai is not None:
        flags |= bits[2]
        tail += sfloat_bytes(pai, pai_exponent)
    return flags, tail


def encode_spot_check(spo2, pulse_rate, timestamp=None, measurement_status=None,
                      device_and_sensor_status=None, pulse_amplitude_index=None,
                      device_clock_not_set=False, exponent=0, pai_exponent=-1):
    """0x2A5E bytes as an oximeter sends them."""
    flags = _SC_CLOCK_NOT_SET if device_clock_not_set else 0
    body = sfloat_bytes(spo2, exponent) + sfloat_bytes(pulse_rate, exponent)
    if timestamp is not None:
        flags |= _SC_TIMESTAMP
        body += date_time_bytes(timestamp)
    flags, tail = _status_bytes(flags, measurement_status, device_and_sensor_status,
                                pulse_amplitude_index, (_SC_STATUS, _SC_DEVICE, _SC_PAI),
                                pai_exponent)
    return bytes((flags,)) + body + tail


def encode_continuous(spo2, pulse_rate, spo2pr_fast=None, spo2pr_slow=None,
                      measurement_status=None, device_and_sensor_status=None,
                      pulse_amplitude_index=None, exponent=0, pai_exponent=-1):
    """0x2A5F bytes; spo2pr_fast / spo2pr_slow are (spo2, pulse_rate) pairs."""
    flags = 0
    body = sfloat_bytes(spo2, exponent) + sfloat_bytes(pulse_rate, exponent)
    if spo2pr_fast is not None:
        flags |= _C_FAST
        body += sfloat_bytes(spo2pr_fast[0], exponent) + sfloat_bytes(spo2pr_fast[1], exponent)
    if spo2pr_slow is not None:
        flags |= _C_SLOW
        body += sfloat_bytes(spo2pr_slow[0], exponent) + sfloat_bytes(spo2pr_slow[1], exponent)
    flags, tail = _status_bytes(flags, measurement_status, device_and_sensor_status,
                                pulse_amplitude_index, (_C_STATUS, _C_DEVICE, _C_PAI),
                                pai_exponent)
    return bytes((flags,)) + body + tail


def encode_features(features, measurement_status_support=None,
                    device_and_sensor_status_support=None):
    """0x2A60 bytes. A support argument sets its feature bit; a feature bit set
    without its support argument sends an all-zero support field."""
    bits = bits_of(features, FEATURES)
    if measurement_status_support is not None:
        bits |= 0x01
    if device_and_sensor_status_support is not None:
        bits |= 0x02
    out = uint_bytes(bits, 2)
    if bits & 0x01:
        out += uint_bytes(bits_of(measurement_status_support or 0, MEASUREMENT_STATUS), 2)
    if bits & 0x02:
        out += uint_bytes(bits_of(device_and_sensor_status_support or 0,
                                  DEVICE_AND_SENSOR_STATUS), 3)
    return out
