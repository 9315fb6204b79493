# Uplink: moves journal records to the fleet server and frees them only when
# the server's end-to-end ack covers them (docs/protocol.md).
#
# Connection manager in the mqtt_as style: wait, connect, run until the link
# drops, back off (exponential with jitter), repeat. While connected:
#   - on connect: retained `state` online, subscribe `ack` and `cmd`, `birth`;
#   - a `health` heartbeat every `heartbeat_ms` while connected (gateway/health.py);
#   - a sender publishes `data` batches read from the journal after the last
#     sent sequence, with at most `window` batches awaiting the server's ack;
#     urgent readings (journal.urgent) go first, ahead of any backlog;
#     if the ack does not move for `resend_after_ms`, everything unacked is
#     sent again (the server's unique keys make that harmless);
#   - a receiver applies acks: ignores another journal's, refuses one beyond
#     the last written sequence (counted), frees the journal up to `upto`, and
#     corrects the gateway clock from `server_time` when it is unsynced.
# The MQTT client object is made once by `client_factory` and reconnected in
# place, so its persistent session keeps QoS 1 retransmission state.
import asyncio
import gc
import os
import sys

from gateway import protocol
from gateway.indicator import Indicator
from gateway.journal import JournalError
from gateway.mqtt import ConnectionLost, MQTTError

# A microcontroller's heap is small and fragmented: batches of 4 KB there
# (an ECG strip, larger, always goes alone), 8 KB on a host.
_SMALL_HEAP = sys.implementation.name == "micropython"
DEFAULT_BATCH_BYTES = 4096 if _SMALL_HEAP else protocol.MAX_BATCH_BYTES


def _jitter(ms):
    """ms scaled by a random factor in [0.5, 1.0)."""
    r = os.urandom(1)[0] / 256
    return int(ms * (0.5 + r / 2))


