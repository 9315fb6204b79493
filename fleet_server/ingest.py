"""Ingest: gateway messages in, rows and end-to-end acks out.

Two layers, so the first is tested without a broker:

1. `ingest_batch(session, topic, payload, now) -> AckDecision` — one `data`
   message: topic, registry (the gateway must be registered to the unit the
   topic names), size, JSON, envelope; then every record on its own. Good
   records are stored idempotently by (gateway, jid, seq) and, when the
   instrument numbers its records, by (instrument key, iseq); a re-send with
   the same content is a harmless duplicate, other content under the same
   key is a `duplicate_conflict` dead letter; a bad record is an
   `invalid_record` dead letter naming the field. Then the ack cursor of
   (gateway, jid) advances through committed sequence numbers (docs/protocol.md,
   "ack"), and everything commits in ONE transaction. The decision says what
   ack to publish; a message rejected whole gets a dead letter and no ack.
   `ingest_status` does the same for `state`, `birth` and `health`, feeding
   the device-health model (health_model.py: link state ordered by the
   payloads' boot and ts, instruments, time series); `ingest_result`
   correlates a `cmd/result` with its command (commands.py).

2. `IngestWorker` — the MQTT side (paho-mqtt 2.x, MQTT 5): a persistent
   session (clean_start False + session expiry, so the broker queues
   messages while the worker restarts), shared subscriptions
   `$share/<group>/ummc/v1/+/+/<leaf>` (data, state, birth, health,
   cmd/result) so several workers split the load,
   and manual acknowledgement: for each message it commits, publishes the
   retained ack (QoS 1), and only then sends the PUBACK. A failure on one
   message is logged and counted and the message is PUBACKed anyway: the
   gateway re-sends whatever no ack covers, so nothing is lost, and the loop
   goes on.

Logs name gateways, journal ids, sequence numbers, reasons and counts;
never a value from a record (medical data).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server import commands, health_model, protocol
from fleet_server.crud import get_gateway
from fleet_server.metrics import IngestMetrics
from fleet_server.models import AckCursor, DeadLetter, Gateway, Reading
from fleet_server.protocol import (
    RECORD_REASONS,
    BirthPayload,
    HealthPayload,
    Reason,
    Record,
    RecordError,
    Rejection,
    StatePayload,
    Topic,
)
from fleet_server.settings import Settings
from fleet_server.timeseries import ReadingRow, TimeSeriesSink

log = logging.getLogger(__name__)

# Raw bytes kept for one dead letter (a too_large message is cut to this).
RAW_KEEP_BYTES = 1 << 20
# A unique-key race with another worker: roll back and run the batch again.
INTEGRITY_ATTEMPTS = 3


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class AckDecision:
    """What one `data` message came to, after the commit."""

    topic: str
    ack_topic: str | None = None
    ack: bytes | None = None  # retained QoS 1 payload to publish; None: rejected whole
    rejection: Rejection | None = None
    jid: str | None = None
    sent: int | None = None  # the envelope's `sent` (gateway clock, unix ms)
    upto: int | None = None
    rejected: list[int] = field(default_factory=list)
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    # (seq, reason, detail) of each record dead-lettered here, for the log.
    record_rejections: list[tuple[int | None, str, str]] = field(default_factory=list)
    # Records newly stored by this message: the time-series copy, after the commit.
    new_rows: list[ReadingRow] = field(default_factory=list)

    def summary(self) -> str:
        """One log line: ids, counts and reasons, no values."""
        if self.rejection is not None:
            return (f"{self.topic}: message rejected: {self.rejection.reason} "
                    f"({self.rejection.detail})")
        return (f"{self.topic}: jid {self.jid}: stored {self.stored}, duplicates "
                f"{self.duplicates}, dead-lettered {self.dead_lettered} -> ack upto "
                f"{self.upto}, rejected {self.rejected}")


# --- layer 1: a message in, rows and a decision out ----------------------------------

def ingest_batch(session: Session, topic: str, payload: bytes, now: datetime) -> AckDecision:
    """Process one `data` message and commit. See the module header."""
    for attempt in range(1, INTEGRITY_ATTEMPTS + 1):
        try:
            decision = _ingest_batch(session, topic, payload, now)
            session.commit()
            return decision
        except IntegrityError:
            session.rollback()
            if attempt == INTEGRITY_ATTEMPTS:
                raise
            log.info("%s: unique-key race with another writer; retrying (%d)", topic, attempt)
    raise AssertionError("unreachable")


def _dead_letter(session: Session, *, now: datetime, topic: str, t: Topic | None,
                 reason: Reason, detail: str, raw: bytes, jid: str | None = None,
                 seq: int | None = None) -> DeadLetter:
    if len(raw) > RAW_KEEP_BYTES:
        detail += f" (raw cut to its first {RAW_KEEP_BYTES} bytes)"
        raw = raw[:RAW_KEEP_BYTES]
    row = DeadLetter(received_at=now, topic=topic, gateway=t.gateway if t else None,
                     unit=t.unit if t else None, reason=reason.value, detail=detail,
                     jid=jid, seq=seq, raw=raw)
    session.add(row)
    return row


def _registered(session: Session, t: Topic) -> Gateway | Rejection:
    gw = get_gateway(session, gateway_id=t.gateway)
    if gw is None:
        return Rejection(Reason.unknown_gateway, f"topic: gateway {t.gateway} is not registered")
    if gw.unit.code != t.unit:
        return Rejection(Reason.unknown_gateway, f"topic: gateway {t.gateway} is registered to "
                                                 f"unit {gw.unit.code}, not {t.unit}")
    return gw


def _ingest_batch(session: Session, topic: str, payload: bytes, now: datetime) -> AckDecision:
    decision = AckDecision(topic=topic)
    parsed = protocol.parse_topic(topic, ("data",))
    if isinstance(parsed, Rejection):
        return _reject(session, decision, now, None, parsed, payload)
    t = parsed
    gw = _registered(session, t)
    if isinstance(gw, Rejection):
        return _reject(session, decision, now, t, gw, payload)
    gw.last_seen_at = now
    env = protocol.parse_data(payload)
    if isinstance(env, Rejection):
        return _reject(session, decision, now, t, env, payload)

    batch = _Batch(session, decision, now, topic, t, gw, env.jid)
    for i, raw in enumerate(env.records):
        batch.record(i, raw)
    upto, rejected = _advance_cursor(session, gw, t, env.jid, env.base, batch.committed, now)
    decision.jid = env.jid
    decision.sent = env.sent
    decision.upto = upto
    decision.rejected = rejected
    decision.ack_topic = t.sibling("ack")
    decision.ack = protocol.ack_payload(jid=env.jid, upto=upto, rejected=rejected,
                                        server_time=protocol.to_unix_ms(now))
    return decision


def _reject(session: Session, decision: AckDecision, now: datetime, t: Topic | None,
            rejection: Rejection, payload: bytes) -> AckDecision:
    _dead_letter(session, now=now, topic=decision.topic, t=t, reason=rejection.reason,
                 detail=rejection.detail, raw=payload)
    decision.rejection = rejection
    return decision


def _compact(raw: Any) -> bytes:
    # ASCII escapes: a lone surrogate in a rejected record still serializes.
    return json.dumps(raw, separators=(",", ":"), ensure_ascii=True).encode()


def _same_measurement(row: Reading, rec: Record) -> bool:
    """The instrument's own record seen again (e.g. a meter's memory read twice)."""
    return (row.type == rec.type and row.itime == rec.itime_text
            and row.values == [list(v) for v in rec.values])


class _Batch:
    """The records of one `data` message, handled one by one."""

    def __init__(self, session: Session, decision: AckDecision, now: datetime, topic: str,
                 t: Topic, gw: Gateway, jid: str) -> None:
        self.session = session
        self.decision = decision
        self.now = now
        self.topic = topic
        self.t = t
        self.gw = gw
        self.jid = jid
        # Sequence numbers this batch committed: stored, already stored, or
        # dead-lettered (the ack may cover them).
        self.committed: set[int] = set()

    def record(self, index: int, raw: Any) -> None:
        rec = protocol.validate_record(raw, index)
        if isinstance(rec, RecordError):
            self.reject(Reason.invalid_record, rec.detail, rec.seq, raw)
            return
        self.store(index, rec, raw)

    def reject(self, reason: Reason, detail: str, seq: int | None, raw: Any) -> None:
        body = _compact(raw)
        if seq is not None:
            self.committed.add(seq)
            same = self.session.scalars(select(DeadLetter.raw).where(
                DeadLetter.gateway == self.gw.gateway_id, DeadLetter.jid == self.jid,
                DeadLetter.seq == seq, DeadLetter.reason == reason.value)).all()
            if body in same:
                return  # this very record was dead-lettered before: a re-send
        _dead_letter(self.session, now=self.now, topic=self.topic, t=self.t, reason=reason,
                     detail=detail, raw=body, jid=self.jid, seq=seq)
        self.decision.dead_lettered += 1
        self.decision.record_rejections.append((seq, reason.value, detail))

    def store(self, index: int, rec: Record, raw: Any) -> None:
        digest = rec.content_hash()
        same_key = self.session.scalar(select(Reading).where(
            Reading.gateway_pk == self.gw.id, Reading.jid == self.jid, Reading.seq == rec.seq))
        if same_key is not None:
            if same_key.content_hash == digest:
                self.committed.add(rec.seq)
                self.decision.duplicates += 1
            else:
                self.reject(Reason.duplicate_conflict,
                            f"records[{index}].seq: {rec.seq} of journal {self.jid} is stored "
                            f"with other content (reading {same_key.id})", rec.seq, raw)
            return
        inst_key = rec.inst.key if rec.inst is not None else None
        if rec.iseq is not None and inst_key is not None:
            same_iseq = self.session.scalar(select(Reading).where(
                Reading.inst_key == inst_key, Reading.iseq == rec.iseq))
            if same_iseq is not None:
                if _same_measurement(same_iseq, rec):
                    # Committed as reading `same_iseq.id`; covered for this ack.
                    self.committed.add(rec.seq)
                    self.decision.duplicates += 1
                else:
                    self.reject(Reason.duplicate_conflict,
                                f"records[{index}].iseq: instrument record {rec.iseq} is "
                                f"stored with other content (reading {same_iseq.id})",
                                rec.seq, raw)
                return
        inst = rec.inst
        try:
            # A savepoint: should the database still refuse a validated record
            # (a rule validation missed), it costs that record, not the batch.
            with self.session.begin_nested():
                self.session.add(Reading(
                    gateway_pk=self.gw.id, unit_pk=self.gw.unit_id, jid=self.jid,
                    seq=rec.seq, kind=rec.kind, type=rec.type,
                    inst_addr=inst.addr if inst else None,
                    inst_model=inst.model if inst else None,
                    inst_serial=inst.serial if inst else None,
                    inst_mfr=inst.mfr if inst else None, inst_key=inst_key, iseq=rec.iseq,
                    itime=rec.itime_text, received_at=rec.received_at, ingested_at=self.now,
                    values=[list(v) for v in rec.values], flags=list(rec.flags),
                    ecg=rec.stored_ecg(), content_hash=digest))
        except (DataError, UnicodeError) as e:
            name = type(e.orig).__name__ if isinstance(e, DataError) else type(e).__name__
            self.reject(Reason.invalid_record,
                        f"records[{index}]: refused by the database ({name})", rec.seq, raw)
            return
        self.committed.add(rec.seq)
        self.decision.stored += 1
        self.decision.new_rows.append(ReadingRow.from_record(rec, self.gw))


def _advance_cursor(session: Session, gw: Gateway, t: Topic, jid: str, base: int,
                    committed: set[int], now: datetime) -> tuple[int, list[int]]:
    """New contiguous `upto` of (gateway, jid) and the rejected seqs it newly covers."""
    # FOR UPDATE (PostgreSQL): workers acking the same journal take turns, and
    # the one that waited sees the other's committed rows.
    cursor = session.get(AckCursor, (gw.id, jid), with_for_update=True,
                         populate_existing=True)
    stored_upto = cursor.upto if cursor is not None else 0
    start = max(stored_upto, base - 1)
    known = {s for s in committed if s > start}
    known.update(session.scalars(select(Reading.seq).where(
        Reading.gateway_pk == gw.id, Reading.jid == jid, Reading.seq > start)))
    known.update(s for s in session.scalars(select(DeadLetter.seq).where(
        DeadLetter.gateway == gw.gateway_id, DeadLetter.jid == jid, DeadLetter.seq > start,
        DeadLetter.reason.in_([r.value for r in RECORD_REASONS]))) if s is not None)
    upto = start
    while upto + 1 in known:
        upto += 1

    if cursor is not None and upto == cursor.upto:
        return upto, list(cursor.rejected)  # nothing new: repeat the last ack
    newly_rejected = sorted({s for s in session.scalars(select(DeadLetter.seq).where(
        DeadLetter.gateway == gw.gateway_id, DeadLetter.jid == jid,
        DeadLetter.seq > stored_upto, DeadLetter.seq <= upto,
        DeadLetter.reason.in_([r.value for r in RECORD_REASONS]))) if s is not None})
    rejected = newly_rejected[:protocol.MAX_REJECTED_LISTED]
    if cursor is None:
        session.add(AckCursor(gateway_pk=gw.id, jid=jid, upto=upto, rejected=rejected,
                              updated_at=now))
    else:
        cursor.upto = upto
        cursor.rejected = rejected
        cursor.updated_at = now
    session.flush()
    return upto, rejected


def ingest_status(session: Session, topic: str, payload: bytes, now: datetime, *,
                  retained: bool = False, sample_every: timedelta = timedelta(minutes=10),
                  problems: list[str] | None = None) -> Rejection | None:
    """Apply a `state`, `birth` or `health` message to the gateway's row and
    the health model, and commit. A `state` older than the stored one (by
    boot, then ts) or the same retained state delivered again (worker
    restart) changes nothing; retained messages that are rejected are
    logged, not dead-lettered again on every restart. Heartbeat and birth
    fields the model cannot use are dropped one by one and named in
    `problems` (path and rule), the rest of the message is kept. A heartbeat
    becomes a time series point when the gateway's last one is older than
    `sample_every`."""
    rejection = _ingest_status(session, topic, payload, now, retained, sample_every,
                               problems if problems is not None else [])
    if rejection is not None and not retained:
        parsed = protocol.parse_topic(topic, protocol.STATUS_LEAVES)
        t = parsed if isinstance(parsed, Topic) else None
        _dead_letter(session, now=now, topic=topic, t=t, reason=rejection.reason,
                     detail=rejection.detail, raw=payload)
    session.commit()
    return rejection


def _ingest_status(session: Session, topic: str, payload: bytes, now: datetime,
                   retained: bool, sample_every: timedelta,
                   problems: list[str]) -> Rejection | None:
    t = protocol.parse_topic(topic, protocol.STATUS_LEAVES)
    if isinstance(t, Rejection):
        return t
    gw = _registered(session, t)
    if isinstance(gw, Rejection):
        return gw
    parsed = protocol.parse_status(t.leaf, payload)
    if isinstance(parsed, Rejection):
        return parsed
    model, doc = parsed
    if isinstance(model, StatePayload):
        d = health_model.decide_state(
            last_state=gw.last_state, last_reason=gw.last_state_reason, state_ts=gw.state_ts,
            boot_count=gw.boot_count, link_state=gw.link_state,
            link_state_at=gw.link_state_at, state=model.state, reason=model.reason,
            ts=model.ts, boot=model.boot, retained=retained, now=now)
        if d.store:
            gw.last_state = model.state
            gw.last_state_reason = model.reason
            gw.last_state_at = d.at
            gw.state_ts = model.ts  # a last will has none: the next online is newer
            if model.boot is not None:
                gw.boot_count = model.boot
            if model.state == "online" and not retained:
                gw.last_seen_at = now
        if d.link is not None:
            health_model.set_link_state(session, gw, d.link, d.at,
                                        model.reason or ("retained" if retained else "state"))
    elif isinstance(model, BirthPayload):
        gw.fw = model.fw
        if model.boot is not None:
            gw.boot_count = model.boot
        gw.last_birth = doc
        gw.last_seen_at = now
        problems += health_model.record_birth(session, gw, doc, now)
        _alive(session, gw, now, "birth")
    elif isinstance(model, HealthPayload):
        boots = doc.get("boots")
        if isinstance(boots, int) and not isinstance(boots, bool) and \
                0 <= boots <= protocol.MAX_BIGINT:
            gw.boot_count = boots
        gw.last_health = doc
        gw.last_seen_at = now
        facts = health_model.heartbeat_facts(doc)
        problems += facts.problems
        health_model.record_heartbeat(session, gw, facts, now, sample_every)
        _alive(session, gw, now, "heartbeat")
    return None


def _alive(session: Session, gw: Gateway, now: datetime, reason: str) -> None:
    """A live birth or heartbeat: the gateway is up, whatever the link state
    said (stale; or offline, when a late last will overtook it)."""
    if gw.link_state != health_model.ONLINE:
        health_model.set_link_state(session, gw, health_model.ONLINE, now, reason)


def ingest_result(session: Session, topic: str, payload: bytes,
                  now: datetime) -> Rejection | None:
    """A gateway's `cmd/result`: validated, correlated with its command by
    (gateway, id) and stored; commit. A bad or uncorrelated one is
    dead-lettered with its reason."""
    rejection = _ingest_result(session, topic, payload, now)
    if rejection is not None:
        parsed = protocol.parse_result_topic(topic)
        _dead_letter(session, now=now, topic=topic,
                     t=parsed if isinstance(parsed, Topic) else None,
                     reason=rejection.reason, detail=rejection.detail, raw=payload)
    session.commit()
    return rejection


def _ingest_result(session: Session, topic: str, payload: bytes,
                   now: datetime) -> Rejection | None:
    t = protocol.parse_result_topic(topic)
    if isinstance(t, Rejection):
        return t
    gw = _registered(session, t)
    if isinstance(gw, Rejection):
        return gw
    res = protocol.parse_command_result(payload)
    if isinstance(res, Rejection):
        return res
    return commands.apply_result(session, gw, res, now)


# --- layer 2: the MQTT worker -----------------------------------------------------

T = TypeVar("T")

# Transient database trouble (locked SQLite, PostgreSQL restarting): retry the
# message after these pauses, then give up on it (the gateway re-sends).
DB_RETRY_PAUSES = (0.2, 1.0, 3.0)


class IngestWorker:
    """One ingest worker: an MQTT 5 client on the shared subscriptions."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], *,
                 clock: Callable[[], datetime] = utcnow,
                 metrics: IngestMetrics | None = None,
                 timeseries: TimeSeriesSink | None = None) -> None:
        self.settings = settings
        self.timeseries = timeseries  # best-effort copy after each commit; never blocks
        self.sessions = sessions
        self.clock = clock
        self.stats: Counter[str] = Counter()
        self.metrics = metrics or IngestMetrics()
        # Since when every subscription is granted (None: not subscribed): the
        # evaluator judges heartbeat timeouts only after a whole timeout of it.
        self.subscribed_at: datetime | None = None
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # SUBACK granted on every subscription
        self._lock = threading.Lock()  # held while a message is processed
        self._stopping = False
        self._client: mqtt.Client | None = None

    @property
    def mqtt5(self) -> bool:
        return self.settings.mqtt_protocol == "5"

    def subscriptions(self) -> list[tuple[str, int]]:
        group = self.settings.ingest_group
        prefix = f"$share/{group}/" if self.mqtt5 else ""  # no shared subs before MQTT 5
        return [(f"{prefix}{protocol.ROOT}/+/+/{leaf}", 1)
                for leaf in (*protocol.INGEST_LEAVES, protocol.RESULT_LEAF)]

    # --- lifecycle ---
    def start(self) -> None:
        s = self.settings
        if self.mqtt5:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.mqtt_client_id,
                                 protocol=mqtt.MQTTv5, manual_ack=True)
        else:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.mqtt_client_id,
                                 protocol=mqtt.MQTTv311, clean_session=False, manual_ack=True)
        if s.mqtt_username:
            client.username_pw_set(s.mqtt_username, s.mqtt_password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.reconnect_delay_set(1, 30)
        if self.mqtt5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = s.mqtt_session_expiry
            client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=s.mqtt_keepalive,
                                 clean_start=False, properties=props)
        else:
            client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=s.mqtt_keepalive)
        self._client = client
        client.loop_start()
        log.info("ingest worker %s connecting to %s:%d (group %s)", s.mqtt_client_id,
                 s.mqtt_host, s.mqtt_port, s.ingest_group)

    def stop(self) -> None:
        """Finish the message in hand, disconnect (the session stays on the
        broker), stop the network thread."""
        with self._lock:
            self._stopping = True
        client = self._client
        if client is None:
            return
        client.disconnect()
        client.loop_stop()
        self._client = None
        self.connected.clear()
        self.subscribed.clear()
        self.subscribed_at = None
        self.metrics.subscribed.set(0)
        log.info("ingest worker stopped: %s", dict(self.stats))

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set."""
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()

    # --- paho callbacks (network thread) ---
    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, _props: Properties | None) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        self.stats["connects"] += 1
        log.info("connected (session present: %s); subscribing", flags.session_present)
        client.subscribe(self.subscriptions())
        self.connected.set()

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int,
                      reasons: list[ReasonCode], _props: Properties | None) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("broker refused subscriptions (check the ACL): %s", refused)
            return
        self.subscribed_at = self.clock()
        self.metrics.subscribed.set(1)
        self.subscribed.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any,
                       _flags: mqtt.DisconnectFlags, reason: ReasonCode,
                       _props: Properties | None) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.subscribed_at = None
        self.metrics.subscribed.set(0)
        if not self._stopping:
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, _userdata: Any,
                    msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            if self._stopping:
                return  # not PUBACKed: the broker delivers it again to our session
            try:
                self.handle(msg)
            except Exception:
                self.stats["errors"] += 1
                self.metrics.errors.inc()
                log.exception("message mid %d on %s failed; the gateway will re-send",
                              msg.mid, _topic_of(msg))
            finally:
                client.ack(msg.mid, msg.qos)

    # --- processing ---
    def handle(self, msg: mqtt.MQTTMessage) -> None:
        topic = _topic_of(msg)
        payload = bytes(msg.payload)
        self.stats["messages"] += 1
        if topic.endswith("/data"):
            self.metrics.messages.labels("data").inc()
            decision = self._with_db(lambda s: ingest_batch(s, topic, payload, self.clock()))
            self._count(decision)
            if decision.ack is not None and decision.ack_topic is not None:
                assert self._client is not None
                self._client.publish(decision.ack_topic, decision.ack, qos=1, retain=True)
                self.stats["acks_published"] += 1
                if decision.sent is not None:
                    lag_ms = protocol.to_unix_ms(self.clock()) - decision.sent
                    self.metrics.ack_lag.observe(max(0, lag_ms) / 1000)
            if self.timeseries is not None:
                self.timeseries.write_readings(decision.new_rows)
            level = logging.WARNING if decision.rejection or decision.dead_lettered else \
                logging.INFO
            log.log(level, "%s", decision.summary())
            for seq, reason, detail in decision.record_rejections:
                log.warning("%s: jid %s seq %s: %s (%s)", topic, decision.jid, seq, reason,
                            detail)
        elif topic.endswith("/" + protocol.RESULT_LEAF):
            self.metrics.messages.labels("cmd/result").inc()
            rejection = self._with_db(lambda s: ingest_result(s, topic, payload, self.clock()))
            self.stats["command_results"] += 1
            if rejection is not None:
                self._rejected(rejection.reason)
                log.warning("%s: %s (%s)", topic, rejection.reason, rejection.detail)
        else:
            leaf = topic.rsplit("/", 1)[-1]
            self.metrics.messages.labels(leaf if leaf in protocol.STATUS_LEAVES else "other").inc()
            problems: list[str] = []
            every = timedelta(seconds=self.settings.health_sample_interval_s)
            rejection = self._with_db(lambda s: ingest_status(
                s, topic, payload, self.clock(), retained=bool(msg.retain),
                sample_every=every, problems=problems))
            self.stats["status_messages"] += 1
            if self.timeseries is not None and rejection is None and leaf == "health":
                self.timeseries.write_health_message(topic, payload)
            if rejection is not None:
                self._rejected(rejection.reason)
                log.warning("%s: %s (%s)%s", topic, rejection.reason, rejection.detail,
                            " [retained, not kept]" if msg.retain else "")
            if problems:
                self.stats["health_fields_dropped"] += len(problems)
                self.metrics.health_fields.inc(len(problems))
                log.warning("%s: fields dropped: %s", topic, "; ".join(problems[:5]))

    def _rejected(self, reason: str) -> None:
        self.stats[f"rejected:{reason}"] += 1
        self.metrics.rejections.labels(reason).inc()

    def _count(self, d: AckDecision) -> None:
        self.stats["data_messages"] += 1
        self.stats["readings_stored"] += d.stored
        self.stats["duplicates"] += d.duplicates
        self.stats["records_rejected"] += d.dead_lettered
        m = self.metrics
        m.records.labels("stored").inc(d.stored)
        m.records.labels("duplicate").inc(d.duplicates)
        m.records.labels("rejected").inc(d.dead_lettered)
        for _seq, reason, _detail in d.record_rejections:
            m.rejections.labels(reason).inc()
        if d.rejection is not None:
            self._rejected(d.rejection.reason)

    def _with_db(self, work: Callable[[Session], T]) -> T:
        for pause in (*DB_RETRY_PAUSES, None):
            try:
                with self.sessions() as session:
                    return work(session)
            except OperationalError as e:
                if pause is None or self._stopping:
                    raise
                self.stats["db_retries"] += 1
                log.warning("database unavailable (%s); retrying in %.1f s",
                            type(e.orig).__name__, pause)
                time.sleep(pause)
        raise AssertionError("unreachable")


def _topic_of(msg: mqtt.MQTTMessage) -> str:
    try:
        return msg.topic
    except UnicodeDecodeError:
        return repr(msg._topic)  # not UTF-8: it will be rejected as bad_topic
