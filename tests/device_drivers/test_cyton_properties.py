"""Property tests and fuzzing of the Cyton stream and the ECG strip code.

CPython only (hypothesis); the portable tests are test_cyton.py and
test_ecg.py. The fuzz runs 100,000 seeded random streams through the parser
and checks that nothing but the parser's own events ever comes out, that
every byte is accounted for, and that it finishes within its time bound.
"""

from __future__ import annotations

import itertools
import random
import time
from array import array
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

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
)
from device_drivers.ecg import QRSDetector, StripAssembler, detect_qrs

FUZZ_CASES = 100_000
FUZZ_SECONDS = 60  # the bound; about 2 s on the CI-class machine

counts24 = st.lists(st.integers(-FULL_SCALE - 1, FULL_SCALE), min_size=8, max_size=8)
int16 = st.integers(-0x8000, 0x7FFF)
uint32 = st.integers(0, 0xFFFFFFFF)


def aux_for(stop: int) -> st.SearchStrategy[object]:
    if stop == 0xC0:
        return st.tuples(int16, int16, int16)
    if stop <= 0xC2:
        return st.binary(min_size=6, max_size=6)
    if stop <= 0xC4:
        return st.tuples(int16, uint32)
    return st.tuples(st.binary(min_size=2, max_size=2), uint32)


@st.composite
def packets(draw: st.DrawFn) -> tuple[int, list[int], object, int]:
    stop = draw(st.integers(0xC0, 0xC6))
    return draw(st.integers(0, 255)), draw(counts24), draw(aux_for(stop)), stop


def events(parser: CytonParser, data: bytes, cuts: list[int]) -> list[Any]:
    out: list[Any] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        parser.feed(data[start:cut])
        start = max(start, cut)
        out.extend(parser)
    assert parser.next_event() is NEED_DATA
    return out


def check(sample: Any, number: int, counts: list[int], aux: object, stop: int) -> None:
    assert type(sample) is Sample
    assert sample.sample_number == number and list(sample.counts) == counts
    assert sample.aux == aux and sample.stop_byte == stop
    assert sample.channels_uv == tuple(c * uv_per_count(24) for c in counts)


@given(packets())
def test_packet_round_trip(p: tuple[int, list[int], object, int]) -> None:
    data = encode_packet(*p)
    assert len(data) == 33 and data[0] == 0xA0 and data[32] == p[3]
    check(decode_packet(data), *p)


@given(st.lists(packets(), min_size=2, max_size=12), st.integers(0, 255),
       st.lists(st.integers(0, 400), max_size=8))
def test_stream_round_trip_in_any_pieces(pkts: list, first: int, cuts: list[int]) -> None:
    pkts = [((first + k) & 0xFF, c, a, s) for k, (_, c, a, s) in enumerate(pkts)]
    got = events(CytonParser(), b"".join(encode_packet(*p) for p in pkts), cuts)
    assert len(got) == len(pkts)
    for ev, p in zip(got, pkts, strict=True):
        check(ev, *p)


@given(st.lists(st.integers(1, 256), min_size=2, max_size=12), st.integers(0, 255))
def test_lost_packets_are_counted(steps: list[int], first: int) -> None:
    numbers = [first, (first + 1) & 0xFF]  # the first is confirmed by the next
    for step in steps:
        numbers.append((numbers[-1] + step) & 0xFF)
    data = b"".join(encode_packet(n, [n] * 8) for n in numbers)
    parser = CytonParser()
    got = events(parser, data, [])
    expect: list[tuple] = []
    for k, n in enumerate(numbers):
        missing = (n - numbers[k - 1] - 1) & 0xFF if k else 0
        if missing:
            expect.append(Gap(missing))
        expect.append(("Sample", n))
    assert [e if type(e) is Gap else ("Sample", e.sample_number) for e in got] == expect
    assert all(type(e) in (Gap, Sample) for e in got)
    assert parser.lost == sum((s - 1) & 0xFF for s in steps)


# bytes that can neither start nor stop a packet
SAFE = [b for b in range(256) if b != 0xA0 and not 0xC0 <= b <= 0xC6]


@st.composite
def safe_packets(draw: st.DrawFn) -> list[bytes]:
    # consecutive packets whose numbers and payload hold no 0xA0 or 0xC0-0xC6
    n = draw(st.integers(2, 6))
    first = draw(st.integers(0, 0x9F - n))
    out = []
    for k in range(n):
        body = bytes(draw(st.lists(st.sampled_from(SAFE), min_size=30, max_size=30)))
        out.append(bytes((0xA0, first + k)) + body + bytes((draw(st.integers(0xC0, 0xC6)),)))
    return out


@given(st.binary(max_size=120).filter(lambda b: 0xA0 not in b), safe_packets(),
       st.lists(st.integers(0, 400), max_size=6))
def test_garbage_without_a_start_byte_is_dropped_whole(garbage: bytes, pkts: list[bytes],
                                                       cuts: list[int]) -> None:
    got = events(CytonParser(), garbage + b"".join(pkts), cuts)
    if garbage:
        assert got[0] == Resync(len(garbage)) and type(got[0]) is Resync
        got = got[1:]
    assert [bytes(encode_packet(e.sample_number, e.counts, e.aux, e.stop_byte)) for e in got] \
        == pkts


@given(st.binary(max_size=200), safe_packets(), st.lists(st.integers(0, 500), max_size=6))
def test_any_garbage_then_packets_resynchronises(garbage: bytes, pkts: list[bytes],
                                                 cuts: list[int]) -> None:
    # Whatever came before, every packet that follows is recovered, in
    # order, as the last samples. (Garbage can hold what looks like packets:
    # without a checksum those are returned too.)
    parser = CytonParser()
    data = garbage + b"".join(pkts)
    got = events(parser, data, cuts)
    samples = [e for e in got if type(e) is Sample]
    tail = samples[-len(pkts):]
    assert [encode_packet(e.sample_number, e.counts, e.aux, e.stop_byte) for e in tail] == pkts
    assert 33 * len(samples) + parser.dropped_bytes + parser.buffered == len(data)


