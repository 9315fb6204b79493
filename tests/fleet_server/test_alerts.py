"""Alerts: what opens them (each kind), deduplication, the lifecycle open ->
acknowledged -> resolved (automatic and by hand, through the API), and that
nights and days off are not offline time. Both backends."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleet_server import alerts
from fleet_server.db import session_factory
from fleet_server.ingest import ingest_status
from fleet_server.models import Alert, Gateway, UnitCalendarDay
from fleet_server.protocol import to_unix_ms
from tests.fleet_server import test_api
from tests.fleet_server.test_health_model import MONDAY, gateway, local

api = test_api.api
BASE = "ummc/v1/U001/gw-u001/"
TEN_MIN = timedelta(minutes=10)


def status(session: Session, leaf: str, doc: dict[str, Any], now: datetime) -> None:
    assert ingest_status(session, BASE + leaf, json.dumps({"v": 1, **doc}).encode(), now,
                         sample_every=TEN_MIN) is None


def heartbeat(session: Session, now: datetime, **fields: Any) -> None:
    status(session, "health", {"ts": to_unix_ms(now), **fields}, now)


def online(session: Session, now: datetime, boot: int = 1) -> None:
    status(session, "state", {"state": "online", "ts": to_unix_ms(now), "boot": boot}, now)


def offline(session: Session, now: datetime) -> None:
    status(session, "state", {"state": "offline", "reason": "connection_lost"}, now)


def active(session: Session) -> list[tuple[str, str, str]]:
    session.expire_all()
    return sorted((a.kind, a.subject, a.status) for a in session.scalars(
        select(Alert).where(Alert.status != "resolved")))


def test_unit_offline_counts_planned_working_time_only(registry: Session) -> None:
    mon, tue = MONDAY, MONDAY + timedelta(days=1)
    online(registry, local(mon, 7))
    offline(registry, local(mon, 16, 50))  # ten minutes before the day ends
    assert alerts.evaluate(registry, local(mon, 23)).opened == []  # the night is not work
    assert alerts.evaluate(registry, local(tue, 8, 15)).opened == []  # 25 min of work
    assert alerts.evaluate(registry, local(tue, 8, 25)).opened == \
        [("unit_offline", "gateway:gw-u001")]
    a = registry.scalar(select(Alert))
    assert a is not None and a.severity == "critical" and "35 min" in a.detail
    assert "U001 gw-u001 offline since" in a.detail


def test_a_day_off_is_not_offline_time(registry: Session) -> None:
    wed = MONDAY + timedelta(days=2)
    registry.add(UnitCalendarDay(unit_pk=gateway(registry).unit_id, day=wed, working=False))
    registry.commit()
    online(registry, local(wed, 7))
    offline(registry, local(wed, 8))
    assert alerts.evaluate(registry, local(wed, 16)).opened == []
    assert alerts.evaluate(registry, local(wed + timedelta(days=1), 8, 31)).opened == \
        [("unit_offline", "gateway:gw-u001")]


def test_lifecycle_dedup_ack_and_automatic_resolve(api: test_api.Api) -> None:
    """Open once, stay one alert while the condition holds (acknowledged
    included), resolve by itself when the gateway is back."""
    today = datetime.now(UTC).date()
    day = today - timedelta(days=today.weekday() + 7)  # a Monday in the past
    sessions = session_factory(api.engine)
    with sessions() as s:
        online(s, local(day, 7))
        offline(s, local(day, 9))
        assert alerts.evaluate(s, local(day, 9, 29)).opened == []
        assert alerts.evaluate(s, local(day, 9, 31)).opened == \
            [("unit_offline", "gateway:gw-u001")]
        assert alerts.evaluate(s, local(day, 10)).opened == []  # deduplicated
    rows = api.get("/api/v1/alerts", test_api.Role.logistics, status="active").json()
    [alert] = rows
    assert (alert["kind"], alert["gateway"], alert["unit"], alert["status"]) == \
        ("unit_offline", "gw-u001", "U001", "open")
    headers = {"Authorization": f"Bearer {api.tokens[test_api.Role.technician]}"}
    r = api.client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=headers,
                        json={"note": "driver says the modem is unplugged"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["acknowledged_by"], r.json()["ack_note"]) == \
        ("acknowledged", "technician", "driver says the modem is unplugged")
    with sessions() as s:
        assert alerts.evaluate(s, local(day, 11)).opened == []  # still the same alert
        assert active(s) == [("unit_offline", "gateway:gw-u001", "acknowledged")]
        online(s, local(day, 11, 5), boot=2)
        result = alerts.evaluate(s, local(day, 11, 6))
        assert result.resolved == [("unit_offline", "gateway:gw-u001")]
    done = api.get("/api/v1/alerts?status=resolved").json()
    assert [(a["id"], a["resolved_by"], a["resolve_note"]) for a in done] == \
        [(alert["id"], None, "condition cleared")]
    r = api.client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=headers, json={})
    assert r.status_code == 409
    r = api.client.post(f"/api/v1/alerts/{alert['id']}/resolve", headers=headers,
                        json={"note": "nul \u0000 here"})
    assert r.status_code == 422 and "must be valid text" in r.text
    assert api.get("/api/v1/alerts", kind="nope").status_code == 422


def test_manual_resolve_and_reopen_while_the_condition_holds(api: test_api.Api) -> None:
    now = datetime.now(UTC)
    sessions = session_factory(api.engine)
    with sessions() as s:
        online(s, now)
        heartbeat(s, now, instruments=[{"addr": "C4:01", "battery": 15}])
        assert alerts.evaluate(s, now).opened == [("battery_low", "instrument:gw-u001/C4:01")]
    [alert] = api.get("/api/v1/alerts", test_api.Role.admin).json()
    assert alert["instrument"] == "C4:01" and "battery 15 %" in alert["detail"]
    headers = {"Authorization": f"Bearer {api.tokens[test_api.Role.logistics]}"}
    r = api.client.post(f"/api/v1/alerts/{alert['id']}/resolve", headers=headers,
                        json={"note": "battery swapped"})
    assert r.status_code == 200 and r.json()["resolved_by"] == "logistics"
    assert api.client.post(f"/api/v1/alerts/{alert['id']}/resolve", headers=headers,
                           json={}).status_code == 409
    with sessions() as s:  # the heartbeat still says 15 %: a new alert
        assert alerts.evaluate(s, now + timedelta(minutes=1)).opened == \
            [("battery_low", "instrument:gw-u001/C4:01")]
        heartbeat(s, now + timedelta(minutes=2), instruments=[{"addr": "C4:01", "battery": 95}])
        assert alerts.evaluate(s, now + timedelta(minutes=3)).resolved == \
            [("battery_low", "instrument:gw-u001/C4:01")]


def test_gateway_kinds(registry: Session) -> None:
    t0 = local(MONDAY, 9)
    online(registry, t0)
    heartbeat(registry, t0, journal_depth=10, journal_oldest_age_s=60)
    heartbeat(registry, t0 + timedelta(minutes=30), journal_depth=40, journal_oldest_age_s=600)
    late = t0 + timedelta(minutes=70)
    # the gateway's clock is 3 minutes fast; its journal is full and grew by 60
    status(registry, "health", {"ts": to_unix_ms(late) + 180_000, "journal_depth": 70,
                                "journal_oldest_age_s": 1200, "alarms": ["journal_full"]},
           late)
    result = alerts.evaluate(registry, late)
    assert sorted(result.opened) == [("backlog_growing", "gateway:gw-u001"),
                                     ("clock_drift", "gateway:gw-u001"),
                                     ("journal_full", "gateway:gw-u001")]
    details = {a.kind: a.detail for a in registry.scalars(select(Alert))}
    assert "journal grew by 60 records in 70 min to 70" in details["backlog_growing"]
    assert "+180 s" in details["clock_drift"]
    # the journal drains, the clock is set, the alarm clears
    later = late + timedelta(minutes=11)
    heartbeat(registry, later, journal_depth=0, journal_oldest_age_s=0, alarms=[])
    assert sorted(alerts.evaluate(registry, later).resolved) == sorted(result.opened)
    # an old unacknowledged record alone is a growing backlog too
    much_later = later + timedelta(minutes=11)
    heartbeat(registry, much_later, journal_depth=2, journal_oldest_age_s=7200)
    assert alerts.evaluate(registry, much_later).opened == \
        [("backlog_growing", "gateway:gw-u001")]


def test_instrument_kinds(registry: Session) -> None:
    t0 = local(MONDAY, 9)
    online(registry, t0)
    status(registry, "birth", {"fw": "0.2.0", "boot": 1, "instruments": [
        {"addr": "C4:01", "type": "blood_pressure"}, {"addr": "GM:02", "type": "glucose"}]},
           t0)
    seen = to_unix_ms(t0)
    heartbeat(registry, t0, instruments=[{"addr": "C4:01", "last_seen": seen, "errors": 1,
                                         "drift_ms": -300_000}])
    for i in (1, 2, 3):  # decode errors pile up over the day
        heartbeat(registry, t0 + i * 11 * timedelta(minutes=1), instruments=[
            {"addr": "C4:01", "last_seen": seen, "errors": 1 + 2 * i}])
    at = t0 + timedelta(minutes=40)
    assert sorted(alerts.evaluate(registry, at).opened) == [
        ("clock_drift", "instrument:gw-u001/C4:01"),
        ("repeated_instrument_errors", "instrument:gw-u001/C4:01")]
    # GM:02 was paired and never seen, C4:01 not since Monday: alerts after
    # 7 planned working days (the weekend does not count). The silent gateway
    # itself is offline meanwhile.
    nine_days = local(MONDAY + timedelta(days=9), 9)

    def not_seen(opened: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return sorted(o for o in opened if o[0] == "instrument_not_seen")

    assert not_seen(alerts.evaluate(registry, nine_days - timedelta(days=1)).opened) == []
    assert not_seen(alerts.evaluate(registry, nine_days).opened) == [
        ("instrument_not_seen", "instrument:gw-u001/C4:01"),
        ("instrument_not_seen", "instrument:gw-u001/GM:02")]
    assert any("never seen since" in a.detail for a in registry.scalars(
        select(Alert).where(Alert.subject == "instrument:gw-u001/GM:02")))
    # unpaired: no longer expected
    status(registry, "birth", {"fw": "0.2.0", "boot": 2, "instruments": [{"addr": "C4:01"}]},
           nine_days)
    resolved = alerts.evaluate(registry, nine_days + timedelta(minutes=1)).resolved
    assert ("instrument_not_seen", "instrument:gw-u001/GM:02") in resolved


def test_calibration_due_from_the_registry(registry: Session) -> None:
    from fleet_server import registry_models

    table: Any = getattr(registry_models, "Instrument", None)
    if table is None or not hasattr(table, "calibration_last_done"):
        pytest.skip("the registry has no calibration dates yet")
    now = local(MONDAY, 9)
    try:
        registry.add(table(key="5140201234", model="UA-651BLE", created_at=now,
                           calibration_interval_days=365,
                           calibration_last_done=date(2025, 12, 5)))
        registry.commit()
    except (TypeError, IntegrityError):
        pytest.skip("the registry's instruments table has other required columns")
    assert alerts.evaluate(registry, now).opened == [("calibration_due",
                                                      "instrument:5140201234")]
    a = registry.scalar(select(Alert).where(Alert.kind == "calibration_due"))
    assert a is not None and "calibration due 2026-12-05" in a.detail


def test_one_active_alert_per_kind_and_subject(registry: Session) -> None:
    now = local(MONDAY, 9)
    gw = registry.scalar(select(Gateway))
    assert gw is not None

    def alert(status: str) -> Alert:
        return Alert(kind="journal_full", subject="gateway:x", gateway_pk=gw.id, status=status,
                     severity="critical", detail="", opened_at=now, updated_at=now)

    registry.add_all([alert("resolved"), alert("resolved"), alert("open")])
    registry.commit()
    registry.add(alert("acknowledged"))
    with pytest.raises(IntegrityError):
        registry.commit()
    registry.rollback()


def test_periodic_evaluator_runs_and_survives(engine: Any) -> None:
    from tests.fleet_server.helpers import make_settings, register

    sessions = session_factory(engine)
    with sessions() as s:
        register(s, ("U001", "gw-u001"))
        online(s, local(MONDAY, 7))
        offline(s, local(MONDAY, 8))
    settings = make_settings("sqlite://", evaluate_interval_s=0)
    ev = alerts.PeriodicEvaluator(settings, sessions, clock=lambda: local(MONDAY, 12))
    result = ev.run_once()
    assert result is not None and result.opened == [("unit_offline", "gateway:gw-u001")]
    assert (ev.runs, ev.errors) == (1, 0)
    ev.start()  # interval 0: no thread
    ev.stop()
