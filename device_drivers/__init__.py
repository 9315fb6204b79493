# device_drivers: what instrument bytes mean.
#
# Pure, sans-I/O codecs for the instruments the units use (Bluetooth SIG GATT
# health profiles, and serial protocols in later modules). Nothing here does
# I/O or imports machine/bluetooth/serial/socket/asyncio: the same files run
# in the firmware (MicroPython) and on CPython. Decoders take bytes and return
# plain dicts; malformed input raises DecodeError naming the field and offset.


class DecodeError(ValueError):
    """Instrument bytes that do not follow the protocol.

    `field` names what was being read and `offset` where, so a technician's
    log line points at the byte that was wrong.
    """

    def __init__(self, message, field=None, offset=None):
        if field is not None:
            message = "%s (field %s at offset %s)" % (message, field, offset)
        super().__init__(message)
        self.field = field
        self.offset = offset


class _Sentinel:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


# What a sans-I/O reader returns when it needs more bytes before it can say
# anything (h11 style): a named object, never a bare None. Shared by every
# framer and state machine (and the gateway's MQTT codec).
NEED_DATA = _Sentinel("NEED_DATA")
