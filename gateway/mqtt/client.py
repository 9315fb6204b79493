# MQTT 3.1.1 client session over asyncio streams, for the gateway.
#
# How it fits
# -----------
# codec.py is the wire format, without I/O. This module is one client's
# connection and session: it opens the TCP stream, sends what the codec
# encodes, turns the codec's events into woken waiters, keeps the session
# state (QoS 1 publishes not yet acknowledged, packet ids, the inbox) and
# pings the broker. It reports the link going down, and nothing more: every
# waiter gets ConnectionLost and `is_connected` turns False. It never
# reconnects by itself; when to call connect() again (backoff, link checks)
# is gateway/uplink.py's policy, and connect() on the same object resumes
# the session.
#
# Tasks: connect() starts two per connection, kept in the _Link:
#   reader  bytes -> codec -> events: completes publish/subscribe waiters,
#           appends inbound PUBLISHes to the inbox, then PUBACKs them;
#   keeper  sends PINGREQ when nothing was sent for keepalive/2; declares the
#           link dead when a PINGRESP is later than max(keepalive/2, 3 s) or
#           an ack is later than ack_timeout.
# Whoever waits (publish for its PUBACK or for room in the in-flight window,
# subscribe for its SUBACK, next_message, a reader with a full inbox) waits
# on one Event that is pulsed on every change, and checks its condition
# again: MicroPython's asyncio has no Queue and no Condition.
#
# publish() at QoS 1 across a connection loss: the call raises ConnectionLost
# at once (it does not wait for a reconnect that may never come), and the
# exception's `queued` says what became of the message:
#   queued=True   it is kept in the session (clean_session=False) and will be
#                 re-sent with DUP=1, first thing after the next successful
#                 connect(); its in-flight slot stays taken until then;
#   queued=False  it was not accepted (not connected, no slot before the drop)
#                 or the session is clean and was discarded with the link.
# So no message is silently forgotten: either the caller is told it was not
# taken, or the client keeps it until the broker acknowledges it. The
# `inflight` property counts the messages held. A publish() call that is
# cancelled leaves its message in the session too.
#
# Inbound messages are PUBACKed once they are in the inbox; they stay there
# (after a connection loss too) until next_message() takes them. When the
# inbox is full the reader stops reading the socket (backpressure through
# TCP) and the keeper's ack clocks restart: the wait is the application's.
#
# Portable: the same source runs on MicroPython (ESP32, Unix port) and
# CPython 3.11; types are in comments (see codec.py).
import asyncio

from .codec import (
    DISCONNECT,
    NEED_DATA,
    PINGREQ,
    SUBACK_FAILURE,
    ConnAck,
    LocalProtocolError,
    MQTTError,
    PingResp,
    PubAck,
    Publish,
    Reader,
    RemoteProtocolError,
    SubAck,
    UnsubAck,
    connack_reason,
    encode_connect,
    encode_puback,
    encode_publish,
    encode_subscribe,
    encode_unsubscribe,
    set_dup,
)

TYPE_CHECKING = False  # mypy takes it as True: imports for the type comments only
if TYPE_CHECKING:
    from typing import Any  # noqa: F401

try:
    from micropython import const
except ImportError:

    def const(x):  # type: (int) -> int
        return x


try:
    from time import ticks_diff, ticks_ms  # type: ignore[attr-defined]
except ImportError:  # CPython: no wrap-around to care about
    from time import monotonic

    def ticks_ms():  # type: () -> int
        return int(monotonic() * 1000)

    def ticks_diff(a, b):  # type: (int, int) -> int
        return a - b


_CHUNK = const(512)  # bytes asked of the socket per read
_MIN_PING_WAIT = const(3000)  # ms a PINGRESP may take, however short the keepalive


class ConnectionLost(MQTTError):
    # The connection is gone, or never came up. From publish(), `queued`
    # tells whether the message is kept for re-sending after connect().
    def __init__(self, reason="connection lost", queued=False):  # type: (str, bool) -> None
        super().__init__(reason)
        self.queued = queued


class ConnectRefused(MQTTError):
    # The broker answered CONNACK with a non-zero return code.
    def __init__(self, code):  # type: (int) -> None
        self.code = code
        self.reason = connack_reason(code)
        super().__init__("connection refused: %s (%d)" % (self.reason, code))


class SubscribeRefused(MQTTError):
    # The broker answered SUBACK with 0x80 (e.g. the ACL forbids the filter).
    def __init__(self, topic_filter):  # type: (str) -> None
        self.topic_filter = topic_filter
        super().__init__("subscription refused: %s" % topic_filter)


