# mpy-portable
# MQTT 3.1.1 codec: exact bytes against vectors computed by hand from the
# specification (OASIS MQTT 3.1.1, sections 2.2.3 and 3.x), then the Reader
# fed byte by byte, in chunks, and with every kind of malformed input.
# Runs under pytest and under the MicroPython Unix port (tests/mpy_runner.py).
import sys

from gateway.mqtt.codec import (
    DEFAULT_MAX_PACKET,
    DISCONNECT,
    NEED_DATA,
    PINGREQ,
    SUBACK_FAILURE,
    ConnAck,
    LocalProtocolError,
    MQTTError,
    PingResp,
    PubAck,
    Publish,
    Reader,
    RemoteProtocolError,
    SubAck,
    UnsubAck,
    connack_reason,
    decode_remaining_length,
    encode_connect,
    encode_disconnect,
    encode_pingreq,
    encode_puback,
    encode_publish,
    encode_remaining_length,
    encode_subscribe,
    encode_unsubscribe,
    set_dup,
)
from tests.portable import raises

# A 64 KiB string does not fit in a 100 KB heap beside the code.
_SMALL_HEAP = sys.implementation.name == "micropython"


def h(text):
    return bytes.fromhex(text)


def same(got, want):
    # Events are namedtuples: equal fields compare equal across types.
    assert type(got) is type(want) and got == want, (got, want)


def same_list(got, want):
    assert len(got) == len(want), (got, want)
    for i in range(len(want)):
        same(got[i], want[i])


def events(data, max_packet=DEFAULT_MAX_PACKET):
    # Every event in data, fed in one piece; the buffer must end empty.
    r = Reader(max_packet)
    r.feed(data)
    out = []  # type: list
    while True:
        ev = r.next_event()
        if ev is NEED_DATA:
            assert r.buffered == 0
            return out
        out.append(ev)


def one(data, want):
    got = events(data)
    assert len(got) == 1, got
    same(got[0], want)
    return got[0]


def remote_error(data, max_packet=DEFAULT_MAX_PACKET):
    r = Reader(max_packet)
    r.feed(data)
    return raises(RemoteProtocolError, r.next_event)


# --- errors -----------------------------------------------------------------


def test_error_hierarchy():
    assert issubclass(LocalProtocolError, MQTTError)
    assert issubclass(RemoteProtocolError, MQTTError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)


def test_connack_reason_names():
    assert connack_reason(0) == "accepted"
    assert connack_reason(1) == "unacceptable protocol version"
    assert connack_reason(2) == "identifier rejected"
    assert connack_reason(3) == "server unavailable"
    assert connack_reason(4) == "bad user name or password"
    assert connack_reason(5) == "not authorized"
    assert connack_reason(6) == "unknown return code 6"


# --- remaining length -------------------------------------------------------

# Spec table 2.4 boundaries.
VARINTS = (
    (0, "00"),
    (127, "7f"),
    (128, "80 01"),
    (16383, "ff 7f"),
    (16384, "80 80 01"),
    (2097151, "ff ff 7f"),
    (2097152, "80 80 80 01"),
    (268435455, "ff ff ff 7f"),
)


def test_remaining_length_encode_boundaries():
    for value, text in VARINTS:
        assert encode_remaining_length(value) == h(text), value


def test_remaining_length_decode_boundaries():
    for value, text in VARINTS:
        data = h(text)
        assert decode_remaining_length(data) == (value, len(data)), value
        # at an offset, with trailing bytes
        assert decode_remaining_length(b"\x30" + data + b"\x00", 1) == (value, 1 + len(data))


def test_remaining_length_out_of_range():
    raises(LocalProtocolError, encode_remaining_length, 268435456)
    raises(LocalProtocolError, encode_remaining_length, -1)


