"""The gateway's MQTT client against a real Mosquitto (CPython), paho-mqtt 2.x
on the other side where a second, independent client is needed; and the same
client under the MicroPython Unix port (mpy_mqtt_smoke.py).

A stalled broker is made with SIGSTOP (the TCP connection stays up, nothing
answers), a dead one with `broker.restart()`.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devharness.broker import GatewayAccount, Mosquitto
from gateway.mqtt import (
    ConnectionLost,
    ConnectRefused,
    LocalProtocolError,
    MQTTClient,
    MQTTError,
    Publish,
    RemoteProtocolError,
    SubscribeRefused,
    connack_reason,
)
from gateway.mqtt.client import _Pending
from tests.conftest import MPY_SUMMARIES, REPO, mpy_env

HOST = "127.0.0.1"


def run(coro: Coroutine[Any, Any, Any], timeout: float = 8.0) -> Any:
    """Run a test coroutine with a hard deadline (pytest-asyncio is not used)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(predicate: Callable[[], bool], timeout: float = 4.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %.1f s" % timeout)
        await asyncio.sleep(0.02)


class PahoSubscriber:
    """An independent subscriber (paho, its own thread) that records messages."""

    def __init__(self, port: int, topic: str, client_id: str = "",
                 clean_session: bool = True) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self.subscriptions = 0
        self._subscribed = threading.Event()
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id, clean_session=clean_session)
        self.client.reconnect_delay_set(1, 1)

        def on_connect(c: paho.Client, *_: Any) -> None:
            c.subscribe(topic, 1)

        def on_subscribe(*_: Any) -> None:
            self.subscriptions += 1
            self._subscribed.set()

        def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
            self.messages.append(msg)

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(HOST, port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(5), "paho did not subscribe"

    def payloads(self) -> list[bytes]:
        return [bytes(m.payload) for m in list(self.messages)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def paho_subscriber(port: int, topic: str, **kw: Any) -> Iterator[PahoSubscriber]:
    sub = PahoSubscriber(port, topic, **kw)
    try:
        yield sub
    finally:
        sub.close()


def paho_publish(port: int, topic: str, payloads: list[bytes], retain: bool = False) -> None:
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    c.connect(HOST, port)
    c.loop_start()
    for p in payloads:
        c.publish(topic, p, qos=1, retain=retain).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


@contextmanager
def stopped(broker: Mosquitto) -> Iterator[None]:
    """The broker process frozen: connections stay open, nothing is answered."""
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)


async def reconnect(c: MQTTClient, timeout: float = 5.0) -> bool:
    """What gateway/uplink.py does, without the backoff: retry until up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await c.connect(timeout=1)
        except (MQTTError, OSError, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


# --- basics -----------------------------------------------------------------


def test_round_trip_to_itself(broker: Mosquitto) -> None:
    async def main() -> None:
        c = MQTTClient("rt-1", HOST, broker.port, clean_session=True)
        assert not c.is_connected
        assert await c.connect() is False
        assert c.is_connected
        assert await c.subscribe("test/rt/#", 1) == 1
        assert await c.subscribe("test/rt0", 0) == 0
        await c.publish("test/rt/a", b"one", qos=1)
        await c.publish("test/rt/b", "two", qos=0)
        await c.publish("test/rt0", b"\x00\xff" * 1000, qos=1)  # two-byte remaining length
        assert c.inflight == 0
        got = [await c.next_message(timeout=2) for _ in range(3)]
        assert [(m.topic, m.payload, m.qos) for m in got] == [
            ("test/rt/a", b"one", 1), ("test/rt/b", b"two", 0),
            ("test/rt0", b"\x00\xff" * 1000, 0)]  # downgraded to the subscription's QoS
        assert all(type(m) is Publish and not m.retain and not m.dup for m in got)
        with pytest.raises(asyncio.TimeoutError):
            await c.next_message(timeout=0.1)
        await c.unsubscribe("test/rt/#")
        await c.publish("test/rt/a", b"not for us")
        await c.publish("test/rt0", b"still for us")
        assert (await c.next_message(timeout=2)).payload == b"still for us"
        await c.disconnect()
        assert not c.is_connected
        with pytest.raises(ConnectionLost) as lost:
            await c.next_message()
        assert "disconnected" in str(lost.value)
        with pytest.raises(ConnectionLost) as not_up:
            await c.publish("test/rt/a", b"x")
        assert not_up.value.queued is False

    run(main())


def test_qos1_publish_received_by_paho(broker: Mosquitto) -> None:
    with paho_subscriber(broker.port, "test/paho/#") as sub:
        async def main() -> None:
            c = MQTTClient("to-paho", HOST, broker.port, clean_session=True)
            await c.connect()
            for i in range(50):
                await c.publish("test/paho/x", b"m%d" % i, qos=1)
            await until(lambda: len(sub.messages) >= 50)
            await c.disconnect()

        run(main())
        assert sub.payloads() == [b"m%d" % i for i in range(50)]
        assert all(m.qos == 1 and m.topic == "test/paho/x" for m in sub.messages)


def test_message_from_paho_reaches_client(broker: Mosquitto) -> None:
    async def main() -> None:
        c = MQTTClient("from-paho", HOST, broker.port, clean_session=True)
        await c.connect()
        await c.subscribe("test/frompaho", 1)
        await asyncio.to_thread(paho_publish, broker.port, "test/frompaho", [b"a", b"b"])
        a = await c.next_message(timeout=2)
        b = await c.next_message(timeout=2)
        assert (a.payload, a.qos, a.packet_id > 0) == (b"a", 1, True)
        assert b.payload == b"b"
        await c.disconnect()

    run(main())


def test_retained_message_delivered_on_subscribe(broker: Mosquitto) -> None:
    paho_publish(broker.port, "test/retained", [b"last value"], retain=True)

    async def main() -> None:
        c = MQTTClient("retain-1", HOST, broker.port, clean_session=True)
        await c.connect()
        await c.subscribe("test/retained", 1)
        msg = await c.next_message(timeout=2)
        assert (msg.topic, msg.payload, msg.retain) == ("test/retained", b"last value", True)
        # our own retained publish replaces it for the next subscriber
        await c.publish("test/retained", b"newer", qos=1, retain=True)
        live = await c.next_message(timeout=2)
        assert (live.payload, live.retain) == (b"newer", False)  # live delivery: no flag
        await c.disconnect()
        d = MQTTClient("retain-2", HOST, broker.port, clean_session=True)
        await d.connect()
        await d.subscribe("test/retained", 1)
        again = await d.next_message(timeout=2)
        assert (again.payload, again.retain) == (b"newer", True)
        await d.disconnect()

    run(main())


def test_last_will_on_close_but_not_on_disconnect(broker: Mosquitto) -> None:
    with paho_subscriber(broker.port, "test/will/#") as sub:
        async def main() -> None:
            clean = MQTTClient("will-clean", HOST, broker.port, clean_session=True,
                               will=("test/will/clean", b"offline", 1, True))
            await clean.connect()
            await clean.disconnect()
            crash = MQTTClient("will-crash", HOST, broker.port, clean_session=True,
                               will=("test/will/crash", "offline", 1, False))
            await crash.connect()
            await crash.close()
            assert not crash.is_connected
            await until(lambda: len(sub.messages) >= 1)
            await asyncio.sleep(0.2)

        run(main())
        # The crash's will arrived; the clean stop, earlier, sent none.
        assert [(m.topic, m.payload) for m in sub.messages] == [("test/will/crash", b"offline")]


def test_persistent_session_receives_messages_sent_while_offline(broker: Mosquitto) -> None:
    async def main() -> None:
        c = MQTTClient("persist-1", HOST, broker.port, clean_session=False)
        await c.connect()
        await c.subscribe("test/persist", 1)
        await c.disconnect()
        await asyncio.to_thread(paho_publish, broker.port, "test/persist",
                                [b"p%d" % i for i in range(5)])
        assert await c.connect() is True  # session present
        got = [(await c.next_message(timeout=2)).payload for _ in range(5)]
        assert got == [b"p%d" % i for i in range(5)]
        await c.disconnect()
        # They were PUBACKed, and disconnect() waited for the broker to read
        # that before it closed: an immediate reconnect gets nothing again.
        assert await c.connect() is True
        with pytest.raises(asyncio.TimeoutError):
            await c.next_message(timeout=0.3)
        await c.disconnect()
        # a clean session discards it
        c2 = MQTTClient("persist-1", HOST, broker.port, clean_session=True)
        assert await c2.connect() is False
        await c2.disconnect()

    run(main())


# --- connection failures ------------------------------------------------------


def test_wrong_password_refused(broker_factory: Callable[..., Mosquitto]) -> None:
    acc = GatewayAccount("U001", "gw-u001", "right-password")
    b = broker_factory(gateways=[acc])

    async def main() -> None:
        bad = MQTTClient(acc.gateway, HOST, b.port, username=acc.gateway, password="wrong")
        with pytest.raises(ConnectRefused) as refused:
            await bad.connect()
        assert refused.value.code in (4, 5)
        assert refused.value.reason == connack_reason(refused.value.code)
        assert refused.value.reason in str(refused.value)
        assert not bad.is_connected
        anonymous = MQTTClient("anon", HOST, b.port)
        with pytest.raises(ConnectRefused):
            await anonymous.connect()
        good = MQTTClient(acc.gateway, HOST, b.port, username=acc.gateway,
                          password=acc.password, clean_session=True)
        await good.connect()
        assert await good.subscribe(acc.prefix + "/cmd", 1) == 1
        await good.publish(acc.prefix + "/health", b"{}", qos=1)
        await good.disconnect()

    run(main())


def test_connect_failures() -> None:
    async def silent_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)  # swallow CONNECT, never answer
        await asyncio.sleep(5)
        writer.close()

    async def garbage_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"\x40\x02\x00\x01")  # PUBACK instead of CONNACK
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    async def main() -> None:
        silent = await asyncio.start_server(silent_server, HOST, 0)
        garbage = await asyncio.start_server(garbage_server, HOST, 0)
        closed = await asyncio.start_server(silent_server, HOST, 0)
        closed_port = closed.sockets[0].getsockname()[1]
        closed.close()
        await closed.wait_closed()

        with pytest.raises(ConnectionLost):
            await MQTTClient("x", HOST, closed_port).connect()
        c = MQTTClient("x", HOST, silent.sockets[0].getsockname()[1])
        with pytest.raises(asyncio.TimeoutError):
            await c.connect(timeout=0.3)
        assert not c.is_connected
        with pytest.raises(RemoteProtocolError):
            await MQTTClient("x", HOST, garbage.sockets[0].getsockname()[1]).connect()
        silent.close()
        garbage.close()

    run(main())


def test_fake_broker_refuses_subscription_then_sends_garbage() -> None:
    # Mosquitto grants subscriptions its ACL forbids (and delivers nothing), so
    # a refusal (SUBACK 0x80) and a broker breaking the protocol are played by
    # a scripted server.
    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)  # CONNECT
        writer.write(b"\x20\x02\x00\x00")  # CONNACK accepted
        subscribe = await reader.read(100)
        writer.write(b"\x90\x03" + subscribe[2:4] + b"\x80")  # SUBACK: refused
        await reader.read(100)  # the second SUBSCRIBE
        writer.write(b"\x62\x02\x00\x07")  # PUBREL: QoS 2, never asked for
        await writer.drain()
        await asyncio.sleep(2)
        writer.close()

    async def main() -> None:
        fake = await asyncio.start_server(server, HOST, 0)
        c = MQTTClient("fake", HOST, fake.sockets[0].getsockname()[1], clean_session=True)
        await c.connect()
        with pytest.raises(SubscribeRefused) as refused:
            await c.subscribe("not/yours", 1)
        assert refused.value.topic_filter == "not/yours"
        with pytest.raises(ConnectionLost) as lost:
            await c.subscribe("other", 1)
        assert "PUBREL" in str(lost.value) and "QoS 2" in str(lost.value)
        assert not c.is_connected
        fake.close()

    run(main())


def test_settings_checked_when_made(broker: Mosquitto) -> None:
    with pytest.raises(LocalProtocolError):
        MQTTClient("x", HOST, 1, password="no user name")
    with pytest.raises(LocalProtocolError):
        MQTTClient("x", HOST, 1, will=("bad/#", b"", 1, False))

    async def main() -> None:
        c = MQTTClient("twice", HOST, broker.port, clean_session=True)
        await c.connect()
        with pytest.raises(LocalProtocolError):
            await c.connect()
        with pytest.raises(LocalProtocolError):
            await c.publish("bad/+", b"x")
        with pytest.raises(LocalProtocolError):
            await c.publish("t", b"x", qos=2)
        with pytest.raises(LocalProtocolError):
            await c.subscribe("bad#", 1)
        assert c.is_connected and c.inflight == 0
        await c.disconnect()

    run(main())


# --- keep-alive, ack timeouts, the in-flight window ---------------------------


def test_ping_timeout_detects_a_stalled_broker(broker_factory: Callable[..., Mosquitto]) -> None:
    b = broker_factory()

    async def main() -> None:
        c = MQTTClient("ping-1", HOST, b.port, keepalive=1, clean_session=True)
        await c.connect()
        await asyncio.sleep(1.2)  # idle: PINGREQ sent and answered
        assert c.is_connected
        with stopped(b):
            t0 = time.monotonic()
            with pytest.raises(ConnectionLost) as lost:
                await c.next_message(timeout=6)
            waited = time.monotonic() - t0
        assert "PINGRESP" in str(lost.value)
        assert 2.5 < waited < 4.5, waited  # ping after 0.5 s idle + 3 s minimum wait
        assert not c.is_connected
        await reconnect(c)
        await c.disconnect()

    run(main())


def test_ack_timeout_keeps_the_message_and_resends_it(
        broker_factory: Callable[..., Mosquitto]) -> None:
    b = broker_factory()
    with paho_subscriber(b.port, "test/acktimeout") as sub:
        async def main() -> None:
            c = MQTTClient("ack-1", HOST, b.port, clean_session=False, ack_timeout=1)
            await c.connect()
            await c.publish("test/acktimeout", b"before", qos=1)
            with stopped(b):
                with pytest.raises(ConnectionLost) as lost:
                    await c.publish("test/acktimeout", b"during", qos=1)
            assert lost.value.queued is True
            assert "no ack" in str(lost.value)
            assert c.inflight == 1  # kept in the session
            await reconnect(c)
            await until(lambda: c.inflight == 0)  # re-sent with DUP and acknowledged
            await until(lambda: b"during" in sub.payloads())
            await c.disconnect()

        run(main())


def test_clean_session_does_not_keep_unacked(broker_factory: Callable[..., Mosquitto]) -> None:
    b = broker_factory()

    async def main() -> None:
        c = MQTTClient("ack-2", HOST, b.port, clean_session=True, ack_timeout=1)
        await c.connect()
        with stopped(b):
            with pytest.raises(ConnectionLost) as lost:
                await c.publish("test/clean", b"x", qos=1)
        assert lost.value.queued is False
        assert c.inflight == 0
        await reconnect(c)
        await c.disconnect()

    run(main())


def test_inflight_window_never_exceeded(broker_factory: Callable[..., Mosquitto]) -> None:
    b = broker_factory()
    with paho_subscriber(b.port, "test/window") as sub:
        async def main() -> None:
            c = MQTTClient("window-1", HOST, b.port, clean_session=True, max_inflight=3)
            await c.connect()
            peak = 0
            done = 0

            async def one(i: int) -> None:
                nonlocal done
                await c.publish("test/window", b"w%d" % i, qos=1)
                done += 1

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, c.inflight)
                    await asyncio.sleep(0)

            watcher = asyncio.create_task(watch())
            with stopped(b):  # no PUBACKs: the window fills and stays full
                tasks = [asyncio.create_task(one(i)) for i in range(20)]
                await asyncio.sleep(0.3)
                assert c.inflight == 3 and done == 0
            await asyncio.gather(*tasks)
            watcher.cancel()
            assert peak == 3 and done == 20 and c.inflight == 0
            await until(lambda: len(sub.messages) >= 20)
            await c.disconnect()

        run(main())
        assert sorted(sub.payloads()) == sorted(b"w%d" % i for i in range(20))


def test_full_inbox_holds_the_reader_back(broker: Mosquitto) -> None:
    async def main() -> None:
        c = MQTTClient("inbox-1", HOST, broker.port, clean_session=True, inbox_size=2,
                       ack_timeout=1)
        await c.connect()
        await c.subscribe("test/inbox", 1)
        await asyncio.to_thread(paho_publish, broker.port, "test/inbox",
                                [b"i%d" % i for i in range(10)])
        await asyncio.sleep(1.5)  # longer than ack_timeout: a stall is not a dead link
        assert c.is_connected
        got = [(await c.next_message(timeout=2)).payload for _ in range(10)]
        assert got == [b"i%d" % i for i in range(10)]
        await c.disconnect()

    run(main())


def test_packet_ids_wrap_and_skip_ids_in_use(broker: Mosquitto) -> None:
    c = MQTTClient("ids", HOST, broker.port)
    c._pid = 65534
    c._inflight = [_Pending(65535, None), _Pending(2, None)]
    assert [c._next_id() for _ in range(3)] == [1, 3, 4]
    c._pid = 0
    assert c._next_id() == 1


# --- broker restart -----------------------------------------------------------


def test_broker_restart_mid_stream_loses_nothing(
        broker_factory: Callable[..., Mosquitto]) -> None:
    b = broker_factory()
    n = 60
    # A persistent paho session: the broker keeps its subscription and queue
    # across the restart (persistence on), and paho reconnects by itself.
    with paho_subscriber(b.port, "test/restart", client_id="restart-sub",
                         clean_session=False) as sub:
        outcome: dict[int, str] = {}

        async def main() -> None:
            c = MQTTClient("restart-gw", HOST, b.port, clean_session=False, max_inflight=4,
                           keepalive=5)
            await c.connect()

            async def one(i: int) -> None:
                try:
                    await c.publish("test/restart", b"r%d" % i, qos=1)
                    outcome[i] = "acked"
                except ConnectionLost as e:
                    outcome[i] = "queued" if e.queued else "refused"

            tasks = []
            restart = None
            for i in range(n):
                if i == n // 3:
                    restart = asyncio.create_task(asyncio.to_thread(b.restart))
                tasks.append(asyncio.create_task(one(i)))
                await asyncio.sleep(0.005)
            assert restart is not None
            await restart
            await asyncio.gather(*tasks)
            assert "acked" in outcome.values()
            assert set(outcome.values()) != {"acked"}, "the restart interrupted nothing"
            await reconnect(c)  # re-sends what was queued
            for i in sorted(outcome):
                if outcome[i] == "refused":  # never taken: the caller sends it again
                    await c.publish("test/restart", b"r%d" % i, qos=1)
            await until(lambda: c.inflight == 0)
            await until(lambda: set(sub.payloads()) >= {b"r%d" % i for i in range(n)},
                        timeout=5)
            await c.disconnect()

        run(main(), timeout=15)
        assert set(sub.payloads()) == {b"r%d" % i for i in range(n)}  # duplicates allowed


def test_broker_killed_with_unacked_publishes_gets_them_again(
        broker_factory: Callable[..., Mosquitto]) -> None:
    # Deterministic variant: the broker is frozen while three publishes are
    # written, then killed, so it never read them; only the client's re-send
    # after reconnect can deliver them.
    b = broker_factory()
    with paho_subscriber(b.port, "test/killed") as sub:
        async def main() -> None:
            c = MQTTClient("killed-gw", HOST, b.port, clean_session=False)
            await c.connect()
            await c.publish("test/killed", b"k0", qos=1)
            assert b.proc is not None
            os.kill(b.proc.pid, signal.SIGSTOP)
            tasks = [asyncio.create_task(c.publish("test/killed", b"k%d" % i, qos=1))
                     for i in (1, 2, 3)]
            await until(lambda: c.inflight == 3)
            await asyncio.sleep(0.1)  # written to the socket, not acknowledged
            b.proc.kill()  # SIGKILL works on a stopped process
            b.proc.wait()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(r, ConnectionLost) and r.queued for r in results), results
            assert c.inflight == 3 and not c.is_connected
            b.start()
            await until(lambda: sub.subscriptions == 2, timeout=5)  # paho is back
            await reconnect(c)
            await until(lambda: c.inflight == 0)
            await until(lambda: len(sub.messages) >= 4)
            await c.disconnect()

        run(main(), timeout=12)
        assert sub.payloads() == [b"k0", b"k1", b"k2", b"k3"]  # the re-sent ones, in order


# --- the same client under MicroPython ----------------------------------------


def test_micropython_client_against_real_broker(broker: Mosquitto, micropython_bin: str,
                                                mpy_image: Path) -> None:
    env = mpy_env(mpy_image, {"MQTT_SMOKE_PORT": str(broker.port)})
    with paho_subscriber(broker.port, "smoke/out") as sub:
        proc = subprocess.Popen(
            [micropython_bin, "-X", "heapsize=100k", "tests/gateway/mpy_mqtt_smoke.py"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 10)
            first = proc.stdout.readline() if ready else ""
            if not first.startswith("published granted=1"):
                proc.kill()
                rest, err = proc.communicate()
                pytest.fail("MicroPython client: " + first + rest + err)
            paho_publish(broker.port, "smoke/in", [b"hello from paho"])
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, first + out + err
        assert "received smoke/in hello from paho qos=1" in out
        deadline = time.monotonic() + 3
        while not sub.messages and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [(m.topic, m.payload, m.qos) for m in sub.messages] == [
            ("smoke/out", b"hello from micropython", 1)]
        heap = [line for line in out.splitlines() if line.startswith("heap")]
        MPY_SUMMARIES.append("MQTT client smoke, heap 100k: " + (heap[0] if heap else "?"))
