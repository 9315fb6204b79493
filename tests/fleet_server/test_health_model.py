"""The device-health model: link state from `state`/`birth`/`health`
(idempotent across worker and broker restarts), heartbeat facts, schedules
and availability against planned working days. Pure functions first, then
the store on both backends, then a real Mosquitto restart."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from devharness.broker import Mosquitto
from fleet_server import alerts, health_model
from fleet_server.db import make_engine, session_factory
from fleet_server.health_model import Change, Schedule
from fleet_server.ingest import IngestWorker, ingest_status
from fleet_server.models import (
    Alert,
    Gateway,
    GatewayStateChange,
    HealthSample,
    InstrumentHealth,
    UnitCalendarDay,
)
from fleet_server.protocol import to_unix_ms
from tests.fleet_server import test_api
from tests.fleet_server.helpers import make_settings, register

api = test_api.api
CASA = ZoneInfo("Africa/Casablanca")
BASE = "ummc/v1/U001/gw-u001/"
GRACE = timedelta(minutes=3)


def local(d: date, hour: int, minute: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=CASA).astimezone(UTC)


MONDAY = date(2026, 11, 30)


def status(session: Session, leaf: str, doc: dict[str, Any], now: datetime,
           retained: bool = False, **kw: Any) -> Any:
    return ingest_status(session, BASE + leaf, json.dumps({"v": 1, **doc}).encode(), now,
                         retained=retained, **kw)


def gateway(session: Session, gateway_id: str = "gw-u001") -> Gateway:
    session.expire_all()
    gw = session.scalar(select(Gateway).where(Gateway.gateway_id == gateway_id))
    assert gw is not None
    return gw


def changes(session: Session) -> list[tuple[str, datetime, str | None]]:
    return [(c.state, c.at, c.reason) for c in session.scalars(
        select(GatewayStateChange).order_by(GatewayStateChange.at, GatewayStateChange.id))]


# --- pure functions ---------------------------------------------------------------------


def test_state_messages_are_ordered_by_boot_then_ts() -> None:
    older = health_model.state_is_older
    assert older(stored_boot=3, stored_ts=2000, boot=3, ts=1000)
    assert older(stored_boot=3, stored_ts=2000, boot=3, ts=2000)  # the same one again
    assert not older(stored_boot=3, stored_ts=2000, boot=3, ts=3000)
    assert not older(stored_boot=3, stored_ts=2000, boot=4, ts=5)  # rebooted, clock unset
    assert older(stored_boot=4, stored_ts=5, boot=3, ts=9999)
    assert not older(stored_boot=3, stored_ts=2000, boot=None, ts=None)  # a last will


def test_short_down_spells_are_not_downtime() -> None:
    t0 = datetime(2026, 11, 30, 8, tzinfo=UTC)
    flap = [Change(t0, "online"), Change(t0 + timedelta(hours=1), "offline"),
            Change(t0 + timedelta(hours=1, minutes=1), "online")]
    assert health_model.up_intervals(flap, t0, t0 + timedelta(hours=2), GRACE) == \
        [(t0, t0 + timedelta(hours=2))]
    outage = [Change(t0, "online"), Change(t0 + timedelta(hours=1), "offline"),
              Change(t0 + timedelta(hours=1, minutes=30), "stale"),
              Change(t0 + timedelta(hours=2), "online")]
    assert health_model.up_intervals(outage, t0, t0 + timedelta(hours=3), GRACE) == \
        [(t0, t0 + timedelta(hours=1)), (t0 + timedelta(hours=2), t0 + timedelta(hours=3))]
    # a down spell still open: up while within the grace period, down after it
    down = [Change(t0, "online"), Change(t0 + timedelta(hours=1), "offline")]
    end = t0 + timedelta(hours=1, minutes=1)
    assert health_model.up_intervals(down, t0, end, GRACE) == [(t0, end)]
    assert health_model.effective_state("offline", t0, t0 + timedelta(minutes=1),
                                        GRACE) == "online"
    assert health_model.effective_state("offline", t0, t0 + timedelta(minutes=4),
                                        GRACE) == "offline"


def test_schedule_windows_days_off_and_working_seconds() -> None:
    wednesday, saturday = MONDAY + timedelta(days=2), MONDAY + timedelta(days=5)
    s = Schedule(days={wednesday: False, saturday: True})
    assert s.window(MONDAY) == (local(MONDAY, 8), local(MONDAY, 17))
    assert s.window(wednesday) is None and s.window(MONDAY + timedelta(days=6)) is None
    assert s.window(saturday) == (local(saturday, 8), local(saturday, 17))
    # Friday 16:00 to Monday 09:00 (weekend off): 1 h + 1 h
    friday = MONDAY - timedelta(days=3)
    assert health_model.working_seconds(s, local(friday, 16), local(MONDAY, 9)) == 7200


def test_trends_and_counters() -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    points = [(t0 + timedelta(days=i), 90 - 2 * i) for i in range(10)]
    trend = health_model.battery_trend(points)
    assert trend is not None and abs(trend + 2) < 1e-9
    assert health_model.battery_trend(points[:1]) is None
    assert health_model.counter_increase([3, 5, 9, 1, 4]) == 10  # a reboot reset it to 0
    assert health_model.firmware_counts(["0.2.0", None, "0.1.0", "0.2.0"]) == \
        {"0.1.0": 1, "0.2.0": 2, "unknown": 1}


def test_heartbeat_facts_drop_a_bad_field_and_keep_the_rest() -> None:
    doc = {"v": 1, "ts": 1795935841000, "journal_depth": 4, "journal_oldest_age_s": "old",
           "rssi": -67, "alarms": ["journal_full"],
           "instruments": [{"addr": "C4:01", "battery": 250, "drift_ms": -4200,
                            "last_seen": 1795935700000, "errors": {"decode_error": 2,
                                                                   "timeout": 1}},
                           {"battery": 50}, "nope"]}
    f = health_model.heartbeat_facts(doc)
    assert (f.journal_depth, f.journal_oldest_age_s, f.rssi, f.alarms) == \
        (4, None, -67, ("journal_full",))
    [inst] = f.instruments
    assert (inst.addr, inst.battery, inst.drift_ms, inst.errors) == ("C4:01", None, -4200, 3)
    assert [p.split(":")[0] for p in f.problems] == [
        "journal_oldest_age_s", "instruments[0].battery", "instruments[1].addr",
        "instruments[2]"]
    assert not any("250" in p or "old" in p.split(":", 1)[1] for p in f.problems)
    legacy = health_model.heartbeat_facts({"ts": 1, "oldest_unacked_age": 90})
    assert legacy.journal_oldest_age_s == 90


# --- the store (SQLite and PostgreSQL) ------------------------------------------------------


def test_state_history_is_idempotent_across_restarts(registry: Session) -> None:
    t0 = local(MONDAY, 8)
    online: dict[str, Any] = {"state": "online", "ts": to_unix_ms(t0) - 500, "boot": 3}
    assert status(registry, "state", online, t0) is None
    # a worker restart re-reads the retained state: nothing changes
    status(registry, "state", online, t0 + timedelta(hours=1), retained=True)
    # an older copy (a queue replayed late) is ignored
    status(registry, "state", {**online, "ts": online["ts"] - 60_000},
           t0 + timedelta(hours=1))
    lost = t0 + timedelta(hours=2)
    status(registry, "state", {"state": "offline", "reason": "connection_lost"}, lost)
    status(registry, "state", {"state": "offline", "reason": "connection_lost"},
           lost + timedelta(minutes=5), retained=True)
    back = lost + timedelta(minutes=10)  # same boot; the gateway's clock went back a bit
    status(registry, "state", {**online, "ts": online["ts"] - 1000}, back)
    # a broker restart: the will, a heartbeat after the reconnect, then the
    # will's QoS 1 re-delivery (no ts: only its sameness tells it apart)
    restart = back + timedelta(hours=1)
    will = {"state": "offline", "reason": "connection_lost"}
    status(registry, "state", will, restart)
    status(registry, "health", {"ts": 5}, restart + timedelta(seconds=2))
    status(registry, "state", will, restart + timedelta(seconds=2))
    assert changes(registry) == [("online", t0, "state"),
                                 ("offline", lost, "connection_lost"),
                                 ("online", back, "state"),
                                 ("offline", restart, "connection_lost"),
                                 ("online", restart + timedelta(seconds=2), "heartbeat")]
    status(registry, "state", {**online, "ts": online["ts"] + 5000}, restart + GRACE)
    gw = gateway(registry)
    assert (gw.last_state, gw.link_state, gw.link_state_at, gw.boot_count) == \
        ("online", "online", restart + timedelta(seconds=2), 3)


def test_a_retained_state_starts_the_history_once(registry: Session) -> None:
    """Gateways known before the health model: the first retained state read
    starts their link state, at the payload's ts."""
    t0 = local(MONDAY, 9)
    ts = to_unix_ms(t0 - timedelta(minutes=5))
    gw = gateway(registry)
    gw.last_state, gw.state_ts = "online", ts
    registry.commit()
    status(registry, "state", {"state": "online", "ts": ts, "boot": 1}, t0, retained=True)
    status(registry, "state", {"state": "online", "ts": ts, "boot": 1}, t0, retained=True)
    assert changes(registry) == [("online", t0 - timedelta(minutes=5), "retained")]


