"""Properties of the glucose codecs and of the download machine (CPython only).

Round trips: what each glucose encoder sends decodes to what it was given.
Fuzzing: random and mutated bytes through `gatt.decode` for 0x2A18, 0x2A34,
0x2A51 and 0x2A52 raise nothing but DecodeError (naming a field and an offset
inside the data), 100,000 cases per decoder at least; random event sequences
fed to GlucoseDownload raise nothing but its own errors, and never hand out a
record twice, out of order or at or below the committed cursor. End to end:
whatever the meter's order, repeats and link drops, committing every record
handed out and resuming from the cursor downloads every record exactly once,
in order.
"""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers import gatt
from device_drivers.glucose import (
    FEATURE_NAMES,
    STATUS_NAMES,
    encode_context,
    encode_feature,
    encode_measurement,
    encode_racp_count,
    encode_racp_response,
    racp_report_from,
    response_name,
)
from device_drivers.glucose_download import (
    NEED_DATA,
    Done,
    DownloadError,
    GlucoseDownload,
    Record,
)
from tests.device_drivers.strategies import PROPS, fuzz_decode, mutate, sfloats, timestamps


def any_sfloat() -> st.SearchStrategy[object]:
    return st.integers(-8, 7).flatmap(sfloats)


def flag_sets(names: tuple[str, ...]) -> st.SearchStrategy[list[str]]:
    """A subset of a bit table's names, in bit order (as decoders return them)."""
    return st.lists(st.sampled_from(names), unique=True).map(
        lambda picked: sorted(picked, key=names.index))


# --- round trips ------------------------------------------------------------------

@PROPS
@given(st.data())
def test_measurement_round_trip(data: st.DataObject) -> None:
    exponent = data.draw(st.integers(-8, 7))
    want: dict[str, object] = {
        "sequence": data.draw(st.integers(0, 0xFFFF)),
        "base_time": data.draw(timestamps),
        "time_offset": data.draw(st.none() | st.integers(-32768, 32767)),
        "concentration": None, "concentration_unit": None, "type": None,
        "sample_location": None,
        "status": data.draw(flag_sets(STATUS_NAMES)),
        "context_follows": data.draw(st.booleans()),
    }
    if data.draw(st.booleans()):
        want.update(concentration=data.draw(sfloats(exponent)),
                    concentration_unit=data.draw(st.sampled_from(["kg/L", "mol/L"])),
                    type=data.draw(st.integers(0, 15)),
                    sample_location=data.draw(st.integers(0, 15)))
    args = dict(want)
    if data.draw(st.booleans()):  # the raw form, with reserved bits 12-15 set
        names: list[str] = want["status"]  # type: ignore[assignment]
        args["status"] = sum(1 << STATUS_NAMES.index(n) for n in names) | \
            data.draw(st.integers(0, 15)) << 12
    raw = encode_measurement(exponent=exponent, **args)
    assert gatt.decode(0x2A18, raw) == want


@PROPS
@given(st.data())
def test_context_round_trip(data: st.DataObject) -> None:
    def maybe(strategy: st.SearchStrategy[object]) -> object:
        return data.draw(st.none() | strategy)

    want: dict[str, object] = {
        "sequence": data.draw(st.integers(0, 0xFFFF)),
        "extended_flags": maybe(st.integers(0, 255)),
        "carbohydrate_id": None, "carbohydrate": None,
        "meal": maybe(st.integers(0, 255)), "tester": None, "health": None,
        "exercise_duration": None, "exercise_intensity": None,
        "medication_id": None, "medication": None, "medication_unit": None,
        "hba1c": maybe(any_sfloat().filter(lambda v: v is not None)),
    }
    if data.draw(st.booleans()):
        want.update(carbohydrate_id=data.draw(st.integers(0, 255)),
                    carbohydrate=data.draw(any_sfloat()))
    if data.draw(st.booleans()):
        want.update(tester=data.draw(st.integers(0, 15)), health=data.draw(st.integers(0, 15)))
    if data.draw(st.booleans()):
        want.update(exercise_duration=data.draw(st.integers(0, 0xFFFF)),
                    exercise_intensity=data.draw(st.integers(0, 255)))
    if data.draw(st.booleans()):
        want.update(medication_id=data.draw(st.integers(0, 255)),
                    medication=data.draw(any_sfloat()),
                    medication_unit=data.draw(st.sampled_from(["kg", "L"])))
    raw = encode_context(**want)
    assert gatt.decode(0x2A34, raw) == want