def test_remaining_length_incomplete_and_too_long():
    assert decode_remaining_length(b"") is NEED_DATA
    assert decode_remaining_length(h("80")) is NEED_DATA
    assert decode_remaining_length(h("ff ff ff")) is NEED_DATA
    # a fourth byte with the continuation bit is already an error
    raises(RemoteProtocolError, decode_remaining_length, h("ff ff ff ff"))
    raises(RemoteProtocolError, decode_remaining_length, h("80 80 80 80 01"))


# --- encoders ---------------------------------------------------------------


def test_connect_minimal():
    # fixed header, "MQTT", level 4, flags 0x02 (clean session), keepalive 60, client id
    assert encode_connect("abc") == h("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 61 62 63")


def test_connect_spec_example_flags():
    # Section 3.1.2.11 example: user name, password, will QoS 1, will flag,
    # clean session -> flags 0xCE, keepalive 10.
    got = encode_connect("c", keepalive=10, clean_session=True, username="u", password=b"p",
                         will_topic="w", will_payload=b"x", will_qos=1)
    assert got == h("10 19 00 04 4d 51 54 54 04 ce 00 0a"
                    " 00 01 63 00 01 77 00 01 78 00 01 75 00 01 70")


def test_connect_full_gateway():
    got = encode_connect("gw-u001", keepalive=60, clean_session=False, username="gw-u001",
                         password="pw", will_topic="s", will_payload=b"off", will_qos=1,
                         will_retain=True)
    # flags: user 0x80 | password 0x40 | will retain 0x20 | will QoS 1 0x08 | will 0x04
    assert got == (h("10 28 00 04 4d 51 54 54 04 ec 00 3c 00 07") + b"gw-u001"
                   + h("00 01") + b"s" + h("00 03") + b"off"
                   + h("00 07") + b"gw-u001" + h("00 02") + b"pw")


def test_connect_variants():
    # persistent session, no credentials, keepalive 0 (disabled)
    assert encode_connect("a", keepalive=0, clean_session=False) == h(
        "10 0d 00 04 4d 51 54 54 04 00 00 00 00 01 61")
    # user name only; will QoS 0 not retained, empty will payload
    assert encode_connect("a", username="u", will_topic="t") == h(
        "10 15 00 04 4d 51 54 54 04 86 00 3c 00 01 61 00 01 74 00 00 00 01 75")
    # an empty client id is allowed with a clean session
    assert encode_connect("") == h("10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00")
    # keepalive is big-endian
    assert encode_connect("a", keepalive=65535)[10:12] == h("ff ff")


def test_connect_misuse():
    raises(LocalProtocolError, encode_connect, "a", password="p")
    raises(LocalProtocolError, encode_connect, "", clean_session=False)
    raises(LocalProtocolError, encode_connect, "a", keepalive=65536)
    raises(LocalProtocolError, encode_connect, "a", keepalive=-1)
    raises(LocalProtocolError, encode_connect, "a", will_topic="t", will_qos=2)
    raises(LocalProtocolError, encode_connect, "a", will_topic="t/#")
    raises(LocalProtocolError, encode_connect, "a", will_topic="")
    raises(LocalProtocolError, encode_connect, "a", will_payload=b"x")
    raises(LocalProtocolError, encode_connect, "a", will_retain=True)
    raises(LocalProtocolError, encode_connect, "a\x00b")


def test_publish_spec_example():
    # Section 3.3.2.3: topic "a/b", packet id 10.
    assert encode_publish("a/b", b"hi", qos=1, packet_id=10) == h(
        "32 09 00 03 61 2f 62 00 0a 68 69")


def test_publish_flags():
    assert encode_publish("a/b", b"hi") == h("30 07 00 03 61 2f 62 68 69")
    assert encode_publish("a/b", b"hi", retain=True) == h("31 07 00 03 61 2f 62 68 69")
    assert encode_publish("a/b", b"hi", qos=1, retain=True, dup=True, packet_id=65535) == h(
        "3b 09 00 03 61 2f 62 ff ff 68 69")
    assert encode_publish("a/b", b"") == h("30 05 00 03 61 2f 62")


