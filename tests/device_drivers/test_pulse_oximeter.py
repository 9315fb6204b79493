# mpy-portable
# Pulse Oximeter: 0x2A5E PLX Spot-check, 0x2A5F PLX Continuous, 0x2A60 PLX
# Features. Vectors are written out byte by byte from the specification.
from device_drivers import DecodeError
from device_drivers.gatt import decode
from device_drivers.pulse_oximeter import (
    DEVICE_AND_SENSOR_STATUS,
    MEASUREMENT_STATUS,
    encode_continuous,
    encode_features,
    encode_spot_check,
)
from tests.portable import raises

INF = float("inf")
STAMP = bytes.fromhex("EA070B1D090500")  # 2026-11-29 09:05:00
TS = (2026, 11, 29, 9, 5, 0)
# flags 0x1F: SpO2 97, PR 72, stamp, status 0x0080 (validated data), device
# status 0x000020 (low perfusion), PAI 25 x 10^-1, device clock not set
SPOT_FULL = bytes.fromhex("1F" "6100" "4800" "EA070B1D090500" "8000" "200000" "19F0")
# flags 0x1F: SpO2 98, PR 72, fast (97, 74), slow (99, 70), status 0x0020,
# device status 0x008000, PAI 3 x 10^0
CONT_FULL = bytes.fromhex("1F" "6200" "4800" "6100" "4A00" "6300" "4600" "2000" "008000"
                          "0300")


def _fails(uuid, data, field, offset):
    e = raises(DecodeError, decode, uuid, data)
    assert (e.field, e.offset) == (field, offset), (e.field, e.offset)
    return e


def test_spot_check_minimal():
    r = decode(0x2A5E, bytes.fromhex("0062004800"))
    assert r == {"spo2": 98, "pulse_rate": 72, "timestamp": None,
                 "device_clock_not_set": False, "measurement_status": None,
                 "device_and_sensor_status": None, "pulse_amplitude_index": None}


def test_spot_check_every_field():
    r = decode(0x2A5E, SPOT_FULL)
    assert r == {"spo2": 97, "pulse_rate": 72, "timestamp": TS,
                 "device_clock_not_set": True, "measurement_status": ["validated_data"],
                 "device_and_sensor_status": ["low_perfusion_detected"],
                 "pulse_amplitude_index": 2.5}
    assert encode_spot_check(97, 72, timestamp=TS, measurement_status=["validated_data"],
                             device_and_sensor_status=0x20, pulse_amplitude_index=2.5,
                             device_clock_not_set=True) == SPOT_FULL


def test_decimal_spo2_and_specials():
    # SpO2 975 x 10^-1 (0xF3CF), PR NaN
    r = decode(0x2A5E, bytes.fromhex("00CFF3FF07"))
    assert r["spo2"] == 97.5 and r["pulse_rate"] is None
    for raw, want in (("FF07", None), ("0008", None), ("0108", None), ("FE07", INF),
                      ("0208", -INF)):
        r = decode(0x2A5E, bytes.fromhex("08" + raw + raw + raw))
        for key in ("spo2", "pulse_rate", "pulse_amplitude_index"):
            assert r[key] == want if want is not None else r[key] is None
        r = decode(0x2A5F, bytes.fromhex("13" + raw * 7))
        assert r["spo2pr_fast"] == (want, want) and r["pulse_amplitude_index"] == want


def test_status_bits_in_order_and_reserved_bits_ignored():
    # all defined measurement status bits (5-15); 0-4 reserved
    r = decode(0x2A5E, bytes.fromhex("02620048001F00"))
    assert r["measurement_status"] == []
    r = decode(0x2A5E, bytes.fromhex("0262004800E0FF"))
    assert r["measurement_status"] == [n for n in MEASUREMENT_STATUS if n]
    assert len(r["measurement_status"]) == 11
    assert r["measurement_status"][0] == "measurement_ongoing"
    assert r["measurement_status"][-1] == "invalid_measurement_detected"
    # device and sensor status: 24 bit, 16-23 reserved
    r = decode(0x2A5E, bytes.fromhex("0462004800FFFFFF"))
    assert r["device_and_sensor_status"] == list(DEVICE_AND_SENSOR_STATUS)
    assert r["device_and_sensor_status"][7] == "non_pulsatile_signal_detected"
    r = decode(0x2A5E, bytes.fromhex("04620048000000FF"))
    assert r["device_and_sensor_status"] == []
    for bit in range(16):
        v = 1 << bit
        data = bytes.fromhex("0462004800") + bytes((v & 0xFF, v >> 8, 0))
        assert decode(0x2A5E, data)["device_and_sensor_status"] == \
            [DEVICE_AND_SENSOR_STATUS[bit]]