@PROPS
@given(st.integers(0, 0xFFFF))
def test_feature_round_trip(bits: int) -> None:
    names = gatt.decode(0x2A51, encode_feature(bits))["features"]
    assert names == [n for i, n in enumerate(FEATURE_NAMES) if bits >> i & 1]
    assert encode_feature(names) == encode_feature(bits & 0x07FF)


@PROPS
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF))
def test_racp_round_trip(request_opcode: int, code: int, count: int) -> None:
    assert gatt.decode(0x2A52, encode_racp_response(request_opcode, code)) == {
        "opcode": 6, "request_opcode": request_opcode, "response_code": code,
        "response": response_name(code)}
    assert gatt.decode(0x2A52, encode_racp_count(count)) == {"opcode": 5, "count": count}
    assert racp_report_from(count) == bytes((1, 3, 1, count & 0xFF, count >> 8))


# --- fuzzing the decoders -------------------------------------------------------------

FUZZ_CASES = 100_000
FUZZ_DEADLINE_S = 10.0  # per characteristic; about 0.3 s is usual here
GOOD_TIME = bytes.fromhex("EA070B1D090500")
SEEDS = {
    0x2A18: [bytes.fromhex("1B0100E307021B0B0A1EFBFF1E00120501"),
             bytes.fromhex("0E0700EA07030108000036C0240200")],
    0x2A34: [bytes.fromhex("FF050000" "0105E0" "02" "51" "100E32" "0105B0" "41F0"),
             bytes.fromhex("0201000A")],
    0x2A51: [bytes.fromhex("FF07")],
    0x2A52: [bytes.fromhex("06000101"), bytes.fromhex("05002A00")],
}


def _random_case(rng: random.Random, uuid: int) -> bytes:
    data = bytearray(rng.randbytes(rng.randint(0, 24)))
    if uuid == 0x2A18 and len(data) >= 10 and rng.random() < 0.5:
        data[3:10] = GOOD_TIME  # get past the base time to the optional fields
    if uuid == 0x2A52 and len(data) >= 2 and rng.random() < 0.5:
        data[0] = rng.choice((5, 6))
        data[1] = 0
    return bytes(data)


@pytest.mark.parametrize("uuid", [0x2A18, 0x2A34, 0x2A51, 0x2A52], ids=hex)
def test_fuzz_decoders_raise_only_decode_error(uuid: int) -> None:
    rng = random.Random(0x61_0C05E ^ uuid)
    seeds = SEEDS[uuid]
    cases = (_random_case(rng, uuid) if i & 1 else mutate(rng, seeds[i % len(seeds)])
             for i in range(2 * FUZZ_CASES))  # half random, half mutated valid values
    decoded, failed = fuzz_decode(gatt.decode, uuid, cases, FUZZ_DEADLINE_S)
    assert decoded > 1000 and failed > 1000  # both paths well exercised


# --- the download machine ---------------------------------------------------------------

T = (2026, 5, 1, 8, 0, 0)


def _meas(seq: int, variant: int = 0) -> bytes:
    return encode_measurement(seq, T, concentration=(90 + variant) / 100000, type=1,
                              sample_location=1, context_follows=seq % 3 == 0)


def _ctx(seq: int, variant: int = 0) -> bytes:
    return encode_context(seq, meal=1 + variant % 5)


def _check_events(d: GlucoseDownload, state: dict[str, int | None]) -> None:
    """Drain d; every Record must be above the cursor, then becomes it."""
    while True:
        ev = d.next_event()
        if ev is NEED_DATA:
            return
        if isinstance(ev, Record):
            cursor = state["cursor"]
            assert cursor is None or ev.sequence > cursor, (ev.sequence, cursor)
            assert ev.measurement["sequence"] == ev.sequence
            assert ev.context is None or ev.context["sequence"] == ev.sequence
            state["cursor"] = ev.sequence
            state["records"] = (state["records"] or 0) + 1


