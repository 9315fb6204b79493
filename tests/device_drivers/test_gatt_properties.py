"""Properties of the GATT codecs (CPython only: hypothesis and a fuzz loop).

Round trips: for every characteristic with an encoder here, what the encoder
sends decodes to what it was given, and (for the fixed-point ones) the bytes a
decoded value re-encodes to are the bytes it came from. Fuzzing: random bytes
of random length through `gatt.decode` for every characteristic the
dispatcher knows raise nothing but DecodeError, and that error names a field
and an offset inside the data.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers import (
    blood_pressure,
    common_chars,
    gatt,
    pulse_oximeter,
    thermometer,
    weight_scale,
)
from device_drivers.ieee11073 import date_time_bytes, float_from_raw
from tests.device_drivers.strategies import (
    PROPS,
    fuzz_decode,
    mutate,
    sfloats,
    specials,
    timestamps,
)


def floats32(exponent: int) -> st.SearchStrategy[object]:
    """Values a FLOAT with this exponent carries exactly (or a special)."""
    numbers = st.integers(-0x7FFFFD, 0x7FFFFD).map(
        lambda m: float_from_raw(((exponent & 0xFF) << 24) | (m & 0xFFFFFF)))
    return numbers | specials


def flag_sets(names: tuple[str | None, ...]) -> st.SearchStrategy[list[str]]:
    """A subset of a bit table's names, in bit order (as decoders return them)."""
    defined = [n for n in names if n is not None]
    return st.lists(st.sampled_from(defined), unique=True).map(
        lambda picked: sorted(picked, key=names.index))


def reserved_noise(names: tuple[str | None, ...], width: int) -> st.SearchStrategy[int]:
    """Random reserved bits of a bit field (decoders must ignore them)."""
    mask = ((1 << width) - 1) & ~sum(1 << i for i, n in enumerate(names) if n is not None)
    return st.integers(0, (1 << width) - 1).map(lambda v: v & mask)


def raw_of(picked: list[str], names: tuple[str | None, ...]) -> int:
    return sum(1 << names.index(n) for n in picked)


# --- round trips ------------------------------------------------------------------

@PROPS
@given(st.data())
def test_temperature_round_trip(data: st.DataObject) -> None:
    exponent = data.draw(st.integers(-128, 127))
    value = data.draw(floats32(exponent))
    unit = data.draw(st.sampled_from(["C", "F"]))
    stamp = data.draw(st.none() | timestamps)
    site = data.draw(st.none() | st.integers(0, 255))
    raw = thermometer.encode_measurement(value, unit, stamp, site, exponent=exponent)
    assert gatt.decode(0x2A1C, raw) == {"temperature": value, "unit": unit,
                                        "timestamp": stamp, "temperature_type": site}


def _status_args(data: st.DataObject) -> tuple[dict[str, object], dict[str, object]]:
    """(encoder keyword arguments, expected decoded values) of the three
    optional fields both PLX measurements end with."""
    enc: dict[str, object] = {}
    want: dict[str, object] = {}
    for key, names, width in (("measurement_status", pulse_oximeter.MEASUREMENT_STATUS, 16),
                              ("device_and_sensor_status",
                               pulse_oximeter.DEVICE_AND_SENSOR_STATUS, 24)):
        picked = data.draw(st.none() | flag_sets(names))
        want[key] = picked
        if picked is None or data.draw(st.booleans()):
            enc[key] = picked
        else:  # the raw int form, with reserved bits set
            enc[key] = raw_of(picked, names) | data.draw(reserved_noise(names, width))
    pai_exponent = data.draw(st.integers(-8, 7))
    pai = data.draw(st.none() | sfloats(pai_exponent))
    enc["pulse_amplitude_index"] = want["pulse_amplitude_index"] = pai
    enc["pai_exponent"] = pai_exponent
    return enc, want


@PROPS
@given(st.data())
def test_plx_spot_check_round_trip(data: st.DataObject) -> None:
    exponent = data.draw(st.integers(-8, 7))
    spo2, pr = data.draw(sfloats(exponent)), data.draw(sfloats(exponent))
    stamp = data.draw(st.none() | timestamps)
    clock = data.draw(st.booleans())
    enc, want = _status_args(data)
    raw = pulse_oximeter.encode_spot_check(spo2, pr, timestamp=stamp, device_clock_not_set=clock,
                                           exponent=exponent, **enc)
    want.update(spo2=spo2, pulse_rate=pr, timestamp=stamp, device_clock_not_set=clock)
    assert gatt.decode(0x2A5E, raw) == want


