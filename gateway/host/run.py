"""The Linux-class gateway (a Raspberry Pi, any Linux box with a Bluetooth
dongle and USB-serial cables): the same gateway code as the firmware
(gateway/runtime.py, gateway/sessions.py) run on CPython with the host's
adapters (ARCHITECTURE.md, issue 4 item 9).

    python -m gateway.host.run --state /var/lib/ummc [--ble usb:0|none] [--ca FILE]

- configuration: `config.json` in the state directory (gateway/config.py),
  provisioned beforehand; not provisioned or invalid -> a message and exit 6;
- uplink: the project's MQTT client (runtime.make_mqtt_client), with a TLS
  context on --ca (or the system's CA bundle) when `uplink.tls` is on;
- BLE: one bumble Device on the HCI transport given by --ble (bumble's
  transport spec: `usb:0` for a dongle, `tcp-client:HOST:PORT` for a virtual
  controller in tests; `none`: no radio), one BumbleCentral
  (gateway/host/ble_bumble.py) per BLE instrument, bonds kept in
  `ble_bonds.json` in the state directory;
- serial instruments: their configured `port` opened with pyserial
  (gateway/host/serial_port.py) for each session;
- feedback: the console indicator (one line per event, to stdout/journald);
- SIGINT/SIGTERM: a clean stop (retained `offline`/`shutdown` state, boot
  record marked clean), exit 0; the `reboot` command: exit 75, which systemd
  (`Restart=always`) turns into a restart. A kill or a power cut shows as
  `unexpected_exit` at the next start (gateway/bootinfo.py).
CPython only (docs/gateway.md, "Running on a Linux gateway").
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import hashlib
import json
import signal
import ssl
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from gateway.clock import GatewayClock
from gateway.config import ConfigError
from gateway.indicator import ConsoleIndicator
from gateway.runtime import Runtime, make_mqtt_client
from gateway.sessions import Sessions

EXIT_OK = 0
EXIT_NOT_PROVISIONED = 6
EXIT_REBOOT = 75  # systemd's Restart=always starts the gateway again
BONDS = "ble_bonds.json"
_SERIAL_BAUD = {"ecg_cyton": 115200, "onetouch": 9600, "astm": 9600}
_TIME_ERROR = 5  # adjtimex(2): the kernel clock is not synchronized


def fw_version() -> str:
    try:
        return "host-" + metadata.version("ummc-fleet")
    except metadata.PackageNotFoundError:
        return "host-0.0.0"


def clock_synchronized() -> bool:
    """Whether the kernel's clock is kept by NTP (adjtimex, read only). A Pi
    has no RTC: until NTP answers its clock is only the last saved one."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read
        state = int(ctypes.CDLL(name, use_errno=True).adjtimex(timex))
    except (OSError, AttributeError):
        return False
    return state not in (-1, _TIME_ERROR)


def link_probe() -> tuple[str, int | None]:
    """The host's network: the OS brings it up; no signal figure."""
    return "host", None


def tls_context(cfg: dict[str, Any], ca: str | None) -> ssl.SSLContext | None:
    if not cfg["uplink"]["tls"]:
        return None
    ctx = ssl.create_default_context(cafile=ca)  # None: the system's CA bundle
    return ctx


def gateway_address(gateway_id: str) -> str:
    """A random static BLE address of our own, stable for a gateway id."""
    b = bytearray(hashlib.sha256(gateway_id.encode()).digest()[:6])
    b[0] |= 0xC0  # random static: the two top bits set
    return ":".join("%02X" % x for x in b)


