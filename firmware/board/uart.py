# Serial instruments on the board's UARTs: machine.UART behind the serial
# adapter interface (stream_port.py). The instrument's `port` in config.json
# names the UART and, when the board's defaults do not fit, its pins:
#     "uart2"                 UART 2 on the board's default pins
#     "uart1:tx=17,rx=16"     UART 1 on GPIO 17 (TX) / 16 (RX)
# 8N1, the baud rate from the config (the profile's default otherwise). The
# UART is non-blocking (timeout=0) with a 2 KB receive ring: an ECG stream
# at 115200 baud (8.25 KB/s) is drained by the session every few ms.
# Board only (machine.UART); the Unix port uses unix_serial.py.
import machine
from stream_port import StreamPort

RXBUF = 2048


class PortError(ValueError):
    pass


def parse_port(spec):
    """("uart2:tx=17,rx=16") -> (2, {"tx": 17, "rx": 16})."""
    name, _, rest = spec.partition(":")
    name = name.strip().lower()
    if not name.startswith("uart") or not name[4:].isdigit():
        raise PortError("serial port must be uart<N>[:tx=<pin>,rx=<pin>], not %r" % spec)
    pins = {}
    for item in rest.split(","):
        if not item.strip():
            continue
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in ("tx", "rx", "rts", "cts") or not value.strip().isdigit():
            raise PortError("bad pin setting %r in %r" % (item, spec))
        pins[key] = int(value)
    return int(name[4:]), pins


def open_port(inst):
    """The serial adapter for a configured serial instrument."""
    uid, pins = parse_port(inst["port"])
    u = machine.UART(uid, baudrate=inst["baud"], bits=8, parity=None, stop=1,
                     timeout=0, rxbuf=RXBUF, **pins)
    return StreamPort(u, inst["port"], close=u.deinit)
