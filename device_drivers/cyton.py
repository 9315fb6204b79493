# OpenBCI Cyton serial stream (ECG): bytes in, samples out; no I/O.
#
# Theory of operation
# -------------------
# The Cyton board streams 33-byte packets at 250 Hz through its radio dongle,
# 115200 baud 8N1 ("Cyton Data Format", ../shared/specs/instruments.md):
#
#   offset 0      0xA0 start byte
#          1      sample number, uint8, +1 per packet, wraps 255 -> 0
#          2-25   8 channels x 24-bit signed big-endian ADS1299 counts
#          26-31  6 aux bytes, their meaning set by the stop byte
#          32     stop byte 0xC0..0xC6
#
#   stop byte   aux (Sample.aux)
#   0xC0        (x, y, z): three int16 BE accelerometer counts
#   0xC1, 0xC2  the 6 bytes as sent (raw aux; user defined)
#   0xC3, 0xC4  (value, board_ms): int16 BE accelerometer value (one axis a
#               packet) and uint32 BE board time; 0xC3 marks "time set"
#   0xC5, 0xC6  (raw, board_ms): 2 raw aux bytes and uint32 BE board time;
#               0xC5 marks "time set"
#
# Volts per count = 4.5 / gain / (2^23 - 1): 0.02235 uV at the default gain 24.
#
# * Receiving: a CytonParser holds the bytes received so far. feed(data) adds
#   to them; next_event() returns one event, or the sentinel NEED_DATA when
#   no whole event is buffered. Iterating over the parser yields events until
#   NEED_DATA. Events, in the order they happen:
#     Resync(skipped)  bytes that were not part of any packet were dropped
#     Gap(missing)     packets were lost: the sample number jumped (counted
#                      modulo 256, so a loss of 256 or more packets is not
#                      seen in full)
#     Sample(...)      one packet, channels in microvolts and raw counts
# * Framing: the protocol has no length or checksum, only the start and stop
#   bytes. While in sync, a packet is accepted when its first byte is 0xA0
#   and its 33rd a stop byte. Out of sync (at the start of the stream, or
#   after a packet that failed that test) bytes are dropped up to the next
#   0xA0, and a candidate packet there is accepted only when the packet after
#   it confirms it: a 0xA0 right after its stop byte carrying the next sample
#   number. A data byte that happens to be 0xA0 therefore almost never starts
#   a false packet; the price is that the first packet after garbage is
#   released when the first two bytes of the next one have arrived.
# * Garbage is never an error: the parser does not raise on any input. Only
#   decode_packet() (one packet given whole) raises DecodeError.
# * Sending: encode_packet() builds the bytes a board sends (simulators,
#   tests).
#
# * Floats: channels_uv are floats, single precision on an ESP32 (7 digits:
#   0.01 uV at full scale); counts are exact. A repeated sample number reads
#   as 255 lost packets (the counter cannot tell them apart).
#
# Portable: the same source runs on MicroPython (ESP32, Unix port) and
# CPython. Types are given in comments and there are no docstrings: compiled
# from source in a 100 KB heap, annotations and docstrings cost memory.
from collections import namedtuple

from device_drivers import NEED_DATA, DecodeError

TYPE_CHECKING = False  # mypy takes it as True: imports for the type comments only
if TYPE_CHECKING:
    from typing import Any, Iterator  # noqa: F401

try:
    from micropython import const
except ImportError:

    def const(x):  # type: (int) -> int
        return x


_START = const(0xA0)
_STOP_MIN = const(0xC0)
_STOP_MAX = const(0xC6)
_SIZE = const(33)
_AUX = const(26)  # offset of the aux bytes

PACKET_SIZE = 33
START_BYTE = 0xA0
SAMPLE_RATE = 250  # Hz
BAUD_RATE = 115200
CHANNELS = 8
DEFAULT_GAIN = 24
GAINS = (1, 2, 4, 6, 8, 12, 24)  # what the ADS1299 offers
FULL_SCALE = 8388607  # 2^23 - 1 counts: +/-4.5 V / gain at the ADC input
ACCEL_G_PER_COUNT = 0.002 / 16  # LIS3DH at +/-4 g, as the board configures it

STOP_ACCEL = 0xC0
STOP_RAW_AUX = 0xC1
STOP_USER = 0xC2
STOP_TIME_SET_ACCEL = 0xC3
STOP_TIME_ACCEL = 0xC4
STOP_TIME_SET_RAW_AUX = 0xC5
STOP_TIME_RAW_AUX = 0xC6



