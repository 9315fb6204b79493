"""The time-series copy (fleet_server.timeseries) against a real server.

VictoriaMetrics (Debian's `victoria-metrics`, started on a free loopback port
by devharness.victoria) takes what influxdb-client sends to /api/v2/write and
gives it back through /api/v1/export, where a line `m,tags f=1` becomes the
series `m_f`. What a user relies on: the points arrive with the right tags,
values and times; a server that is down or hangs never stalls the caller
(ingest), the points wait in a bounded queue and arrive once it is back, and
what the queue cannot hold is dropped oldest-first and counted; close()
flushes. Each test writes under its own gateway id, so tests sharing the
server never see each other's series. The Grafana dashboard's InfluxQL
queries run on Debian's InfluxDB 1.6 over points the sink produced.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session

from devharness.broker import Mosquitto
from devharness.ports import free_port, wait_for_port
from devharness.processes import spawn, terminate, wait_until
from devharness.victoria import VictoriaMetrics, victoria_available
from fleet_server import crud, protocol
from fleet_server.db import make_engine, session_factory
from fleet_server.ingest import IngestWorker
from fleet_server.models import Gateway, Unit
from fleet_server.timeseries import (
    COUNT_FIELD,
    ReadingRow,
    TimeSeriesConfig,
    TimeSeriesSink,
    health_lines,
    reading_line,
)
from tests.fleet_server.helpers import NOW, REPO, golden, golden_json, make_settings

pytestmark = pytest.mark.skipif(not victoria_available(),
                                reason="apt-get install victoria-metrics")

DASHBOARD = REPO / "docs" / "grafana" / "ummc-dashboard.json"
# A heartbeat as in docs/protocol.md (`health`).
HEARTBEAT: dict[str, Any] = {
    "v": 1, "ts": 1795935841000, "uptime": 3600, "boots": 3, "resets_unexpected": 0,
    "alarms": ["journal_full"], "heap_free": 61000, "heap_min": 48000, "flash_free": 1900000,
    "journal_depth": 7, "oldest_unacked_age": None, "link": "wifi", "rssi": -67,
    "reconnects": 1, "supply_mv": 4950, "last_error": None,
    "instruments": [{"addr": "C4:7C:8D:6A:11:02", "last_seen": 1795935700000, "battery": 80}]}
# Generous: a call that waited for the network would take a timeout (seconds).
NON_BLOCKING_S = 0.5


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    vm = VictoriaMetrics(tmp_path_factory.mktemp("victoria")).start()
    yield vm
    vm.stop()


@contextmanager
def running_sink(url: str, **overrides: Any) -> Iterator[TimeSeriesSink]:
    options: dict[str, Any] = dict(url=url, token="test-token", flush_interval_ms=50,
                                   timeout_ms=2000, retry_interval_ms=50,
                                   max_retry_delay_ms=200)
    options.update(overrides)
    sink = TimeSeriesSink(TimeSeriesConfig(**options))
    try:
        yield sink
    finally:
        sink.close(timeout=1.0)


def gateway(region: str | None = "Casablanca-Settat",
            province: str | None = "Sidi Bennour") -> Gateway:
    """A registered gateway as ingest has it (transient ORM objects)."""
    tag = uuid.uuid4().hex[:8]
    return Gateway(gateway_id=f"gw-{tag}",
                   unit=Unit(code=f"U{tag}", region=region, province=province))


def golden_records(name: str) -> list[protocol.Record]:
    out = []
    for i, raw in enumerate(golden_json(name)["records"]):
        rec = protocol.validate_record(raw, i)
        assert isinstance(rec, protocol.Record)
        out.append(rec)
    return out


def reading_rows(gw: Gateway, n: int, rtime0: int = 1795935000000) -> list[ReadingRow]:
    return [ReadingRow(gateway=gw.gateway_id, unit=gw.unit.code, kind="reading",
                       type="glucose", rtime=rtime0 + i, values=(("glucose", 90.0 + i),))
            for i in range(n)]


def series(vm: VictoriaMetrics, gw: Gateway) -> dict[str, list[dict[str, Any]]]:
    """Every series written under this gateway, by metric name."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in vm.export(f'{{gateway="{gw.gateway_id}"}}'):
        out.setdefault(row["metric"]["__name__"], []).append(row)
    return out


def distinct_times(rows: list[dict[str, Any]]) -> set[int]:
    # A request that timed out on our side may still have been stored: at-least-once.
    return {t for r in rows for t in r["timestamps"]}


# --- what is written ---------------------------------------------------------------

