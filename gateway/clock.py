# Gateway wall-clock time as integer unix milliseconds.
#
# Integers because an ESP32's MicroPython floats are single precision: unix
# seconds as a float would be off by up to two minutes there. The embedded
# ports that count from 2000 are shifted to the 1970 epoch. `GatewayClock`
# keeps an offset so the clock can be corrected from NTP or from the server
# time carried in acks (the policy is the uplink's); `synced` says whether it
# has ever been corrected or trusted, so readings taken on an unset clock can
# be flagged.
import time

_EPOCH_2000_MS = 946684800000


def _epoch_shift_ms():
    return _EPOCH_2000_MS if time.gmtime(0)[0] == 2000 else 0


_SHIFT = _epoch_shift_ms()


def system_ms():
    """The system clock in unix ms (whatever it is set to)."""
    ns = getattr(time, "time_ns", None)
    if ns is not None:
        return ns() // 1000000 + _SHIFT
    return int(time.time()) * 1000 + _SHIFT


class GatewayClock:
    def __init__(self, source=system_ms, synced=False):
        self._source = source
        self.offset_ms = 0
        self.synced = synced

    def now_ms(self):
        return self._source() + self.offset_ms

    def correct(self, true_ms):
        """Set the clock from a trusted time; returns the correction applied (ms)."""
        delta = true_ms - self.now_ms()
        self.offset_ms += delta
        self.synced = True
        return delta
