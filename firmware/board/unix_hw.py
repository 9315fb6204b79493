# The virtual gateway's "board": what ummc_main needs from hardware, under
# the MicroPython Unix port (docs/virtual_gateway.md). Same interface as
# hw.py; the launcher (firmware/virtual/launcher.py) runs the process in the
# flash directory and passes the rest in the environment:
#   flash           the working directory: "" is the flash root (app slots,
#                   ota_state.json), "data" the state directory (config.json,
#                   journal, boot record)
#   reset           exit code 75 (RESET_EXIT): the launcher starts the process
#                   again, as a board restarts; a SIGKILL is a power cut
#   reset cause     UMMC_VG_RESET_CAUSE (default none: the boot record tells a
#                   clean restart from an unexpected exit, as on a host)
#   clock           the host clock (NTP-disciplined: trusted), or simulated
#                   time with UMMC_VG_TIME_WARP="<anchor ms>:<start ms>:<scale>":
#                   at host time <anchor> the gateway's clock reads <start>
#                   and runs <scale> times faster until it has caught up with
#                   the host clock, then follows it. Only the gateway's
#                   wall clock is simulated (reading times, heartbeat and
#                   offline-health periods, clock drift): asyncio timers
#                   (backoff, resend, session periods) run in real time
#   BLE             UMMC_VG_BRIDGE="host:port": the bench's BLE bridge
#                   (unix_ble.py); without it BLE instruments are not found
#   serial          the instrument's `port` is a pty path (unix_serial.py)
#   network         nothing to bring up: the host's network is the link
#   indicator       one console line per event (ConsoleIndicator)
#   watchdog        none (the launcher sees a hung process only by its log)
#   timing          UMMC_VG_GOOD_BOOT_MS, UMMC_VG_SAFE_HOLD_MS,
#                   UMMC_VG_SYNC_EVERY_MS, UMMC_VG_RETRY_MS, UMMC_VG_TRIAL_MS
#                   shorten a board's minutes for tests
#   faults          UMMC_VG_FAULT=started: raise right after a normal-mode
#                   start (a crashing firmware, to see safe mode)
# MicroPython Unix port only.
import asyncio
import os
import sys

from gateway.clock import GatewayClock, system_ms
from gateway.indicator import ConsoleIndicator

RESET_EXIT = 75
ROOT = ""
STATE = "data"


def _int(name, default):
    v = os.getenv(name)
    return int(v) if v else default


class WarpSource:
    """Simulated wall-clock time (unix ms) that catches up with the host's."""

    def __init__(self, spec):
        anchor, start, scale = spec.split(":")
        self.anchor = int(anchor)
        self.start = int(start)
        self.scale = int(scale)

    def __call__(self):
        host = system_ms()
        t = self.start + (host - self.anchor) * self.scale
        return t if t < host else host


class _NoWatchdog:
    def feed(self):
        pass


class HostNet:
    """The host's network is the gateway's link: nothing to bring up."""

    def __init__(self, cfg, indicator):
        self.mode = cfg["mode"]
        if self.mode != "host":
            indicator.error("network", "mode %s: the virtual gateway uses the host's network"
                            % self.mode)

    def connected(self):
        return True

    def probe(self):
        return "host", None

    async def up(self, timeout_ms=0):
        return True

    async def keep(self):
        while True:
            await asyncio.sleep(3600)


class Board:
    root = ROOT
    state = STATE

    def __init__(self):
        self.timing = {
            "good_boot_ms": _int("UMMC_VG_GOOD_BOOT_MS", 180000),
            "safe_hold_ms": _int("UMMC_VG_SAFE_HOLD_MS", 3600000),
            "sync_every_ms": _int("UMMC_VG_SYNC_EVERY_MS", 900000),
            "retry_ms": _int("UMMC_VG_RETRY_MS", 30000),
            "trial_ms": _int("UMMC_VG_TRIAL_MS", 120000),
            "crash_pause_ms": _int("UMMC_VG_CRASH_PAUSE_MS", 100),
        }
        self.bridge = os.getenv("UMMC_VG_BRIDGE")
        print("virtual gateway: MicroPython %s, flash %s" % (
            ".".join(str(v) for v in sys.implementation.version[:3]), os.getcwd()))

    def reset_cause(self):
        return os.getenv("UMMC_VG_RESET_CAUSE") or None

    def clock(self, reason):
        warp = os.getenv("UMMC_VG_TIME_WARP")
        if warp:
            return GatewayClock(source=WarpSource(warp), synced=True)
        return GatewayClock(synced=True)

    def keep_time(self, clock):
        pass  # the host keeps its own time

    def watchdog(self):
        return _NoWatchdog()

    def indicator(self, cfg):
        return ConsoleIndicator(cfg["gateway"] if cfg else "gateway")

    def ble(self, inst):
        from unix_ble import BridgeCentral

        host, _, port = (self.bridge or ":0").rpartition(":")
        return BridgeCentral(host or "127.0.0.1", int(port or 0))

    def serial(self, inst):
        from unix_serial import open_port

        return open_port(inst)

    def network(self, cfg, indicator):
        return HostNet(cfg, indicator)

    def supply_probe(self):
        return None

    def fault(self, point):
        if os.getenv("UMMC_VG_FAULT") == point:
            raise RuntimeError("injected fault at %s" % point)

    def reset(self):
        sys.exit(RESET_EXIT)