class Uplink:
    def __init__(self, journal, client, unit, gateway, clock, indicator=None,
                 birth=None, window=4, batch_records=protocol.MAX_RECORDS_PER_BATCH,
                 batch_bytes=DEFAULT_BATCH_BYTES, resend_after_ms=30000,
                 backoff_min_ms=1000, backoff_max_ms=60000, clock_slew_ms=2000,
                 heartbeat=None, heartbeat_ms=60000):
        self.journal = journal
        self.client = client
        self.unit = unit
        self.gateway = gateway
        self.clock = clock
        self.indicator = indicator or Indicator()
        self.birth = birth  # callable returning the birth payload bytes
        self.window = window
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
        self.resend_after_ms = resend_after_ms
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.clock_slew_ms = clock_slew_ms
        self.heartbeat = heartbeat  # callable returning the `health` payload bytes
        self.offline_heartbeat = None  # callable run instead while the link is down
        self.heartbeat_ms = heartbeat_ms
        # callable(payload bytes) -> `cmd/result` payload bytes or None: the
        # command handler (gateway/commands.py via gateway/runtime.py)
        self.on_command = None
        self._last_heartbeat_ms = None
        self.boot = 0
        self.connected = False
        self.stats = {"connects": 0, "reconnects": 0, "batches": 0, "records_sent": 0,
                      "acks": 0, "acks_ignored": 0, "acks_bad": 0, "resends": 0,
                      "urgent_sent": 0, "heartbeats": 0, "link_errors": 0,
                      "session_errors": 0, "results": 0}
        self._wake = asyncio.Event()  # new records, an ack, the link dropped, stop
        self._stopped = asyncio.Event()  # ends the reconnect backoff early
        self._stop = False
        self._sent_upto = 0
        self._outstanding = []  # [last_seq, sent_at_ms, urgent] of batches awaiting the ack
        self._urgent_sent = set()  # urgent seqs sent ahead of the backlog this session
        self._last_progress_ms = 0
        self._publish_tasks = []  # their tasks (kept referenced while they run)
        self._resend_now = False

    def topic(self, leaf):
        return protocol.topic(self.unit, self.gateway, leaf)

    def notify(self):
        """Tell the sender that the journal has new records."""
        self._wake.set()

    def stop(self):
        self._stop = True
        self._wake.set()
        self._stopped.set()

    # --- connection manager --------------------------------------------------
    async def run(self):
        """Connect, serve, reconnect, until stop(). Never ends on an error: a
        link error or a bug in one session is counted, shown, and followed by
        a new session after the backoff (a dead uplink task would leave the
        gateway looking alive while nothing is delivered)."""
        delay = self.backoff_min_ms
        while not self._stop:
            failed = True
            try:
                await self._session()
                failed = False
            except (OSError, MQTTError, asyncio.TimeoutError) as e:
                # (MicroPython's asyncio.TimeoutError is not an OSError)
                self.stats["link_errors"] += 1
                self.indicator.error("uplink", type(e).__name__)
            except Exception as e:  # a bug, or MemoryError: keep the gateway delivering
                self.stats["session_errors"] += 1
                self.indicator.error("uplink", "unexpected %s: %s" % (type(e).__name__, e))
            if failed and self.client.is_connected:
                # The session ended on an error while the link was up: close
                # it, or the next connect() finds it "already connected".
                try:
                    self.client.abort()
                except Exception:  # closing is best effort
                    pass
            if self.connected:
                # It was up: the next attempt starts from the shortest backoff.
                self.connected = False
                self.indicator.link(False)
                delay = self.backoff_min_ms
            if self._stop:
                break
            self._journal_health_if_due()
            # New readings do not cut the backoff short: they wait in the journal.
            try:
                await asyncio.wait_for(self._stopped.wait(), _jitter(delay) / 1000)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, self.backoff_max_ms)
        if self.client.is_connected:
            # Clean stop: say so (no last will), then disconnect.
            try:
                await self.client.publish(self.topic("state"),
                                          protocol.state_payload("offline", self.clock.now_ms(),
                                                                 reason="shutdown"),
                                          qos=1, retain=True)
                await self.client.disconnect()
            except (OSError, MQTTError, asyncio.TimeoutError):
                pass

    def _journal_health_if_due(self):
        """While the link is down, a heartbeat goes to the journal instead."""
        if self.offline_heartbeat is None:
            return
        now = self.clock.now_ms()
        if self._last_heartbeat_ms is not None and now - self._last_heartbeat_ms < \
                self.heartbeat_ms:
            return
        self._last_heartbeat_ms = now
        self.offline_heartbeat()

    async def _sleep_ms(self, ms):
        try:
            await asyncio.wait_for(self._wake.wait(), ms / 1000)
        except asyncio.TimeoutError:
            pass
        if not self._stop:
            self._wake.clear()

    async def _session(self):
        c = self.client
        await c.connect()
        self.stats["connects"] += 1
        if self.stats["connects"] > 1:
            self.stats["reconnects"] += 1
        await c.publish(self.topic("state"),
                        protocol.state_payload("online", self.clock.now_ms(), boot=self.boot),
                        qos=1, retain=True)
        await c.subscribe(self.topic("ack"), 1)
        await c.subscribe(self.topic("cmd"), 1)
        if self.birth is not None:
            await c.publish(self.topic("birth"), self.birth(), qos=1)
        self.connected = True
        self.indicator.link(True)
        # After a (re)connect everything not acknowledged is sent again.
        self._sent_upto = self.journal.acked
        self._outstanding = []
        self._urgent_sent = set()
        self._last_progress_ms = self.clock.now_ms()
        receiver = asyncio.create_task(self._receive())
        try:
            await self._send_loop()
        finally:
            receiver.cancel()
            try:
                await receiver
            except BaseException:  # its cancellation, or the link error it ended on
                pass

    # --- sending -------------------------------------------------------------
    async def _send_loop(self):
        c = self.client
        while not self._stop and c.is_connected:
            self._wake.clear()
            now = self.clock.now_ms()
            if self.heartbeat is not None and (self._last_heartbeat_ms is None or
                                               now - self._last_heartbeat_ms >= self.heartbeat_ms):
                self._last_heartbeat_ms = now
                await c.publish(self.topic("health"), self.heartbeat(), qos=1)
                self.stats["heartbeats"] += 1
            j = self.journal
            self._outstanding = [b for b in self._outstanding if b[0] > j.acked]
            if self._resend_now:
                # A batch failed to go out while the link stayed up: send
                # everything unacked again now, not after resend_after_ms.
                self._resend_now = False
                self._sent_upto = j.acked
                self._outstanding = []
                self._urgent_sent = set()
            if self._outstanding and now - self._last_progress_ms > self.resend_after_ms:
                # The server has not moved the ack: send everything unacked
                # again, urgent records included.
                self.stats["resends"] += 1
                self._sent_upto = j.acked
                self._outstanding = []
                self._urgent_sent = set()
                self._last_progress_ms = now
            # The window counts backlog batches only: an urgent batch's
            # records are scattered through the backlog, so the contiguous
            # ack covers it only once the backlog around it has arrived, and
            # it would hold a window slot for most of a drain.
            if sum(1 for b in self._outstanding if not b[2]) < self.window:
                urgent = [s for s in j.urgent
                          if s > self._sent_upto and s not in self._urgent_sent]
                if urgent:
                    # Urgent readings jump the queue: sent before the backlog.
                    records = j.read_seqs(urgent[:self.batch_records])
                    await self._publish_batch(records, now, urgent=True)
                    for r in records:
                        self._urgent_sent.add(r[0])
                    self.stats["urgent_sent"] += len(records)
                    continue
                records = j.read(self._sent_upto, self.batch_records, self.batch_bytes)
                if records:
                    self._sent_upto = records[-1][0]
                    records = [r for r in records if r[0] not in self._urgent_sent]
                    if records:
                        await self._publish_batch(records, now)
                    continue
            await self._sleep_ms(min(self.resend_after_ms, 1000))
        if not c.is_connected:
            raise ConnectionLost("link dropped")

    async def _publish_batch(self, records, now, urgent=False):
        """Queue one `data` batch. The PUBACK is awaited in the background, so
        up to `window` batches travel at once: on a slow link with a long
        round trip, waiting for each PUBACK before the next batch would leave
        the link idle most of the time (measured: half the throughput at
        256 kbit/s with 150 ms latency, bench/drain.py). Order is kept: the
        client sends publishes in the order they are started."""
        j = self.journal
        if _SMALL_HEAP:
            gc.collect()  # room for the batch in one block
        msg = protocol.data_message(j.jid, j.first_unacked, now, records)
        if not self._outstanding:
            self._last_progress_ms = now
        self._outstanding.append([max(r[0] for r in records), now, urgent])
        self.stats["batches"] += 1
        self.stats["records_sent"] += len(records)
        self._publish_tasks = [t for t in self._publish_tasks if not t.done()]
        self._publish_tasks.append(asyncio.create_task(self._publish_data(msg)))
        await asyncio.sleep(0)  # let it start, so the next one queues behind it

    async def _publish_data(self, msg):
        try:
            await self.client.publish(self.topic("data"), msg, qos=1)
        except (OSError, MQTTError, asyncio.TimeoutError):
            # The link dropped: the session ends and everything unacked is
            # sent again after the reconnect.
            pass
        except Exception as e:  # a bug or MemoryError: counted, shown, re-sent
            self.stats["session_errors"] += 1
            self.indicator.error("uplink", "unexpected %s: %s" % (type(e).__name__, e))
            self._resend_now = True
        finally:
            self._wake.set()

    # --- receiving -----------------------------------------------------------
    async def _receive(self):
        ack_topic = self.topic("ack")
        cmd_topic = self.topic("cmd")
        while True:
            try:
                msg = await self.client.next_message()
            except (OSError, MQTTError):
                self._wake.set()
                return
            if msg.topic == ack_topic:
                self.apply_ack(msg.payload)
            elif msg.topic == cmd_topic and self.on_command is not None:
                result = self.on_command(msg.payload)
                if result is not None:
                    await self.publish_result(result)

    async def publish_result(self, payload):
        """Publish a `cmd/result` (QoS 1). A result the link loses is not
        retried here: the server re-sends the command and gets the stored
        result as a replay (gateway/commands.py)."""
        try:
            await self.client.publish(self.topic("cmd/result"), payload, qos=1)
            self.stats["results"] += 1
            return True
        except (OSError, MQTTError, asyncio.TimeoutError):
            return False

    def reconfigure(self, up):
        """Apply an `uplink` config section (gateway/config.py). Timing takes
        effect at once; new broker settings by ending the session, so the
        next connect uses them. Returns True when the session was ended."""
        self.heartbeat_ms = up["heartbeat_s"] * 1000
        self.window = up["window"]
        self.resend_after_ms = up["resend_after_s"] * 1000
        self.backoff_min_ms = up["backoff_min_s"] * 1000
        self.backoff_max_ms = up["backoff_max_s"] * 1000
        c = self.client
        port = up["broker_port"] or (8883 if up["tls"] else 1883)
        new = (up["broker_host"], port, up["username"] or self.gateway, up["password"])
        old = (c.host, c.port, getattr(c, "username", None), getattr(c, "password", None))
        if new == old:
            return False
        c.set_server(*new)
        self.drop_link()
        return True

    def drop_link(self):
        """End the current session now (its link is closed; the connection
        manager reconnects after the backoff)."""
        abort = getattr(self.client, "abort", None)
        if abort is not None:
            abort()
        self._wake.set()

    def apply_ack(self, payload):
        """Apply one `ack` payload; returns how many records it freed."""
        try:
            jid, upto, rejected, server_time = protocol.parse_ack(payload)
        except protocol.AckError as e:
            self.stats["acks_bad"] += 1
            self.indicator.error("ack", str(e))
            return 0
        j = self.journal
        if jid != j.jid:
            self.stats["acks_ignored"] += 1
            return 0
        try:
            freed = j.ack(upto)
        except JournalError:
            # An ack from the future (beyond what we wrote): never trust it.
            self.stats["acks_ignored"] += 1
            return 0
        self.stats["acks"] += 1
        if server_time is not None and (not self.clock.synced or abs(
                server_time - self.clock.now_ms()) > self.clock_slew_ms):
            self.clock.correct(server_time)
        if freed:
            self._last_progress_ms = self.clock.now_ms()
            self.indicator.delivered(upto, rejected)
        self._wake.set()
        return freed
