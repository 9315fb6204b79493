# MQTT 3.1.1 packet codec for the gateway: bytes in, events out; no I/O.
#
# Theory of operation
# -------------------
# This module knows the wire format and nothing else: it never touches a
# socket, a clock or a task. What to send when, and what to do when the link
# drops, is client.py's business; when to reconnect is gateway/uplink.py's.
#
# * Sending: one `encode_*` function per packet a client sends. Each checks
#   its arguments (LocalProtocolError on misuse) and returns a new bytearray
#   that the caller owns.
# * Receiving: a `Reader` holds the bytes received so far. `feed(data)` adds
#   to them; `next_event()` returns the event for one complete packet, or the
#   sentinel NEED_DATA when no whole packet is buffered yet. A packet's first
#   byte is judged as soon as it arrives, and its size as soon as its
#   remaining length has, so garbage or an oversized packet is refused before
#   its body is buffered. A broker that breaks the protocol gets a
#   RemoteProtocolError, and the Reader stays in that error state: every
#   later call raises the same error (the connection must be dropped).
# * Only what a client receives is decoded: CONNACK, PUBLISH (QoS 0 and 1),
#   PUBACK, SUBACK, UNSUBACK, PINGRESP. QoS 2 is not supported: this client
#   never asks for it, so PUBREC, PUBREL, PUBCOMP or a QoS 2 PUBLISH from the
#   broker are protocol errors, named as such.
# * Events are namedtuples (cheap on MicroPython). Being tuples, events of
#   different types with equal fields compare equal (PubAck(1) == UnsubAck(1)):
#   dispatch on the type, not on equality.
#
# Portable: the same source runs on MicroPython (ESP32, Unix port) and
# CPython. Types are given in comments: mypy reads them, and they cost
# nothing where this module is compiled from source on a 100 KB heap.
from collections import namedtuple

from device_drivers import NEED_DATA

TYPE_CHECKING = False  # mypy takes it as True: for the type comments only
if TYPE_CHECKING:
    from device_drivers import _Sentinel  # noqa: F401

try:
    from micropython import const
except ImportError:

    def const(x):  # type: (int) -> int
        return x


_PUBLISH = const(3)
_PUBACK = const(4)
_SUBACK = const(9)
_UNSUBACK = const(11)
_PINGRESP = const(13)
_CONNACK = const(2)

# What a client may receive, by packet type: the flag bits the low nibble
# must hold, 0xFE for PUBLISH (its flags are DUP/QoS/RETAIN), 0xFF for the
# reserved types and the packets only a client sends.
_RX_FLAGS = b"\xff\xff\x00\xfe\x00\x00\x02\x00\xff\x00\xff\x00\xff\x00\xff\xff"
_NAMES = ("reserved CONNECT CONNACK PUBLISH PUBACK PUBREC PUBREL PUBCOMP SUBSCRIBE SUBACK"
          " UNSUBSCRIBE UNSUBACK PINGREQ PINGRESP DISCONNECT reserved").split()

MAX_REMAINING_LENGTH = 268435455  # what four varint bytes hold
DEFAULT_MAX_PACKET = 65536
SUBACK_FAILURE = 0x80
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"

CONNACK_REASONS = ("accepted", "unacceptable protocol version", "identifier rejected",
                   "server unavailable", "bad user name or password", "not authorized")


def connack_reason(code):  # type: (int) -> str
    # The name of a CONNACK return code (5 -> "not authorized").
    if 0 <= code < len(CONNACK_REASONS):
        return CONNACK_REASONS[code]
    return "unknown return code %d" % code


class MQTTError(Exception):
    pass  # root of every error this package raises


class LocalProtocolError(MQTTError):
    pass  # the caller asked for what MQTT 3.1.1 (or this client) forbids


class RemoteProtocolError(MQTTError):
    pass  # the broker sent bytes that break MQTT 3.1.1: drop the connection