def test_publish_payload_types():
    assert encode_publish("t", "é") == h("30 05 00 01 74 c3 a9")
    assert encode_publish("t", bytearray(b"\x00\xff")) == h("30 05 00 01 74 00 ff")
    assert encode_publish("é", b"") == h("30 04 00 02 c3 a9")


def test_publish_two_byte_remaining_length():
    got = encode_publish("t", bytes(200))
    assert got[:5] == h("30 cb 01 00 01")  # 3 + 200 = 203 = 0xCB 0x01
    assert len(got) == 3 + 203


def test_publish_misuse():
    raises(LocalProtocolError, encode_publish, "a/+", b"")
    raises(LocalProtocolError, encode_publish, "a/#", b"")
    raises(LocalProtocolError, encode_publish, "#", b"")
    raises(LocalProtocolError, encode_publish, "", b"")
    raises(LocalProtocolError, encode_publish, "a\x00", b"")
    raises(LocalProtocolError, encode_publish, "a", b"", qos=2, packet_id=1)
    raises(LocalProtocolError, encode_publish, "a", b"", qos=1)
    raises(LocalProtocolError, encode_publish, "a", b"", qos=1, packet_id=0)
    raises(LocalProtocolError, encode_publish, "a", b"", qos=1, packet_id=65536)
    raises(LocalProtocolError, encode_publish, "a", b"", qos=0, packet_id=1)
    raises(LocalProtocolError, encode_publish, "a", b"", dup=True)


def test_too_long_strings():
    if _SMALL_HEAP:
        return
    e = raises(LocalProtocolError, encode_connect, "a", username="u", password=bytes(65536))
    assert "password" in str(e)
    raises(LocalProtocolError, encode_publish, "a" * 65536, b"")
    raises(LocalProtocolError, encode_publish, "é" * 32768, b"")  # 65536 bytes in UTF-8
    assert len(encode_publish("a" * 65535, b"")) == 4 + 2 + 65535


def test_set_dup():
    packet = encode_publish("a/b", b"hi", qos=1, packet_id=10)
    again = set_dup(packet)
    assert again == h("3a 09 00 03 61 2f 62 00 0a 68 69")
    assert packet[0] == 0x32  # the original is left alone
    assert set_dup(again) == again
    raises(LocalProtocolError, set_dup, encode_publish("a", b""))
    raises(LocalProtocolError, set_dup, encode_puback(1))


def test_puback():
    assert encode_puback(10) == h("40 02 00 0a")
    assert encode_puback(1) == h("40 02 00 01")
    assert encode_puback(65535) == h("40 02 ff ff")
    raises(LocalProtocolError, encode_puback, 0)
    raises(LocalProtocolError, encode_puback, 65536)


def test_subscribe():
    # Section 3.8.3 example, with the second filter at QoS 0 (QoS 2 unsupported).
    assert encode_subscribe(10, [("a/b", 1), ("c/d", 0)]) == h(
        "82 0e 00 0a 00 03 61 2f 62 01 00 03 63 2f 64 00")
    assert encode_subscribe(258, [("#", 1)]) == h("82 06 01 02 00 01 23 01")


def test_subscribe_valid_filters():
    for f in ("#", "+", "a/+/b", "a/#", "+/+", "/", "a//b", "+/#"):
        encode_subscribe(1, [(f, 0)])


def test_subscribe_misuse():
    raises(LocalProtocolError, encode_subscribe, 1, [])
    raises(LocalProtocolError, encode_subscribe, 0, [("a", 1)])
    raises(LocalProtocolError, encode_subscribe, 1, [("a", 2)])
    for f in ("", "a/#/b", "a#", "#/", "a+/b", "a/b+", "++", "a\x00"):
        raises(LocalProtocolError, encode_subscribe, 1, [(f, 0)])


def test_unsubscribe():
    # Section 3.10.3 example.
    assert encode_unsubscribe(10, ["a/b", "c/d"]) == h(
        "a2 0c 00 0a 00 03 61 2f 62 00 03 63 2f 64")
    raises(LocalProtocolError, encode_unsubscribe, 10, [])
    raises(LocalProtocolError, encode_unsubscribe, 10, ["a/#/b"])
    raises(LocalProtocolError, encode_unsubscribe, 0, ["a"])


