"""Properties of the serial protocol codecs (CPython only: hypothesis and fuzz loops).

Round trips: what the OneTouch Ultra2 and ASTM encoders produce decodes to what
they were given, through the framers, in any chunking. The E1381 handshake
delivers every message exactly once over a link that corrupts and drops data,
or both sides give up cleanly. Fuzzing: random and mutated bytes through every
parser raise nothing but DecodeError (at least 100,000 cases per parser, each
loop under a deadline), the state machines never raise at all, and the framers
resynchronise after garbage.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers import DecodeError
from device_drivers import astm as a
from device_drivers import onetouch as ot

PROPS = settings(max_examples=200, deadline=None, database=None)
FUZZ_CASES = 100_000
FUZZ_DEADLINE_S = 10.0

# --- OneTouch Ultra2 ------------------------------------------------------------------

stamps = st.tuples(st.integers(2000, 2099), st.integers(1, 12), st.integers(1, 28),
                   st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
readings = st.fixed_dictionaries({
    "timestamp": stamps,
    "glucose": st.integers(0, 999),
    "flags": st.lists(st.sampled_from(["control_solution", "parity_error"]), unique=True)
    .map(lambda f: sorted(f, key=["control_solution", "parity_error"].index)),
    "meal": st.sampled_from(["none", "before", "after"]),
    "comment": st.sampled_from(ot.COMMENTS),
})
serials = st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=9, max_size=9)


def _expected(r: dict[str, object]) -> dict[str, object]:
    flags = list(r["flags"])  # type: ignore[call-overload]
    value = r["glucose"]
    assert isinstance(value, int)
    if value < ot.LOW_LIMIT:
        flags.append("lo")
    elif value > ot.HIGH_LIMIT:
        flags.append("hi")
    return dict(r, flags=flags, unit="mg/dL")


def _chunks(data: bytes, rnd: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rnd.randint(1, 40)
        out.append(data[i:i + n])
        i += n
    return out


@PROPS
@given(readings)
def test_onetouch_record_round_trip(r: dict[str, object]) -> None:
    line = ot.encode_record(r)
    got = ot.decode_line(line[:-2])
    for k, v in _expected(r).items():
        assert got[k] == v, k
    assert ot.encode_record(got) == line


@PROPS
@given(st.lists(readings, max_size=25), serials, st.sampled_from(["mg/dL", "mmol/L"]),
       st.integers(0, 2**32))
def test_onetouch_dump_round_trip_in_any_chunking(rs: list[dict[str, object]], serial: str,
                                                  unit: str, seed: int) -> None:
    data = ot.encode_dump(serial, rs, unit)
    framer, parser, got = ot.LineFramer(), ot.DumpParser(), []
    for chunk in _chunks(b"\x11\r" + data, random.Random(seed)):
        for line in framer.feed(chunk):
            msg = parser.add_line(line)
            if msg["type"] == "record":
                got.append(msg)
    assert parser.done and parser.serial == serial and parser.display_unit == unit
    assert [g["index"] for g in got] == list(range(1, len(rs) + 1))
    assert [{k: g[k] for k in r} for g, r in zip(got, rs, strict=True)] == [
        {k: _expected(r)[k] for k in r} for r in rs]
    assert ot.parse_dump(data)["count"] == len(rs)


@PROPS
@given(stamps, st.sampled_from("FT"))
def test_onetouch_clock_round_trip(ts: tuple[int, ...], letter: str) -> None:
    assert ot.decode_command(ot.set_clock_command(ts)) == {"command": "DMT", "timestamp": ts}
    c = ot.decode_line(ot.encode_clock_reply(ts, letter)[:-2])
    assert c["timestamp"] == ts and c["command"] == "DM" + letter
    assert c["day_of_week"] == ot.day_of_week(*ts[:3])


@PROPS
@given(st.binary(max_size=200), st.sampled_from([b"\n", b"\r", b"\x00"]), readings)
def test_onetouch_framer_resynchronises_after_garbage(garbage: bytes, sep: bytes,
                                                      r: dict[str, object]) -> None:
    line = ot.encode_record(r)
    framer = ot.LineFramer()
    lines = framer.feed(garbage + sep + line)
    assert lines[-1] == line[:-2]
    assert framer.feed(line) == [line[:-2]]


# --- ASTM E1381 -----------------------------------------------------------------------

frame_text = st.binary(max_size=a.MAX_TEXT).filter(
    lambda t: not any(b in a._RESTRICTED for b in t))
record_chars = st.characters(min_codepoint=0x20, max_codepoint=0xFF)
records = st.text(record_chars, min_size=1, max_size=600).map(lambda t: "X" + t)
messages = st.lists(records, min_size=1, max_size=4).map(a.encode_message)


@PROPS
@given(st.integers(0, 7), frame_text, st.booleans())
def test_frame_round_trip(fn: int, text: bytes, final: bool) -> None:
    frame = a.encode_frame(fn, text, final)
    assert a.decode_frame(frame) == (fn, text, final)
    assert len(frame) <= 247


def _records(msgs: list[bytes]) -> list[bytes]:
    return [r for m in msgs for r in m.split(b"\r")[:-1]]


def _got(events: list[tuple[str, object]], kind: str) -> list[object]:
    return [p for k, p in events if k == kind]


def _feed_all(rx: a.Receiver, data: bytes, rnd: random.Random) -> list[tuple[str, object]]:
    events: list[tuple[str, object]] = []
    for chunk in _chunks(data, rnd):
        events += rx.feed(chunk)
    return events


@PROPS
@given(st.lists(messages, min_size=1, max_size=4), st.integers(0, 2**32))
def test_transmission_reassembles_in_any_chunking(msgs: list[bytes], seed: int) -> None:
    frames = a.encode_transmission(msgs)
    rnd = random.Random(seed)
    rx = a.Receiver()
    events = _feed_all(rx, b"\x05" + b"".join(frames) + b"\x04", rnd)
    assert _got(events, a.RECORD) == _records(msgs)
    assert len(_got(events, a.MESSAGE_END)) == len(msgs)
    assert events[0] == (a.LINK_UP, None) and events[-1] == (a.LINK_DOWN, None)
    assert rx.data_to_send() == b"\x06" * (len(frames) + 1)
    for f in frames:  # every record starts a frame; text of 240 at most
        assert len(a.decode_frame(f)[1]) <= a.MAX_TEXT


noise = st.binary(max_size=30).map(lambda b: bytes(x for x in b if x not in (2, 4, 5)))


@PROPS
@given(st.lists(messages, min_size=1, max_size=3), st.lists(noise, min_size=20, max_size=20))
def test_noise_between_frames_is_ignored(msgs: list[bytes], noises: list[bytes]) -> None:
    rx = a.Receiver()
    events = rx.feed(b"\x05")
    for i, f in enumerate(a.encode_transmission(msgs)):
        events += rx.feed(noises[i % 20] + f)
    assert _got(events, a.RECORD) == _records(msgs)
    assert a.REJECTED not in [k for k, _ in events]


def _run_link(msgs: list[bytes], rnd: random.Random, p_flip: float,
              p_drop: float) -> tuple[list[tuple[str, object]], list[tuple[str, object]]]:
    """Sender and Receiver over a line that damages and drops transmissions;
    the caller's timers fire when nothing moves (the sender's 15 s run out
    before the receiver's 30 s). The damage stays within what E1381 can see:
    one changed byte per transmission, never into a control character (an
    8-bit sum misses some multi-byte errors, and a NAK turned into ACK is
    indistinguishable from an ACK)."""
    tx, rx = a.Sender(msgs), a.Receiver()
    tx.start()
    tx_events: list[tuple[str, object]] = []
    rx_events: list[tuple[str, object]] = []

    def line(data: bytes) -> bytes:
        if rnd.random() < p_drop:
            return b""
        out = bytearray(data)
        if rnd.random() < p_flip:
            out[rnd.randrange(len(out))] = rnd.randrange(0x20, 0x100)
        return bytes(out)

    for _ in range(10_000):
        out = tx.data_to_send()
        if out:
            rx_events += rx.feed(line(out))
        back = rx.data_to_send()
        if back:
            tx_events += tx.feed(line(back))
        if out or back:
            continue
        if tx.timer is not None:
            tx_events += tx.timeout()
        elif rx.timer is not None:
            rx_events += rx.timeout()
        else:
            return tx_events, rx_events
    raise AssertionError("the link never settled")


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(messages, min_size=1, max_size=4), st.integers(0, 2**32),
       st.sampled_from([0.0, 0.1, 0.3, 0.6]), st.sampled_from([0.0, 0.05, 0.2]))
def test_lossy_link_delivers_each_message_once_or_gives_up(
        msgs: list[bytes], seed: int, p_flip: float, p_drop: float) -> None:
    tx_events, rx_events = _run_link(msgs, random.Random(seed), p_flip, p_drop)
    records, expected = _got(rx_events, a.RECORD), _records(msgs)
    assert records == expected[:len(records)]  # in order, unaltered, never twice
    ended = len(_got(rx_events, a.MESSAGE_END))
    assert len(records) >= len(_records(msgs[:ended]))
    delivered = _got(tx_events, a.DELIVERED)
    assert delivered == list(range(len(delivered)))
    # the receiver may hold one message more: the ACK of its last frame was lost
    assert len(delivered) <= ended <= len(delivered) + 1
    if (a.DONE, None) in tx_events:
        assert ended == len(msgs) and records == expected
    if p_flip == 0 and p_drop == 0:
        assert records == expected and rx_events[-1] == (a.LINK_DOWN, None)


# --- ASTM E1394 -----------------------------------------------------------------------

delimiter_sets = st.sampled_from(["|\\^&", "#~$%", "!@*;"])
values = st.text(record_chars, max_size=40)


@PROPS
@given(values, delimiter_sets)
def test_escaping_round_trip(text: str, d: str) -> None:
    msg = a.encode_message([a.header_record(delimiters=d), a.comment_record(1, text,
                                                                            delimiters=d)])
    h, c = a.decode_message(msg)
    assert h["delimiters"] == d and c["text"] == ([text] if text else [])


@PROPS
@given(st.integers(1, 10**6), st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcz0123456789-_ ",
                                       min_size=1, max_size=20).filter(str.strip),
       st.integers(-10**6, 10**6), st.integers(0, 4), st.sampled_from(["", "mg/dL", "%"]),
       st.none() | st.tuples(st.integers(0, 500), st.integers(0, 500)),
       st.lists(st.sampled_from(["L", "H", "LL", "HH", "<", ">", "N", "A"]), unique=True,
                max_size=3),
       st.sampled_from(["F", "P", "C", "X"]), st.none() | stamps, st.none() | stamps)
def test_result_record_round_trip(seq: int, analyte: str, mantissa: int, decimals: int,
                                  unit: str, ref: tuple[int, int] | None, flags: list[str],
                                  status: str, done: tuple[int, ...] | None,
                                  started: tuple[int, ...] | None) -> None:
    value = mantissa if decimals == 0 else round(mantissa / 10**decimals, decimals)
    text = "%d" % mantissa if decimals == 0 else "%.*f" % (decimals, value)
    rec = a.result_record(seq, analyte, text, unit, ref, flags, status, done, started)
    r = a.decode_record(rec)
    assert (r["sequence"], r["analyte"], r["value"], r["value_text"]) == (
        seq, analyte.strip() and analyte, value, text)
    assert r["unit"] == (unit or None) and r["reference_range"] == ref
    assert r["abnormal_flags"] == flags and r["status"] == status
    assert r["timestamp"] == (done or started)
    reading = a.results_to_readings([r])[0]
    assert reading["value"] == value and reading["patient_id"] is None


# --- fuzzing --------------------------------------------------------------------------

OT_SEEDS = [ot.encode_dump("GMF600DCY", [
    {"timestamp": (2015, 3, 21, 16, 45, 24), "glucose": 81, "comment": "mild_exercise"},
    {"timestamp": (2026, 11, 29, 9, 5, 0), "glucose": 601, "flags": ["control_solution"]}]),
    ot.encode_firmware_reply(), ot.encode_serial_reply("GMF600DCY"), ot.encode_units_reply(),
    ot.encode_time_format_reply(), ot.encode_cleared_reply(),
    ot.encode_clock_reply((2026, 11, 29, 9, 5, 0))]
OT_LINES = [ln for s in OT_SEEDS for ln in s.split(b"\r\n") if ln]
ASTM_MSG = a.encode_message([
    a.header_record(["POC", "1.0"], (2026, 11, 29, 9, 5, 0)), a.patient_record(1, "MA-1"),
    a.order_record(1, "S-1", ["", "", "", "Glucose"]),
    a.result_record(1, "Glucose", 5.6, "mmol/L", (3.9, 6.1), ["N"], "F",
                    (2026, 11, 29, 9, 4, 0)),
    "R|2|^^^Glucose|133|mg/dL^P||B/X||201202052034", a.comment_record(1, "a&b"),
    a.terminator_record()])
ASTM_FRAMES = a.encode_transmission([ASTM_MSG, b"L|1|N\r"])
ASTM_RECORDS = [r for r in a.split_records(ASTM_MSG)]


def _mutate(data: bytes, rnd: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(4)
        i = rnd.randrange(len(out) + 1)
        if op == 0 and out:
            out[min(i, len(out) - 1)] = rnd.randrange(256)
        elif op == 1:
            out.insert(i, rnd.choice(b"\x02\x03\x04\x05\x0d\x0a\x17|^\\&,\" 0123456789"))
        elif op == 2 and out:
            del out[min(i, len(out) - 1)]
        else:
            out = out[:i]
    return bytes(out)


def _fuzz(name: str, cases: Callable[[random.Random], bytes],
          target: Callable[[bytes], object], seed: int) -> int:
    """Run target on FUZZ_CASES inputs; anything but DecodeError fails the test."""
    rnd = random.Random(seed)
    deadline = time.monotonic() + FUZZ_DEADLINE_S
    decoded = 0
    for i in range(FUZZ_CASES):
        data = cases(rnd)
        try:
            target(data)
            decoded += 1
        except DecodeError as e:
            assert isinstance(e.field, str) and isinstance(e.offset, int), (name, data)
        if i & 0xFFF == 0 and time.monotonic() > deadline:
            pytest.fail("%s: %d of %d cases in %.0f s" % (name, i, FUZZ_CASES, FUZZ_DEADLINE_S))
    return decoded


def _line_fix(data: bytes, rnd: random.Random) -> bytes:
    """Mutate the body of a OneTouch line and give it a correct checksum."""
    body = _mutate(data[:-5], rnd)
    return body + b" %04X" % ot.checksum(body)


def _frame_fix(data: bytes, rnd: random.Random) -> bytes:
    """Mutate an ASTM frame's FN..ETX and give it a correct checksum."""
    body = _mutate(data[1:-4], rnd)
    return b"\x02" + body + b"%02X\r\n" % a.checksum(body)