@PROPS
@given(st.data())
def test_plx_continuous_round_trip(data: st.DataObject) -> None:
    exponent = data.draw(st.integers(-8, 7))
    values = sfloats(exponent)
    spo2, pr = data.draw(values), data.draw(values)
    fast = data.draw(st.none() | st.tuples(values, values))
    slow = data.draw(st.none() | st.tuples(values, values))
    enc, want = _status_args(data)
    raw = pulse_oximeter.encode_continuous(spo2, pr, fast, slow, exponent=exponent, **enc)
    want.update(spo2=spo2, pulse_rate=pr, spo2pr_fast=fast, spo2pr_slow=slow)
    assert gatt.decode(0x2A5F, raw) == want


@PROPS
@given(flag_sets(pulse_oximeter.FEATURES),
       st.none() | flag_sets(pulse_oximeter.MEASUREMENT_STATUS),
       st.none() | flag_sets(pulse_oximeter.DEVICE_AND_SENSOR_STATUS))
def test_plx_features_round_trip(features: list[str], ms: list[str] | None,
                                 dss: list[str] | None) -> None:
    raw = pulse_oximeter.encode_features(features, ms, dss)
    r = gatt.decode(0x2A60, raw)
    names = set(features)
    if ms is not None:
        names.add("measurement_status")
    if dss is not None:
        names.add("device_and_sensor_status")
    assert r["features"] == sorted(names, key=pulse_oximeter.FEATURES.index)
    has_ms, has_dss = "measurement_status" in names, "device_and_sensor_status" in names
    assert r["measurement_status_support"] == ((ms or []) if has_ms else None)
    assert r["device_and_sensor_status_support"] == ((dss or []) if has_dss else None)
    assert len(raw) == 2 + 2 * has_ms + 3 * has_dss