def test_spot_check_every_flag_combination():
    for flags in range(32):
        for reserved in (0x00, 0xE0):  # bits 5-7 reserved: ignored
            data = bytes((flags | reserved,)) + bytes.fromhex("62004800")
            if flags & 1:
                data += STAMP
            if flags & 2:
                data += bytes.fromhex("0001")  # fully qualified data
            if flags & 4:
                data += bytes.fromhex("000200")  # signal analysis ongoing
            if flags & 8:
                data += bytes.fromhex("0A00")  # PAI 10
            r = decode(0x2A5E, data)
            assert (r["spo2"], r["pulse_rate"]) == (98, 72)
            assert r["timestamp"] == (TS if flags & 1 else None)
            assert r["measurement_status"] == (["fully_qualified_data"] if flags & 2 else None)
            assert r["device_and_sensor_status"] == \
                (["signal_analysis_ongoing"] if flags & 4 else None)
            assert r["pulse_amplitude_index"] == (10 if flags & 8 else None)
            assert r["device_clock_not_set"] is bool(flags & 16)
            if not reserved:
                assert encode_spot_check(
                    98, 72, r["timestamp"], r["measurement_status"],
                    r["device_and_sensor_status"], r["pulse_amplitude_index"],
                    r["device_clock_not_set"], pai_exponent=0) == data


def test_continuous_every_field():
    r = decode(0x2A5F, CONT_FULL)
    assert r == {"spo2": 98, "pulse_rate": 72, "spo2pr_fast": (97, 74),
                 "spo2pr_slow": (99, 70), "measurement_status": ["measurement_ongoing"],
                 "device_and_sensor_status": ["sensor_disconnected"],
                 "pulse_amplitude_index": 3}
    assert "timestamp" not in r and "device_clock_not_set" not in r
    assert encode_continuous(98, 72, (97, 74), (99, 70), ["measurement_ongoing"],
                             ["sensor_disconnected"], 3, pai_exponent=0) == CONT_FULL


def test_continuous_every_flag_combination():
    for flags in range(32):
        for reserved in (0x00, 0xE0):
            data = bytes((flags | reserved,)) + bytes.fromhex("62004800")
            if flags & 1:
                data += bytes.fromhex("61004A00")
            if flags & 2:
                data += bytes.fromhex("63004600")
            if flags & 4:
                data += bytes.fromhex("0040")  # questionable measurement
            if flags & 8:
                data += bytes.fromhex("010000")  # extended display update ongoing
            if flags & 16:
                data += bytes.fromhex("19F0")  # PAI 2.5
            r = decode(0x2A5F, data)
            assert (r["spo2"], r["pulse_rate"]) == (98, 72)
            assert r["spo2pr_fast"] == ((97, 74) if flags & 1 else None)
            assert r["spo2pr_slow"] == ((99, 70) if flags & 2 else None)
            assert r["measurement_status"] == \
                (["questionable_measurement_detected"] if flags & 4 else None)
            assert r["device_and_sensor_status"] == \
                (["extended_display_update_ongoing"] if flags & 8 else None)
            assert r["pulse_amplitude_index"] == (2.5 if flags & 16 else None)
            if not reserved:
                assert encode_continuous(98, 72, r["spo2pr_fast"], r["spo2pr_slow"],
                                         r["measurement_status"],
                                         r["device_and_sensor_status"],
                                         r["pulse_amplitude_index"]) == data


