# mpy-portable
# Quirks: corrections for instruments known to break the spec, applied only
# to the models that need them.
from device_drivers import DecodeError
from device_drivers.gatt import decode, encode_blood_pressure
from device_drivers.quirks import fix_bytes, fix_values, flags_of, quirks_for
from tests.portable import raises

_TABLE = {("acme medical", "bp-7"): ("bp_user_id_without_flag", "bp_pulse_big_endian"),
          ("scaleco", "ws-1"): ("weight_0_05kg_steps",)}


def _cuff_bytes(pulse, user, status):
    # what the misbehaving cuff sends: user id present, flag bit 3 clear,
    # pulse rate big-endian
    good = encode_blood_pressure(128, 82, 97, timestamp=(2026, 11, 29, 10, 0, 0),
                                 pulse_rate=pulse, user_id=user, status=status)
    buf = bytearray(good)
    buf[0] &= ~0x08 & 0xFF
    buf[14], buf[15] = buf[15], buf[14]
    return bytes(buf), good


def test_lookup_by_device_information_and_configured_extras():
    assert quirks_for("ACME Medical ", "BP-7", table=_TABLE) == [
        "bp_user_id_without_flag", "bp_pulse_big_endian"]
    assert quirks_for("Other", "X", table=_TABLE) == []
    assert quirks_for(None, None, extra=["weight_0_05kg_steps"], table=_TABLE) == [
        "weight_0_05kg_steps"]
    raises(ValueError, quirks_for, "a", "b", ["no_such_quirk"])


def test_misbehaving_cuff_is_rejected_without_its_quirks():
    bad, _ = _cuff_bytes(72, 2, 0)
    raises(DecodeError, decode, 0x2A35, bad)  # the unflagged user id byte


def test_misbehaving_cuff_decodes_right_with_its_quirks():
    q = quirks_for("acme medical", "bp-7", table=_TABLE)
    for status in (None, 0x0004):
        bad, good = _cuff_bytes(72, 2, status)
        fixed = fix_bytes(0x2A35, bad, q)
        assert fixed == good
        r = decode(0x2A35, fixed)
        assert r["pulse_rate"] == 72 and r["user_id"] == 2 and r["systolic"] == 128
    assert flags_of(0x2A35, q) == ["quirk:bp_user_id_without_flag", "quirk:bp_pulse_big_endian"]


def test_quirks_leave_correct_bytes_of_other_instruments_alone():
    good = encode_blood_pressure(120, 80, 93, pulse_rate=70, user_id=1, status=0)
    q = ["bp_user_id_without_flag"]
    assert fix_bytes(0x2A35, good, q) == good  # flag already set: nothing to fix
    assert fix_bytes(0x2A35, good, []) == good


def test_scale_in_0_05_kg_steps():
    q = quirks_for("scaleco", "ws-1", table=_TABLE)
    assert fix_values(0x2A9D, {"weight": 7.0, "unit": "kg"}, q)["weight"] == 70.0
    assert fix_values(0x2A9D, {"weight": 7.0, "unit": "kg"}, [])["weight"] == 7.0
    assert flags_of(0x2A9D, q) == ["quirk:weight_0_05kg_steps"]
    assert flags_of(0x2A35, q) == []
