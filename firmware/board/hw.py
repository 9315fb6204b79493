# The ESP32 board for ummc_main: everything the app needs that only the
# microcontroller has, behind the same small interface as the Unix port's
# unix_hw.py (ummc_main picks one by sys.platform):
#   root, state               flash root "/" and the app's state directory
#   reset_cause()             machine.reset_cause() as a gateway/bootinfo.py
#                             reason (the crash record decides "crash")
#   clock(reason)             GatewayClock on the RTC; trusted ("synced") only
#                             when the RTC kept its time (not after power-on)
#   keep_time(clock)          write a corrected clock back into the RTC
#   watchdog()                machine.WDT (WDT_MS); none when /nowdt exists
#                             (a bench set-up: the technician's tool may make it)
#   indicator(cfg)            status LED (and buzzer) patterns
#   ble(inst), serial(inst)   instrument adapters (ble_aioble.py, uart.py)
#   network(cfg, indicator)   net.Net: Wi-Fi, PPP, Ethernet
#   supply_probe()            supply voltage (mV) through a divider on an ADC
#   timing                    good-boot hold, safe-mode hold, session periods
#   reset(), fault(point)     machine.reset(); test hooks (none on a board)
# Pins are this board's wiring (an ESP32-WROVER with a SIM7600 modem):
# change PINS for another board. Board only.
import asyncio
import os
import time

import machine

from gateway.clock import GatewayClock
from gateway.indicator import Indicator

PINS = {"led": 12, "buzzer": None, "supply_adc": 35}
SUPPLY_DIVIDER = 2  # the battery/supply divider on the ADC pin (2: 100k/100k)
WDT_MS = 60000  # generous: a flash-heavy step (OTA staging) must fit
ROOT = "/"
STATE = "/data"

_CAUSES = {
    machine.PWRON_RESET: "power_on",
    machine.HARD_RESET: "hard_reset",
    machine.WDT_RESET: "watchdog",
    machine.DEEPSLEEP_RESET: "deepsleep",
    machine.SOFT_RESET: "soft_reset",
}


class _NoWatchdog:
    def feed(self):
        pass


class LedIndicator(Indicator):
    """One LED (and an optional buzzer): a short blink when a reading is
    captured, two when it is buffered (link down), a long one when the fleet
    has it, fast blinks on an error; steady on while the uplink is up. Never a
    value: the nurse sees that it went, the fleet shows what."""

    def __init__(self, led, buzzer=None, use_buzzer=True):
        self.led = machine.Pin(led, machine.Pin.OUT) if led is not None else None
        self.buzzer = None
        if buzzer is not None and use_buzzer:
            self.buzzer = machine.PWM(machine.Pin(buzzer), freq=2000, duty_u16=0)
        self.up = False
        self._task = None

    def _play(self, pattern, beep=False):
        if self.led is None:
            return
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = asyncio.create_task(self._blink(pattern, beep))

    async def _blink(self, pattern, beep):
        led = self.led
        if led is None:
            return
        try:
            for on_ms, off_ms in pattern:
                led.value(1)
                if beep and self.buzzer is not None:
                    self.buzzer.duty_u16(32768)
                await asyncio.sleep(on_ms / 1000)
                led.value(0)
                if self.buzzer is not None:
                    self.buzzer.duty_u16(0)
                await asyncio.sleep(off_ms / 1000)
        finally:
            led.value(1 if self.up else 0)
            if self.buzzer is not None:
                self.buzzer.duty_u16(0)

    def captured(self, seq):
        self._play(((80, 120),), beep=True)

    def buffered(self, seq):
        self._play(((80, 120), (80, 120)))

    def delivered(self, upto, rejected):
        self._play(((600, 200),) if not rejected else ((100, 100),) * 6)

    def error(self, what, reason):
        print("ERROR", what, reason)
        self._play(((100, 100),) * 4)

    def link(self, up):
        self.up = up
        if self.led is not None and (self._task is None or self._task.done()):
            self.led.value(1 if up else 0)


class Board:
    root = ROOT
    state = STATE

    def __init__(self):
        self.timing = {"good_boot_ms": 180000, "safe_hold_ms": 3600000,
                       "sync_every_ms": 900000, "retry_ms": 30000, "trial_ms": 120000,
                       "crash_pause_ms": 1000}
        self._adc = None

    def reset_cause(self):
        c = machine.reset_cause()
        return _CAUSES.get(c, "reset_%d" % c)

    def clock(self, reason):
        year = time.gmtime()[0]
        return GatewayClock(synced=reason not in ("power_on", "first_boot") and year >= 2025)

    def keep_time(self, clock):
        """A clock corrected from the server: carry it into the RTC so that a
        soft or watchdog reset starts with the right time."""
        if not clock.synced or abs(clock.offset_ms) < 1000:
            return
        ms = clock.now_ms()
        t = time.gmtime(ms // 1000 - 946684800)  # the ESP32 epoch is 2000
        machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], (ms % 1000) * 1000))
        clock.offset_ms = 0

    def watchdog(self):
        try:
            os.stat("/nowdt")
            return _NoWatchdog()
        except OSError:
            return machine.WDT(timeout=WDT_MS)

    def indicator(self, cfg):
        ind = cfg["indicator"] if cfg else {"buzzer": False}
        return LedIndicator(PINS["led"], PINS["buzzer"], ind["buzzer"])

    def ble(self, inst):
        from ble_aioble import AiobleCentral

        return AiobleCentral(self.state)

    def serial(self, inst):
        from uart import open_port

        return open_port(inst)

    def network(self, cfg, indicator):
        from net import Net

        return Net(cfg, indicator)

    def supply_probe(self):
        if PINS["supply_adc"] is None:
            return None
        if self._adc is None:
            self._adc = machine.ADC(machine.Pin(PINS["supply_adc"]), atten=machine.ADC.ATTN_11DB)
        return self._adc.read_uv() * SUPPLY_DIVIDER // 1000

    def fault(self, point):
        pass

    def reset(self):
        machine.reset()
