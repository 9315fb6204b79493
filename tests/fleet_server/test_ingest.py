"""`ingest_batch` and `ingest_status` against a real database (SQLite and
PostgreSQL), no broker: golden payloads, every rejection reason, idempotency,
gaps, base, duplicates, per-gateway counts."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet_server import crud, protocol
from fleet_server.ingest import AckDecision, ingest_batch, ingest_status
from fleet_server.models import AckCursor, DeadLetter, Gateway, Reading
from tests.fleet_server.helpers import (
    DATA_TOPIC,
    NOW,
    batch,
    bp_record,
    golden,
    golden_json,
    register,
)


def _ack(d: AckDecision) -> dict[str, Any]:
    assert d.ack is not None and d.rejection is None, d.summary()
    assert d.ack_topic == "ummc/v1/U001/gw-u001/ack"
    return dict(json.loads(d.ack))


def _readings(session: Session) -> list[Reading]:
    return list(session.scalars(select(Reading).order_by(Reading.seq)))


def _dead(session: Session) -> list[DeadLetter]:
    return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def test_golden_bp_batch_is_stored_with_every_field(registry: Session) -> None:
    d = ingest_batch(registry, DATA_TOPIC, golden("data_bp.json"), NOW)
    assert _ack(d) == {"v": 1, "jid": "3f9a1c02", "upto": 102, "rejected": [],
                       "server_time": protocol.to_unix_ms(NOW)}
    registry.expire_all()
    rows = _readings(registry)
    assert [r.seq for r in rows] == [101, 102]
    first, second = rows
    src = golden_json("data_bp.json")["records"]
    assert first.gateway.gateway_id == "gw-u001" and first.unit.code == "U001"
    assert first.jid == "3f9a1c02" and first.kind == "reading"
    assert first.type == "blood_pressure"
    assert (first.inst_addr, first.inst_model, first.inst_serial, first.inst_mfr) == \
        ("C4:7C:8D:6A:11:02", "UA-651BLE", "5140201234", None)
    assert first.inst_key == "5140201234" and first.iseq is None
    assert first.itime == "2026-11-29T08:41:59"
    assert second.itime == "0000-04-17T20:41:59"  # unknown year kept as 0, lossless
    assert protocol.itime_parts(second.itime) == src[1]["itime"]
    assert protocol.to_unix_ms(first.received_at) == src[0]["rtime"]
    assert first.received_at.utcoffset() == timedelta(0)
    assert first.ingested_at == NOW
    assert first.values == src[0]["values"]
    assert second.values == src[1]["values"] and second.flags == src[1]["flags"]
    assert all(isinstance(v[1], int) for v in first.values)  # ints stay ints
    assert _dead(registry) == []
    gw = registry.scalar(select(Gateway).where(Gateway.gateway_id == "gw-u001"))
    assert gw is not None and gw.last_seen_at == NOW


def test_mixed_batch_bad_record_is_dead_lettered_and_good_one_stored(registry: Session) -> None:
    ingest_batch(registry, DATA_TOPIC, golden("data_bp.json"), NOW)
    d = ingest_batch(registry, DATA_TOPIC, golden("data_mixed_bad.json"), NOW)
    assert _ack(d) == golden_json("ack.json")  # NOW is the golden server_time
    assert (d.stored, d.dead_lettered) == (1, 1)
    registry.expire_all()
    assert [r.seq for r in _readings(registry)] == [101, 102, 104]
    [dead] = _dead(registry)
    assert (dead.reason, dead.gateway, dead.unit, dead.jid, dead.seq) == \
        ("invalid_record", "gw-u001", "U001", "3f9a1c02", 103)
    assert dead.detail.startswith("records[0].values[0][1]: ")
    assert json.loads(dead.raw) == golden_json("data_mixed_bad.json")["records"][0]
    assert dead.topic == DATA_TOPIC


def test_same_batch_twice_is_stored_once_and_acked_the_same(registry: Session) -> None:
    ingest_batch(registry, DATA_TOPIC, golden("data_bp.json"), NOW)
    first = ingest_batch(registry, DATA_TOPIC, golden("data_mixed_bad.json"), NOW)
    again = ingest_batch(registry, DATA_TOPIC, golden("data_mixed_bad.json"),
                         NOW + timedelta(seconds=30))
    a, b = _ack(first), _ack(again)
    assert a.pop("server_time") != b.pop("server_time")
    assert a == b == {"v": 1, "jid": "3f9a1c02", "upto": 104, "rejected": [103]}
    assert (again.stored, again.duplicates, again.dead_lettered) == (0, 1, 0)
    registry.expire_all()
    assert [r.seq for r in _readings(registry)] == [101, 102, 104]
    assert len(_dead(registry)) == 1
    bp_again = ingest_batch(registry, DATA_TOPIC, golden("data_bp.json"), NOW)
    assert _ack(bp_again)["upto"] == 104 and bp_again.duplicates == 2


def test_gap_holds_the_ack_until_it_fills(registry: Session) -> None:
    d = ingest_batch(registry, DATA_TOPIC, batch([bp_record(101), bp_record(102),
                                                  bp_record(104)], base=101), NOW)
    assert _ack(d)["upto"] == 102
    d = ingest_batch(registry, DATA_TOPIC, batch([bp_record(103)], base=101), NOW)
    assert _ack(d)["upto"] == 104  # 104 was stored past the gap; now covered
    registry.expire_all()
    assert [r.seq for r in _readings(registry)] == [101, 102, 103, 104]
    cursor = registry.get(AckCursor, (_gw(registry).id, "3f9a1c02"))
    assert cursor is not None and cursor.upto == 104


def test_a_rejected_record_fills_a_gap_and_is_listed_once(registry: Session) -> None:
    ingest_batch(registry, DATA_TOPIC, batch([bp_record(1), bp_record(3)], base=1), NOW)
    bad = bp_record(2, values=[["systolic", "?", "mm[Hg]"]])
    ack = _ack(ingest_batch(registry, DATA_TOPIC, batch([bad], base=1), NOW))
    assert (ack["upto"], ack["rejected"]) == (3, [2])
    ack = _ack(ingest_batch(registry, DATA_TOPIC, batch([bp_record(4)], base=1), NOW))
    assert (ack["upto"], ack["rejected"]) == (4, [])


def test_base_sets_the_floor_of_the_ack(registry: Session) -> None:
    # A fresh journal cursor: the gateway says everything below 50 was freed.
    ack = _ack(ingest_batch(registry, DATA_TOPIC, batch([bp_record(50), bp_record(51)],
                                                         base=50), NOW))
    assert ack["upto"] == 51
    # Records past the base but not from it: nothing new is covered yet.
    ack = _ack(ingest_batch(registry, DATA_TOPIC, batch([bp_record(60)], base=55), NOW))
    assert ack["upto"] == 54  # base - 1: the gateway itself freed below 55
    # An old base (below the stored cursor) never moves the ack back.
    ack = _ack(ingest_batch(registry, DATA_TOPIC, batch([bp_record(52)], base=10), NOW))
    assert ack["upto"] == 54
    ack = _ack(ingest_batch(registry, DATA_TOPIC,
                            batch([bp_record(s) for s in range(55, 60)], base=55), NOW))
    assert ack["upto"] == 60


def test_acks_are_per_journal(registry: Session) -> None:
    ingest_batch(registry, DATA_TOPIC, batch([bp_record(1)], jid="aaaaaaaa"), NOW)
    ack = _ack(ingest_batch(registry, DATA_TOPIC, batch([bp_record(1)], jid="bbbbbbbb"), NOW))
    assert (ack["jid"], ack["upto"]) == ("bbbbbbbb", 1)
    assert len(_readings(registry)) == 2  # same seq, two journals: two readings


def test_same_key_other_content_is_a_duplicate_conflict(registry: Session) -> None:
    ingest_batch(registry, DATA_TOPIC, batch([bp_record(7, systolic=120)]), NOW)
    d = ingest_batch(registry, DATA_TOPIC, batch([bp_record(7, systolic=150)]), NOW)
    assert _ack(d)["upto"] == 7 and d.dead_lettered == 1
    registry.expire_all()
    [reading] = _readings(registry)
    assert reading.values[0][1] == 120  # the stored reading is untouched
    [dead] = _dead(registry)
    assert (dead.reason, dead.seq) == ("duplicate_conflict", 7)
    assert dead.detail.startswith("records[0].seq: ")


def _glucose(seq: int, iseq: int, value: float = 5.4) -> dict[str, Any]:
    return {"seq": seq, "kind": "reading", "type": "glucose",
            "inst": {"addr": "F0:00:00:00:00:01", "serial": "GM-1"}, "iseq": iseq,
            "itime": [2026, 11, 28, 7, 30, 0], "rtime": 1795935781250 + seq,
            "values": [["glucose", value, "mmol/L"]], "flags": []}


def test_instrument_record_number_is_unique_across_journals(registry: Session) -> None:
    ingest_batch(registry, DATA_TOPIC, batch([_glucose(1, 42)], jid="aaaaaaaa"), NOW)
    # The same meter record downloaded again after the gateway's flash was wiped.
    d = ingest_batch(registry, DATA_TOPIC, batch([_glucose(1, 42)], jid="bbbbbbbb"), NOW)
    assert _ack(d)["upto"] == 1 and d.duplicates == 1 and d.stored == 0
    d = ingest_batch(registry, DATA_TOPIC, batch([_glucose(2, 42, value=9.9)],
                                                 jid="bbbbbbbb", base=1), NOW)
    assert _ack(d)["upto"] == 2 and d.dead_lettered == 1
    registry.expire_all()
    assert len(_readings(registry)) == 1
    [dead] = _dead(registry)
    assert dead.reason == "duplicate_conflict" and dead.detail.startswith("records[0].iseq: ")


def test_bad_records_never_block_good_ones(registry: Session) -> None:
    records: list[Any] = [bp_record(1), bp_record(2, rtime="yesterday"), "not a record",
                          bp_record(3), {"seq": "4"}, bp_record(5, type="weight")]
    d = ingest_batch(registry, DATA_TOPIC, batch(records, base=1), NOW)
    assert (d.stored, d.dead_lettered) == (2, 4)
    ack = _ack(d)
    # seq 4 was unreadable (filed without a seq): the ack stops before it.
    assert (ack["upto"], ack["rejected"]) == (3, [2])
    registry.expire_all()
    details = {x.seq: x.detail for x in _dead(registry)}
    assert details[2].startswith("records[1].rtime: ")
    assert details[None].startswith(("records[2]: ", "records[4].seq: "))
    assert details[5].startswith("records[5].values[0][0]: ")


def _message_rejection(session: Session, topic: str, payload: bytes) -> DeadLetter:
    d = ingest_batch(session, topic, payload, NOW)
    assert d.ack is None and d.ack_topic is None and d.rejection is not None
    session.expire_all()
    assert _readings(session) == []
    [dead] = _dead(session)
    assert dead.reason == d.rejection.reason.value and dead.detail == d.rejection.detail
    assert dead.raw == payload[:1 << 20] and dead.seq is None
    return dead


GOOD = batch([bp_record(1)])


@pytest.mark.parametrize(("topic", "payload", "reason", "field"), [
    ("ummc/v1/U001/gw-u001", GOOD, "bad_topic", "topic"),
    ("ummc/v1/U001/gw-u001/birthday", GOOD, "bad_topic", "topic"),
    ("ummc/v9/U001/gw-u001/data", GOOD, "bad_topic", "topic"),
    ("ummc/v1/U001/gw+u001/data", GOOD, "bad_topic", "topic"),
    ("ummc/v1/U001/gw-u999/data", GOOD, "unknown_gateway", "topic"),
    ("ummc/v1/U001/gw-u002/data", GOOD, "unknown_gateway", "topic"),  # registered to U002
    (DATA_TOPIC, b"[" * 70_000, "too_large", "payload"),
    (DATA_TOPIC, batch([{"seq": i} for i in range(1, 300)]), "too_large", "records"),
    (DATA_TOPIC, b"\xc3\x28", "malformed_json", "payload"),
    (DATA_TOPIC, b'{"v":1,', "malformed_json", "payload"),
    (DATA_TOPIC, b'"just a string"', "bad_envelope", "message"),
    (DATA_TOPIC, GOOD.replace(b'"jid":"3f9a1c02"', b'"jid":"x"'), "bad_envelope", "jid"),
    (DATA_TOPIC, GOOD.replace(b'"base":1', b'"base":-1'), "bad_envelope", "base"),
    (DATA_TOPIC, GOOD.replace(b'"v":1', b'"version":1'), "bad_envelope", "v"),
    (DATA_TOPIC, b'{"v":1,"jid":"3f9a1c02","base":1,"records":[]}', "bad_envelope",
     "records"),
    (DATA_TOPIC, GOOD.replace(b'"v":1', b'"v":2'), "unsupported_version", "v"),
])
def test_message_level_rejections(registry: Session, topic: str, payload: bytes, reason: str,
                                  field: str) -> None:
    dead = _message_rejection(registry, topic, payload)
    assert dead.reason == reason
    assert dead.detail.startswith(field + ":"), dead.detail
    if reason == "bad_topic":
        assert dead.gateway is None or topic.count("/") >= 4
    if reason == "unknown_gateway":
        assert dead.gateway == topic.split("/")[3] and dead.unit == "U001"
    assert registry.scalar(select(func.count()).select_from(AckCursor)) == 0


def test_gateway_registered_to_another_unit_names_it(registry: Session) -> None:
    dead = _message_rejection(registry, "ummc/v1/U001/gw-u002/data", GOOD)
    assert dead.detail == "topic: gateway gw-u002 is registered to unit U002, not U001"


def test_rejection_counts_per_gateway(registry: Session) -> None:
    ingest_batch(registry, DATA_TOPIC, b"{nope", NOW)
    ingest_batch(registry, DATA_TOPIC, b"{nope", NOW)
    ingest_batch(registry, DATA_TOPIC, golden("data_mixed_bad.json"), NOW)
    ingest_batch(registry, "ummc/v1/U002/gw-u002/data", GOOD.replace(b'"v":1', b'"v":3'), NOW)
    ingest_batch(registry, "ummc/v1/U009/gw-u999/data", GOOD, NOW)
    ingest_batch(registry, "garbage", GOOD, NOW)
    counts = {(c.gateway, c.reason): c.count for c in crud.rejection_counts(registry)}
    assert counts == {("gw-u001", "malformed_json"): 2, ("gw-u001", "invalid_record"): 1,
                      ("gw-u002", "unsupported_version"): 1,
                      ("gw-u999", "unknown_gateway"): 1, (None, "bad_topic"): 1}
    only = crud.rejection_counts(registry, gateway="gw-u002")
    assert [(c.gateway, c.unit, c.reason, c.count) for c in only] == \
        [("gw-u002", "U002", "unsupported_version", 1)]


def _gw(session: Session, gateway_id: str = "gw-u001") -> Gateway:
    session.expire_all()
    gw = session.scalar(select(Gateway).where(Gateway.gateway_id == gateway_id))
    assert gw is not None
    return gw


def test_state_birth_and_health_update_the_gateway(registry: Session) -> None:
    base = "ummc/v1/U001/gw-u001/"
    assert ingest_status(registry, base + "state",
                         b'{"v":1,"state":"online","ts":1795935781000,"boot":3}', NOW) is None
    gw = _gw(registry)
    assert (gw.last_state, gw.last_state_at, gw.boot_count, gw.last_seen_at) == \
        ("online", NOW, 3, NOW)
    birth = {"v": 1, "fw": "0.1.0", "cfg": 1, "boot": 4, "reset": "power_on",
             "instruments": [{"addr": "C4:7C:8D:6A:11:02", "type": "blood_pressure"}],
             "journal": {"depth": 12, "bytes": 3400, "jid": "3f9a1c02"}, "ts": 1795935781000}
    later = NOW + timedelta(minutes=1)
    assert ingest_status(registry, base + "birth", json.dumps(birth).encode(), later) is None
    gw = _gw(registry)
    assert (gw.fw, gw.boot_count, gw.last_seen_at) == ("0.1.0", 4, later)
    assert gw.last_birth == birth
    health = {"v": 1, "ts": 1795935841000, "uptime": 3600, "boots": 5, "heap_free": 61000}
    assert ingest_status(registry, base + "health", json.dumps(health).encode(), later) is None
    gw = _gw(registry)
    assert gw.last_health == health and gw.boot_count == 5
    # the last will: offline, not a sign of life
    lost = NOW + timedelta(minutes=5)
    ingest_status(registry, base + "state",
                  b'{"v":1,"state":"offline","reason":"connection_lost"}', lost)
    gw = _gw(registry)
    assert (gw.last_state, gw.last_state_reason, gw.last_state_at, gw.last_seen_at) == \
        ("offline", "connection_lost", lost, later)
    # the same retained state delivered again when a worker subscribes: no change
    ingest_status(registry, base + "state",
                  b'{"v":1,"state":"offline","reason":"connection_lost"}',
                  lost + timedelta(hours=1), retained=True)
    assert _gw(registry).last_state_at == lost


def test_bad_status_messages_are_dead_lettered_unless_retained(registry: Session) -> None:
    base = "ummc/v1/U001/gw-u001/"
    r = ingest_status(registry, base + "state", b'{"v":1,"state":"asleep"}', NOW)
    assert r is not None and r.reason == protocol.Reason.bad_envelope
    r = ingest_status(registry, "ummc/v1/U001/gw-nope/state", b'{"v":1,"state":"online"}', NOW)
    assert r is not None and r.reason == protocol.Reason.unknown_gateway
    r = ingest_status(registry, "ummc/v1/U001/gw-nope/state", b'{"v":1,"state":"online"}',
                      NOW, retained=True)
    assert r is not None
    assert [(d.reason, d.gateway) for d in _dead(registry)] == \
        [("bad_envelope", "gw-u001"), ("unknown_gateway", "gw-nope")]


def test_two_workers_on_one_journal_converge(engine: Any) -> None:
    """Shared subscriptions may hand one gateway's batches to two workers at
    once: the cursor row lock (and the unique-key retry) keep the ack right."""
    import threading

    from fleet_server.db import session_factory

    sessions = session_factory(engine)
    with sessions() as s:
        register(s, ("U001", "gw-u001"))
    for round_ in range(3):
        first = round_ * 20 + 1
        halves = [batch([bp_record(q) for q in range(first, first + 10)], base=first),
                  batch([bp_record(q) for q in range(first + 10, first + 20)], base=first)]
        results: list[int] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def work(payload: bytes, barrier: threading.Barrier, results: list[int],
                 errors: list[BaseException]) -> None:
            try:
                with sessions() as s:
                    barrier.wait()
                    d = ingest_batch(s, DATA_TOPIC, payload, NOW)
                    assert d.upto is not None
                    results.append(d.upto)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(p, barrier, results, errors))
                   for p in halves]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert max(results) == first + 19, (round_, results)
    with sessions() as s:
        cursor = s.get(AckCursor, (_gw(s).id, "3f9a1c02"))
        assert cursor is not None and cursor.upto == 60
        assert s.scalar(select(func.count()).select_from(Reading)) == 60


@pytest.mark.parametrize("bad_text", ["\u0000", "\ud800"])
def test_text_no_database_can_store_is_an_invalid_record(registry: Session,
                                                         bad_text: str) -> None:
    """NUL and lone surrogates are valid JSON escapes; PostgreSQL (and UTF-8)
    refuse them. They must cost one record, not the batch."""
    bad = bp_record(2, inst={"addr": "C4:7C:8D:6A:11:02", "model": "UA" + bad_text})
    payload = json.dumps({"v": 1, "jid": "3f9a1c02", "base": 1, "records": [
        bp_record(1), bad, bp_record(3, flags=["x" + bad_text])]}).encode()
    d = ingest_batch(registry, DATA_TOPIC, payload, NOW)
    assert (d.stored, d.dead_lettered) == (1, 2) and _ack(d)["upto"] == 3
    registry.expire_all()
    details = sorted(x.detail for x in _dead(registry))
    assert details[0].startswith("records[1].inst.model: ")
    assert details[1].startswith("records[2].flags[0]: ")
    health = json.dumps({"v": 1, "ts": 1, "last_error": "e" + bad_text}).encode()
    r = ingest_status(registry, "ummc/v1/U001/gw-u001/health", health, NOW)
    assert r is not None and r.detail.startswith("last_error: ")


def test_a_record_the_database_refuses_costs_only_that_record(
        registry: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: if validation ever lets through what the database
    refuses (here a NUL, smuggled past validation), the savepoint keeps the
    rest of the batch."""
    real = protocol.validate_record

    def lenient(raw: Any, index: int) -> Any:
        rec = real(raw, index)
        if index == 1 and isinstance(rec, protocol.Record):
            inst = rec.inst.model_copy(update={"model": "UA\u0000"})  # type: ignore[union-attr]
            return rec.model_copy(update={"inst": inst})
        return rec

    monkeypatch.setattr(protocol, "validate_record", lenient)
    d = ingest_batch(registry, DATA_TOPIC, batch([bp_record(q) for q in (1, 2, 3)]), NOW)
    assert _ack(d)["upto"] == 3
    registry.expire_all()
    if registry.get_bind().dialect.name == "postgresql":
        assert [r.seq for r in _readings(registry)] == [1, 3]
        [dead] = _dead(registry)
        assert dead.detail.startswith("records[1]: refused by the database (")
    else:  # SQLite stores a NUL
        assert [r.seq for r in _readings(registry)] == [1, 2, 3]
