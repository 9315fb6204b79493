"""ECG strips on the fleet server: the `ecg` member of an ecg_strip record
(docs/protocol.md, "ECG strips") validated field by field, stored with the
reading, and served back sample for sample by GET /readings/{id}/samples.

Records are built here from the documented format (base64 of int16
little-endian), not by the gateway's code: the two sides share only the
contract. tests/integration/test_serial_end_to_end.py runs both together."""

from __future__ import annotations

import base64
import json
import math
import sys
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from fleet_server import crud, protocol
from fleet_server.api import create_app
from fleet_server.db import session_factory
from fleet_server.ingest import ingest_batch
from fleet_server.models import DeadLetter, Reading, Role, User
from fleet_server.protocol import EcgStrip, Record, RecordError
from fleet_server.security import hash_password
from tests.fleet_server.helpers import DATA_TOPIC, NOW, batch, bp_record, make_settings, register

SECRET = "t" * 40


def strip_samples(n: int = 2500, fs: int = 250, bpm: float = 72.0) -> array[int]:
    """A synthetic lead: 1 mV R waves over a slow wander, int16 microvolts."""
    out = array("h", bytes(2 * n))
    rr = 60.0 / bpm
    for k in range(n):
        t = k / fs
        r = (t - 0.35) % rr
        r = min(r, rr - r)
        out[k] = round(1100 * math.exp(-0.5 * (r / 0.009) ** 2)
                       + 300 * math.sin(2 * math.pi * 0.25 * t)) - 200
    return out


def b64_of(samples: array[int]) -> str:
    le = array("h", samples)
    if sys.byteorder != "little":
        le.byteswap()
    return base64.b64encode(le.tobytes()).decode()


def ecg_record(seq: int, samples: array[int] | None = None, **ecg: Any) -> dict[str, Any]:
    samples = strip_samples() if samples is None else samples
    member: dict[str, Any] = {"fs": 250, "n": len(samples), "unit": "uV", "scale_uv": 1,
                              "offset_uv": -20013, "lead": "II", "channel": 0, "gain": 24,
                              "r_peaks": [87, 296, 504], "gaps": [[700, 2]], "missing": 2,
                              "railed": 0, "b64": b64_of(samples)}
    member.update(ecg)
    return {"seq": seq, "kind": "reading", "type": "ecg_strip",
            "inst": {"addr": "/dev/ttyUSB0", "model": "Cyton"}, "iseq": None, "itime": None,
            "rtime": 1795935781250 + seq, "values": [["heart_rate", 72, "/min"]],
            "flags": ["gaps"], "ecg": member}


# --- validation (no database) ---------------------------------------------------------


def test_a_10_s_strip_is_accepted_and_its_samples_come_back() -> None:
    samples = strip_samples()
    rec = protocol.validate_record(ecg_record(1, samples), 0)
    assert isinstance(rec, Record) and rec.ecg is not None
    assert rec.ecg.samples() == samples
    assert rec.stored_ecg() == ecg_record(1, samples)["ecg"]


def test_the_largest_strip_fits_a_message_and_one_more_sample_does_not() -> None:
    big = strip_samples(protocol.ECG_MAX_SAMPLES)
    payload = batch([ecg_record(1, big)])
    assert len(payload) <= protocol.MAX_PAYLOAD_BYTES
    env = protocol.parse_data(payload)
    assert not isinstance(env, protocol.Rejection)
    assert isinstance(protocol.validate_record(env.records[0], 0), Record)
    over = protocol.validate_record(ecg_record(1, strip_samples(protocol.ECG_MAX_SAMPLES + 1)),
                                    0)
    assert isinstance(over, RecordError) and over.detail.startswith("records[0].ecg.")


@pytest.mark.parametrize(("change", "path"), [
    ({"b64": "not base64!"}, "ecg.b64: must be base64"),
    ({"b64": base64.b64encode(b"\x01\x02\x03").decode()}, "ecg.b64: decodes to 3 bytes"),
    ({"n": 2499}, "ecg.b64: decodes to 5000 bytes; n = 2499"),
    ({"n": 0}, "ecg.n: "),
    ({"n": "2500"}, "ecg.n: "),
    ({"fs": 10}, "ecg.fs: "),
    ({"fs": 250.5}, "ecg.fs: "),
    ({"unit": "mV"}, "ecg.unit: "),
    ({"scale_uv": 0}, "ecg.scale_uv: must be a number above 0"),
    ({"scale_uv": float("nan")}, "ecg.scale_uv: must be a finite number"),
    ({"offset_uv": 2**40}, "ecg.offset_uv: "),
    ({"r_peaks": [10, 2500]}, "ecg.r_peaks[1]: must be a sample index below n"),
    ({"r_peaks": [300, 200]}, "ecg.r_peaks[1]: must be in ascending order"),
    ({"r_peaks": [-1]}, "ecg.r_peaks[0]: "),
    ({"gaps": [[2501, 3]]}, "ecg.gaps[0][0]: must be a sample index at most n"),
    ({"gaps": [[10, 0]]}, "ecg.gaps[0][1]: "),
    ({"lead": "I\x00"}, "ecg.lead: must not contain NUL"),
    ({"missing": -1}, "ecg.missing: "),
])
def test_a_bad_ecg_member_is_an_invalid_record_naming_the_field(change: dict[str, Any],
                                                                path: str) -> None:
    result = protocol.validate_record(json.loads(json.dumps(ecg_record(4, **change))), 2)
    assert isinstance(result, RecordError), result
    assert result.seq == 4
    assert result.detail.startswith(f"records[2].{path}"), result.detail
    assert "20013" not in result.detail  # no values in details (they are logged)