def test_heartbeats_revive_a_stale_gateway_and_feed_the_instruments(registry: Session) -> None:
    t0 = local(MONDAY, 8)
    status(registry, "state", {"state": "online", "ts": to_unix_ms(t0), "boot": 1}, t0)
    status(registry, "birth", {"fw": "0.2.0", "boot": 1, "instruments": [
        {"addr": "C4:01", "type": "blood_pressure", "model": "UA-651BLE"},
        {"addr": "C4:02", "type": "glucose"}]}, t0)
    listening = t0 - timedelta(hours=1)
    late = t0 + timedelta(minutes=4)
    result = alerts.evaluate(registry, late, listening_since=listening)
    assert result.stale == ["gw-u001"] and gateway(registry).link_state == "stale"
    every = timedelta(minutes=10)
    hb: dict[str, Any] = {"ts": to_unix_ms(late) + 2000, "journal_depth": 3,
                          "journal_oldest_age_s": 40,
                          "instruments": [{"addr": "C4:01", "battery": 80, "drift_ms": -4200,
                                           "last_seen": to_unix_ms(late) - 1000,
                                           "errors": 1}]}
    problems: list[str] = []
    status(registry, "health", hb, late, sample_every=every, problems=problems)
    status(registry, "health", {**hb, "ts": hb["ts"] + 60_000}, late + timedelta(minutes=1),
           sample_every=every)
    status(registry, "health", {**hb, "ts": hb["ts"] + 660_000},
           late + timedelta(minutes=11), sample_every=every)
    assert problems == []
    assert [s for s, _at, _r in changes(registry)] == ["online", "stale", "online"]
    assert registry.scalar(select(func.count()).select_from(HealthSample)) == 2
    sample = registry.scalars(select(HealthSample).order_by(HealthSample.at)).first()
    assert sample is not None and sample.clock_offset_ms == 2000
    rows = {r.addr: r for r in registry.scalars(select(InstrumentHealth))}
    assert (rows["C4:01"].battery, rows["C4:01"].drift_ms, rows["C4:01"].model) == \
        (80, -4200, "UA-651BLE")
    assert rows["C4:02"].last_seen_at is None and rows["C4:02"].active
    # a later birth no longer lists C4:02: unpaired
    status(registry, "birth", {"fw": "0.2.1", "boot": 2, "instruments": [{"addr": "C4:01"}]},
           late + timedelta(hours=1))
    unpaired = registry.get(InstrumentHealth, (gateway(registry).id, "C4:02"),
                            populate_existing=True)
    assert unpaired is not None and not unpaired.active


