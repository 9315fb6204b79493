"""Serial port adapter on pyserial for the serial sessions
(gateway/serial_session.py), on a Linux-class gateway (a USB-serial cable,
the Cyton's radio dongle) and in tests (the slave side of a pseudo-terminal
whose master runs an instrument simulator, gateway/sim/serial_instruments.py).

The adapter interface the sessions use, the same one the firmware gives
`machine.UART` (issue 6):
    await read(n, timeout_ms) -> bytes   up to n bytes, as soon as any are
                                         there; b"" when none came in time
    await write(data)                    all of data
    close()
Reads never block the event loop: the port is opened non-blocking and the
loop watches its file descriptor. A port that goes away (cable pulled, the
pty's other side closed) raises OSError (pyserial's SerialException is one),
which the sessions count as `serial_error`. CPython only.
"""

from __future__ import annotations

import asyncio

import serial

BAUD_CYTON = 115200
BAUD_ONETOUCH = 9600
BAUD_ASTM = 9600


class SerialPort:
    """One open serial port (8N1). Made by the caller, never at import."""

    def __init__(self, path: str, baudrate: int, *, write_timeout_s: float = 2.0,
                 exclusive: bool = True) -> None:
        self.path = path
        self.baudrate = baudrate
        self._ser = serial.Serial(path, baudrate, bytesize=serial.EIGHTBITS,
                                  parity=serial.PARITY_NONE, stopbits=serial.STOPBITS_ONE,
                                  timeout=0, write_timeout=write_timeout_s,
                                  exclusive=exclusive)
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def is_open(self) -> bool:
        return bool(self._ser.is_open)

    async def read(self, n: int, timeout_ms: int) -> bytes:
        data = self._ser.read(n)
        if not data:
            loop = asyncio.get_running_loop()
            ready = loop.create_future()
            fd = self._ser.fileno()

            def wake() -> None:
                if not ready.done():
                    ready.set_result(None)

            loop.add_reader(fd, wake)
            try:
                await asyncio.wait_for(ready, timeout_ms / 1000)
            except TimeoutError:
                return b""
            finally:
                loop.remove_reader(fd)
            data = self._ser.read(n)
        self.bytes_in += len(data)
        return bytes(data)

    async def write(self, data: bytes) -> None:
        # Commands are a few bytes: written at once (the write timeout
        # bounds a stuck port).
        n = self._ser.write(data) or 0
        self._ser.flush()
        self.bytes_out += n

    def close(self) -> None:
        self._ser.close()

    async def __aenter__(self) -> SerialPort:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.close()