def test_a_record_missing_required_ecg_fields_names_them() -> None:
    rec = ecg_record(1)
    del rec["ecg"]["b64"]
    result = protocol.validate_record(rec, 0)
    assert isinstance(result, RecordError)
    assert result.detail == "records[0].ecg.b64: required field is missing"


def test_only_an_ecg_strip_carries_samples() -> None:
    rec = bp_record(3, ecg=ecg_record(3)["ecg"])
    result = protocol.validate_record(rec, 0)
    assert result == RecordError(3, "records[0].ecg: only an ecg_strip reading carries samples")


def test_samples_count_in_the_content_hash_and_old_records_hash_as_before() -> None:
    a = protocol.validate_record(ecg_record(1), 0)
    other = strip_samples()
    other[1000] += 1
    b = protocol.validate_record(ecg_record(1, other), 0)
    assert isinstance(a, Record) and isinstance(b, Record)
    assert a.content_hash() != b.content_hash()
    bp = protocol.validate_record(bp_record(5), 0)
    assert isinstance(bp, Record)  # the digest before the ecg member existed
    assert bp.content_hash() == "2863d9a72ec68bbd7cc67bd281bfa8e9aeec1c2aedd868ac30a7fd444e027f83"


# --- storage and the API (real databases) --------------------------------------------


@pytest.fixture
def client(engine: Engine) -> Iterator[tuple[TestClient, dict[Role, str]]]:
    sessions = session_factory(engine)
    tokens: dict[Role, str] = {}
    digest = hash_password("correct horse battery staple")
    with sessions() as s:
        register(s, ("U001", "gw-u001"))
        for role in (Role.admin, Role.nurse, Role.reception):
            user = User(username=role.value, role=role.value, password_hash=digest,
                        is_active=True, created_at=NOW)
            s.add(user)
            s.flush()
            tokens[role], _ = crud.issue_token(s, user=user, secret_key=SECRET,
                                               ttl=timedelta(hours=1), now=datetime.now(UTC))
        s.commit()
    app = create_app(make_settings(str(engine.url), secret_key=SECRET), engine=engine)
    with TestClient(app) as c:
        yield c, tokens


def _ingest(engine: Engine, records: list[dict[str, Any]], base: int = 1) -> Any:
    with session_factory(engine)() as s:
        return ingest_batch(s, DATA_TOPIC, batch(records, base=base), NOW)


@pytest.fixture
def registered(engine: Engine) -> Engine:
    with session_factory(engine)() as s:
        register(s, ("U001", "gw-u001"))
    return engine


def test_stored_strip_is_served_back_sample_for_sample(
        engine: Engine, client: tuple[TestClient, dict[Role, str]]) -> None:
    c, tokens = client
    samples = strip_samples()
    d = _ingest(engine, [ecg_record(1, samples), bp_record(2)])
    assert (d.stored, d.dead_lettered, d.upto) == (2, 0, 2)

    def get(path: str, role: Role = Role.nurse, **params: Any) -> Any:
        return c.get(path, params=params, headers={"Authorization": f"Bearer {tokens[role]}"})

    rows = get("/api/v1/readings", type="ecg_strip").json()
    assert len(rows) == 1 and rows[0]["values"] == [["heart_rate", 72, "/min"]]
    assert "b64" not in json.dumps(rows)  # the list stays light
    r = get(f"/api/v1/readings/{rows[0]['id']}/samples")
    assert r.status_code == 200
    body = r.json()
    assert body["samples"] == samples.tolist()
    assert {k: body[k] for k in ("reading_id", "fs", "n", "unit", "lead", "channel", "gain",
                                 "offset_uv", "scale_uv", "r_peaks", "gaps", "missing",
                                 "railed")} == {
        "reading_id": rows[0]["id"], "fs": 250, "n": 2500, "unit": "uV", "lead": "II",
        "channel": 0, "gain": 24, "offset_uv": -20013, "scale_uv": 1,
        "r_peaks": [87, 296, 504], "gaps": [[700, 2]], "missing": 2, "railed": 0}
    bp_id = get("/api/v1/readings", type="blood_pressure").json()[0]["id"]
    assert get(f"/api/v1/readings/{bp_id}/samples").status_code == 404
    assert get("/api/v1/readings/999999/samples").status_code == 404
    assert get(f"/api/v1/readings/{rows[0]['id']}/samples", Role.reception).status_code == 403


def test_a_resent_strip_is_a_duplicate_and_other_samples_a_conflict(registered: Engine) -> None:
    engine = registered
    samples = strip_samples()
    assert _ingest(engine, [ecg_record(1, samples)]).stored == 1
    again = _ingest(engine, [ecg_record(1, samples)])
    assert (again.stored, again.duplicates, again.dead_lettered) == (0, 1, 0)
    changed = array("h", samples)
    changed[5] = 0
    conflict = _ingest(engine, [ecg_record(1, changed)])
    assert conflict.dead_lettered == 1
    assert conflict.record_rejections[0][1] == "duplicate_conflict"
    with session_factory(engine)() as s:
        (row,) = s.scalars(select(Reading)).all()
        assert EcgStrip.model_validate(getattr(row, "ecg", None)).samples() == samples


def test_a_bad_strip_is_dead_lettered_and_the_good_records_beside_it_stored(
        registered: Engine) -> None:
    engine = registered
    d = _ingest(engine, [bp_record(1), ecg_record(2, n=2499), bp_record(3)])
    assert (d.stored, d.dead_lettered, d.upto, d.rejected) == (2, 1, 3, [2])
    with session_factory(engine)() as s:
        (dl,) = s.scalars(select(DeadLetter)).all()
        assert dl.reason == "invalid_record" and dl.seq == 2
        assert dl.detail.startswith("records[1].ecg.b64: decodes to 5000 bytes")