def test_no_staleness_while_the_worker_itself_was_deaf(registry: Session) -> None:
    t0 = local(MONDAY, 8)
    status(registry, "state", {"state": "online", "ts": to_unix_ms(t0), "boot": 1}, t0)
    later = t0 + timedelta(hours=2)
    assert alerts.evaluate(registry, later, listening_since=later - timedelta(minutes=1)).stale \
        == []
    assert alerts.evaluate(registry, later, listening_since=None).stale == []
    assert gateway(registry).link_state == "online"


def _history(session: Session) -> None:
    """Mon: online 07:00, offline 12:00-13:00; Tue online; Wed (a day off)
    offline all day; Thu back at 07:30; the weekend offline."""
    mon = MONDAY
    status(session, "state", {"state": "online", "ts": 1, "boot": 1}, local(mon, 7))
    status(session, "state", {"state": "offline", "reason": "connection_lost"}, local(mon, 12))
    status(session, "state", {"state": "online", "ts": 2, "boot": 1}, local(mon, 13))
    wed = mon + timedelta(days=2)
    status(session, "state", {"state": "offline", "reason": "shutdown"}, local(wed, 7))
    status(session, "state", {"state": "online", "ts": 3, "boot": 2},
           local(wed + timedelta(days=1), 7, 30))
    status(session, "state", {"state": "offline", "reason": "shutdown"},
           local(mon + timedelta(days=4), 18))
    gw = gateway(session)
    session.add(UnitCalendarDay(unit_pk=gw.unit_id, day=wed, working=False, note="holiday"))
    session.commit()


