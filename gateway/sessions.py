# Instrument sessions and their sync cursors, as gateway/runtime.py's
# `run_session(rt, inst)`, shared by the firmware (firmware/board/ummc_main.py)
# and the Linux-class gateway (gateway/host/run.py): the platform's adapters
# in (`ble(inst)` -> a BLE central adapter kept for the instrument's life,
# `serial(inst)` -> a serial adapter opened per session), the portable
# sessions out (gateway/ble_session.py, gateway/serial_session.py).
#
#   BLE glucose        one incremental RACP download per call (cursor in
#                      cursors.json); the runtime calls again every 15 min or
#                      on `sync_now`
#   BLE cuff, thermometer, oximeter, scale
#                      listen for measurements until the instrument leaves,
#                      then look for it again, for ever: such instruments
#                      advertise when they have something to send, so the
#                      gateway must be there (not found: look again after
#                      `idle_ms`)
#   serial ecg_cyton   one ECG strip per call (at start, every 15 min and on
#                      `sync_now`)
#   serial onetouch, astm  one memory download per call (dedup cursors in
#                      serial_cursors.json)
# An instrument's identity (battery, clock drift) goes to the health sampler
# (`on_seen`), its errors to the core's error table (heartbeat, diagnostics).
# A session that did not end well raises SessionFailed, so the runtime tries
# again after its retry delay instead of the full period. Portable.
import asyncio
import gc

from gateway import ble_session, serial_session
from gateway.cursors import Cursors

LISTENING = ("blood_pressure", "thermometer", "pulse_oximeter", "weight_scale")
SERIAL_CURSORS = "serial_cursors.json"


class SessionFailed(Exception):
    def __init__(self, addr, code):
        super().__init__("%s: %s" % (addr, code))
        self.code = code


class Sessions:
    """run_session for the runtime; `last[addr]` is each instrument's last result."""

    def __init__(self, state_dir, ble=None, serial=None, idle_ms=2000):
        self.state_dir = state_dir
        self.make_ble = ble
        self.open_serial = serial
        self.idle_ms = idle_ms
        self.last = {}
        self._ble = {}  # addr -> BleSession (its adapter keeps the bond and the link)
        self._cursors = None

    async def __call__(self, rt, inst):
        gc.collect()
        if inst["kind"] == "ble":
            await self._ble_session(rt, inst)
        else:
            await self._serial_session(rt, inst)

    # --- BLE ------------------------------------------------------------------------
    def _session(self, rt, addr):
        s = self._ble.get(addr)
        if s is None:
            if self.make_ble is None:
                raise SessionFailed(addr, "no_ble_adapter")
            if self._cursors is None:
                self._cursors = Cursors(self.state_dir)
            errors = rt.core.errors

            def log_error(a, code, detail):
                key = (a, code)
                errors[key] = errors.get(key, 0) + 1

            s = ble_session.BleSession(self.make_ble({"addr": addr}), rt.core, self._cursors,
                                       rt.clock, on_seen=rt.health.instrument_seen,
                                       log_error=log_error)
            self._ble[addr] = s
        return s

    async def _ble_session(self, rt, inst):
        addr = inst["addr"]
        s = self._session(rt, addr)
        cfg = {"addr": addr, "profile": inst["profile"], "set_clock": inst["set_clock"],
               "quirks": inst["quirks"], "listen_ms": None,
               "passkey": int(inst["passkey"]) if inst["passkey"] else None}
        while True:
            res = await s.sync(cfg)
            self.last[addr] = res
            if inst["profile"] not in LISTENING:
                if not res["ok"]:
                    raise SessionFailed(addr, res["error"])
                return
            # a listening instrument: back to waiting for it at once, unless it
            # is away (then after idle_ms) or the journal is full (retry later)
            if res["error"] == ble_session.E_JOURNAL_FULL:
                raise SessionFailed(addr, res["error"])
            if not res["ok"]:
                await asyncio.sleep(self.idle_ms / 1000)

    # --- serial ---------------------------------------------------------------------
    async def _serial_session(self, rt, inst):
        addr = inst["addr"]
        if self.open_serial is None:
            raise SessionFailed(addr, "no_serial_adapter")
        try:
            port = self.open_serial(inst)
        except (OSError, ValueError) as e:
            rt.core.count_error(addr, "port_error")
            rt.indicator.error(addr, "serial port %s: %s" % (inst["port"], e))
            raise SessionFailed(addr, "port_error")
        ident = {"addr": addr}
        if inst["name"]:
            ident["model"] = inst["name"]
        try:
            profile = inst["profile"]
            if profile == "ecg_cyton":
                res = await serial_session.capture_ecg_strip(port, rt.core, ident)
            else:
                path = self.state_dir + "/" + SERIAL_CURSORS
                cursors = serial_session.load_cursors(path)
                dump = serial_session.dump_onetouch if profile == "onetouch" \
                    else serial_session.dump_astm
                res = await dump(port, rt.core, ident, cursors)
                serial_session.save_cursors(path, cursors)
        finally:
            port.close()
        self.last[addr] = res
        if res["status"] not in (serial_session.STATUS_TIMEOUT, serial_session.STATUS_PORT_ERROR):
            rt.health.instrument_seen(addr)
        if res["status"] != serial_session.STATUS_OK:
            raise SessionFailed(addr, res["status"])
