# mpy-portable
# IEEE 11073 number encoders and the shared field readers the profiles use.
from device_drivers import DecodeError
from device_drivers.ieee11073 import (
    bit_names,
    bits_of,
    float_bytes,
    float_from_raw,
    float_to_raw,
    read_u24,
    read_u32,
    scaled,
    sfloat_bytes,
    sfloat_from_raw,
    sfloat_to_raw,
    uint_bytes,
)
from tests.portable import raises

INF = float("inf")


def test_float_to_raw():
    assert float_to_raw(37.6, -2) == 0xFE000EB0
    assert float_to_raw(-5.25, -2) == 0xFEFFFDF3
    assert float_to_raw(40, 1) == 0x01000004
    assert float_to_raw(None) == 0x007FFFFF
    assert float_to_raw(INF) == 0x007FFFFE and float_to_raw(-INF) == 0x00800002
    assert float_bytes(37.6, -2) == bytes.fromhex("B00E00FE")
    for value, exp in ((37.6, -2), (-5.25, -2), (8388605, 0), (-8388605, 0), (0.001, -3),
                       (1.5e-07, -8), (12000, 3)):
        assert float_from_raw(float_to_raw(value, exp)) == value


def test_float_to_raw_rejects():
    raises(ValueError, float_to_raw, 8388606, 0)  # would read back as +INF
    raises(ValueError, float_to_raw, -8388606, 0)  # would read back as -INF
    raises(ValueError, float_to_raw, 1, 128)
    raises(ValueError, float_to_raw, 1, -129)


def test_sfloat_to_raw_rejects_specials_and_bad_exponents():
    # -2046 x 10^0 is the raw value of -INF: refused instead of sent
    raises(ValueError, sfloat_to_raw, -2046, 0)
    assert sfloat_from_raw(sfloat_to_raw(-204.6, -1)) == -204.6
    raises(ValueError, sfloat_to_raw, 5, 8)
    raises(ValueError, sfloat_to_raw, 5, -9)
    assert sfloat_bytes(2.5, -1) == b"\x19\xF0"
    assert sfloat_bytes(None) == b"\xFF\x07"


def test_scaled_rounds_to_the_exponent():
    assert scaled(13946 * 5, -3) == 69.73
    assert scaled(229, -1) == 22.9
    assert scaled(1752, -3) == 1.752
    assert scaled(7, 2) == 700


def test_readers():
    data = bytes.fromhex("010203040506")
    assert read_u24(data, 0, "x") == 0x030201
    assert read_u32(data, 2, "x") == 0x06050403
    e = raises(DecodeError, read_u24, data, 4, "x")
    assert (e.field, e.offset) == ("x", 4)
    e = raises(DecodeError, read_u32, data, 3, "y")
    assert (e.field, e.offset) == ("y", 3)


def test_bit_fields():
    names = ("a", None, "c")
    assert bit_names(0b111, names) == ["a", "c"]
    assert bit_names(0b1000, names) == []
    assert bits_of(["c", "a"], names) == 0b101
    assert bits_of(6, names) == 6
    raises(ValueError, bits_of, ["b"], names)
    raises(ValueError, bits_of, [None], names)
    assert uint_bytes(0x030201, 3) == b"\x01\x02\x03"
    raises(ValueError, uint_bytes, 256, 1)
    raises(ValueError, uint_bytes, -1, 2)
