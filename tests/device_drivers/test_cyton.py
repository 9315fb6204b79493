# mpy-portable
# OpenBCI Cyton serial stream (device_drivers.cyton): the public vector,
# scaling, every stop byte, framing and resynchronisation on garbage, lost
# packets; then ECG strips assembled from its samples (device_drivers.ecg).
from device_drivers.ecg import DEFAULT_SECONDS, StripAssembler

# isort: split
# Imported after device_drivers.ecg on purpose: compiled from source, ecg.py
# needs most of the MicroPython run's 100 KB heap, so it goes first.
from device_drivers import DecodeError
from device_drivers.cyton import (
    FULL_SCALE,
    NEED_DATA,
    CytonParser,
    Gap,
    Resync,
    Sample,
    decode_packet,
    encode_packet,
    uv_per_count,
    uv_to_counts,
)
from tests.portable import raises

# instruments.md, from the OpenBCI JavaScript utilities' tests
VECTOR = bytes.fromhex("A045" + "000001000002000003000004000005000006000007000008"
                       + "000000010002" + "C0")
UV24 = 4.5e6 / 24 / 8388607
COUNTS = (0, 1, -1, 0x7FFFFF, -0x800000, 123456, -654321, 42)


def _events(parser, data, step=0):
    # feed `data` (in pieces of `step` bytes, or whole) and drain the events
    out = []
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        parser.feed(data[i:i + step])
        out.extend(parser)
    return out


def _packets(first, n, stop=0xC0):
    return b"".join(encode_packet((first + k) & 0xFF, COUNTS, None, stop) for k in range(n))


def test_public_vector():
    s = decode_packet(VECTOR)
    assert type(s) is Sample
    assert s.sample_number == 69 and s.counts == (1, 2, 3, 4, 5, 6, 7, 8)
    assert s.aux == (0, 1, 2) and s.stop_byte == 0xC0
    for k in range(8):
        assert abs(s.channels_uv[k] - (k + 1) * UV24) < 1e-9
    assert encode_packet(69, range(1, 9), (0, 1, 2)) == VECTOR


def test_scale():
    assert abs(uv_per_count(24) - 0.02235) < 1e-5  # instruments.md
    assert abs(uv_per_count(1) - 0.536441) < 1e-6
    assert abs(FULL_SCALE * uv_per_count(24) - 187500) < 1e-6  # 4.5 V / 24
    for gain in (0, 3, 25, -24):
        raises(ValueError, uv_per_count, gain)
    assert uv_to_counts(1e9) == FULL_SCALE and uv_to_counts(-1e9) == -FULL_SCALE - 1
    assert uv_to_counts(1000.0) == 44739 and uv_to_counts(1000.0, 1) == 1864


def test_24_bit_signed_big_endian():
    data = bytearray(encode_packet(0, COUNTS))
    assert data[2:5] == b"\x00\x00\x00" and data[5:8] == b"\x00\x00\x01"
    assert data[8:11] == b"\xff\xff\xff" and data[11:14] == b"\x7f\xff\xff"
    assert data[14:17] == b"\x80\x00\x00"
    s = decode_packet(data)
    assert s.counts == COUNTS
    assert s.channels_uv[3] == 0x7FFFFF * UV24 and s.channels_uv[4] == -0x800000 * UV24


def test_every_stop_byte_and_its_aux():
    cases = ((0xC0, (-32768, 32767, -1)), (0xC1, b"\x01\x02\x03\x04\x05\xa0"),
             (0xC2, b"user!!"), (0xC3, (-5, 0)), (0xC4, (1000, 0xFFFFFFFF)),
             (0xC5, (b"\xff\x00", 123456789)), (0xC6, (b"ab", 1)))
    for stop, aux in cases:
        data = encode_packet(200, COUNTS, aux, stop)
        s = decode_packet(data)
        assert s.stop_byte == stop and s.aux == aux and s.counts == COUNTS, stop
    # the board time is big-endian in the last four aux bytes
    assert encode_packet(0, COUNTS, (1, 0x01020304), 0xC4)[26:32] == b"\x00\x01\x01\x02\x03\x04"
    assert decode_packet(encode_packet(0, COUNTS, None, 0xC1)).aux == bytes(6)
    assert decode_packet(encode_packet(0, COUNTS, None, 0xC5)).aux == (b"\x00\x00", 0)


