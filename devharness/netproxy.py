"""A TCP proxy that stands for a unit's link in front of the real broker:
it can be cut and restored (a cellular link that drops for hours), and it
can be throttled to a given bit rate with a one-way latency (a 256 kbit/s
rural 3G/EDGE link), in both directions.

Runs its own asyncio loop in a background thread, so the gateway under test
(in the caller's loop, or in another process) meets it exactly as it would
meet a network: through a TCP port on loopback.

    proxy = LinkProxy(target_port=broker.port, rate_bps=256_000, latency_ms=150)
    proxy.start()              # listening on proxy.port
    proxy.set_link(False)      # cut: open connections are reset, new ones refused
    proxy.set_link(True)

The throttle is a token bucket per direction, shared by every connection
through the proxy (one radio link), fed in chunks of at most 1 KB, so a
burst is spread as a real link spreads it. Bytes forwarded are counted per
direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from devharness.ports import free_port

_CHUNK = 1024


class _Bucket:
    """Bit-rate limiter for one direction: `take(n)` waits until n bytes may pass."""

    def __init__(self, rate_bps: int | None) -> None:
        self.rate = rate_bps
        self._next = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, nbytes: int) -> None:
        if not self.rate:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + nbytes * 8 / self.rate
            delay = self._next - now
        if delay > 0:
            await asyncio.sleep(delay)


class LinkProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", *,
                 rate_bps: int | None = None, latency_ms: int = 0,
                 port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.rate_bps = rate_bps
        self.latency_ms = latency_ms
        self.port = port or free_port()
        self.bytes_up = 0  # gateway -> broker
        self.bytes_down = 0  # broker -> gateway
        self.connections = 0
        self._up = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._buckets: tuple[_Bucket, _Bucket] | None = None

    # --- control (any thread) ------------------------------------------------
    def start(self) -> LinkProxy:
        self._thread = threading.Thread(target=self._run, name="link-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("link proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._shutdown)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def set_link(self, up: bool) -> None:
        """Restore or cut the link. Cutting resets every open connection."""
        self._up = up
        if not up:
            self._call(self._drop_all)

    @property
    def link_up(self) -> bool:
        return self._up

    def _call(self, fn: object) -> None:
        loop = self._loop
        assert loop is not None

        async def run() -> None:
            result = fn()  # type: ignore[operator]
            if asyncio.iscoroutine(result):
                await result

        asyncio.run_coroutine_threadsafe(run(), loop).result(10)

    # --- the proxy's own loop -------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._buckets = (_Bucket(self.rate_bps), _Bucket(self.rate_bps))
        self._server = loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        await self._drop_all()
        me = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not me]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)

    async def _drop_all(self) -> None:
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        assert self._buckets is not None
        a = asyncio.create_task(self._pump(reader, up_writer, self._buckets[0], "up"))
        b = asyncio.create_task(self._pump(up_reader, writer, self._buckets[1], "down"))
        await asyncio.wait((a, b), return_when=asyncio.FIRST_COMPLETED)
        for t in (a, b):
            t.cancel()
        for w in (writer, up_writer):
            self._writers.discard(w)
            with contextlib.suppress(Exception):
                w.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    bucket: _Bucket, direction: str) -> None:
        """Forward src -> dst at the bucket's rate; each chunk is delivered
        `latency_ms` after it went through the throttle (a pipe, not a stall:
        the latency does not lower the throughput)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        delay = self.latency_ms / 1000

        async def deliver() -> None:
            while True:
                at, data = await queue.get()
                wait = at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data or not self._up:
                    return
                dst.write(data)
                await dst.drain()
                if direction == "up":
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)

        writer = asyncio.create_task(deliver())
        try:
            while not writer.done():
                data = await src.read(_CHUNK)
                if data:
                    await bucket.take(len(data))
                queue.put_nowait((time.monotonic() + delay, data))
                if not data:
                    break
            await writer
        except (OSError, asyncio.IncompleteReadError):
            return
        finally:
            writer.cancel()