ConnAck = namedtuple("ConnAck", ("session_present", "return_code"))
Publish = namedtuple("Publish", ("topic", "payload", "qos", "retain", "dup", "packet_id"))
PubAck = namedtuple("PubAck", ("packet_id",))
SubAck = namedtuple("SubAck", ("packet_id", "granted"))  # granted: list, 0/1/2 or 0x80
UnsubAck = namedtuple("UnsubAck", ("packet_id",))
PingResp = namedtuple("PingResp", ())
_PINGRESP_EVENT = PingResp()


# --- remaining length (varint, 7 bits a byte, low group first) --------------


def encode_remaining_length(n):  # type: (int) -> bytes
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise LocalProtocolError("remaining length %d out of range" % n)
    out = bytearray()
    while n > 127:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_remaining_length(data, pos=0):
    # type: (bytes | bytearray, int) -> tuple[int, int] | _Sentinel
    # (value, position after it), or NEED_DATA; raises past four bytes.
    value = 0
    shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift == 28:
            raise RemoteProtocolError("remaining length longer than 4 bytes")
    return NEED_DATA


# --- encoders ---------------------------------------------------------------


def _u16(n):  # type: (int) -> bytes
    return bytes((n >> 8, n & 0xFF))


def _field(data, what):  # type: (str | bytes | bytearray, str) -> bytes
    # A length-prefixed field: a str as UTF-8 without U+0000, bytes as they are.
    if isinstance(data, str):
        if "\x00" in data:
            raise LocalProtocolError(what + " contains U+0000")
        data = data.encode()
    if len(data) > 65535:
        raise LocalProtocolError(what + " longer than 65535 bytes")
    return _u16(len(data)) + data


def _topic(topic):  # type: (str) -> bytes
    # A topic name (PUBLISH, last will): not empty, no wildcards.
    if not topic or "+" in topic or "#" in topic:
        raise LocalProtocolError("bad topic name %r" % topic)
    return _field(topic, "topic")


def _filter(topic_filter):  # type: (str) -> bytes
    # A topic filter: '+' and '#' only as whole levels, '#' only last.
    if not topic_filter:
        raise LocalProtocolError("empty topic filter")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i < len(levels) - 1)) or (
                "+" in level and level != "+"):
            raise LocalProtocolError("bad topic filter %r" % topic_filter)
    return _field(topic_filter, "topic filter")


def _check_qos(qos):  # type: (int) -> None
    if qos not in (0, 1):
        raise LocalProtocolError("QoS %r not supported (0 or 1 only)" % (qos,))


def _packet_id(packet_id):  # type: (int) -> bytes
    if not 0 < packet_id < 65536:
        raise LocalProtocolError("packet id %r not in 1..65535" % (packet_id,))
    return _u16(packet_id)


def _packet(first, *parts):  # type: (int, bytes | bytearray) -> bytearray
    # One allocation of the exact size: growing a bytearray part by part
    # reallocates it, and an 8 KB PUBLISH needs several contiguous blocks
    # that a fragmented microcontroller heap may not have.
    n = 0
    for part in parts:
        n += len(part)
    rl = encode_remaining_length(n)
    out = bytearray(1 + len(rl) + n)
    out[0] = first
    i = 1 + len(rl)
    out[1:i] = rl
    for part in parts:
        out[i:i + len(part)] = part
        i += len(part)
    return out