def test_encoder_refuses_what_a_board_cannot_send():
    raises(ValueError, encode_packet, 256, COUNTS)
    raises(ValueError, encode_packet, -1, COUNTS)
    raises(ValueError, encode_packet, 0, COUNTS[:7])
    raises(ValueError, encode_packet, 0, (0x800000,) * 8)
    raises(ValueError, encode_packet, 0, (-0x800001,) * 8)
    raises(ValueError, encode_packet, 0, COUNTS, None, 0xC7)
    raises(ValueError, encode_packet, 0, COUNTS, None, 0xBF)
    raises(ValueError, encode_packet, 0, COUNTS, (0, 0, 32768))
    raises(ValueError, encode_packet, 0, COUNTS, b"12345", 0xC1)
    raises(ValueError, encode_packet, 0, COUNTS, (0, -1), 0xC4)
    raises(ValueError, encode_packet, 0, COUNTS, (b"1", 0), 0xC6)


def test_decode_packet_names_what_is_wrong():
    for n in (0, 32, 34):
        e = raises(DecodeError, decode_packet, (VECTOR + b"\xa0")[:n])
        assert e.field == "length" and e.offset == n
    e = raises(DecodeError, decode_packet, b"\xa1" + VECTOR[1:])
    assert e.field == "start_byte" and e.offset == 0
    for stop in (0xBF, 0xC7, 0x00, 0xA0):
        e = raises(DecodeError, decode_packet, VECTOR[:32] + bytes((stop,)))
        assert e.field == "stop_byte" and e.offset == 32
    assert isinstance(e, ValueError)


def test_stream_byte_by_byte():
    p = CytonParser()
    assert p.next_event() is NEED_DATA and repr(NEED_DATA) == "NEED_DATA"
    data = _packets(250, 12)  # wraps 255 -> 0
    events = _events(p, data, 1)
    assert [e.sample_number for e in events] == [(250 + k) & 0xFF for k in range(12)]
    assert all(type(e) is Sample and e.counts == COUNTS for e in events)
    assert p.packets == 12 and p.lost == 0 and p.dropped_bytes == 0 and p.buffered == 0


def test_first_packet_waits_for_the_next_to_confirm_it():
    # At the start (and after garbage) a packet is released when the next
    # one's start byte and sample number have arrived; in sync, at once.
    p = CytonParser()
    data = _packets(7, 3)
    assert _events(p, data[:34]) == []
    assert p.buffered == 34
    ev = _events(p, data[34:35])
    assert [e.sample_number for e in ev] == [7]
    ev += _events(p, data[35:])
    assert [e.sample_number for e in ev] == [7, 8, 9] and p.buffered == 0


def test_lost_packets_give_a_gap_before_the_next_sample():
    p = CytonParser()
    data = encode_packet(10, COUNTS) + encode_packet(11, COUNTS) + encode_packet(14, COUNTS)
    data += encode_packet(250, COUNTS) + encode_packet(2, COUNTS) + encode_packet(3, COUNTS)
    ev = _events(p, data)
    kinds = [(type(e).__name__, e[0]) for e in ev]
    assert kinds == [("Sample", 10), ("Sample", 11), ("Gap", 2), ("Sample", 14),
                     ("Gap", 235), ("Sample", 250), ("Gap", 7), ("Sample", 2), ("Sample", 3)]
    assert p.lost == 244 and p.packets == 6
    assert Gap(2) == Resync(2)  # tuples: dispatch on the type


def test_garbage_before_the_stream_is_skipped_once():
    banner = b"OpenBCI V3 8-16 channel\nADS1299 Device ID: 0x3E\n$$$"
    p = CytonParser()
    ev = _events(p, banner + _packets(0, 4), 5)
    assert type(ev[0]) is Resync and ev[0].skipped == len(banner)
    assert [e.sample_number for e in ev[1:]] == [0, 1, 2, 3]
    assert p.dropped_bytes == len(banner)


