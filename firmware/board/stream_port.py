# The serial adapter the instrument sessions use (gateway/serial_session.py
# header: read(n, timeout_ms), write(data), close()) over any MicroPython
# stream that asyncio can poll and that returns what it has on read(n)
# instead of waiting for n bytes: a machine.UART (uart.py) on a board, a
# pseudo-terminal set to VMIN=0/VTIME=0 on the Unix port (unix_serial.py).
# Reads never block the event loop: asyncio's poller wakes the reader when
# bytes arrive. Portable.
import asyncio


class StreamPort:
    def __init__(self, stream, name, close=None):
        self.stream = stream
        self.name = name
        self._reader = asyncio.StreamReader(stream)  # MicroPython: over any stream
        self._writer = asyncio.StreamWriter(stream, {})  # type: ignore[call-arg, arg-type]
        self._close = close
        self.bytes_in = 0
        self.bytes_out = 0
        self.closed = False

    async def read(self, n, timeout_ms):
        if self.closed:
            raise OSError("port %s is closed" % self.name)
        try:
            data = await asyncio.wait_for(self._reader.read(n), timeout_ms / 1000)
        except asyncio.TimeoutError:
            return b""
        if data is None:
            data = b""
        self.bytes_in += len(data)
        return bytes(data)

    async def write(self, data):
        if self.closed:
            raise OSError("port %s is closed" % self.name)
        self._writer.write(data)
        await self._writer.drain()
        self.bytes_out += len(data)

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self._close is not None:
            self._close()