def _dump_fix(data: bytes, rnd: random.Random) -> bytes:
    lines = data.split(b"\r\n")
    i = rnd.randrange(len(lines) - 1)
    lines[i] = _line_fix(lines[i], rnd)
    return b"\r\n".join(lines)


def _random_or_mutated(seeds: list[bytes], max_len: int,
                       fix: Callable[[bytes, random.Random], bytes] | None = None
                       ) -> Callable[[random.Random], bytes]:
    """A third random bytes, a third mutated seeds, a third mutated seeds whose
    checksums are made right again (so the inner field parsers are reached)."""
    def cases(rnd: random.Random) -> bytes:
        p = rnd.random()
        if p < 0.33:
            return rnd.randbytes(rnd.randrange(max_len))
        if p < 0.66 or fix is None:
            return _mutate(rnd.choice(seeds), rnd)
        return fix(rnd.choice(seeds), rnd)
    return cases


def _dump_stream(data: bytes) -> object:
    framer, parser = ot.LineFramer(), ot.DumpParser()
    for line in framer.feed(data):
        parser.add_line(line)
    return parser.state


def _astm_text(data: bytes) -> object:
    c = a.ResultCollector()
    return c.add_message(data)


@pytest.mark.parametrize("name", ["decode_line", "decode_command", "dump_stream",
                                  "decode_frame", "records"])
