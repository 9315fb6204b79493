"""Hypothesis strategies shared by the drivers' property tests (CPython only)."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st

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