class HostBle:
    """The gateway's radio: one bumble Device on an HCI transport, shared by
    the instruments' BumbleCentral adapters. Pairing is asked of the adapter
    of the instrument on the other end of the link."""

    def __init__(self, spec: str, state_dir: str) -> None:
        self.spec = spec
        self.state_dir = state_dir
        self.transport: Any = None
        self.device: Any = None
        self._centrals: dict[str, Any] = {}

    async def open(self, gateway_id: str) -> None:
        from bumble.device import Device
        from bumble.hci import Address
        from bumble.keys import JsonKeyStore
        from bumble.transport import open_transport

        self.transport = await open_transport(self.spec)
        self.device = Device.with_hci("ummc-" + gateway_id, Address(gateway_address(gateway_id)),
                                      self.transport.source, self.transport.sink)
        self.device.keystore = JsonKeyStore(None, str(Path(self.state_dir) / BONDS))
        await self.device.power_on()

    def make(self, inst: dict[str, Any]) -> Any:
        """Sessions' `ble(inst)`: the adapter for one instrument."""
        from gateway.host.ble_bumble import BumbleCentral

        central = BumbleCentral(self.device)
        self._centrals[inst["addr"].upper()] = central
        self.device.pairing_config_factory = self._pairing_config
        return central

    def _pairing_config(self, connection: Any) -> Any:
        addr = connection.peer_address.to_string(with_type_qualifier=False).upper()
        central = self._centrals.get(addr)
        if central is None:  # nobody of ours: the strictest default
            central = next(iter(self._centrals.values()))
        return central._pairing_config(connection)

    async def close(self) -> None:
        if self.transport is not None:
            try:
                await self.transport.close()
            except Exception as e:  # closing a dongle that went away
                print("ble: closing the transport: %s" % e, file=sys.stderr)


def _gateway_name(state: str) -> str:
    """The gateway id for the console lines, read without loading the config
    (loading may roll a trial back: Runtime's to do, and to report)."""
    try:
        name = json.loads((Path(state) / "config.json").read_text()).get("gateway")
    except (OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) else "gateway"


def open_serial(inst: dict[str, Any]) -> Any:
    """Sessions' `serial(inst)`: the instrument's port, opened per session."""
    from gateway.host.serial_port import SerialPort

    if not inst.get("port"):
        raise ValueError("no port configured")
    return SerialPort(inst["port"], inst.get("baud") or _SERIAL_BAUD[inst["profile"]])


async def run(state: str, ble_spec: str, ca: str | None,
              out: Callable[[str], None] = print, mqtt: str = "own") -> int:
    host_ble = HostBle(ble_spec, state) if ble_spec != "none" else None
    sessions = Sessions(state, ble=host_ble.make if host_ble else None, serial=open_serial)
    # Runtime loads the config (ConfigError: not provisioned or bad) and
    # rolls back a trial a crash interrupted.
    client_class = None
    if mqtt == "paho":
        from gateway.host.mqtt_paho import PahoMQTTClient

        client_class = PahoMQTTClient
    rt = Runtime(state, lambda c: make_mqtt_client(c, tls_context(c, ca), client_class),
                 fw=fw_version(),
                 clock=GatewayClock(synced=clock_synchronized()),
                 indicator=ConsoleIndicator(_gateway_name(state), out=out),
                 run_session=sessions, link_probe=link_probe)
    cfg = rt.cfg
    if host_ble is not None:
        await host_ble.open(cfg["gateway"])
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, rt.stop)
    out("[%s] gateway %s of unit %s started (boot %d, %s), state in %s"
        % (cfg["gateway"], rt.fw, cfg["unit"], rt.boot.boots, rt.boot.reason, state))
    try:
        await rt.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if host_ble is not None:
            await host_ble.close()
    if rt.reboot_requested:
        out("[%s] reboot requested: exiting %d for the service manager to restart"
            % (cfg["gateway"], EXIT_REBOOT))
        return EXIT_REBOOT
    out("[%s] stopped" % cfg["gateway"])
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.host.run",
                                description="Run the UMMC gateway on a Linux host.")
    p.add_argument("--state", required=True,
                   help="state directory (config.json, journal, cursors, bonds)")
    p.add_argument("--ble", default="none",
                   help="bumble HCI transport (e.g. usb:0), or none (default)")
    p.add_argument("--ca", default=None,
                   help="CA certificate(s) for the broker (uplink.tls); default: the system's")
    p.add_argument("--mqtt", choices=("own", "paho"), default="own",
                   help="MQTT client: the project's own (as on the boards) or paho-mqtt "
                        "(docs/mqtt_clients.md)")
    args = p.parse_args(argv)
    try:
        return asyncio.run(run(args.state, args.ble, args.ca,
                               out=lambda s: print(s, flush=True), mqtt=args.mqtt))
    except ConfigError as e:
        print("ummc gateway: %s (provision %s/config.json first: docs/gateway.md)"
              % (e, args.state), file=sys.stderr, flush=True)
        return EXIT_NOT_PROVISIONED


if __name__ == "__main__":
    raise SystemExit(main())