class _Pending:
    # A request waiting for its ack: a QoS 1 PUBLISH (packet kept for
    # re-sending) or a SUBSCRIBE/UNSUBSCRIBE (packet None).
    def __init__(self, packet_id, packet):  # type: (int, bytearray | None) -> None
        self.packet_id = packet_id
        self.packet = packet
        self.sent = ticks_ms()
        self.result = None  # type: tuple | None


class _Link:
    # One TCP connection and what belongs to it alone.
    def __init__(self, stream_reader, stream_writer):  # type: (object, object) -> None
        self.sr = stream_reader  # type: Any
        self.sw = stream_writer  # type: Any
        self.codec = Reader()
        self.alive = True
        self.lock = asyncio.Lock()  # one writer at a time (MicroPython requires it)
        self.last_tx = ticks_ms()
        self.ping_sent = None  # type: int | None
        self.stalled = False  # the reader waits for room in the inbox
        self.closing = False  # DISCONNECT sent: the broker's EOF is expected
        self.tasks = []  # type: list


def _close(sw, graceful):  # type: (Any, bool) -> None
    transport = getattr(sw, "transport", None)
    if transport is None:
        # MicroPython: Stream.close() does nothing before wait_closed(), and
        # drain() has already handed every byte to the socket.
        sw.s.close()
    elif graceful:
        transport.close()  # once the buffered bytes are sent
    else:
        transport.abort()