def test_pingreq_disconnect():
    assert encode_pingreq() == PINGREQ == h("c0 00")
    assert encode_disconnect() == DISCONNECT == h("e0 00")


# --- events -----------------------------------------------------------------


def test_events_are_namedtuples():
    assert PubAck(7).packet_id == 7
    assert repr(PubAck(7)) == "PubAck(packet_id=7)"
    ev = Publish("t", b"x", 1, True, False, 3)
    assert (ev.topic, ev.payload, ev.qos, ev.retain, ev.dup, ev.packet_id) == (
        "t", b"x", 1, True, False, 3)
    assert repr(NEED_DATA) == "NEED_DATA"


# --- Reader: good packets ---------------------------------------------------


def test_connack():
    one(h("20 02 00 00"), ConnAck(False, 0))
    one(h("20 02 01 00"), ConnAck(True, 0))
    for code in range(1, 6):
        one(bytes((0x20, 2, 0, code)), ConnAck(False, code))


def test_publish_decode():
    one(h("30 07 00 03 61 2f 62 68 69"), Publish("a/b", b"hi", 0, False, False, 0))
    one(h("31 05 00 03 61 2f 62"), Publish("a/b", b"", 0, True, False, 0))
    one(h("3b 09 00 03 61 2f 62 00 0a 68 69"), Publish("a/b", b"hi", 1, True, True, 10))
    ev = one(h("32 06 00 02 c3 a9 ff ff"), Publish("é", b"", 1, False, False, 65535))
    assert type(ev.payload) is bytes


def test_publish_decode_roundtrip():
    for qos, pid in ((0, 0), (1, 1), (1, 65535)):
        for payload in (b"", b"x", bytes(127), bytes(300)):
            packet = encode_publish("ummc/v1/U001/gw-u001/cmd", payload, qos, True, False, pid)
            one(packet, Publish("ummc/v1/U001/gw-u001/cmd", payload, qos, True, False, pid))


def test_acks_decode():
    one(h("40 02 00 0a"), PubAck(10))
    one(h("b0 02 ff ff"), UnsubAck(65535))
    one(h("90 04 00 0a 01 80"), SubAck(10, [1, SUBACK_FAILURE]))
    one(h("90 05 00 0b 00 01 02"), SubAck(11, [0, 1, 2]))
    one(h("d0 00"), PingResp())


def test_several_packets_in_one_chunk():
    data = (h("20 02 00 00") + h("30 07 00 03 61 2f 62 68 69") + h("d0 00")
            + h("40 02 00 01") + h("90 03 00 02 01") + h("b0 02 00 03"))
    want = [
        ConnAck(False, 0),
        Publish("a/b", b"hi", 0, False, False, 0),
        PingResp(),
        PubAck(1),
        SubAck(2, [1]),
        UnsubAck(3),
    ]
    same_list(events(data), want)


def test_byte_by_byte():
    big = encode_publish("t", bytes(200), qos=1, packet_id=9)  # two-byte remaining length
    data = h("20 02 01 00") + big + h("d0 00") + h("40 02 00 05")
    r = Reader()
    got = []
    for i in range(len(data)):
        r.feed(data[i : i + 1])
        ev = r.next_event()
        if ev is not NEED_DATA:
            got.append((i, ev))
            assert r.next_event() is NEED_DATA
    ends = [i for i, _ in got]
    assert ends == [3, 3 + len(big), 5 + len(big), 9 + len(big)]
    want = [ConnAck(True, 0), Publish("t", bytes(200), 1, False, False, 9), PingResp(), PubAck(5)]
    same_list([ev for _, ev in got], want)
    assert r.buffered == 0


