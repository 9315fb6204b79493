"""The server's reading of docs/protocol.md, without a database: topics,
envelopes and record validation with details that name the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from fleet_server import protocol
from fleet_server.protocol import Reason, Record, RecordError, Rejection
from tests.fleet_server.helpers import batch, bp_record, golden_json


def test_golden_records_are_valid() -> None:
    for name in ("data_bp.json",):
        for i, raw in enumerate(golden_json(name)["records"]):
            assert isinstance(protocol.validate_record(raw, i), Record)
    mixed = golden_json("data_mixed_bad.json")["records"]
    bad = protocol.validate_record(mixed[0], 0)
    assert isinstance(bad, RecordError) and bad.seq == 103
    assert bad.detail.startswith("records[0].values[0][1]: ")
    assert "high" not in bad.detail  # details never echo a value
    assert isinstance(protocol.validate_record(mixed[1], 1), Record)


def _with(**changes: Any) -> dict[str, Any]:
    rec = bp_record(7)
    for key, value in changes.items():
        if value is _DROP:
            del rec[key]
        else:
            rec[key] = value
    return rec


_DROP = object()


@pytest.mark.parametrize(("record", "field"), [
    (_with(seq=0), "seq"),
    (_with(seq="7"), "seq"),
    (_with(seq=7.0), "seq"),
    (_with(seq=True), "seq"),
    (_with(seq=_DROP), "seq"),
    (_with(kind="measurement"), "kind"),
    (_with(rtime=1795935781250.5), "rtime"),
    (_with(rtime=_DROP), "rtime"),
    (_with(rtime=-1), "rtime"),
    (_with(itime=[2026, 13, 1, 0, 0, 0]), "itime[1]"),
    (_with(itime=[2026, 1, 1, 24, 0, 0]), "itime[3]"),
    (_with(itime=[2026, 1, 1, 0, 0, 1.5]), "itime[5]"),
    (_with(itime="2026-01-01T00:00:00"), "itime"),
    (_with(iseq=-1), "iseq"),
    (_with(inst={"model": "x"}), "inst.addr"),
    (_with(inst=_DROP), "inst"),
    (_with(type=_DROP), "type"),
    (_with(type="blood_presure"), "type"),
    (_with(values=[["systolic", "high", "mm[Hg]"], ["diastolic", 80, "mm[Hg]"]]),
     "values[0][1]"),
    (_with(values=[["systolic", float("nan"), "mm[Hg]"], ["diastolic", 80, "mm[Hg]"]]),
     "values[0][1]"),
    (_with(values=[["systolic", float("inf"), "mm[Hg]"], ["diastolic", 80, "mm[Hg]"]]),
     "values[0][1]"),
    (_with(values=[["systolic", True, "mm[Hg]"], ["diastolic", 80, "mm[Hg]"]]),
     "values[0][1]"),
    (_with(values=[["systolic", 120, "mmHg"], ["diastolic", 80, "mm[Hg]"]]), "values[0][2]"),
    (_with(values=[["systolic", 120, "mm[Hg]"], ["diastolic", 80, "mm[Hg]"],
                   ["pulse_rate", 60, "bpm"]]), "values[2][2]"),
    (_with(values=[["systolic", 120, "mm[Hg]"], ["glucose", 80, "mg/dL"]]), "values[1][0]"),
    (_with(values=[["systolic", 120, "mm[Hg]"], ["systolic", 121, "mm[Hg]"]]), "values[1][0]"),
    (_with(values=[["systolic", 120, "mm[Hg]"]]), "values"),  # diastolic required
    (_with(values=[["systolic", 120]]), "values[0][2]"),
    (_with(values="120/80"), "values"),
    (_with(flags=[1]), "flags[0]"),
])
def test_invalid_record_detail_names_the_field(record: dict[str, Any], field: str) -> None:
    result = protocol.validate_record(record, 3)
    assert isinstance(result, RecordError), result
    assert result.detail.startswith(f"records[3].{field}: "), result.detail
    seq = record.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1:
        assert result.seq == seq
    else:
        assert result.seq is None


def test_a_record_that_is_not_an_object() -> None:
    assert protocol.validate_record([1, 2], 0) == RecordError(None, "records[0]: must be an object")


def test_missing_required_value_is_accepted_when_flagged() -> None:
    rec = _with(values=[["diastolic", 80, "mm[Hg]"]], flags=["value_missing:systolic"])
    assert isinstance(protocol.validate_record(rec, 0), Record)


def test_every_type_and_unit_of_the_table() -> None:
    cases = {
        "blood_pressure": [["systolic", 16.0, "kPa"], ["diastolic", 10.5, "kPa"],
                           ["mean_arterial", 12.1, "kPa"], ["pulse_rate", 61, "/min"]],
        "glucose": [["glucose", 5.4, "mmol/L"]],
        "temperature": [["temperature", 98.6, "[degF]"]],
        "spo2": [["spo2", 97, "%"], ["pulse_rate", 70, "/min"]],
        "weight": [["weight", 154.3, "[lb_av]"], ["bmi", 24.1, "kg/m2"],
                   ["height", 70, "[in_i]"]],
        "ecg_strip": [["lead_i", 0.12, "mV"]],
    }
    for type_, values in cases.items():
        rec = _with(type=type_, values=values)
        assert isinstance(protocol.validate_record(rec, 0), Record), type_


def test_unknown_fields_are_ignored_and_events_need_no_type() -> None:
    assert isinstance(protocol.validate_record(_with(new_field={"x": 1}), 0), Record)
    event = {"seq": 9, "kind": "event", "rtime": 1, "flags": ["instrument_error"]}
    assert isinstance(protocol.validate_record(event, 0), Record)


def test_content_hash_is_stable_and_content_sensitive() -> None:
    a = protocol.validate_record(bp_record(5), 0)
    b = protocol.validate_record(json.loads(json.dumps(bp_record(5))), 0)
    c = protocol.validate_record(bp_record(5, systolic=121), 0)
    assert isinstance(a, Record) and isinstance(b, Record) and isinstance(c, Record)
    assert a.content_hash() == b.content_hash() != c.content_hash()


@pytest.mark.parametrize(("topic", "ok"), [
    ("ummc/v1/U001/gw-u001/data", True),
    ("ummc/v1/U001/gw-u001/state", True),
    ("ummc/v1/U001/gw-u001/ack", False),
    ("ummc/v1/U001/gw-u001", False),
    ("ummc/v2/U001/gw-u001/data", False),
    ("ummc/v1/U 001/gw-u001/data", False),
    ("ummc/v1/U001/" + "g" * 33 + "/data", False),
    ("ummc/v1/U001/gw-u001/data/extra", False),
])
def test_topics(topic: str, ok: bool) -> None:
    parsed = protocol.parse_topic(topic)
    if ok:
        assert isinstance(parsed, protocol.Topic) and parsed.unit == "U001"
    else:
        assert isinstance(parsed, Rejection) and parsed.reason == Reason.bad_topic


def _doc(**changes: Any) -> bytes:
    doc = json.loads(batch([bp_record(1)]))
    for key, value in changes.items():
        if value is _DROP:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("payload", "reason", "field"), [
    (b"x" * 65_537, Reason.too_large, "payload"),
    (batch([{"seq": i} for i in range(1, 258)]), Reason.too_large, "records"),
    (b"\xff\xfe{}", Reason.malformed_json, "payload"),
    (b"{not json", Reason.malformed_json, "payload"),
    (b"[1, 2]", Reason.bad_envelope, "message"),
    (_doc(v=_DROP), Reason.bad_envelope, "v"),
    (_doc(v="1"), Reason.bad_envelope, "v"),
    (_doc(v=2), Reason.unsupported_version, "v"),
    (_doc(jid=_DROP), Reason.bad_envelope, "jid"),
    (_doc(jid="3f9a1c0"), Reason.bad_envelope, "jid"),
    (_doc(jid=12345678), Reason.bad_envelope, "jid"),
    (_doc(base=_DROP), Reason.bad_envelope, "base"),
    (_doc(base=0), Reason.bad_envelope, "base"),
    (_doc(base=1.0), Reason.bad_envelope, "base"),
    (_doc(sent=1.5), Reason.bad_envelope, "sent"),
    (_doc(records=[]), Reason.bad_envelope, "records"),
    (_doc(records={"seq": 1}), Reason.bad_envelope, "records"),
    (_doc(records=_DROP), Reason.bad_envelope, "records"),
])
def test_envelope_rejections(payload: bytes, reason: Reason, field: str) -> None:
    result = protocol.parse_data(payload)
    assert isinstance(result, Rejection), result
    assert result.reason == reason
    assert result.detail.startswith(field + ":"), result.detail


def test_limits_are_inclusive() -> None:
    env = protocol.parse_data(batch([{"seq": i} for i in range(1, 257)]))
    assert isinstance(env, protocol.Envelope) and len(env.records) == 256
    payload = batch([{"seq": 1, "pad": ""}])
    payload = payload.replace(b'"pad":""', b'"pad":"' + b"x" * (65_536 - len(payload)) + b'"')
    assert len(payload) == 65_536
    assert isinstance(protocol.parse_data(payload), protocol.Envelope)


def test_itime_text_is_lossless() -> None:
    for parts in ([2026, 11, 29, 8, 41, 59], [0, 4, 17, 20, 41, 59], [0, 0, 0, 0, 0, 0]):
        text = protocol.itime_text(parts)
        assert text is not None and len(text) == 19
        assert protocol.itime_parts(text) == parts
    assert protocol.itime_text([0, 4, 17, 20, 41, 59]) == "0000-04-17T20:41:59"
    assert protocol.itime_text(None) is None and protocol.itime_parts(None) is None


def test_times_are_exact_milliseconds() -> None:
    t = protocol.from_unix_ms(1795935781250)
    assert t.microsecond == 250_000 and t.utcoffset() is not None
    assert protocol.to_unix_ms(t) == 1795935781250


def test_ack_payload_has_the_golden_shape() -> None:
    ack = json.loads(protocol.ack_payload(jid="3f9a1c02", upto=104, rejected=[103],
                                          server_time=1795935782512))
    assert ack == golden_json("ack.json")
    many = json.loads(protocol.ack_payload(jid="3f9a1c02", upto=500,
                                           rejected=list(range(100)), server_time=0))
    assert len(many["rejected"]) == protocol.MAX_REJECTED_LISTED


def test_status_payloads() -> None:
    ok = protocol.parse_status("state", b'{"v":1,"state":"online","ts":1795935781000,"boot":3}')
    assert not isinstance(ok, Rejection)
    bad = protocol.parse_status("state", b'{"v":1,"state":"sleeping"}')
    assert isinstance(bad, Rejection) and bad.detail.startswith("state:")
    health = copy.deepcopy({"v": 1, "ts": 1795935841000, "heap_free": 61000})
    assert not isinstance(protocol.parse_status("health", json.dumps(health).encode()),
                          Rejection)


def test_golden_offline_health_record_is_accepted() -> None:
    from fleet_server.protocol import Record, validate_record

    doc = golden_json("data_health.json")
    rec = validate_record(doc["records"][0], 0)
    assert isinstance(rec, Record) and rec.kind == "health"
    assert ("rssi", -93, "dB[mW]") in rec.values and rec.flags == ["journal_full"]