def encode_connect(client_id,  # type: str
                   keepalive=60,  # type: int
                   clean_session=True,  # type: bool
                   username=None,  # type: str | None
                   password=None,  # type: bytes | str | None
                   will_topic=None,  # type: str | None
                   will_payload=b"",  # type: bytes | str
                   will_qos=0,  # type: int
                   will_retain=False,  # type: bool
                   ):  # type: (...) -> bytearray
    # CONNECT at protocol level 4 (MQTT 3.1.1).
    if not client_id and not clean_session:
        raise LocalProtocolError("an empty client id needs clean_session")
    if not 0 <= keepalive <= 65535:
        raise LocalProtocolError("keepalive %r not in 0..65535" % (keepalive,))
    flags = 2 if clean_session else 0
    tail = [_field(client_id, "client id")]
    if will_topic is not None:
        _check_qos(will_qos)
        flags |= 4 | will_qos << 3 | (0x20 if will_retain else 0)
        tail += (_topic(will_topic), _field(will_payload, "will payload"))
    elif will_qos or will_retain or will_payload:
        raise LocalProtocolError("last will settings without a will topic")
    if username is not None:
        flags |= 0x80
        tail.append(_field(username, "user name"))
    if password is not None:
        if username is None:
            raise LocalProtocolError("a password needs a user name in MQTT 3.1.1")
        flags |= 0x40
        tail.append(_field(password, "password"))
    return _packet(0x10, b"\x00\x04MQTT\x04", bytes((flags,)), _u16(keepalive), *tail)


def encode_publish(topic,  # type: str
                   payload,  # type: bytes | bytearray | str
                   qos=0,  # type: int
                   retain=False,  # type: bool
                   dup=False,  # type: bool
                   packet_id=0,  # type: int
                   ):  # type: (...) -> bytearray
    # PUBLISH; a packet id is required at QoS 1 and forbidden at QoS 0.
    _check_qos(qos)
    if qos:
        pid = _packet_id(packet_id)
    elif packet_id or dup:
        raise LocalProtocolError("QoS 0 PUBLISH has no packet id and no DUP")
    else:
        pid = b""
    if isinstance(payload, str):
        payload = payload.encode()
    first = 0x30 | (8 if dup else 0) | qos << 1 | (1 if retain else 0)
    return _packet(first, _topic(topic), pid, payload)


def set_dup(packet):  # type: (bytes | bytearray) -> bytearray
    # A copy of an encoded QoS 1 PUBLISH with DUP set, to re-send it.
    if packet[0] & 0xF6 != 0x32:
        raise LocalProtocolError("not a QoS 1 PUBLISH")
    out = bytearray(packet)
    out[0] |= 8
    return out


def encode_puback(packet_id):  # type: (int) -> bytearray
    return _packet(0x40, _packet_id(packet_id))


def encode_subscribe(packet_id, topics):  # type: (int, list[tuple[str, int]]) -> bytearray
    # SUBSCRIBE to [(filter, qos), ...].
    parts = [_packet_id(packet_id)]
    for topic_filter, qos in topics:
        _check_qos(qos)
        parts += (_filter(topic_filter), bytes((qos,)))
    if not topics:
        raise LocalProtocolError("SUBSCRIBE needs a topic filter")
    return _packet(0x82, *parts)


def encode_unsubscribe(packet_id, filters):  # type: (int, list[str]) -> bytearray
    parts = [_packet_id(packet_id)]
    for topic_filter in filters:
        parts.append(_filter(topic_filter))
    if not filters:
        raise LocalProtocolError("UNSUBSCRIBE needs a topic filter")
    return _packet(0xA2, *parts)


def encode_pingreq():  # type: () -> bytes
    return PINGREQ


def encode_disconnect():  # type: () -> bytes
    return DISCONNECT


# --- decoder ----------------------------------------------------------------