def test_truncation_at_every_length():
    fields = [(0, "flags"), (1, "spo2"), (1, "spo2"), (3, "pulse_rate"), (3, "pulse_rate")] + \
        [(5, "timestamp")] * 7 + [(12, "measurement_status")] * 2 + \
        [(14, "device_and_sensor_status")] * 3 + [(17, "pulse_amplitude_index")] * 2
    assert len(fields) == len(SPOT_FULL)
    for cut in range(len(SPOT_FULL)):
        _fails(0x2A5E, SPOT_FULL[:cut], fields[cut][1], fields[cut][0])
    fields = [(0, "flags"), (1, "spo2"), (1, "spo2"), (3, "pulse_rate"), (3, "pulse_rate"),
              (5, "spo2_fast"), (5, "spo2_fast"), (7, "pulse_rate_fast"),
              (7, "pulse_rate_fast"), (9, "spo2_slow"), (9, "spo2_slow"),
              (11, "pulse_rate_slow"), (11, "pulse_rate_slow")] + \
        [(13, "measurement_status")] * 2 + [(15, "device_and_sensor_status")] * 3 + \
        [(18, "pulse_amplitude_index")] * 2
    assert len(fields) == len(CONT_FULL)
    for cut in range(len(CONT_FULL)):
        _fails(0x2A5F, CONT_FULL[:cut], fields[cut][1], fields[cut][0])


def test_trailing_bytes():
    _fails(0x2A5E, SPOT_FULL + b"\x00", "end", len(SPOT_FULL))
    _fails(0x2A5F, CONT_FULL + b"\x00", "end", len(CONT_FULL))
    _fails(0x2A5E, bytes.fromhex("00620048000A00"), "end", 5)  # PAI without its flag
    _fails(0x2A5F, bytes.fromhex("00620048006100"), "end", 5)


def test_bad_timestamp():
    _fails(0x2A5E, bytes.fromhex("0162004800EA070B1D180000"), "timestamp", 5)  # 24 h


def test_features():
    assert decode(0x2A60, bytes.fromhex("0000")) == {
        "features": [], "measurement_status_support": None,
        "device_and_sensor_status_support": None}
    # bits 2-7 (no support fields follow); 8-15 reserved
    r = decode(0x2A60, bytes.fromhex("FCFF"))
    assert r["features"] == ["measurement_storage", "spot_check_timestamp", "spo2pr_fast",
                             "spo2pr_slow", "pulse_amplitude_index", "multiple_bonds"]
    assert r["measurement_status_support"] is None
    # bits 0, 1, 7 with both support fields
    data = bytes.fromhex("8300" "8000" "FFFF00")
    r = decode(0x2A60, data)
    assert r["features"] == ["measurement_status", "device_and_sensor_status",
                             "multiple_bonds"]
    assert r["measurement_status_support"] == ["validated_data"]
    assert r["device_and_sensor_status_support"] == list(DEVICE_AND_SENSOR_STATUS)
    assert encode_features(["multiple_bonds"], ["validated_data"], 0xFFFF) == data
    # only the device and sensor status support
    r = decode(0x2A60, bytes.fromhex("0200" "010000"))
    assert r["measurement_status_support"] is None
    assert r["device_and_sensor_status_support"] == ["extended_display_update_ongoing"]
    # a feature bit without a support argument sends an all-zero field
    assert encode_features(0x01) == bytes.fromhex("01000000")


def test_features_malformed():
    for cut in range(2):
        _fails(0x2A60, bytes.fromhex("0000")[:cut], "features", 0)
    _fails(0x2A60, bytes.fromhex("0100"), "measurement_status_support", 2)
    _fails(0x2A60, bytes.fromhex("010080"), "measurement_status_support", 2)
    _fails(0x2A60, bytes.fromhex("03008000FFFF"), "device_and_sensor_status_support", 4)
    _fails(0x2A60, bytes.fromhex("000000"), "end", 2)
    _fails(0x2A60, bytes.fromhex("0300800001000000"), "end", 7)


def test_encoder_rejects_what_it_cannot_send():
    raises(ValueError, encode_spot_check, 98, 72, measurement_status=["no_such_flag"])
    raises(ValueError, encode_spot_check, 98, 72, measurement_status=0x10000)
    raises(ValueError, encode_spot_check, 98, 72, device_and_sensor_status=1 << 24)
    raises(ValueError, encode_spot_check, 3000, 72)
    raises(ValueError, encode_features, ["no_such_feature"])
