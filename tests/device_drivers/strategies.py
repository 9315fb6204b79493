"""Hypothesis strategies shared by the drivers' property tests (CPython only)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable

import pytest
from hypothesis import settings
from hypothesis import strategies as st

from device_drivers import DecodeError
from device_drivers.ieee11073 import sfloat_from_raw

INF = float("inf")
PROPS = settings(max_examples=300, deadline=None)

# Date Time 6-tuples as instruments send them (0 = unknown part)
timestamps = st.tuples(st.just(0) | st.integers(1582, 9999), st.integers(0, 12),
                       st.integers(0, 31), st.integers(0, 23), st.integers(0, 59),
                       st.integers(0, 59))
specials = st.sampled_from([None, INF, -INF])


def sfloats(exponent: int) -> st.SearchStrategy[object]:
    """Values an SFLOAT with this exponent carries exactly (or a special)."""
    numbers = st.integers(-2045, 2045).map(
        lambda m: sfloat_from_raw(((exponent & 0x0F) << 12) | (m & 0x0FFF)))
    return numbers | specials


def mutate(rng: random.Random, seed: bytes) -> bytes:
    """A valid packet with 1-3 random edits: a byte changed, a flag bit
    flipped, a cut, or bytes appended (for fuzzing past the first checks)."""
    buf = bytearray(seed)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(4)
        if op == 0 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 1 and buf:
            buf[0] ^= 1 << rng.randrange(8)
        elif op == 2:
            del buf[rng.randrange(len(buf) + 1):]
        else:
            buf += rng.randbytes(rng.randint(1, 4))
    return bytes(buf)


def fuzz_decode(decode: Callable[[int, bytes], object], uuid: int, cases: Iterable[bytes],
                deadline_s: float) -> tuple[int, int]:
    """Feed every case to decode(uuid, data): only a dict or a DecodeError
    naming a field and an offset inside the data may come out, within the
    deadline. Returns (decoded, rejected)."""
    deadline = time.monotonic() + deadline_s
    decoded = rejected = 0
    for i, data in enumerate(cases):
        try:
            result = decode(uuid, data)
        except DecodeError as e:
            assert e.field is not None, "DecodeError without a field: %s" % e
            assert isinstance(e.offset, int) and 0 <= e.offset <= len(data), \
                (e.offset, data.hex())
            rejected += 1
        except Exception as e:  # anything else is the bug these tests are for
            pytest.fail("0x%04X raised %r on %s" % (uuid, e, data.hex()))
        else:
            assert isinstance(result, dict)
            decoded += 1
        if i & 0xFFF == 0 and time.monotonic() > deadline:
            pytest.fail("0x%04X: only %d cases in %.0f s" % (uuid, i, deadline_s))
    return decoded, rejected
