# Bluetooth SIG GATT health characteristics: bytes -> plain dicts.
#
# decode(uuid16, data) is the one entry point the gateway calls for a
# notification, an indication or a read. Each profile lives in its own module
# exposing DECODERS = {uuid16: function}; this module only says which module
# serves which characteristic and imports it on first use, so a board loads
# only the profiles of the instruments it is paired with. Encoders (for the
# instrument simulators and tests) live beside their decoders.
from device_drivers import DecodeError
from device_drivers.blood_pressure import encode_measurement as encode_blood_pressure

BLOOD_PRESSURE_MEASUREMENT = 0x2A35
INTERMEDIATE_CUFF_PRESSURE = 0x2A36
BLOOD_PRESSURE_FEATURE = 0x2A49
GLUCOSE_MEASUREMENT = 0x2A18
GLUCOSE_MEASUREMENT_CONTEXT = 0x2A34
GLUCOSE_FEATURE = 0x2A51
RECORD_ACCESS_CONTROL_POINT = 0x2A52
TEMPERATURE_MEASUREMENT = 0x2A1C
INTERMEDIATE_TEMPERATURE = 0x2A1E
PLX_SPOT_CHECK = 0x2A5E
PLX_CONTINUOUS = 0x2A5F
PLX_FEATURES = 0x2A60
WEIGHT_MEASUREMENT = 0x2A9D
WEIGHT_SCALE_FEATURE = 0x2A9E
CURRENT_TIME = 0x2A2B
DATE_TIME = 0x2A08
BATTERY_LEVEL = 0x2A19

# characteristic -> module of device_drivers that decodes it
_MODULE = {
    BLOOD_PRESSURE_MEASUREMENT: "blood_pressure",
    INTERMEDIATE_CUFF_PRESSURE: "blood_pressure",
    BLOOD_PRESSURE_FEATURE: "blood_pressure",
    GLUCOSE_MEASUREMENT: "glucose",
    GLUCOSE_MEASUREMENT_CONTEXT: "glucose",
    GLUCOSE_FEATURE: "glucose",
    RECORD_ACCESS_CONTROL_POINT: "glucose",
    TEMPERATURE_MEASUREMENT: "thermometer",
    INTERMEDIATE_TEMPERATURE: "thermometer",
    PLX_SPOT_CHECK: "pulse_oximeter",
    PLX_CONTINUOUS: "pulse_oximeter",
    PLX_FEATURES: "pulse_oximeter",
    WEIGHT_MEASUREMENT: "weight_scale",
    WEIGHT_SCALE_FEATURE: "weight_scale",
    CURRENT_TIME: "common_chars",
    DATE_TIME: "common_chars",
    BATTERY_LEVEL: "common_chars",
}

__all__ = ["decode", "encode_blood_pressure"]


def _decoder(uuid16):
    name = _MODULE.get(uuid16)
    if name is None:
        raise DecodeError("unsupported characteristic 0x%04X" % uuid16, "uuid", 0)
    module = getattr(__import__("device_drivers." + name), name)
    return module.DECODERS[uuid16]


def decode(uuid16, data):
    """Decode one characteristic value; raises DecodeError on malformed bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes, got %s" % type(data).__name__, "data", 0)
    return _decoder(uuid16)(bytes(data))