class MQTTClient:
    def __init__(self,
                 client_id,  # type: str
                 host,  # type: str
                 port,  # type: int
                 username=None,  # type: str | None
                 password=None,  # type: bytes | str | None
                 keepalive=60,  # type: int
                 clean_session=False,  # type: bool
                 will=None,  # type: tuple[str, bytes | str, int, bool] | None
                 max_inflight=8,  # type: int
                 ack_timeout=10,  # type: float
                 inbox_size=8,  # type: int
                 ssl=None,  # type: Any
                 ):  # type: (...) -> None
        # will: (topic, payload, qos, retain), published by the broker if the
        # connection ends without DISCONNECT.
        self.client_id = client_id
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.max_inflight = max_inflight
        self.ack_timeout = ack_timeout
        self.inbox_size = inbox_size
        self.ssl = ssl  # an SSLContext (or True): TLS to the broker
        self.username = username
        self.password = password
        self._will = will if will is not None else (None, b"", 0, False)
        # Encoded once: a mistake in the settings shows here, not at connect().
        self._encode_connect()
        self._link = None  # type: _Link | None
        self._connecting = False
        self._why = "not connected"
        self._pid = 0
        self._inflight = []  # type: list[_Pending]  # QoS 1 publishes, oldest first
        self._requests = []  # type: list[_Pending]  # this connection's (UN)SUBSCRIBEs
        self._inbox = []  # type: list[Publish]
        self._changed = asyncio.Event()

    def _encode_connect(self):  # type: () -> None
        wt, wp, wq, wr = self._will
        self._connect_packet = encode_connect(self.client_id, self.keepalive,
                                              self.clean_session, self.username,
                                              self.password, wt, wp, wq, wr)

    def set_server(self, host, port, username=None, password=None):
        # type: (str, int, str | None, bytes | str | None) -> None
        # Where and as whom the next connect() goes (a new config); the
        # session state (unacknowledged publishes) is kept.
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self._encode_connect()

    def abort(self):  # type: () -> None
        # Drop the connection now, without DISCONNECT (synchronous).
        if self._link is not None:
            self._drop(self._link, "aborted")

    @property
    def is_connected(self):  # type: () -> bool
        return self._link is not None

    @property
    def inflight(self):  # type: () -> int
        return len(self._inflight)  # QoS 1 publishes held until their PUBACK

    # --- connecting ---------------------------------------------------------

    async def connect(self, timeout=10):  # type: (float) -> bool
        # Open the connection, resume the session; returns session_present.
        # Raises ConnectRefused, ConnectionLost, RemoteProtocolError, or
        # asyncio.TimeoutError when no CONNACK came within `timeout` seconds.
        if self._link is not None or self._connecting:
            raise LocalProtocolError("already connected")
        self._connecting = True
        try:
            return await asyncio.wait_for(self._connect(), timeout)
        finally:
            self._connecting = False

    async def _connect(self):  # type: () -> bool
        try:
            if self.ssl is None:
                sr, sw = await asyncio.open_connection(self.host, self.port)
            else:
                sr, sw = await asyncio.open_connection(self.host, self.port, ssl=self.ssl)
        except OSError as e:
            raise ConnectionLost("cannot connect to %s:%d: %r" % (self.host, self.port, e))
        link = _Link(sr, sw)
        try:
            sw.write(self._connect_packet)
            await sw.drain()
            ev = link.codec.next_event()
            while ev is NEED_DATA:
                data = await sr.read(_CHUNK)
                if not data:
                    raise ConnectionLost("connection closed before CONNACK")
                link.codec.feed(data)
                ev = link.codec.next_event()
            if not isinstance(ev, ConnAck):
                raise RemoteProtocolError("expected CONNACK, got %r" % (ev,))
            if ev.return_code:
                raise ConnectRefused(ev.return_code)
            link.tasks.append(asyncio.create_task(self._read_loop(link)))
            # What the broker has not acknowledged goes again, before anything new.
            for p in list(self._inflight):
                p.packet = set_dup(p.packet)  # type: ignore[arg-type]
                p.sent = ticks_ms()
                await self._send(link, p.packet)
            if not link.alive:
                raise ConnectionLost(self._why)
            link.tasks.append(asyncio.create_task(self._keep_alive(link)))
        except OSError as e:  # MicroPython reports a refused connection here
            self._drop(link, "connect: %r" % (e,))
            raise ConnectionLost(self._why)
        except BaseException as e:  # refused, protocol error, cancelled by the timeout
            self._drop(link, "connect: %r" % (e,))
            raise
        self._link = link
        self._pulse()
        return ev.session_present

    async def disconnect(self):  # type: () -> None
        # Clean end: DISCONNECT, so the broker discards the last will. Waits
        # (up to 2 s) for the broker to close its end, which it does once it
        # has read everything before the DISCONNECT (our PUBACKs too): a quick
        # reconnect can then not overtake them and find them unread.
        link = self._link
        if link is not None:
            link.closing = True
            try:
                await self._send(link, DISCONNECT)
                await asyncio.wait_for(self._closed(link), 2)
            except (ConnectionLost, asyncio.TimeoutError):
                pass
            self._drop(link, "disconnected", True)

    async def _closed(self, link):  # type: (_Link) -> None
        while link.alive:
            await self._changed.wait()

    async def close(self):  # type: () -> None
        # Drop the connection without DISCONNECT (as a crash would): the
        # broker publishes the last will.
        if self._link is not None:
            self._drop(self._link, "closed")

    # --- publishing and subscribing -----------------------------------------

    async def publish(self, topic, payload, qos=1, retain=False):
        # type: (str, bytes | bytearray | str, int, bool) -> None
        # QoS 0: returns once written. QoS 1: returns on PUBACK; waits first
        # for a slot when max_inflight publishes are unacknowledged. On a
        # connection loss: ConnectionLost, `queued` as in the header.
        link = self._need_link()
        if not qos:
            await self._send(link, encode_publish(topic, payload, 0, retain))
            return
        while len(self._inflight) >= self.max_inflight:
            await self._changed.wait()
            if not link.alive:
                raise ConnectionLost(self._why)
        p = _Pending(self._next_id(), None)
        p.packet = encode_publish(topic, payload, qos, retain, False, p.packet_id)
        self._inflight.append(p)
        try:
            await self._send(link, p.packet)
            p.sent = ticks_ms()
            await self._wait(p, link)
        except ConnectionLost as e:
            e.queued = p in self._inflight
            raise

    async def subscribe(self, topic_filter, qos=1):  # type: (str, int) -> int
        # Returns the granted QoS; SubscribeRefused if the broker says 0x80.
        ack = await self._request(encode_subscribe, [(topic_filter, qos)])
        if ack.granted[0] == SUBACK_FAILURE:
            raise SubscribeRefused(topic_filter)
        return ack.granted[0]

    async def unsubscribe(self, topic_filter):  # type: (str) -> None
        await self._request(encode_unsubscribe, [topic_filter])

    async def _request(self, encode, arg):  # type: (Any, list) -> Any
        link = self._need_link()
        p = _Pending(self._next_id(), None)
        packet = encode(p.packet_id, arg)
        self._requests.append(p)
        await self._send(link, packet)
        p.sent = ticks_ms()
        await self._wait(p, link)
        return p.result

    async def next_message(self, timeout=None):  # type: (float | None) -> Publish
        # The next inbound Publish. Messages already received are returned
        # even after a connection loss; then ConnectionLost. With a timeout,
        # asyncio.TimeoutError when nothing came.
        if timeout is None:
            return await self._next_message()
        return await asyncio.wait_for(self._next_message(), timeout)

    async def _next_message(self):  # type: () -> Publish
        while not self._inbox:
            if self._link is None:
                raise ConnectionLost(self._why)
            await self._changed.wait()
        msg = self._inbox.pop(0)
        self._pulse()  # room for a reader waiting on a full inbox
        return msg

    # --- internals ----------------------------------------------------------

    def _pulse(self):  # type: () -> None
        self._changed.set()  # wakes every waiter now...
        self._changed.clear()  # ...and later waiters wait for the next change

    def _need_link(self):  # type: () -> _Link
        if self._link is None:
            raise ConnectionLost(self._why)
        return self._link

    def _next_id(self):  # type: () -> int
        # 1..65535, wrapping, skipping the ids still waiting for an ack.
        pid = self._pid
        while True:
            pid = pid % 65535 + 1
            if not any(p.packet_id == pid for p in self._inflight + self._requests):
                self._pid = pid
                return pid

    async def _wait(self, p, link):  # type: (_Pending, _Link) -> None
        while p.result is None:
            if not link.alive:
                raise ConnectionLost(self._why)
            await self._changed.wait()

    async def _send(self, link, packet):  # type: (_Link, bytes | bytearray) -> None
        async with link.lock:
            if not link.alive:
                raise ConnectionLost(self._why)
            try:
                link.sw.write(packet)
                await link.sw.drain()
            except OSError as e:
                self._drop(link, "send failed: %r" % (e,))
                raise ConnectionLost(self._why)
            link.last_tx = ticks_ms()

    def _drop(self, link, why, graceful=False):  # type: (_Link, str, bool) -> None
        # The one way a connection ends: stop its tasks, close the socket,
        # settle the session and wake every waiter.
        if not link.alive:
            return
        link.alive = False
        self._why = why
        if self._link is link:
            self._link = None
        me = asyncio.current_task()
        for task in link.tasks:
            if task is not me:
                task.cancel()
        try:
            _close(link.sw, graceful)
        except OSError:
            pass
        self._requests = []
        if self.clean_session:  # the broker forgets the session: so do we
            self._inflight = []
        self._pulse()

    async def _read_loop(self, link):  # type: (_Link) -> None
        try:
            while True:
                ev = link.codec.next_event()
                if ev is NEED_DATA:
                    data = await link.sr.read(_CHUNK)
                    if not data:
                        raise ConnectionLost("disconnected" if link.closing
                                             else "connection closed by the broker")
                    link.codec.feed(data)
                else:
                    await self._on_event(link, ev)
        except Exception as e:  # reported to every waiter
            self._drop(link, str(e) if isinstance(e, MQTTError) else repr(e))

    async def _on_event(self, link, ev):  # type: (_Link, Any) -> None
        kind = type(ev)
        if kind is Publish:
            while len(self._inbox) >= self.inbox_size:
                link.stalled = True
                await self._changed.wait()
            link.stalled = False
            self._inbox.append(ev)
            self._pulse()
            if ev.qos:
                await self._send(link, encode_puback(ev.packet_id))
        elif kind is PubAck:
            self._settle(self._inflight, ev)
        elif kind is SubAck or kind is UnsubAck:
            self._settle(self._requests, ev)
        elif kind is PingResp:
            link.ping_sent = None
        else:
            raise RemoteProtocolError("unexpected %r" % (ev,))

    def _settle(self, pending, ev):  # type: (list[_Pending], Any) -> None
        for p in pending:
            if p.packet_id == ev.packet_id:
                pending.remove(p)
                p.result = ev
                self._pulse()
                return
        # An ack for nothing pending (a duplicate): nothing to do.

    async def _keep_alive(self, link):  # type: (_Link) -> None
        ka = self.keepalive * 1000
        ping_wait = max(ka // 2, _MIN_PING_WAIT)
        ack_wait = int(self.ack_timeout * 1000)
        tick = max(50, min(1000, ack_wait // 4, ka // 4 or 1000))
        try:
            while link.alive:
                now = ticks_ms()
                pending = self._inflight + self._requests
                if link.stalled:  # waiting for the application: restart the clocks
                    if link.ping_sent is not None:
                        link.ping_sent = now
                    for p in pending:
                        p.sent = now
                if link.ping_sent is not None and ticks_diff(now, link.ping_sent) > ping_wait:
                    self._drop(link, "no PINGRESP within %d ms" % ping_wait)
                    return
                for p in pending:
                    if ticks_diff(now, p.sent) > ack_wait:
                        self._drop(link, "no ack for packet %d within %d ms"
                                   % (p.packet_id, ack_wait))
                        return
                if ka and link.ping_sent is None and ticks_diff(
                        now, link.last_tx) >= ka // 2:
                    link.ping_sent = now
                    await self._send(link, PINGREQ)
                await asyncio.sleep(tick / 1000)
        except Exception as e:  # reported to every waiter
            self._drop(link, str(e) if isinstance(e, MQTTError) else repr(e))