def test_fuzz_only_decode_error(name: str) -> None:
    Fix = Callable[[bytes, random.Random], bytes] | None
    seeds: dict[str, tuple[list[bytes], int, Callable[[bytes], object], Fix]] = {
        "decode_line": (OT_LINES, 80, ot.decode_line, _line_fix),
        "decode_command": ([ot.DUMP_RECORDS, ot.set_clock_command((2026, 1, 2, 3, 4, 5))], 30,
                           ot.decode_command, None),
        "dump_stream": ([OT_SEEDS[0]], 60, _dump_stream, _dump_fix),
        "decode_frame": (ASTM_FRAMES, 60, a.decode_frame, _frame_fix),
        "records": ([r.encode("latin-1") for r in ASTM_RECORDS] + [ASTM_MSG], 60, _astm_text,
                    None),
    }
    inputs, max_len, target, fix = seeds[name]
    decoded = _fuzz(name, _random_or_mutated(inputs, max_len, fix), target,
                    sum(name.encode()))
    assert decoded > 0  # the mutations reach the inner decoders, not only the first check


def test_fuzz_state_machines_never_raise() -> None:
    rnd = random.Random(1381)
    rx = a.Receiver()
    tx = a.Sender([ASTM_MSG])
    tx.start()
    deadline = time.monotonic() + FUZZ_DEADLINE_S
    stream = b"\x05" + b"".join(ASTM_FRAMES)
    messages = 0
    clean = b"\x04\x05" + a.encode_frame(1, b"L|1|N\r")
    for i in range(FUZZ_CASES):
        p = rnd.random()
        if p < 0.45:
            chunk = rnd.randbytes(rnd.randrange(12))
        elif p < 0.9:
            j = rnd.randrange(len(stream))
            chunk = _mutate(stream[j:j + rnd.randrange(1, 40)], rnd)
        else:  # whatever came before, a clean session gets through
            chunk = clean
        events = rx.feed(chunk)
        for kind, payload in events:
            if kind == a.RECORD:
                messages += 1
                assert isinstance(payload, bytes) and b"\r" not in payload
        if chunk is clean:
            assert events[-2:] == [(a.RECORD, b"L|1|N"), (a.MESSAGE_END, None)]
        assert set(rx.data_to_send()) <= {a.ACK, a.NAK}
        if i % 97 == 0:
            rx.timeout()
        tx.feed(rnd.randbytes(rnd.randrange(3)))
        if tx.state == "done":
            tx = a.Sender([ASTM_MSG])
            tx.start()
        elif i % 13 == 0:
            tx.timeout()
        if i & 0xFFF == 0 and time.monotonic() > deadline:
            pytest.fail("state machines: %d of %d cases in time" % (i, FUZZ_CASES))
    assert messages > 0


@PROPS
@given(st.binary(max_size=300), st.integers(0, 7))
def test_receiver_resynchronises_after_garbage(garbage: bytes, fn: int) -> None:
    rx = a.Receiver()
    rx.feed(b"\x05" + garbage)
    # whatever state the garbage left, EOT ENQ and a frame start a clean session
    events = rx.feed(b"\x04\x05" + a.encode_frame(1, b"L|1|N\r"))
    assert events[-3:] == [(a.LINK_UP, None), (a.RECORD, b"L|1|N"), (a.MESSAGE_END, None)]
    assert rx.data_to_send()[-2:] == b"\x06\x06"