# channels_uv: tuple of 8 floats (microvolts); counts: tuple of 8 ints
Sample = namedtuple("Sample", ("sample_number", "channels_uv", "aux", "stop_byte", "counts"))
Gap = namedtuple("Gap", ("missing",))
Resync = namedtuple("Resync", ("skipped",))
# Events are tuples: Gap(3) == Resync(3). Dispatch on the type, not on equality.


def uv_per_count(gain=DEFAULT_GAIN):  # type: (int) -> float
    # microvolts per ADC count at a channel gain (0.02235 at gain 24)
    if gain not in GAINS:
        raise ValueError("gain %r is not one of %r" % (gain, GAINS))
    return 4.5e6 / gain / FULL_SCALE


def uv_to_counts(uv, gain=DEFAULT_GAIN):  # type: (float, int) -> int
    # the count a board sends for `uv` microvolts, clipped to the 24-bit range
    n = round(uv / uv_per_count(gain))
    if n > FULL_SCALE:
        return FULL_SCALE
    if n < -FULL_SCALE - 1:
        return -FULL_SCALE - 1
    return n


def _scales(gains):  # type: (Any) -> tuple
    if isinstance(gains, int):
        gains = (gains,) * CHANNELS
    gains = tuple(gains)
    if len(gains) != CHANNELS:
        raise ValueError("%d gains given, the Cyton has %d channels" % (len(gains), CHANNELS))
    return tuple(uv_per_count(g) for g in gains)


def _i16(hi, lo):  # type: (int, int) -> int
    v = hi << 8 | lo
    return v - 0x10000 if v & 0x8000 else v


def _aux(buf, p, stop):  # type: (bytes | bytearray, int, int) -> object
    # p: offset of the aux bytes
    if stop == _STOP_MIN:
        return (_i16(buf[p], buf[p + 1]), _i16(buf[p + 2], buf[p + 3]),
                _i16(buf[p + 4], buf[p + 5]))
    if stop <= 0xC2:
        return bytes(buf[p:p + 6])
    ms = buf[p + 2] << 24 | buf[p + 3] << 16 | buf[p + 4] << 8 | buf[p + 5]
    if stop <= 0xC4:
        return (_i16(buf[p], buf[p + 1]), ms)
    return (bytes(buf[p:p + 2]), ms)


def _sample(buf, at, scales):  # type: (bytes | bytearray, int, tuple) -> Sample
    # The packet starting at buf[at], already framed.
    counts = []
    uv = []
    p = at + 2
    for k in range(8):
        v = buf[p] << 16 | buf[p + 1] << 8 | buf[p + 2]
        if v & 0x800000:
            v -= 0x1000000
        counts.append(v)
        uv.append(v * scales[k])
        p += 3
    stop = buf[at + 32]
    return Sample(buf[at + 1], tuple(uv), _aux(buf, at + _AUX, stop), stop, tuple(counts))


def decode_packet(data, gains=DEFAULT_GAIN):  # type: (bytes | bytearray, Any) -> Sample
    # one whole 33-byte packet -> Sample; DecodeError when it is not one
    if len(data) != _SIZE:
        raise DecodeError("packet of %d bytes, not 33" % len(data), "length", len(data))
    if data[0] != _START:
        raise DecodeError("start byte 0x%02x, not 0xA0" % data[0], "start_byte", 0)
    if not _STOP_MIN <= data[32] <= _STOP_MAX:
        raise DecodeError("stop byte 0x%02x, not 0xC0..0xC6" % data[32], "stop_byte", 32)
    return _sample(data, 0, _scales(gains))


def encode_packet(sample_number, counts, aux=None, stop=STOP_ACCEL):
    # type: (int, Any, Any, int) -> bytes
    # The 33 bytes a Cyton sends (for simulators and tests). `counts`: 8 ints
    # in -2^23..2^23-1. `aux` as Sample.aux gives it for the stop byte (None:
    # zeros): 3 int16 for 0xC0, 6 bytes for 0xC1/0xC2, (int16, board_ms) for
    # 0xC3/0xC4, (2 bytes, board_ms) for 0xC5/0xC6. ValueError on misuse.
    if not 0 <= sample_number <= 255:
        raise ValueError("sample number %r not in 0..255" % sample_number)
    if not _STOP_MIN <= stop <= _STOP_MAX:
        raise ValueError("stop byte 0x%02x not in 0xC0..0xC6" % stop)
    counts = tuple(counts)
    if len(counts) != CHANNELS:
        raise ValueError("%d channel counts, not 8" % len(counts))
    out = bytearray(_SIZE)
    out[0] = _START
    out[1] = sample_number
    p = 2
    for v in counts:
        if not -FULL_SCALE - 1 <= v <= FULL_SCALE:
            raise ValueError("count %r outside the 24-bit range" % v)
        v &= 0xFFFFFF
        out[p] = v >> 16
        out[p + 1] = (v >> 8) & 0xFF
        out[p + 2] = v & 0xFF
        p += 3
    out[_AUX:32] = _aux_bytes(aux, stop)
    out[32] = stop
    return bytes(out)