def _random_input(rng: random.Random, meter: list[int]) -> tuple[int, bytes]:
    """One notification of a meter that mostly counts in its direction
    (meter = [next sequence number, step]), with repeats, steps back,
    contradictions, stray responses and garbage."""
    r = rng.random()
    if r < 0.62:
        seq = meter[0] % 0x10000
        meter[0] += meter[1] * rng.choice((1, 1, 1, 1, 2)) if rng.random() < 0.9 else \
            rng.choice((0, -meter[1], 5))
        return 0x2A18, _meas(seq, 1 if rng.random() < 0.01 else 0)
    if r < 0.9:
        seq = (meter[0] - meter[1] * rng.choice((1, 1, 1, 2))) % 0x10000
        return 0x2A34, _ctx(seq, 1 if rng.random() < 0.01 else 0)
    if r < 0.95:
        return 0x2A52, encode_racp_response(rng.choice((1, 1, 1, 3, 2, 4, 9)),
                                            rng.choice((1, 1, 6, 2, 5, 7, 8, 0, 77)))
    if r < 0.97:
        return 0x2A52, encode_racp_count(rng.randrange(5))
    uuid = rng.choice((0x2A18, 0x2A34, 0x2A52))
    seq = meter[0] % 0x10000
    return uuid, mutate(rng, _meas(seq) if uuid == 0x2A18 else _ctx(seq)
                         if uuid == 0x2A34 else encode_racp_response(1, 1))


def test_fuzz_download_machine_raises_only_its_own_errors() -> None:
    rng = random.Random(0x2A52)
    deadline = time.monotonic() + 10.0
    outcomes: dict[str, int] = {}
    steps = records = 0
    for _ in range(4000):
        last = rng.choice((None, None, 0, 3, 7, 11))
        state: dict[str, int | None] = {"cursor": last, "records": 0}
        d = GlucoseDownload(last, rng.choice((2, 3, 5, 32)))
        meter = [rng.randrange(0, 20), rng.choice((1, 1, -1))]
        if rng.random() < 0.9:
            d.start()
        end = "no error"
        for _ in range(rng.randint(0, 60)):
            steps += 1
            action = rng.random()
            try:
                if action < 0.02:
                    d.start()
                elif action < 0.04:
                    d.abort()
                elif action < 0.08:
                    d.timeout()
                else:
                    d.receive(*_random_input(rng, meter))
                _check_events(d, state)
            except DownloadError as e:  # LocalProtocolError or RemoteProtocolError
                end = type(e).__name__
            assert d.held <= d.window
        outcomes[end] = outcomes.get(end, 0) + 1
        records += state["records"] or 0
        assert time.monotonic() < deadline
    assert steps > 100_000 and records > 5_000
    # every kind of ending happened
    assert set(outcomes) == {"no error", "LocalProtocolError", "RemoteProtocolError"}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 300), unique=True, max_size=40),
       st.booleans(), st.lists(st.integers(0, 120), max_size=4), st.integers(2, 8),
       st.randoms(use_true_random=False))
def test_every_record_once_and_in_order_across_drops(
        stored: list[int], newest_first: bool, drops: list[int], window: int,
        rnd: random.Random) -> None:
    """Commit everything handed out, resume from the cursor after each drop or
    Done(more): the committed records are the stored ones, once each, in order."""
    stored.sort()
    committed: list[int] = []
    cursor: int | None = None
    drops = list(drops)
    for _ in range(len(stored) + len(drops) + 2):
        d = GlucoseDownload(cursor, window)
        request = d.start()
        low = 0 if request == b"\x01\x01" else request[3] | request[4] << 8
        chosen = [s for s in stored if s >= low]
        if newest_first:
            chosen.reverse()
        items: list[tuple[int, bytes]] = []
        for s in chosen:
            items.append((0x2A18, _meas(s)))
            if rnd.random() < 0.2:  # a repeated notification
                items.append((0x2A18, _meas(s)))
            if s % 3 == 0 and rnd.random() < 0.9:  # now and then a context is lost
                items.append((0x2A34, _ctx(s)))
        items.append((0x2A52, encode_racp_response(1, 1 if chosen else 6)))
        if drops:
            items = items[:drops.pop(0)]
        done = None
        for uuid, data in items:
            d.receive(uuid, data)
            while (ev := d.next_event()) is not NEED_DATA:
                if isinstance(ev, Record):
                    committed.append(ev.sequence)
                    cursor = ev.sequence
                elif isinstance(ev, Done):
                    done = ev
        if done is not None and not done.more and not drops:
            break
    assert committed == stored
