# Date Time 0x2A08 and Battery Level 0x2A19: small characteristics most
# instruments carry beside their measurement. Current Time 0x2A2B joins them
# with the other profiles (issue 3).
from device_drivers import DecodeError
from device_drivers.ieee11073 import read_date_time


def decode_date_time(data):
    if len(data) != 7:
        raise DecodeError("Date Time must be 7 bytes, got %d" % len(data), "timestamp", 0)
    return {"timestamp": read_date_time(data, 0, "timestamp")}


def decode_battery(data):
    if len(data) != 1:
        raise DecodeError("Battery Level must be 1 byte, got %d" % len(data), "level", 0)
    if data[0] > 100:
        raise DecodeError("battery level %d%% over 100" % data[0], "level", 0)
    return {"level": data[0]}


DECODERS = {0x2A08: decode_date_time, 0x2A19: decode_battery}