def test_split_chunks_and_partial_tail():
    data = h("40 02 00 01 40 02 00 02 40 02")
    r = Reader()
    r.feed(data[:3])
    assert r.next_event() is NEED_DATA
    r.feed(data[3:])
    same(r.next_event(), PubAck(1))
    same(r.next_event(), PubAck(2))
    assert r.next_event() is NEED_DATA
    assert r.buffered == 2
    r.feed(h("00 03"))
    same(r.next_event(), PubAck(3))
    assert r.next_event() is NEED_DATA


def test_empty_reader_needs_data():
    r = Reader()
    assert r.next_event() is NEED_DATA
    r.feed(b"")
    assert r.next_event() is NEED_DATA


# --- Reader: what the broker must not send ----------------------------------


def test_unexpected_packet_types():
    for first in (0x00, 0x10, 0x82, 0xA2, 0xC0, 0xE0, 0xF0):
        e = remote_error(bytes((first,)))  # caught on the first byte alone
        assert "unexpected" in str(e), first


def test_reserved_flag_bits():
    for data in ("21 02 00 00", "41 02 00 01", "92 03 00 01 00", "b8 02 00 01", "d1 00",
                 "60 02 00 01", "52 02 00 01", "74 02 00 01"):
        e = remote_error(h(data)[:1])
        assert "flag bits" in str(e), data


def test_qos2_packets_rejected():
    for data, name in (("50 02 00 0a", "PUBREC"), ("62 02 00 0a", "PUBREL"),
                       ("70 02 00 0a", "PUBCOMP")):
        e = remote_error(h(data))
        assert name in str(e) and "QoS 2" in str(e), str(e)
    e = remote_error(h("34 09 00 03 61 2f 62 00 0a 68 69"))
    assert "QoS 2" in str(e)


def test_bad_remaining_length():
    remote_error(h("30 ff ff ff ff"))
    remote_error(h("30 80 80 80 80 01"))


def test_max_packet_size():
    # refused from the header alone, before the body is buffered
    e = remote_error(h("30 80 80 04"))  # 65536-byte body > 64 KiB default
    assert "max_packet" in str(e)
    remote_error(h("30 0a"), max_packet=11)  # 12 bytes with its header
    got = events(h("30 03 00 01 61"), max_packet=5)
    same(got[0], Publish("a", b"", 0, False, False, 0))
    remote_error(h("30 04 00 01 61 62"), max_packet=5)


def test_bad_connack():
    for data in ("20 03 00 00 00", "20 01 00", "20 02 02 00", "20 02 00 06", "20 02 01 05"):
        remote_error(h(data))


def test_bad_publish():
    for data in (
        "36 07 00 03 61 2f 62 68 69",  # QoS 3
        "38 07 00 03 61 2f 62 68 69",  # DUP at QoS 0
        "30 00",  # no topic length
        "30 01 00",  # half a topic length
        "30 03 00 05 61",  # topic longer than the packet
        "32 05 00 03 61 2f 62",  # no packet id
        "32 06 00 03 61 2f 62 00",  # half a packet id
        "32 07 00 03 61 2f 62 00 00",  # packet id 0
        "30 03 00 01 ff",  # not UTF-8
        "30 02 00 00",  # empty topic
        "30 03 00 01 23",  # wildcard '#'
        "30 05 00 03 61 2f 2b",  # wildcard '+'
        "30 03 00 01 00",  # U+0000
    ):
        remote_error(h(data))


def test_bad_acks():
    for data in ("40 03 00 01 00", "40 01 00", "40 02 00 00", "b0 00", "b0 02 00 00",
                 "90 02 00 0a", "90 03 00 0a 03", "90 04 00 0a 00 7f", "90 03 00 00 01",
                 "d0 01 00", "50 03 00 01 00"):
        remote_error(h(data))


def test_error_is_sticky():
    r = Reader()
    r.feed(h("40 02 00 01 f0 00 40 02 00 02"))
    same(r.next_event(), PubAck(1))
    first = raises(RemoteProtocolError, r.next_event)
    r.feed(h("40 02 00 03"))  # ignored after an error
    again = raises(RemoteProtocolError, r.next_event)
    assert str(again) == str(first)