def test_a_start_byte_in_the_garbage_is_not_a_packet():
    # 0xA0 ... 0xC0 33 bytes apart, but nothing confirms it
    fake = b"\xa0\x05" + bytes(30) + b"\xc0" + b"\x11\x22"
    p = CytonParser()
    ev = _events(p, fake + _packets(40, 3), 1)
    assert type(ev[0]) is Resync and ev[0].skipped == len(fake)
    assert [e.sample_number for e in ev[1:]] == [40, 41, 42]


def test_resync_after_an_overrun_mid_packet():
    # bytes 20..32 of packet 3 lost (UART overrun): packet 3 is gone
    good = [encode_packet(k, COUNTS) for k in range(7)]
    data = b"".join(good[:3]) + good[3][:20] + b"".join(good[4:])
    p = CytonParser()
    ev = _events(p, data, 7)
    names = [type(e).__name__ for e in ev]
    assert names == ["Sample"] * 3 + ["Resync", "Gap"] + ["Sample"] * 3
    assert ev[3].skipped == 20 and ev[4].missing == 1
    assert [e.sample_number for e in ev if type(e) is Sample] == [0, 1, 2, 4, 5, 6]
    assert p.dropped_bytes == 20 and p.lost == 1 and p.packets == 6


def test_a_bad_stop_byte_in_sync_drops_that_packet():
    pkts = [bytearray(encode_packet(k, COUNTS)) for k in range(5)]
    pkts[2][32] = 0x55
    p = CytonParser()
    ev = _events(p, b"".join(pkts))
    assert [type(e).__name__ for e in ev] == ["Sample", "Sample", "Resync", "Gap", "Sample",
                                              "Sample"]
    assert ev[2].skipped == 33 and ev[3].missing == 1


def test_gains_scale_each_channel():
    p = CytonParser(gains=(1, 2, 4, 6, 8, 12, 24, 24))
    ev = _events(p, _packets(0, 2, 0xC1))
    s = ev[0]
    for k, gain in enumerate((1, 2, 4, 6, 8, 12, 24, 24)):
        assert s.channels_uv[k] == COUNTS[k] * (4.5e6 / gain / 8388607)
    p.set_gains(24)
    assert _events(p, encode_packet(2, COUNTS))[-1].channels_uv[1] == UV24
    raises(ValueError, CytonParser, gains=(24,) * 7)
    raises(ValueError, CytonParser, gains=5)


def test_feed_takes_bytes_bytearray_and_memoryview():
    data = _packets(0, 3)
    p = CytonParser()
    p.feed(bytearray(data[:40]))
    p.feed(memoryview(data)[40:70])
    p.feed(data[70:])
    assert [e.sample_number for e in p] == [0, 1, 2]


