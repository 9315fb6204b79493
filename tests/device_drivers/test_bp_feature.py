# mpy-portable
# Blood Pressure Feature 0x2A49 (uint16, bits 0-5; 6-15 reserved).
from device_drivers import DecodeError
from device_drivers.blood_pressure import FEATURES, encode_feature
from device_drivers.gatt import decode
from tests.portable import raises

ALL = ["body_movement_detection", "cuff_fit_detection", "irregular_pulse_detection",
       "pulse_rate_range_detection", "measurement_position_detection", "multiple_bonds"]


def test_no_features_and_all_features():
    assert decode(0x2A49, b"\x00\x00") == {"features": []}
    assert decode(0x2A49, b"\x3F\x00") == {"features": ALL}
    assert list(FEATURES) == ALL


def test_each_bit_alone():
    for bit in range(6):
        v = 1 << bit
        assert decode(0x2A49, bytes((v, 0))) == {"features": [ALL[bit]]}
        assert encode_feature([ALL[bit]]) == bytes((v, 0))


def test_reserved_bits_are_ignored():
    assert decode(0x2A49, b"\xC0\xFF") == {"features": []}
    # the simulated cuff's default: body movement and irregular pulse
    assert decode(0x2A49, b"\x05\x80") == {"features": ["body_movement_detection",
                                                        "irregular_pulse_detection"]}


def test_length_is_two_bytes_exactly():
    for data, offset in ((b"", 0), (b"\x05", 1), (b"\x05\x00\x00", 2)):
        e = raises(DecodeError, decode, 0x2A49, data)
        assert e.field == "features" and e.offset == offset


def test_encoder():
    assert encode_feature(0x0005) == b"\x05\x00"
    assert encode_feature(ALL) == b"\x3F\x00"
    assert encode_feature(()) == b"\x00\x00"
    raises(ValueError, encode_feature, ["cuff_fit"])
    raises(ValueError, encode_feature, 0x10000)