@PROPS
@given(st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.none() | timestamps,
       st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_weight_bytes_round_trip(flags: int, weight: int, stamp: tuple[int, ...] | None,
                                 user: int, bmi: int, height: int) -> None:
    """Any well-formed 0x2A9D decodes to values that re-encode to the same
    bytes (reserved flag bits aside): no rounding error in either direction."""
    if weight == 0xFFFF:
        flags &= ~0x08  # no BMI and height with an unsuccessful measurement
    data = bytes((flags, weight & 0xFF, weight >> 8))
    if flags & 0x02:
        data += date_time_bytes(stamp or (0, 0, 0, 0, 0, 0))
    if flags & 0x04:
        data += bytes((user,))
    if flags & 0x08:
        data += bytes((bmi & 0xFF, bmi >> 8, height & 0xFF, height >> 8))
    r = gatt.decode(0x2A9D, data)
    again = weight_scale.encode_measurement(r["weight"], r["unit"], r["timestamp"],
                                            r["user_id"], r["bmi"], r["height"])
    assert again == bytes((flags & 0x0F,)) + data[1:]
    # no value has more decimals than its resolution (69.73, not 69.72999999)
    imperial = flags & 1
    for key, decimals in (("weight", 2 if imperial else 3), ("bmi", 1),
                          ("height", 1 if imperial else 3)):
        text = repr(r[key])
        if r[key] is not None and "." in text:
            assert len(text.split(".")[1]) <= decimals, (key, text)


@PROPS
@given(st.floats(0, 327.67), st.sampled_from(["kg", "lb"]), st.none() | timestamps,
       st.none() | st.integers(0, 255), st.none() | st.tuples(st.floats(0, 6553.5),
                                                                st.floats(0, 6.5535)))
def test_weight_values_round_trip(weight: float, unit: str, stamp: tuple[int, ...] | None,
                                  user: int | None,
                                  bmi_height: tuple[float, float] | None) -> None:
    """Any weight a scale could send comes back to its resolution."""
    bmi, height = bmi_height if bmi_height else (None, None)
    r = gatt.decode(0x2A9D, weight_scale.encode_measurement(weight, unit, stamp, user, bmi,
                                                            height))
    step = 0.01 if unit == "lb" else 0.005
    assert abs(r["weight"] - weight) <= step / 2 + 1e-9
    assert (r["unit"], r["timestamp"], r["user_id"]) == (unit, stamp, user)
    if bmi_height:
        assert abs(r["bmi"] - bmi) <= 0.05 + 1e-9
        assert abs(r["height"] - height) <= (0.05 if unit == "lb" else 0.0005) + 1e-9
    else:
        assert r["bmi"] is None and r["height"] is None


@PROPS
@given(flag_sets(weight_scale.FEATURES), st.integers(0, 15), st.integers(0, 7))
def test_weight_feature_round_trip(features: list[str], w: int, h: int) -> None:
    r = gatt.decode(0x2A9E, weight_scale.encode_feature(features, w, h))
    assert (r["features"], r["weight_resolution"], r["height_resolution"]) == (features, w, h)
    assert r["weight_resolution_kg"] == (weight_scale.WEIGHT_RESOLUTION_KG[w] if w < 8 else None)
    assert r["height_resolution_in"] == (weight_scale.HEIGHT_RESOLUTION_IN[h] if h < 4 else None)


@PROPS
@given(flag_sets(blood_pressure.FEATURES), reserved_noise(blood_pressure.FEATURES, 16))
def test_bp_feature_round_trip(features: list[str], noise: int) -> None:
    assert gatt.decode(0x2A49, blood_pressure.encode_feature(features)) == {"features": features}
    raw = raw_of(features, blood_pressure.FEATURES) | noise
    assert gatt.decode(0x2A49, blood_pressure.encode_feature(raw)) == {"features": features}


@PROPS
@given(timestamps, st.integers(0, 7), st.integers(0, 255),
       flag_sets(common_chars.ADJUST_REASONS), st.integers(0, 15))
def test_current_time_round_trip(stamp: tuple[int, ...], dow: int, frac: int,
                                 reasons: list[str], noise: int) -> None:
    raw = common_chars.encode_current_time(stamp, dow, frac, reasons)
    want = {"timestamp": stamp, "day_of_week": dow, "fractions256": frac,
            "adjust_reason": reasons}
    assert gatt.decode(0x2A2B, raw) == want
    noisy = raw[:9] + bytes((raw[9] | noise << 4,))
    assert gatt.decode(0x2A2B, noisy) == want
    assert common_chars.encode_current_time(stamp, dow, frac, raw[9]) == raw


@PROPS
@given(timestamps, st.integers(0, 100))
def test_date_time_and_battery_round_trip(stamp: tuple[int, ...], level: int) -> None:
    assert gatt.decode(0x2A08, common_chars.encode_date_time(stamp)) == {"timestamp": stamp}
    assert gatt.decode(0x2A19, common_chars.encode_battery(level)) == {"level": level}


# --- fuzzing ------------------------------------------------------------------------

FUZZ_CASES = 100_000
FUZZ_DEADLINE_S = 10.0  # per characteristic; about 0.4 s is usual here

# Valid values per characteristic, for a second round of mutated-but-plausible
# inputs (random bytes rarely get past a flags byte and a length check).
SEEDS = {
    0x2A1C: [bytes.fromhex("06B00E00FEDC070C050B321B04"), bytes.fromhex("01DA0300FF")],
    0x2A5E: [bytes.fromhex("1F" "6100" "4800" "EA070B1D090500" "8000" "200000" "19F0")],
    0x2A5F: [bytes.fromhex("1F" "6200" "4800" "6100" "4A00" "6300" "4600" "2000" "008000"
                           "0300")],
    0x2A60: [bytes.fromhex("83008000FFFF00")],
    0x2A9D: [bytes.fromhex("0E7A36EA070B1D09050002E500D806"), bytes.fromhex("07FFFF")],
    0x2A9E: [bytes.fromhex("BF010000")],
    0x2A2B: [bytes.fromhex("EA070B1D090500078001")],
    0x2A08: [bytes.fromhex("EA070B1D090501")],
    0x2A19: [b"\x50"],
    0x2A49: [b"\x05\x00"],
    0x2A35: [bytes.fromhex("1E8A00580078000000041114293B3C00012700")],
    0x2A36: [bytes.fromhex("1E5F00FF07FF07EA070B1D0905003C00012700")],
}


@pytest.mark.parametrize("uuid", sorted(gatt._MODULE), ids=lambda u: "0x%04X" % u)
def test_fuzz_only_decode_error(uuid: int) -> None:
    rng = random.Random(0x5EED ^ uuid)
    seeds = SEEDS.get(uuid, [])
    mutated = len(seeds) * 10_000
    cases = (rng.randbytes(rng.randint(0, 40)) if i < FUZZ_CASES
             else mutate(rng, seeds[i % len(seeds)]) for i in range(FUZZ_CASES + mutated))
    decoded, _ = fuzz_decode(gatt.decode, uuid, cases, FUZZ_DEADLINE_S)
    # the seeds are valid, so some mutations must decode
    if seeds:
        assert decoded > 0