def test_readings_and_health_read_back_with_tags_values_and_times(
        victoria: VictoriaMetrics) -> None:
    gw = gateway(region="Béni Mellal-Khénifra", province="Fquih Ben Salah")
    bp = [ReadingRow.from_record(r, gw) for r in golden_records("data_bp.json")]
    journaled = [ReadingRow.from_record(r, gw) for r in golden_records("data_health.json")]
    with running_sink(victoria.url) as sink:
        sink.write_readings(bp + journaled)
        topic = protocol.topic(gw.unit.code, gw.gateway_id, "health")
        sink.write_health_message(topic, json.dumps(HEARTBEAT).encode())
    assert sink.stats() == {"points_written": 5, "points_dropped": 0, "points_rejected": 0,
                            "write_errors": 0, "last_error": None, "queued": 0,
                            "input_errors": 0}

    got = series(victoria, gw)
    tags = {"gateway": gw.gateway_id, "unit": gw.unit.code, "region": "Béni Mellal-Khénifra",
            "province": "Fquih Ben Salah"}
    [systolic] = got["reading_systolic"]
    assert systolic["metric"] == {"__name__": "reading_systolic", **tags,
                                  "type": "blood_pressure", "addr": "C4:7C:8D:6A:11:02",
                                  "serial": "5140201234", "model": "UA-651BLE"}
    assert systolic["timestamps"] == [1795935781250, 1795935790000]  # rtime, ms
    assert systolic["values"] == [138, 141]
    assert got["reading_mean_arterial"][0]["values"] == [120]  # only the first had one
    assert sum(got["reading_count"][0]["values"]) == 2
    # Values only: no flag (irregular_pulse, value_missing) becomes a series or a label.
    assert {name for name in got if name.startswith("reading_")} == {
        "reading_systolic", "reading_diastolic", "reading_mean_arterial",
        "reading_pulse_rate", "reading_count"}

    [beat] = [r for r in got["gateway_health_heap_free"] if r["metric"]["source"] == "heartbeat"]
    assert beat["metric"] == {"__name__": "gateway_health_heap_free", "source": "heartbeat",
                              "gateway": gw.gateway_id, "unit": gw.unit.code}
    assert (beat["values"], beat["timestamps"]) == ([61000], [HEARTBEAT["ts"]])
    [offline] = [r for r in got["gateway_health_heap_free"] if r["metric"]["source"] == "journal"]
    assert offline["metric"] == {**beat["metric"], **tags, "source": "journal"}
    assert (offline["values"], offline["timestamps"]) == ([61000], [1795939320000])
    assert {r["metric"]["source"]: r["values"] for r in got["gateway_health_journal_depth"]} \
        == {"heartbeat": [7], "journal": [4]}
    assert got["gateway_health_alarms"][0]["values"] == [1]  # how many are raised
    assert "gateway_health_link" not in got and "gateway_health_v" not in got
    [battery] = got["instrument_health_battery"]
    assert battery["metric"]["addr"] == "C4:7C:8D:6A:11:02"
    assert battery["values"] == [80]
    assert got["instrument_health_last_seen_age_s"][0]["values"] == [141]


def test_odd_names_survive_the_line_protocol(victoria: VictoriaMetrics) -> None:
    gw = gateway(region="Drâa-Tafilalet", province="a,b=c d\\")
    row = ReadingRow(gateway=gw.gateway_id, unit=gw.unit.code, kind="reading",
                     type="ecg_strip", rtime=1795935000000, model="Cyton, 8 ch\nrev=2",
                     region=gw.unit.region, province=gw.unit.province,
                     values=(("heart rate", 72.0), ("big", 2.5e16), (COUNT_FIELD, 9.0)))
    with running_sink(victoria.url) as sink:
        sink.write_readings([row, ReadingRow(gateway=gw.gateway_id, unit=gw.unit.code,
                                             kind="event", type=None, rtime=1, values=())])
    assert sink.points_written == 1  # events are not written
    got = series(victoria, gw)
    assert got["reading_heart rate"][0]["metric"]["province"] == "a,b=c d"
    assert got["reading_heart rate"][0]["metric"]["region"] == "Drâa-Tafilalet"
    assert got["reading_heart rate"][0]["metric"]["model"] == "Cyton, 8 ch rev=2"
    assert got["reading_big"][0]["values"] == [2.5e16]
    assert got["reading_count"][0]["values"] == [1]  # the count is ours, not a value's


# --- through the ingest worker ------------------------------------------------------