class Reader:
    # Receive buffer: feed() the broker's bytes, next_event() parses them.
    # max_packet bounds a whole packet, fixed header included.

    def __init__(self, max_packet=DEFAULT_MAX_PACKET):  # type: (int) -> None
        self.max_packet = max_packet
        self._buf = bytearray()
        self._error = None  # type: RemoteProtocolError | None

    def feed(self, data):  # type: (bytes | bytearray) -> None
        if self._error is None:  # nothing more is parsed after an error
            self._buf += data

    @property
    def buffered(self):  # type: () -> int
        return len(self._buf)  # bytes received, not yet returned as events

    def next_event(self):  # type: () -> tuple | _Sentinel
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except RemoteProtocolError as e:
            self._error = e
            raise

    def _next(self):  # type: () -> tuple | _Sentinel
        buf = self._buf
        if not buf:
            return NEED_DATA
        kind = buf[0] >> 4
        want = _RX_FLAGS[kind]
        name = _NAMES[kind]
        if want == 0xFF:
            raise RemoteProtocolError("unexpected %s packet from the broker" % name)
        if want != 0xFE and buf[0] & 15 != want:
            raise RemoteProtocolError("reserved flag bits 0x%x in %s" % (buf[0] & 15, name))
        got = decode_remaining_length(buf, 1)
        if got is NEED_DATA:
            return NEED_DATA
        n, pos = got  # type: ignore[misc]
        end = pos + n
        if end > self.max_packet:
            raise RemoteProtocolError("%d-byte %s over max_packet" % (end, name))
        if len(buf) < end:
            return NEED_DATA
        if kind == _PUBLISH:
            event = _publish(buf, pos, end)  # type: tuple
        elif kind == _CONNACK:
            if n != 2 or buf[pos] > 1 or buf[pos + 1] > 5 or (buf[pos] and buf[pos + 1]):
                raise RemoteProtocolError("malformed CONNACK")
            event = ConnAck(buf[pos] == 1, buf[pos + 1])
        elif kind == _PINGRESP:
            if n:
                raise RemoteProtocolError("PINGRESP with a body")
            event = _PINGRESP_EVENT
        elif kind == _SUBACK:
            granted = list(buf[pos + 2 : end])
            for code in granted:
                if code > 2 and code != SUBACK_FAILURE:
                    raise RemoteProtocolError("SUBACK return code 0x%x" % code)
            if not granted:
                raise RemoteProtocolError("SUBACK without return codes")
            event = SubAck(_read_id(buf, pos), granted)
        else:  # PUBACK, UNSUBACK and the QoS 2 trio: a packet id alone
            if n != 2:
                raise RemoteProtocolError("%s of %d bytes, not 2" % (name, n))
            packet_id = _read_id(buf, pos)
            if kind == _PUBACK:
                event = PubAck(packet_id)
            elif kind == _UNSUBACK:
                event = UnsubAck(packet_id)
            else:
                raise RemoteProtocolError("%s for packet %d: QoS 2 is not supported"
                                          % (name, packet_id))
        buf[0:end] = b""
        return event


def _read_id(buf, pos):  # type: (bytearray, int) -> int
    packet_id = buf[pos] << 8 | buf[pos + 1]
    if not packet_id:
        raise RemoteProtocolError("packet id 0")
    return packet_id


def _publish(buf, pos, end):  # type: (bytearray, int, int) -> tuple
    flags = buf[0]
    qos = flags >> 1 & 3
    if qos > 1:
        raise RemoteProtocolError("PUBLISH at QoS %d: only QoS 0 and 1 are supported" % qos)
    if flags & 8 and not qos:
        raise RemoteProtocolError("PUBLISH with DUP at QoS 0")
    if end - pos < 2:
        raise RemoteProtocolError("PUBLISH without a topic")
    start = pos + 2
    stop = start + (buf[pos] << 8 | buf[pos + 1])  # end of the topic
    pos = stop + 2 * qos  # start of the payload
    if pos > end:
        raise RemoteProtocolError("PUBLISH truncated")
    try:  # temporary views: CPython will not resize a bytearray still viewed
        topic = str(memoryview(buf)[start:stop], "utf-8")
    except ValueError:  # UnicodeError on MicroPython
        raise RemoteProtocolError("PUBLISH topic is not UTF-8")
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise RemoteProtocolError("bad topic name %r in PUBLISH" % topic)
    packet_id = _read_id(buf, pos - 2) if qos else 0
    return Publish(topic, bytes(memoryview(buf)[pos:end]), qos, flags & 1 == 1,
                   flags & 8 == 8, packet_id)
