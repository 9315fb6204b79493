"""Prometheus metrics (prometheus_client), served by GET /api/v1/metrics.

Two sources, each in its own registry (nothing global, nothing at import):
- `IngestMetrics`: counters of the ingest worker in this process (messages,
  records by outcome, rejections by reason, ack lag, health fields dropped).
  Present only where a worker runs (`run`, or a worker's own process);
  Prometheus sums them across workers.
- `FleetCollector`: the fleet as the database sees it, read at each scrape:
  gateways by link state (online gauge), alerts not resolved by kind and
  status, dead letters by reason, commands by status. The same from any API
  process.

Labels are ids of kinds, states and reasons: never a gateway's readings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet_server import alerts, commands
from fleet_server.health_model import ONLINE, Thresholds, effective_state
from fleet_server.models import Alert, Command, DeadLetter, Gateway
from fleet_server.protocol import Reason

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# ack lag: from the gateway's `sent` to the ack published (seconds)
ACK_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86_400)


class IngestMetrics:
    """The ingest worker's counters (one registry per worker)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter("ummc_ingest_messages", "MQTT messages handled, by topic leaf",
                                ["leaf"], registry=r)
        self.records = Counter("ummc_ingest_records",
                               "Journal records of data messages, by outcome", ["outcome"],
                               registry=r)
        self.rejections = Counter("ummc_ingest_rejections",
                                  "Messages and records refused, by reason", ["reason"],
                                  registry=r)
        self.errors = Counter("ummc_ingest_errors",
                              "Messages whose processing failed (the gateway re-sends)",
                              registry=r)
        self.health_fields = Counter("ummc_ingest_health_fields_dropped",
                                     "Heartbeat fields dropped as invalid", registry=r)
        self.ack_lag = Histogram("ummc_ack_lag_seconds",
                                 "From a data message's `sent` (gateway clock) to its ack",
                                 buckets=ACK_LAG_BUCKETS, registry=r)
        self.subscribed = Gauge("ummc_ingest_subscribed",
                                "1 while the worker is subscribed to the broker", registry=r)
        for outcome in ("stored", "duplicate", "rejected"):
            self.records.labels(outcome)
        for reason in Reason:
            self.rejections.labels(reason.value)


class FleetCollector(Collector):
    """Gauges read from the database at scrape time."""

    def __init__(self, session: Session, thresholds: Thresholds,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.session = session  # the request's (SQLite: one writer-lock holder at a time)
        self.thresholds = thresholds
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        now = self.clock()
        s = self.session
        states: dict[str, int] = {"online": 0, "offline": 0, "stale": 0, "unknown": 0}
        for link, at in s.execute(select(Gateway.link_state, Gateway.link_state_at)):
            state = effective_state(link, at, now, self.thresholds.grace) or "unknown"
            states[state] = states.get(state, 0) + 1
        active = {(k, st): int(n) for k, st, n in s.execute(
            select(Alert.kind, Alert.status, func.count()).where(
                Alert.status.in_(alerts.ACTIVE)).group_by(Alert.kind, Alert.status))}
        dead = {r: int(n) for r, n in s.execute(
            select(DeadLetter.reason, func.count()).group_by(DeadLetter.reason))}
        cmds = {st: int(n) for st, n in s.execute(
            select(Command.status, func.count()).group_by(Command.status))}
        online = GaugeMetricFamily("ummc_gateways_online",
                                   "Gateways online (restarts within the grace period count "
                                   "as online)")
        online.add_metric([], states[ONLINE])
        yield online
        by_state = GaugeMetricFamily("ummc_gateways", "Registered gateways by link state",
                                     labels=["state"])
        for state, n in states.items():
            by_state.add_metric([state], n)
        yield by_state
        open_alerts = GaugeMetricFamily("ummc_alerts_open",
                                        "Alerts not resolved, by kind and status",
                                        labels=["kind", "status"])
        for kind in sorted({*alerts.KINDS, *(k for k, _ in active)}):
            for status in alerts.ACTIVE:
                open_alerts.add_metric([kind, status], active.get((kind, status), 0))
        yield open_alerts
        dead_letters = CounterMetricFamily("ummc_dead_letters",
                                           "Rejected messages and records kept, by reason",
                                           labels=["reason"])
        for reason in sorted({*(r.value for r in Reason), *dead}):
            dead_letters.add_metric([reason], dead.get(reason, 0))
        yield dead_letters
        by_status = GaugeMetricFamily("ummc_commands", "Commands to gateways by status",
                                      labels=["status"])
        for status in commands.STATUSES:
            by_status.add_metric([status], cmds.get(status, 0))
        yield by_status


def render(session: Session, thresholds: Thresholds, ingest: IngestMetrics | None) -> bytes:
    """The text exposition of both sources."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(session, thresholds))
    out = generate_latest(registry)
    if ingest is not None:
        out += generate_latest(ingest.registry)
    return out