def test_fuzz_random_streams() -> None:
    # 100,000 random streams (random bytes biased to the framing bytes,
    # valid packets, cut and corrupted packets) fed in random pieces.
    rng = random.Random(20251129)
    special = [0xA0, 0xC0, 0xC1, 0xC6, 0xC7, 0xBF]
    valid = [encode_packet(n, [rng.randrange(-(1 << 23), 1 << 23) for _ in range(8)], None,
                           0xC0 + n % 7) for n in range(64)]
    started = time.perf_counter()
    samples = 0
    for case in range(FUZZ_CASES):
        data = bytearray()
        for _ in range(rng.randrange(6)):
            kind = rng.randrange(5)
            if kind == 0:
                data += rng.randbytes(rng.randrange(40))
            elif kind == 1:
                data += bytes(rng.choice(special) for _ in range(rng.randrange(1, 8)))
            elif kind == 2:  # a run of consecutive packets, as a board sends them
                k = rng.randrange(60)
                data += b"".join(valid[k : k + rng.randrange(1, 5)])
            elif kind == 3:
                pkt = rng.choice(valid)
                data += pkt[: rng.randrange(33)]
            else:
                bad = bytearray(rng.choice(valid))
                bad[rng.randrange(33)] = rng.randrange(256)
                data += bad
        parser = CytonParser(gains=rng.choice((24, 1, (1, 2, 4, 6, 8, 12, 24, 24))))
        cuts = [rng.randrange(len(data) + 1) for _ in range(rng.randrange(4))]
        try:
            got = events(parser, bytes(data), cuts)
        except DecodeError:  # allowed by the contract; the parser never raises
            continue
        n = 0
        skipped = 0
        for e in got:
            t = type(e)
            if t is Sample:
                n += 1
                assert 0 <= e.sample_number <= 255 and 0xC0 <= e.stop_byte <= 0xC6
                assert len(e.counts) == 8 and len(e.channels_uv) == 8
                assert all(-FULL_SCALE - 1 <= c <= FULL_SCALE for c in e.counts)
            elif t is Gap:
                assert 1 <= e.missing <= 255
            else:
                assert t is Resync and e.skipped > 0, (case, e)
                skipped += e.skipped
        assert 33 * n + parser.dropped_bytes + parser.buffered == len(data), case
        assert skipped <= parser.dropped_bytes and parser.buffered < 35
        samples += n
        if case % 1000 == 0:
            assert time.perf_counter() - started < FUZZ_SECONDS, "fuzz over its time bound"
    assert samples > FUZZ_CASES // 2, samples  # the valid packets did come through


def test_fuzz_decode_packet() -> None:
    rng = random.Random(7)
    for _ in range(FUZZ_CASES):
        n = rng.choice((33, 33, 33, rng.randrange(70)))
        data = bytearray(rng.randbytes(n))
        if n and rng.random() < 0.5:
            data[0] = 0xA0
        if n == 33 and rng.random() < 0.5:
            data[32] = rng.choice((0xC0, 0xC3, 0xC6))
        try:
            s = decode_packet(data)
        except DecodeError as e:
            assert e.field in ("length", "start_byte", "stop_byte")
        else:
            assert type(s) is Sample and len(s.counts) == 8


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=6000), st.sampled_from([200, 250, 500]))
def test_detector_on_any_signal(raw: bytes, fs: int) -> None:
    x = array("h", raw[: len(raw) // 2 * 2])
    peaks = detect_qrs(x, fs)
    assert peaks == sorted(set(peaks))
    assert all(0 <= p < len(x) for p in peaks)
    gaps = [b - a for a, b in itertools.pairwise(peaks)]
    assert all(g >= int(0.2 * fs + 0.5) for g in gaps)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([-8388608, -1, 0, 1, 8388607]),
                          st.integers(-100000, 100000)), min_size=1, max_size=20))
def test_detector_on_steps_and_rails(parts: list[tuple[int, int]]) -> None:
    det = QRSDetector(250)
    n = 0
    for level, length in parts:
        for _ in range(abs(length) % 700):
            det.push(level)
            n += 1
    peaks = det.finish()
    assert all(0 <= p < n for p in peaks) and peaks == sorted(set(peaks))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("push"), st.integers(-FULL_SCALE - 1, FULL_SCALE)),
                          st.tuples(st.just("gap"), st.integers(1, 300))), max_size=1500))
def test_strips_keep_every_sample_and_gap(ops: list[tuple[str, int]]) -> None:
    asm = StripAssembler(seconds=2)  # 500 samples
    strips = []
    expected = 0  # samples that must come out: pushed + filled
    pending = 0
    pushed = False
    for op, value in ops:
        if op == "gap":
            asm.gap(value)
            pending += value
            continue
        if pushed and pending and pending <= 250:
            expected += pending
        pending = 0
        pushed = True
        expected += 1
        done = asm.push(value)
        if done is not None:
            strips.append(done)
    rest = asm.flush()
    if rest is not None:
        strips.append(rest)
    assert sum(len(s.samples) for s in strips) == expected
    for s in strips:
        assert 1 <= len(s.samples) <= 500 and s.too_short == (len(s.samples) < 500)
        if len(s.gaps) < 32:
            assert sum(c for _, c in s.gaps) == s.missing
        for start, count in s.gaps:
            assert 0 <= start <= len(s.samples) and count > 0
