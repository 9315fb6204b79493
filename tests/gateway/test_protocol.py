# mpy-portable
# The gateway's side of docs/protocol.md, checked against the golden payloads
# that the fleet server's tests load too.
import json

from device_drivers.gatt import decode, encode_blood_pressure
from device_drivers.reading import from_blood_pressure
from gateway import protocol
from tests.portable import raises, read_golden


def test_topics_are_unit_scoped_and_versioned():
    assert protocol.topic("U001", "gw-u001", "data") == "ummc/v1/U001/gw-u001/data"


def test_data_message_matches_golden_payload():
    golden = json.loads(read_golden("data_bp.json"))
    inst = {"addr": "C4:7C:8D:6A:11:02", "model": "UA-651BLE", "serial": "5140201234"}
    r1 = from_blood_pressure(decode(0x2A35, encode_blood_pressure(
        138, 88, 120, timestamp=(2026, 11, 29, 8, 41, 59), pulse_rate=60, status=None)))
    r2 = from_blood_pressure(decode(0x2A35, encode_blood_pressure(
        141, 92, None, timestamp=(0, 4, 17, 20, 41, 59), pulse_rate=72, status=0x0004)))
    p1 = protocol.reading_payload(r1, inst, 1795935781250)
    p2 = protocol.reading_payload(r2, inst, 1795935790000)
    msg = protocol.data_message("3f9a1c02", 101, 1795935781500, [(101, 1, p1), (102, 1, p2)])
    assert json.loads(msg) == golden


def test_data_message_is_compact_json():
    p = protocol.reading_payload({"type": "blood_pressure", "values": [], "flags": []},
                                 {"addr": "x"}, 1)
    assert b" " not in p
    msg = protocol.data_message("00000001", 1, 2, [(1, 1, p)])
    assert json.loads(msg)["records"][0]["seq"] == 1


def test_parse_golden_ack():
    jid, upto, rejected, st = protocol.parse_ack(read_golden("ack.json"))
    assert (jid, upto, rejected, st) == ("3f9a1c02", 104, [103], 1795935782512)


def test_bad_acks_are_refused_with_a_reason():
    for bad in (b"not json", b"[]", b'{"v":2,"jid":"a","upto":1}', b'{"v":1,"upto":1}',
                b'{"v":1,"jid":"a","upto":-1}', b'{"v":1,"jid":"a","upto":true}',
                b'{"v":1,"jid":"a","upto":1,"server_time":1.5}',
                b'{"v":1,"jid":"a","upto":1,"rejected":5}'):
        raises(protocol.AckError, protocol.parse_ack, bad)


def test_state_payloads():
    assert json.loads(protocol.LAST_WILL) == {"v": 1, "state": "offline",
                                              "reason": "connection_lost"}
    assert json.loads(protocol.state_payload("online", 5, boot=2)) == {
        "v": 1, "state": "online", "ts": 5, "boot": 2}