class Lcg:
    def __init__(self, seed):
        self.x = seed

    def next(self, n):  # 0 <= value < n
        self.x = (1103515245 * self.x + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % n


def test_random_garbage_is_accounted_for():
    # every byte fed is in a packet, reported dropped, or still buffered;
    # the parser never raises (fuzzing at scale: test_cyton_properties)
    rng = Lcg(5)
    pkt = encode_packet(9, COUNTS)
    for case in range(150):
        p = CytonParser()
        data = bytearray()
        while len(data) < 200:
            r = rng.next(4)
            if r == 0:
                data += pkt
            elif r == 1:
                data += pkt[:rng.next(33)]
            else:
                data.append((0xA0, 0xC0, 0xC3, rng.next(256))[rng.next(4)])
        ev = _events(p, bytes(data), 1 + rng.next(40))
        samples = [e for e in ev if type(e) is Sample]
        resync = sum(e.skipped for e in ev if type(e) is Resync)
        assert len(samples) * 33 + p.dropped_bytes + p.buffered == len(data), case
        assert resync <= p.dropped_bytes and p.packets == len(samples)
        for s in samples:
            assert 0xC0 <= s.stop_byte <= 0xC6 and len(s.counts) == 8


# --- ECG strips from Cyton samples (device_drivers.ecg) --------------------


def test_back_to_back_strips():
    assert DEFAULT_SECONDS == 10
    asm = StripAssembler(channel=0, lead="V1", seconds=2)  # 1 KB, not 5, in a 100 KB heap
    done = 0
    for k in range(2 * 500 + 10):
        s = asm.push(uv_to_counts(k % 100))
        if s is not None:  # checked and dropped: one strip in memory at a time
            done += 1
            assert k == 500 * done - 1
            assert len(s.samples) == 500 and s.duration == 2.0 and not s.too_short
            assert s.flags() == [] and s.lead == "V1" and s.gain == 24
            assert s.sample_rate == 250 and s.channel == 0 and s.first_sample_number is None
            assert s.offset_uv == 0 and s.samples[99] == 99 and s.samples[100] == 0
            s = None
    assert done == 2
    rest = asm.flush()
    assert rest is not None and len(rest.samples) == 10 and rest.too_short
    assert rest.flags() == ["too_short"] and list(rest.samples) == list(range(10))
    assert asm.flush() is None


def test_strip_keeps_microvolts_around_its_first_sample():
    asm = StripAssembler(seconds=2)
    for uv in (150000.0, 150123.0, 149000.0):  # a 150 mV electrode offset
        asm.push(uv_to_counts(uv))
    strip = asm.flush()
    assert strip is not None and strip.offset_uv == 150000
    assert list(strip.samples) == [0, 123, -1000] and strip.clipped == 0


def test_strip_clips_past_int16_and_counts_railed_samples():
    asm = StripAssembler(seconds=2)
    for count in (0, uv_to_counts(40000.0), FULL_SCALE, -FULL_SCALE - 1):
        asm.push(count)
    strip = asm.flush()
    assert strip is not None
    assert list(strip.samples) == [0, 32767, 32767, -32768]
    assert strip.clipped == 3 and strip.railed == 2
    assert strip.flags() == ["railed", "clipped", "too_short"]


def test_gaps_are_filled_and_listed():
    asm = StripAssembler(seconds=2)
    asm.push(uv_to_counts(0.0))
    asm.gap(3)
    asm.push(uv_to_counts(400.0))
    asm.push(uv_to_counts(400.0))
    strip = asm.flush()
    assert strip is not None
    assert list(strip.samples) == [0, 100, 200, 300, 400, 400]
    assert strip.missing == 3 and strip.gaps == [[1, 3]] and strip.flags() == ["gaps",
                                                                                "too_short"]


def test_gap_across_a_strip_boundary():
    asm = StripAssembler(seconds=2)  # 500 samples
    for _ in range(498):
        assert asm.push(0) is None
    asm.gap(5)
    done = asm.push(0)
    assert done is not None and len(done.samples) == 500
    assert done.gaps == [[498, 2]] and done.missing == 2
    nxt = asm.flush()
    assert nxt is not None and nxt.gaps == [[0, 3]] and nxt.missing == 3
    assert len(nxt.samples) == 4


def test_a_gap_over_a_second_ends_the_strip():
    asm = StripAssembler(seconds=2)
    for _ in range(100):
        asm.push(0)
    asm.gap(251)
    done = asm.push(0)
    assert done is not None and len(done.samples) == 100 and done.too_short
    assert done.missing == 251 and done.gaps == [[100, 251]]
    rest = asm.flush()
    assert rest is not None and len(rest.samples) == 1 and rest.missing == 0


def test_events_from_the_parser():
    p = CytonParser()
    asm = StripAssembler(channel=3, seconds=2)
    data = b"junk" + b"".join(encode_packet(k & 0xFF, (0, 0, 0, k, 0, 0, 0, 0))
                              for k in range(250, 260) if k != 255)
    for ev in _events(p, data):
        assert asm.add(ev) is None
    strip = asm.flush()
    assert strip is not None and strip.first_sample_number == 250
    assert strip.resyncs == 1 and strip.missing == 1 and strip.gaps == [[5, 1]]
    assert len(strip.samples) == 10 and strip.flags() == ["gaps", "resync", "too_short"]


def test_assembler_refuses_bad_settings():
    raises(ValueError, StripAssembler, channel=8)
    raises(ValueError, StripAssembler, gain=3)
    raises(ValueError, StripAssembler, seconds=1)
    raises(ValueError, StripAssembler, seconds=200)