def test_availability_counts_planned_working_time_only(registry: Session) -> None:
    _history(registry)
    now = local(MONDAY + timedelta(days=7), 12)
    gws, insts = health_model.availability_report(
        registry, [gateway(registry)], default=Schedule(), first=MONDAY,
        last=MONDAY + timedelta(days=6), now=now, grace=GRACE)
    days = {d.day.isoformat(): (d.planned_s, d.up_s, d.ratio) for d in gws[0].days}
    assert days["2026-11-30"] == (9 * 3600, 8 * 3600, 8 / 9)  # one hour down at noon
    assert days["2026-12-01"] == (9 * 3600, 9 * 3600, 1.0)
    assert days["2026-12-02"] == (0, 0, None)  # a day off is not downtime
    assert days["2026-12-03"][2] == 1.0 and days["2026-12-04"][2] == 1.0
    assert days["2026-12-05"][2] is None and days["2026-12-06"][2] is None  # weekend
    assert insts == []


def test_availability_api(api: test_api.Api) -> None:
    """The same through GET /fleet/availability, on days in the past of the
    real clock, with an instrument seen on two of the planned days."""
    today = datetime.now(UTC).astimezone(CASA).date()
    mon = today - timedelta(days=today.weekday() + 14)
    with session_factory(api.engine)() as s:
        history: list[tuple[datetime, dict[str, Any]]] = [
            (local(mon, 7), {"state": "online", "ts": 1, "boot": 1}),
            (local(mon, 12), {"state": "offline", "reason": "connection_lost"}),
            (local(mon, 13), {"state": "online", "ts": 2, "boot": 1})]
        for when, doc in history:
            status(s, "state", doc, when)
        status(s, "birth", {"fw": "0.2.0", "instruments": [{"addr": "C4:01"}]}, local(mon, 7))
        for day in (mon, mon + timedelta(days=3)):
            at = local(day, 10)
            status(s, "health", {"ts": to_unix_ms(at), "instruments": [
                {"addr": "C4:01", "last_seen": to_unix_ms(at) - 60_000, "battery": 70}]}, at)
        s.add(UnitCalendarDay(unit_pk=gateway(s).unit_id, day=mon + timedelta(days=2),
                              working=False))
        s.commit()
    r = api.get("/api/v1/fleet/availability", test_api.Role.logistics,
                **{"from": mon.isoformat(), "to": (mon + timedelta(days=4)).isoformat(),
                   "gateway": "gw-u001"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["from"] == mon.isoformat()
    [g] = body["gateways"]
    assert [d["availability"] for d in g["days"]][:3] == [round(8 / 9, 4), 1.0, None]
    assert g["days"][2]["day_off"] is True and g["planned_s"] == 4 * 9 * 3600
    [inst] = body["instruments"]
    assert (inst["addr"], inst["planned_days"], inst["seen_days"]) == ("C4:01", 4, 2)
    # bad ranges: FastAPI's standard 422, naming the parameter
    for params, field in (({"from": "2026-01-10", "to": "2026-01-01"}, "from"),
                          ({"from": "2025-01-01", "to": "2026-01-01"}, "to"),
                          ({"from": "0001-01-01", "to": "0001-01-02"}, "from")):
        bad = api.get("/api/v1/fleet/availability", **params)
        assert bad.status_code == 422, params
        assert [e["loc"] for e in bad.json()["detail"]] == [["query", field]], bad.text
    assert api.get("/api/v1/fleet/battery", gateway="gw-u001",
                   addr="C4\x0001").status_code == 422


def test_fleet_health_firmware_and_battery_api(api: test_api.Api) -> None:
    now = datetime.now(UTC)
    with session_factory(api.engine)() as s:
        status(s, "state", {"state": "online", "ts": to_unix_ms(now), "boot": 2}, now)
        status(s, "birth", {"fw": "0.2.0", "boot": 2}, now)
        for i, battery in enumerate((90, 80, 70)):
            at = now - timedelta(days=2 - i)
            status(s, "health", {"ts": to_unix_ms(at), "journal_depth": 5,
                                 "journal_oldest_age_s": 12, "alarms": ["journal_full"],
                                 "instruments": [{"addr": "C4:01", "battery": battery,
                                                  "drift_ms": 1500}]}, at)
    [h] = api.get("/api/v1/fleet/health", test_api.Role.technician, gateway="gw-u001").json()
    assert (h["state"], h["fw"], h["journal_depth"], h["journal_oldest_age_s"], h["alarms"]) \
        == ("online", "0.2.0", 5, 12, ["journal_full"])
    assert [(i["addr"], i["battery"], i["drift_ms"]) for i in h["instruments"]] == \
        [("C4:01", 70, 1500)]
    fw = api.get("/api/v1/fleet/firmware").json()
    assert fw == [{"fw": "0.2.0", "count": 1, "gateways": ["gw-u001"]},
                  {"fw": "unknown", "count": 1, "gateways": ["gw-u002"]}]
    b = api.get("/api/v1/fleet/battery", gateway="gw-u001", addr="C4:01").json()
    assert [p["battery"] for p in b["points"]] == [90, 80, 70]
    assert round(b["trend_pct_per_day"]) == -10 and round(b["days_to_threshold"]) == 5


def test_schedule_api(api: test_api.Api) -> None:
    r = api.get("/api/v1/fleet/schedules/U001")
    assert r.json()["default"] is True and r.json()["weekdays"] == "1111100"
    headers = {"Authorization": f"Bearer {api.tokens[test_api.Role.logistics]}"}
    r = api.client.put("/api/v1/fleet/schedules/U001", headers=headers,
                       json={"weekdays": "1111110", "start": "09:00", "end": "13:30"})
    assert r.status_code == 200 and r.json()["default"] is False
    r = api.client.put("/api/v1/fleet/schedules/U001", headers=headers,
                       json={"weekdays": "1111110", "start": "14:00", "end": "13:30"})
    assert r.status_code == 422
    r = api.client.put("/api/v1/fleet/schedules/U001", headers=headers,
                       json={"weekdays": "1111110", "start": "09:00", "end": "13:30",
                             "timezone": "Mars/Olympus"})
    assert r.status_code == 422 and "time zone" in r.text
    r = api.client.put("/api/v1/fleet/schedules/U001/days/2026-12-25", headers=headers,
                       json={"working": False, "note": "holiday"})
    assert r.status_code == 200
    r = api.client.put("/api/v1/fleet/schedules/U001/days/0001-01-01", headers=headers,
                       json={"working": False})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "day"]
    body = api.get("/api/v1/fleet/schedules/U001").json()
    assert (body["start"], body["end"], body["days"]) == (
        "09:00", "13:30", [{"date": "2026-12-25", "working": False, "note": "holiday"}])
    r = api.client.delete("/api/v1/fleet/schedules/U001/days/2026-12-25", headers=headers)
    assert r.status_code == 204
    assert api.get("/api/v1/fleet/schedules/U999").status_code == 404


# --- a real broker restart --------------------------------------------------------------------


class _Gateway:
    """A gateway's MQTT session as the firmware keeps it: a retained last
    will, `online` (retained) published on every connect, reconnecting."""

    def __init__(self, port: int, unit: str, gw: str) -> None:
        self.prefix = f"ummc/v1/{unit}/{gw}/"
        self.connects = 0
        self.ready = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gw, protocol=mqtt.MQTTv311,
                        clean_session=False)
        c.will_set(self.prefix + "state", b'{"v":1,"state":"offline","reason":'
                   b'"connection_lost"}', qos=1, retain=True)
        c.reconnect_delay_set(1, 1)
        c.on_connect = self._on_connect
        self.client = c
        c.connect("127.0.0.1", port, keepalive=5)
        c.loop_start()

    def _on_connect(self, c: mqtt.Client, *_a: Any) -> None:
        self.connects += 1
        doc = {"v": 1, "state": "online", "ts": int(time.time() * 1000), "boot": 1}
        c.publish(self.prefix + "state", json.dumps(doc), qos=1, retain=True)
        c.publish(self.prefix + "health", json.dumps({"v": 1, "ts": doc["ts"]}), qos=1)
        self.ready.set()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def test_broker_and_worker_restarts_are_not_offline_flaps(
        sqlite_url: str, broker_factory: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    unit, gw_id = f"U{tag}", f"gw-{tag}"
    engine: Engine = make_engine(sqlite_url)
    with Session(engine) as s:
        register(s, (unit, gw_id))
    private: Mosquitto = broker_factory()
    settings = make_settings(sqlite_url, mqtt_port=private.port, mqtt_client_id=f"w-{tag}",
                             ingest_group=f"g{tag}", mqtt_session_expiry=60)
    sessions = session_factory(engine)

    def link() -> tuple[str | None, int]:
        with sessions() as s:
            g = gateway(s, gw_id)
            return g.link_state, g.state_ts or 0

    worker = IngestWorker(settings, sessions)
    worker.start()
    assert worker.subscribed.wait(10)
    gw = _Gateway(private.port, unit, gw_id)
    _wait(lambda: link()[0] == "online")
    first_ts = link()[1]

    private.restart()  # the gateway and the worker both reconnect
    _wait(lambda: gw.connects >= 2 and link()[1] > first_ts and worker.subscribed.is_set())
    worker.stop()  # a worker restart: the retained state is read again
    worker = IngestWorker(settings, sessions)
    worker.start()
    assert worker.subscribed.wait(10)
    _wait(lambda: worker.stats["status_messages"] >= 1)
    with sessions() as s:
        now = datetime.now(UTC)
        result = alerts.evaluate(s, now, settings, listening_since=worker.subscribed_at)
        g = gateway(s, gw_id)
        assert health_model.effective_state(g.link_state, g.link_state_at, now,
                                            GRACE) == "online"
        assert result.opened == [] and s.scalar(select(func.count()).select_from(Alert)) == 0
        # whatever the broker did with the will, the history has no downtime
        spells = health_model.up_intervals(
            health_model.changes_for(s, g.id, now - timedelta(hours=1), now),
            now - timedelta(minutes=5), now, GRACE, now)
        assert spells and spells[0][1] == now
        assert len(changes(s)) <= 3  # online, and at most one short offline + online
    gw.stop()
    worker.stop()
    engine.dispose()
