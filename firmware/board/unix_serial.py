# Serial instruments on the virtual gateway (MicroPython Unix port): the
# instrument's `port` is the path of a pseudo-terminal whose other side is a
# simulator (gateway/sim/serial_instruments.py, run by the bench), or a real
# /dev/ttyUSB0 on a Linux host.
#
# What the Unix port offers, measured (MicroPython 1.28 line): `open(path,
# "r+b")` gives a FileIO whose fd select.poll and asyncio's poller accept;
# its read(n) loops until it has n bytes, which would block the event loop.
# `termios` is there: raw mode with VMIN=0 and VTIME=0 makes a read return
# at once with what the tty holds, so asyncio.StreamReader.read(n) returns
# what arrived (tested: 7 bytes then 6 bytes, as written, 0 ms when empty).
# The same StreamPort as the board's UART (stream_port.py) then serves it.
# MicroPython Unix port only.
from stream_port import StreamPort

# The Unix port's termios (not in the ESP32 stubs the image is checked against)
termios = __import__("termios")

_VTIME = 5
_VMIN = 6


def open_port(inst):
    path = inst["port"]
    f = open(path, "r+b")
    try:
        fd = f.fileno()
        termios.setraw(fd)
        attr = termios.tcgetattr(fd)
        cc = attr[6]
        cc[_VTIME] = 0
        cc[_VMIN] = 0
        speed = getattr(termios, "B%d" % inst["baud"], None)
        if speed is not None:
            attr[4] = speed
            attr[5] = speed
        termios.tcsetattr(fd, termios.TCSANOW, attr)
    except Exception:
        f.close()
        raise
    return StreamPort(f, path, close=f.close)