def _int16_bytes(v):  # type: (int) -> bytes
    if not -0x8000 <= v <= 0x7FFF:
        raise ValueError("aux value %r outside int16" % v)
    v &= 0xFFFF
    return bytes((v >> 8, v & 0xFF))


def _raw(data, n):  # type: (Any, int) -> bytes
    data = bytes(data)
    if len(data) != n:
        raise ValueError("%d raw aux bytes, not %d" % (len(data), n))
    return data


def _aux_bytes(aux, stop):  # type: (Any, int) -> bytes
    if aux is None:
        return bytes(6)
    if stop == STOP_ACCEL:
        x, y, z = aux
        return _int16_bytes(x) + _int16_bytes(y) + _int16_bytes(z)
    if stop <= STOP_USER:
        return _raw(aux, 6)
    value, ms = aux
    if not 0 <= ms <= 0xFFFFFFFF:
        raise ValueError("board time %r outside uint32" % ms)
    head = _int16_bytes(value) if stop <= STOP_TIME_ACCEL else _raw(value, 2)
    return head + bytes((ms >> 24, (ms >> 16) & 0xFF, (ms >> 8) & 0xFF, ms & 0xFF))


# --- stream parser ----------------------------------------------------------


class CytonParser:
    # Receive buffer for the byte stream of one board: feed() what the UART
    # gives, next_event() (or iteration) takes events out. `gains`: one int
    # for all channels or 8 ints; set_gains() when the board is reconfigured.

    def __init__(self, gains=DEFAULT_GAIN):  # type: (Any) -> None
        self._scales = _scales(gains)
        self._buf = bytearray()
        self._pos = 0  # first byte not yet consumed
        self._synced = False  # the last packet ended where the next begins
        self._skipped = 0  # bytes dropped since the last packet
        self._last = -1  # sample number of the last packet, -1: none yet
        # totals, for a status line: packets returned, packets lost (from the
        # sample numbers), bytes dropped (reported by Resync, or about to be)
        self.packets = 0
        self.lost = 0
        self.dropped_bytes = 0

    def set_gains(self, gains):  # type: (Any) -> None
        self._scales = _scales(gains)

    def feed(self, data):  # type: (bytes | bytearray | memoryview) -> None
        if self._pos:
            self._buf[0:self._pos] = b""
            self._pos = 0
        self._buf += data

    @property
    def buffered(self):  # type: () -> int
        return len(self._buf) - self._pos  # bytes received, not yet returned as events

    def __iter__(self):  # type: () -> Iterator[Any]
        while True:
            event = self.next_event()
            if event is NEED_DATA:
                return
            yield event

    def next_event(self):  # type: () -> Any
        buf = self._buf
        pos = self._pos
        end = len(buf)
        while True:
            if pos >= end:
                return NEED_DATA
            if buf[pos] != _START:
                nxt = buf.find(b"\xa0", pos)
                if nxt < 0:
                    nxt = end
                self._drop(nxt)
                pos = nxt
                self._synced = False
                continue
            if end - pos < _SIZE:
                return NEED_DATA
            stop = buf[pos + 32]
            if stop < _STOP_MIN or stop > _STOP_MAX:
                self._synced = False
                pos += 1
                self._drop(pos)
                continue
            if not self._synced:
                if end - pos < _SIZE + 2:
                    return NEED_DATA  # wait for the packet that confirms it
                if buf[pos + _SIZE] != _START or buf[pos + _SIZE + 1] != (buf[pos + 1] + 1) & 0xFF:
                    pos += 1
                    self._drop(pos)
                    continue
            break
        # a packet starts at pos
        if self._skipped:
            event = Resync(self._skipped)
            self._skipped = 0
            self._synced = True
            return event
        number = buf[pos + 1]
        if self._last >= 0:
            missing = (number - self._last - 1) & 0xFF
            if missing:
                self._last = (number - 1) & 0xFF  # told once
                self.lost += missing
                self._synced = True
                return Gap(missing)
        sample = _sample(buf, pos, self._scales)
        self._last = number
        self._synced = True
        self.packets += 1
        self._pos = pos + _SIZE
        return sample

    def _drop(self, upto):  # type: (int) -> None
        # bytes self._pos..upto are not part of any packet
        self._skipped += upto - self._pos
        self.dropped_bytes += upto - self._pos
        self._pos = upto
