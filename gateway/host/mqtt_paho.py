"""MQTT client adapter on paho-mqtt 2.x for a Linux-class gateway: the same
async interface as gateway.mqtt.MQTTClient (our portable client), so the
Uplink (gateway/uplink.py) and the Runtime (gateway/runtime.py, through its
`make_client`) cannot tell which one they drive. CPython only.

    await connect(timeout) -> session_present     ConnectRefused, ConnectionLost,
                                                  asyncio.TimeoutError
    await publish(topic, payload, qos, retain)    QoS 1 returns on PUBACK;
                                                  ConnectionLost(.queued)
    await subscribe(filter, qos) -> granted       SubscribeRefused
    await unsubscribe(filter)
    await next_message(timeout) -> Publish        (gateway.mqtt.codec.Publish)
    await disconnect()  DISCONNECT: no last will
    await close(), abort()  drop without DISCONNECT: the broker sends the will
    set_server(host, port, username, password), is_connected, inflight

Threads: paho's network loop runs in paho's own thread (loop_start), one
thread per connection: the client is made with reconnect_on_failure=False,
so the thread ends with its connection and reconnecting stays the Uplink's
policy, as with our client. paho's callbacks only hand their results to the
asyncio loop (loop.call_soon_threadsafe); every piece of state here is
touched by the asyncio thread alone. connect() joins the previous
connection's thread first, so its last callbacks are handled before a new
connection begins.

Session (clean_session=False; MQTT 5: clean_start=False and a session expiry
interval): paho keeps the QoS 1 messages not yet acknowledged inside the
paho client, across connections, and re-sends them with DUP=1 after the next
CONNACK; this object keeps one paho client for its whole life. publish()
raises ConnectionLost at once on a connection loss, with `queued` True when
paho holds the message (it goes again after the next connect(); its
in-flight slot stays taken until its PUBACK) and False when it was not
accepted. paho re-sends held messages after a reconnect with a clean
session too; our client discards them then.

Differences from our client, none of which the Uplink relies on:
  - inbound QoS 1 messages are PUBACKed by paho as they arrive and the inbox
    is not bounded (`inbox_size` is accepted and ignored): blocking paho's
    thread on a full inbox would also stop our own publishes. The gateway's
    inbound traffic is acks and commands, a few messages.
  - keepalive pings and the PINGRESP deadline are paho's; the `ack_timeout`
    watchdog (no PUBACK/SUBACK in time: the link is declared dead) is ours.
  - disconnect() does not wait for the broker to close its end.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as _ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.mqtt import (
    ConnectionLost,
    ConnectRefused,
    LocalProtocolError,
    Publish,
    SubscribeRefused,
)

MQTT_311 = 4
MQTT_5 = 5
SESSION_EXPIRY_S = 7 * 86400  # MQTT 5: how long the broker keeps a gateway's session
SUBACK_FAILURE = 0x80

# paho reports a refused MQTT 3.1.1 CONNACK as an MQTT 5 reason code: back
# to the 3.1.1 return code, as our client raises it.
_CONNACK_311 = {"Unsupported protocol version": 1, "Client identifier not valid": 2,
                "Server unavailable": 3, "Bad user name or password": 4,
                "Not authorized": 5}


class _Link:
    """One connection: its paho thread, its CONNACK, its watchdog."""

    def __init__(self, connack: asyncio.Future[tuple[bool, ReasonCode]]) -> None:
        self.connack = connack
        self.alive = False  # True from the CONNACK until it ends
        self.closing = False  # DISCONNECT sent: the end is ours
        self.thread: threading.Thread | None = None
        self.watchdog: asyncio.Task[None] | None = None


class _Waiter:
    """A QoS 1 publish held until its PUBACK, or a (un)subscribe until its ack."""

    def __init__(self, fut: asyncio.Future[Any]) -> None:
        self.fut = fut
        self.sent = time.monotonic()


class PahoMQTTClient:
    def __init__(self,
                 client_id: str,
                 host: str,
                 port: int,
                 username: str | None = None,
                 password: bytes | str | None = None,
                 keepalive: int = 60,
                 clean_session: bool = False,
                 will: tuple[str, bytes | str, int, bool] | None = None,
                 max_inflight: int = 8,
                 ack_timeout: float = 10,
                 inbox_size: int = 8,
                 ssl: _ssl.SSLContext | bool | None = None,
                 mqtt_version: int = MQTT_311,
                 session_expiry_s: int = SESSION_EXPIRY_S) -> None:
        if mqtt_version not in (MQTT_311, MQTT_5):
            raise ValueError("mqtt_version: 4 (3.1.1) or 5")
        self.client_id = client_id
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.max_inflight = max_inflight
        self.ack_timeout = ack_timeout
        self.inbox_size = inbox_size
        self.ssl = ssl
        self.mqtt_version = mqtt_version
        self.session_expiry_s = session_expiry_s
        v5 = mqtt_version == MQTT_5
        self._paho = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                 clean_session=None if v5 else clean_session,
                                 protocol=MQTTProtocolVersion.MQTTv5 if v5
                                 else MQTTProtocolVersion.MQTTv311,
                                 reconnect_on_failure=False)
        # Our own bound (max_inflight) comes first: paho must never queue.
        self._paho.max_inflight_messages_set(max(20, max_inflight))
        if will is not None:
            wt, wp, wq, wr = will
            self._paho.will_set(wt, wp, wq, wr)
        if ssl is not None and ssl is not False:
            self._paho.tls_set_context(_ssl.create_default_context() if ssl is True else ssl)
        p = self._paho
        p.on_connect = self._cb_connect
        p.on_disconnect = self._cb_disconnect
        p.on_publish = self._cb_publish
        p.on_subscribe = self._cb_suback
        p.on_unsubscribe = self._cb_suback
        p.on_message = self._cb_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link: _Link | None = None  # while connected
        self._pending: _Link | None = None  # while connecting
        self._last_thread: threading.Thread | None = None
        self._opening: asyncio.Future[Any] | None = None
        self._connecting = False
        self._why = "not connected"
        self._held: dict[int, _Waiter] = {}  # QoS 1 publishes held by paho, by mid
        self._requests: dict[int, _Waiter] = {}  # this connection's (UN)SUBSCRIBEs
        self._inbox: list[Publish] = []
        self._changed = asyncio.Event()

    # --- as gateway.mqtt.MQTTClient -----------------------------------------

    def set_server(self, host: str, port: int, username: str | None = None,
                   password: bytes | str | None = None) -> None:
        """Where and as whom the next connect() goes; the session is kept."""
        self.host, self.port, self.username, self.password = host, port, username, password

    @property
    def is_connected(self) -> bool:
        return self._link is not None

    @property
    def inflight(self) -> int:
        return len(self._held)  # QoS 1 publishes held until their PUBACK

    async def connect(self, timeout: float = 10) -> bool:
        """Open the connection, resume the session; returns session_present."""
        if self._link is not None or self._connecting:
            raise LocalProtocolError("already connected")
        self._connecting = True
        try:
            return await asyncio.wait_for(self._connect(timeout), timeout)
        finally:
            self._connecting = False

    async def _connect(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        self._loop = loop
        await self._settle_previous()
        link = _Link(loop.create_future())
        self._pending = link
        try:
            # (the public setter refuses after a lost connection: paho's own
            # reconnect would keep the old value)
            self._paho._connect_timeout = max(1.0, timeout)
            self._opening = loop.run_in_executor(None, self._open)
            try:
                await asyncio.shield(self._opening)
            except OSError as e:  # refused, unreachable, TLS handshake or certificate
                raise ConnectionLost("cannot connect to %s:%d: %r" % (self.host, self.port, e))
            if self._paho.loop_start() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise ConnectionLost("paho's network thread is still running")
            link.thread = self._paho._thread
            self._last_thread = link.thread
            session_present, reason = await link.connack
            if reason.is_failure:
                if self.mqtt_version == MQTT_311:
                    raise ConnectRefused(_CONNACK_311.get(reason.getName(), reason.value))
                err = ConnectRefused(reason.value)  # an MQTT 5 reason code: its name
                err.reason = reason.getName()
                err.args = ("connection refused: %s (%d)" % (err.reason, reason.value),)
                raise err
        except BaseException as e:  # refused, lost, cancelled by the timeout
            self._pending = None
            self._why = "connect: %r" % (e,)
            self._kill_socket()
            raise
        self._pending = None
        link.alive = True
        self._link = link
        now = time.monotonic()
        for w in self._held.values():
            w.sent = now  # paho sends them again after the CONNACK
        link.watchdog = asyncio.create_task(self._watch(link))
        self._pulse()
        return session_present

    def _open(self) -> None:
        # In a worker thread: TCP, TLS handshake, CONNECT written (blocking).
        p = self._paho
        # (paho takes bytes as they are, though typed str)
        p.username_pw_set(self.username, self.password)  # type: ignore[arg-type]
        if self.mqtt_version == MQTT_5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if self.clean_session else self.session_expiry_s
            p.connect(self.host, self.port, self.keepalive,
                      clean_start=self.clean_session, properties=props)
        else:
            p.connect(self.host, self.port, self.keepalive)

    async def _settle_previous(self) -> None:
        # The previous attempt's worker and connection thread must be done
        # (and their callbacks handled) before paho is touched again.
        if self._opening is not None:
            await asyncio.gather(self._opening, return_exceptions=True)
            self._opening = None
        t = self._last_thread
        if t is not None and t.is_alive():
            self._kill_socket()
            await asyncio.to_thread(t.join)
        self._last_thread = None
        reset = getattr(self._paho, "_reset_sockets", None)
        if reset is not None and self._paho._thread is None:
            reset(sockpair_only=True)  # loop_start makes a new pair each time

    async def disconnect(self) -> None:
        """Clean end: DISCONNECT, so the broker discards the last will."""
        link = self._link
        if link is None:
            return
        link.closing = True
        self._paho.disconnect()
        t = link.thread
        if t is not None:
            await asyncio.to_thread(t.join, 2)
        self._drop(link, "disconnected")

    async def close(self) -> None:
        """Drop the connection without DISCONNECT: the broker publishes the will."""
        self.abort()

    def abort(self) -> None:
        """Drop the connection now, without DISCONNECT (synchronous)."""
        if self._link is not None:
            self._drop(self._link, "aborted")

    async def publish(self, topic: str, payload: bytes | bytearray | str, qos: int = 1,
                      retain: bool = False) -> None:
        link = self._need_link()
        if not qos:
            info = self._paho.publish(topic, bytes(payload) if isinstance(payload, bytearray)
                                      else payload, 0, retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise ConnectionLost(self._why if not link.alive else paho.error_string(info.rc))
            return
        while len(self._held) >= self.max_inflight:
            await self._changed.wait()
            if not link.alive:
                raise ConnectionLost(self._why)
        info = self._paho.publish(topic, bytes(payload) if isinstance(payload, bytearray)
                                  else payload, qos, retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise ConnectionLost(paho.error_string(info.rc))  # not taken (e.g. too large)
        # NO_CONN: paho's thread saw the link go down a moment ago; paho
        # keeps the message all the same and sends it after the reconnect.
        w = _Waiter(asyncio.get_running_loop().create_future())
        self._held[info.mid] = w
        self._pulse()
        if not link.alive or info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            raise ConnectionLost(self._why, queued=True)
        try:
            await w.fut
        except ConnectionLost as e:
            e.queued = info.mid in self._held
            raise

    async def subscribe(self, topic_filter: str, qos: int = 1) -> int:
        """The granted QoS; SubscribeRefused when the broker answers 0x80."""
        link = self._need_link()
        rc, mid = self._paho.subscribe(topic_filter, qos)
        granted = await self._request(link, rc, mid)
        if granted[0] >= SUBACK_FAILURE:
            raise SubscribeRefused(topic_filter)
        return int(granted[0])

    async def unsubscribe(self, topic_filter: str) -> None:
        link = self._need_link()
        rc, mid = self._paho.unsubscribe(topic_filter)
        await self._request(link, rc, mid)

    async def _request(self, link: _Link, rc: MQTTErrorCode, mid: int | None) -> list[int]:
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise ConnectionLost(self._why if not link.alive else paho.error_string(rc))
        w = _Waiter(asyncio.get_running_loop().create_future())
        self._requests[mid] = w
        try:
            result: list[int] = await w.fut
            return result
        finally:
            self._requests.pop(mid, None)

    async def next_message(self, timeout: float | None = None) -> Publish:
        """The next inbound Publish; those received are returned even after a
        connection loss, then ConnectionLost."""
        if timeout is None:
            return await self._next_message()
        return await asyncio.wait_for(self._next_message(), timeout)

    async def _next_message(self) -> Publish:
        while not self._inbox:
            if self._link is None:
                raise ConnectionLost(self._why)
            await self._changed.wait()
        return self._inbox.pop(0)

    # --- internals (asyncio thread) -------------------------------------------

    def _pulse(self) -> None:
        self._changed.set()
        self._changed.clear()

    def _need_link(self) -> _Link:
        if self._link is None:
            raise ConnectionLost(self._why)
        return self._link

    def _kill_socket(self) -> None:
        # Ends the connection without DISCONNECT: paho's thread reads EOF,
        # reports it and ends. The socket is shut down, not closed: paho owns
        # it (the plain socket's method, so a TLS socket's state is not touched).
        sock = self._paho.socket()
        if isinstance(sock, socket.socket):
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def _drop(self, link: _Link, why: str) -> None:
        """The one way a connection ends here: settle every waiter."""
        if not link.alive:
            return
        link.alive = False
        self._why = why
        if self._link is link:
            self._link = None
        if link.watchdog is not None and link.watchdog is not asyncio.current_task():
            link.watchdog.cancel()
        self._kill_socket()  # no-op when paho has closed it already
        for w in list(self._held.values()) + list(self._requests.values()):
            if not w.fut.done():
                w.fut.set_exception(ConnectionLost(why, queued=True))
                w.fut.exception()  # retrieved: the caller may have gone
        self._requests = {}
        self._pulse()

    async def _watch(self, link: _Link) -> None:
        limit = self.ack_timeout
        tick = max(0.05, min(1.0, limit / 4))
        while link.alive:
            now = time.monotonic()
            for mid, w in list(self._held.items()) + list(self._requests.items()):
                if now - w.sent > limit:
                    self._drop(link, "no ack for packet %d within %d ms" % (mid, limit * 1000))
                    return
            await asyncio.sleep(tick)

    def _on_connack(self, session_present: bool, reason: ReasonCode) -> None:
        link = self._pending
        if link is not None and not link.connack.done():
            link.connack.set_result((session_present, reason))

    def _on_disconnected(self, why: str) -> None:
        link = self._pending
        if link is not None and not link.connack.done():
            link.connack.set_exception(ConnectionLost("connection closed before CONNACK: " + why))
        elif self._link is not None:
            self._drop(self._link, "disconnected" if self._link.closing else why)

    def _on_puback(self, mid: int) -> None:
        w = self._held.pop(mid, None)
        if w is not None:
            if not w.fut.done():
                w.fut.set_result(None)
            self._pulse()

    def _on_ack(self, mid: int, codes: list[int]) -> None:
        w = self._requests.get(mid)
        if w is not None and not w.fut.done():
            w.fut.set_result(codes)

    def _on_publish_in(self, msg: Publish) -> None:
        self._inbox.append(msg)
        self._pulse()

    # --- paho callbacks (paho's thread): hand over, nothing else ---------------

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _cb_connect(self, _c: Any, _u: Any, flags: Any, reason: ReasonCode, _p: Any) -> None:
        self._post(self._on_connack, bool(flags.session_present), reason)

    def _cb_disconnect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        why = "connection closed by the broker" if reason.value == 0 else str(reason)
        self._post(self._on_disconnected, why)

    def _cb_publish(self, _c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        self._post(self._on_puback, mid)

    def _cb_suback(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        values = [c.value if isinstance(c, ReasonCode) else int(c) for c in codes]
        self._post(self._on_ack, mid, values)

    def _cb_message(self, _c: Any, _u: Any, m: paho.MQTTMessage) -> None:
        self._post(self._on_publish_in,
                   Publish(m.topic, bytes(m.payload), m.qos, m.retain, m.dup, m.mid))
