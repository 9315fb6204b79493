"""GET /api/v1/metrics: Prometheus text that prometheus_client's own parser
reads, with the fleet's gauges from the database and the counters of a real
ingest worker fed through a real Mosquitto; who may scrape; and that the
logs of what was ingested carry no medical value."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from devharness.broker import Mosquitto
from fleet_server import alerts
from fleet_server.db import session_factory
from fleet_server.ingest import IngestWorker, ingest_batch
from fleet_server.protocol import to_unix_ms
from tests.fleet_server import test_api
from tests.fleet_server.helpers import DATA_TOPIC, NOW, golden, make_settings
from tests.fleet_server.test_commands import _poll
from tests.fleet_server.test_health_model import status

api = test_api.api
Role = test_api.Role


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(api: test_api.Api, token: str) -> Any:
    return api.client.get("/api/v1/metrics", headers={"Authorization": f"Bearer {token}"})


def test_fleet_gauges_from_the_database(api: test_api.Api) -> None:
    now = datetime.now(UTC)
    with session_factory(api.engine)() as s:
        status(s, "state", {"state": "online", "ts": to_unix_ms(now), "boot": 1}, now)
        status(s, "health", {"ts": to_unix_ms(now), "alarms": ["journal_full"],
                             "instruments": [{"addr": "C4:01", "battery": 5}]}, now)
        ingest_batch(s, DATA_TOPIC, golden("data_mixed_bad.json"), NOW)
        alerts.evaluate(s, now)
    r = scrape(api, api.tokens[Role.logistics])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = samples(r.text)
    assert m[("ummc_gateways_online", ())] == 1
    assert m[("ummc_gateways", (("state", "unknown"),))] == 1  # gw-u002, never heard from
    assert m[("ummc_alerts_open", (("kind", "journal_full"), ("status", "open")))] == 1
    assert m[("ummc_alerts_open", (("kind", "battery_low"), ("status", "open")))] == 1
    assert m[("ummc_alerts_open", (("kind", "unit_offline"), ("status", "open")))] == 0
    assert m[("ummc_dead_letters_total", (("reason", "invalid_record"),))] == 1
    assert m[("ummc_commands", (("status", "pending"),))] == 0
    assert not any(name.startswith("ummc_ingest") for name, _ in m)  # no worker here


def test_who_may_scrape(api: test_api.Api) -> None:
    assert api.client.get("/api/v1/metrics").status_code == 401
    assert scrape(api, "not-a-token").status_code == 401
    assert scrape(api, api.tokens[Role.nurse]).status_code == 403
    assert scrape(api, api.tokens[Role.technician]).status_code == 403
    token = "m" * 32
    api.app.state.settings = make_settings(str(api.engine.url), secret_key=test_api.SECRET,
                                           metrics_token=token)
    assert scrape(api, token).status_code == 200
    assert scrape(api, token[:-1] + "x").status_code == 401


def test_worker_counters_and_no_values_in_the_logs(
        api: test_api.Api, broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = make_settings(str(api.engine.url), mqtt_port=broker.port,
                             mqtt_client_id=f"m-{tag}", ingest_group=f"g{tag}",
                             mqtt_session_expiry=60)
    worker = IngestWorker(settings, session_factory(api.engine))
    worker.start()
    api.app.state.ingest_worker = worker
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{tag}")
    try:
        assert worker.subscribed.wait(10)
        caplog.set_level(logging.INFO)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        base = "ummc/v1/U001/gw-u001/"
        pub.publish(base + "data", golden("data_bp.json"), qos=1).wait_for_publish(5)
        pub.publish(base + "data", golden("data_mixed_bad.json"), qos=1).wait_for_publish(5)
        heartbeat = {"v": 1, "ts": int(time.time() * 1000),
                     "instruments": [{"addr": "C4:01", "battery": 138}]}
        pub.publish(base + "health", json.dumps(heartbeat), qos=1).wait_for_publish(5)
        pub.publish(base + "cmd/result", b'{"v":1,"id":"c-x","ok":true,"ts":1}',
                    qos=1).wait_for_publish(5)
        _poll(lambda: worker.stats["messages"] >= 4)
        m = samples(scrape(api, api.tokens[Role.admin]).text)
        assert m[("ummc_ingest_records_total", (("outcome", "stored"),))] == 3
        assert m[("ummc_ingest_records_total", (("outcome", "rejected"),))] == 1
        assert m[("ummc_ingest_rejections_total", (("reason", "invalid_record"),))] == 1
        assert m[("ummc_ingest_rejections_total", (("reason", "unknown_command"),))] == 1
        assert m[("ummc_ingest_messages_total", (("leaf", "data"),))] == 2
        assert m[("ummc_ingest_health_fields_dropped_total", ())] == 1
        assert m[("ummc_ack_lag_seconds_count", ())] == 2
        assert m[("ummc_ingest_subscribed", ())] == 1
        assert m[("ummc_gateways_online", ())] == 1  # the heartbeat
        text = caplog.text
        assert "instruments[0].battery" in text  # the field is named ...
        for value in ("138", "141", "\"high\""):  # ... never a value
            assert value not in text, value
    finally:
        pub.disconnect()
        pub.loop_stop()
        worker.stop()