def test_ingest_worker_copies_new_readings_and_heartbeats(
        victoria: VictoriaMetrics, broker: Mosquitto, sqlite_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    unit, gw = f"U{tag}", f"gw-{tag}"
    engine = make_engine(sqlite_url)
    with Session(engine) as s:
        crud.register(s, entries=[crud.Registration(unit=unit, gateway=gw, region="Oriental",
                                                    province="Jerada")], now=NOW)
        s.commit()
    settings = make_settings(sqlite_url, mqtt_port=broker.port, mqtt_client_id=f"ingest-{tag}",
                             ingest_group=f"g{tag}", mqtt_session_expiry=60)
    with running_sink(victoria.url) as sink:
        worker = IngestWorker(settings, session_factory(engine), timeseries=sink)
        worker.start()
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{tag}")
        try:
            assert worker.subscribed.wait(10)
            pub.connect("127.0.0.1", broker.port)
            pub.loop_start()
            for leaf, payload in (("data", golden("data_bp.json")),
                                  ("data", golden("data_bp.json")),  # a re-send: duplicates
                                  ("data", golden("data_health.json")),
                                  ("health", json.dumps(HEARTBEAT).encode()),
                                  ("health", b"{not json")):  # rejected: not copied
                pub.publish(protocol.topic(unit, gw, leaf), payload, qos=1).wait_for_publish(5)
            wait_until(lambda: worker.stats["messages"] == 5, timeout=10)
        finally:
            pub.disconnect()
            pub.loop_stop()
            worker.stop()
            engine.dispose()
    assert worker.stats["readings_stored"] == 3 and worker.stats["duplicates"] == 2
    assert sink.points_written == 5 and sink.input_errors == 0  # 2 + 1 + heartbeat 2
    got = series(victoria, Gateway(gateway_id=gw, unit=Unit(code=unit)))
    [systolic] = got["reading_systolic"]
    assert systolic["values"] == [138, 141]  # once each, though sent twice
    assert systolic["metric"]["region"] == "Oriental"
    assert {r["metric"]["source"] for r in got["gateway_health_heap_free"]} == {
        "heartbeat", "journal"}


# --- a server that is down, hangs, or refuses -----------------------------------------

def test_down_server_never_blocks_and_gets_the_points_once_it_starts(
        tmp_path: Path) -> None:
    vm = VictoriaMetrics(tmp_path / "vm", port=free_port())  # not started yet
    gw = gateway()
    rows = reading_rows(gw, 1000)
    try:
        with running_sink(vm.url, batch_size=200) as sink:
            t0 = time.monotonic()
            for row in rows:
                sink.write_readings([row])
            assert time.monotonic() - t0 < NON_BLOCKING_S
            wait_until(lambda: sink.write_errors >= 2, timeout=10)  # it keeps retrying
            assert sink.points_written == 0 and sink.queued == 1000
            assert "Connection refused" in (sink.last_error or "")
            vm.start()
            wait_until(lambda: sink.points_written == 1000, timeout=15)
        assert sink.points_dropped == 0
        [count] = series(vm, gw)["reading_count"]
        assert len(distinct_times([count])) == 1000
    finally:
        vm.stop()


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers."""
    held: list[socket.socket] = []
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for s in [*held, srv]:
            s.close()


def test_hanging_server_never_blocks_and_the_queue_keeps_the_newest() -> None:
    gw = gateway()
    rows = reading_rows(gw, 1000)
    with silent_server() as port:
        sink = TimeSeriesSink(TimeSeriesConfig(url=f"http://127.0.0.1:{port}", batch_size=50,
                                               max_queue=100, flush_interval_ms=10,
                                               timeout_ms=300, retry_interval_ms=50))
        t0 = time.monotonic()
        for row in rows:
            sink.write_readings([row])
            assert sink.queued <= 100
        assert time.monotonic() - t0 < NON_BLOCKING_S
        wait_until(lambda: sink.write_errors >= 1, timeout=10)
        assert "timed out" in (sink.last_error or "")
        kept = list(sink._queue)
        assert len(kept) == 100 and kept == [reading_line(r) for r in rows[-100:]]
        assert not sink.close(timeout=0.2)
    sink.write_readings(rows[:10])  # after close: counted, never kept
    assert sink.points_written == 0 and sink.queued == 0
    assert sink.points_dropped == 1010  # 900 pushed out, 100 unsent at close, 10 late


def test_frozen_server_stalls_nothing_and_gets_everything_after(
        victoria: VictoriaMetrics) -> None:
    gw = gateway()
    beats = [dict(HEARTBEAT, ts=HEARTBEAT["ts"] + 60_000 * i) for i in range(300)]
    with running_sink(victoria.url, batch_size=100, timeout_ms=300) as sink:
        victoria.pause()
        try:
            t0 = time.monotonic()
            for beat in beats:
                sink.write_health(gw.gateway_id, gw.unit.code, beat)
            assert time.monotonic() - t0 < NON_BLOCKING_S
            wait_until(lambda: sink.write_errors >= 1, timeout=10)
            assert sink.points_written == 0
        finally:
            victoria.resume()
        wait_until(lambda: sink.points_written == 600, timeout=15)  # gateway + instrument
    assert sink.points_dropped == 0
    got = series(victoria, gw)
    assert distinct_times(got["gateway_health_heap_free"]) == {b["ts"] for b in beats}
    assert distinct_times(got["instrument_health_battery"]) == {b["ts"] for b in beats}


@contextmanager
def http_server(statuses: list[int]) -> Iterator[tuple[int, list[bytes]]]:
    """An HTTP server answering POSTs with the given statuses in turn (then
    204), keeping the request bodies: a server that refuses data."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            status = statuses.pop(0) if statuses else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1], bodies
    finally:
        srv.shutdown()
        srv.server_close()


def test_refused_data_is_counted_not_retried_and_server_errors_are_retried() -> None:
    gw = gateway()
    with http_server([400, 503, 401]) as (port, bodies):
        with running_sink(f"http://127.0.0.1:{port}", gzip=False, batch_size=10) as sink:
            sink.write_readings(reading_rows(gw, 10))  # refused as bad data: dropped
            wait_until(lambda: sink.points_rejected == 10)
            sink.write_readings(reading_rows(gw, 10, rtime0=1795936000000))
            wait_until(lambda: sink.points_written == 10)  # after a 503 and a 401
        assert len(bodies) == 4 and bodies[1] == bodies[2] == bodies[3]
        assert sink.write_errors == 3 and sink.last_error == "HTTP 401 Unauthorized"
        assert sink.points_dropped == 0


def test_bad_input_is_counted_and_never_raises() -> None:
    with running_sink(f"http://127.0.0.1:{free_port()}") as sink:
        sink.write_health_message("ummc/v1/U001/gw-u001/health", b"{not json")
        sink.write_health_message("not/a/topic", json.dumps(HEARTBEAT).encode())
        sink.write_health("gw-u001", "U001", {"v": 1, "ts": "yesterday"})
        assert sink.input_errors == 3 and sink.queued == 0


def test_config_from_settings() -> None:
    class Settings:  # the influx_* fields the fleet Settings carry
        influx_url = "http://influx.example:8086/"
        influx_token = "secret"
        influx_bucket = "fleet"
        influx_batch_size = 500
        influx_org = None

    config = TimeSeriesConfig.from_settings(Settings())
    assert config == TimeSeriesConfig(url="http://influx.example:8086", token="secret",
                                      bucket="fleet", batch_size=500)
    assert "secret" not in repr(config)
    Settings.influx_url = ""
    assert TimeSeriesConfig.from_settings(Settings()) is None
    with pytest.raises(ValueError, match="http"):
        TimeSeriesConfig(url="influx.example:8086")


# --- the Grafana dashboard ---------------------------------------------------------

def written_names() -> dict[str, tuple[set[str], set[str]]]:
    """measurement -> (fields, tags) of what the sink writes for the golden
    payloads and the protocol's heartbeat."""
    gw = gateway()
    lines = [reading_line(ReadingRow.from_record(r, gw))
             for name in ("data_bp.json", "data_health.json") for r in golden_records(name)]
    lines += health_lines(gw.gateway_id, gw.unit.code, HEARTBEAT, HEARTBEAT["ts"],
                          region="r", province="p")
    out: dict[str, tuple[set[str], set[str]]] = {}
    for text in lines:
        assert text is not None
        head, fields, _ts = re.split(r"(?<!\\) ", text)  # unescaped spaces
        measurement, *tags = re.split(r"(?<!\\),", head)
        f, t = out.setdefault(measurement, (set(), set()))
        f.update(kv.split("=")[0] for kv in fields.split(","))
        t.update(kv.split("=")[0] for kv in tags)
    # Every reading type's values (docs/protocol.md) are fields of `reading`.
    out["reading"][0].update(n for names in protocol.VALUE_UNITS.values() for n in names)
    return out


def test_dashboard_queries_name_what_the_sink_writes() -> None:
    doc = json.loads(DASHBOARD.read_text())
    written = written_names()
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert len(panels) >= 6
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            query = target["query"]
            assert target["rawQuery"] is True and "$timeFilter" in query, panel["title"]
            measurements = re.findall(r'FROM "(\w+)"', query)
            assert measurements, panel["title"]
            for m in measurements:
                fields, tags = written[m]
                for name in re.findall(r'"(\w+)"', query):
                    assert name in fields | tags | {m}, (panel["title"], name)
    titles = " / ".join(p["title"].lower() for p in panels)
    for topic in ("type", "region", "online", "backlog", "battery", "heap", "reconnects"):
        assert topic in titles


class InfluxQL:
    """Debian's InfluxDB 1.6 (v1 API only: influxdb-client cannot write to
    it, but it runs InfluxQL, the dashboard's query language), on free
    loopback ports, with one database."""

    def __init__(self, workdir: Path) -> None:
        self.port, rpc = free_port(), free_port()
        conf = workdir / "influxdb.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
            f'[meta]\n  dir = "{workdir}/meta"\n'
            f'[data]\n  dir = "{workdir}/data"\n  wal-dir = "{workdir}/wal"\n'
            '  query-log-enabled = false\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            '[monitor]\n  store-enabled = false\n')
        self.proc = spawn(["influxd", "-config", str(conf)], workdir / "influxd.log")
        wait_for_port(self.port, timeout=15)
        self._call("/query", {"q": "CREATE DATABASE ummc"})

    def _call(self, path: str, params: dict[str, str], body: bytes | None = None) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, data=body if body is not None else b"",
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            data = resp.read()
        return json.loads(data) if data else None

    def write(self, lines: list[str]) -> None:
        self._call("/write", {"db": "ummc", "precision": "ms"}, "\n".join(lines).encode())

    def query(self, q: str) -> list[dict[str, Any]]:
        [result] = self._call("/query", {"db": "ummc", "q": q})["results"]
        assert "error" not in result, (q, result["error"])
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    def stop(self) -> None:
        terminate(self.proc)


@pytest.mark.skipif(shutil.which("influxd") is None, reason="apt-get install influxdb")
def test_dashboard_queries_run_on_influxql_and_find_the_sink_points(tmp_path: Path) -> None:
    t0 = 1795935841000  # 3 hours of heartbeats and readings, two units in two regions
    lines: list[str] = []
    for gw, value_type, rec in ((gateway("Oriental", "Jerada"), "blood_pressure",
                                 golden_records("data_bp.json")[0]),
                                (gateway("Souss-Massa", "Tata"), "glucose", None)):
        for i in range(60):
            at = t0 + 180_000 * i
            beat = dict(HEARTBEAT, ts=at, reconnects=i // 10, journal_depth=60 - i)
            lines += health_lines(gw.gateway_id, gw.unit.code, beat, at)
            row = (ReadingRow.from_record(rec.model_copy(update={"rtime": at}), gw) if rec
                   else ReadingRow(gateway=gw.gateway_id, unit=gw.unit.code, kind="reading",
                                   type=value_type, rtime=at, values=(("glucose", 95.0),),
                                   region=gw.unit.region, province=gw.unit.province))
            lines.append(reading_line(row) or "")
    macros = {"$timeFilter": f"time >= {t0 - 3_600_000}ms AND time <= {t0 + 4 * 3_600_000}ms",
              "$__interval": "1m", "/^$unit$/": "/^.*$/", "/^$region$/": "/^.*$/"}
    server = InfluxQL(tmp_path)
    try:
        server.write(lines)
        results = {}
        for panel in json.loads(DASHBOARD.read_text())["panels"]:
            for target in panel["targets"]:
                query = target["query"]
                for macro, value in macros.items():
                    query = query.replace(macro, value)
                series = server.query(query)
                values = [v for s in series for row in s["values"] for v in row[1:]
                          if v is not None]
                assert values and max(values) > 0, (panel["title"], query)
                results[panel["title"], target["refId"]] = series
    finally:
        server.stop()

    def tag_values(title: str, tag: str) -> set[str]:
        return {s["tags"][tag] for s in results[title, "A"]}

    assert tag_values("Readings per hour by type", "type") == {"blood_pressure", "glucose"}
    assert tag_values("Readings per hour by region", "region") == {"Oriental", "Souss-Massa"}
    per_hour = [row[1] for s in results["Readings per hour by type", "A"] for row in s["values"]]
    assert sum(per_hour) == 120
    online = [row[1] for s in results["Online gateways", "A"] for row in s["values"]]
    assert max(online) == 2
    assert len(tag_values("Battery per instrument", "addr")) == 1
    assert len(tag_values("Journal backlog per gateway", "gateway")) == 2
