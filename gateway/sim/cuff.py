"""A simulated BLE blood-pressure cuff: the 0x2A35 indication bytes a real
cuff sends after a measurement, with plausible values for the population the
units screen (a share of them hypertensive), the cuff's own clock (which may
drift), and now and then an irregular-pulse or body-movement flag.

It produces bytes only: `gateway/sim/ble_cuff.py` serves them as a real BLE
peripheral (bumble GATT server), and the demo's units call the gateway core
with them directly.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from device_drivers.gatt import encode_blood_pressure

STATUS_BODY_MOVEMENT = 0x0001
STATUS_IRREGULAR_PULSE = 0x0004


@dataclass
class SimulatedCuff:
    addr: str
    model: str = "UA-651BLE"
    serial: str = "0000000000"
    clock_offset_s: float = 0.0  # the cuff's clock minus true time
    rng: random.Random = field(default_factory=random.Random)

    @property
    def identity(self) -> dict[str, str]:
        return {"addr": self.addr, "model": self.model, "serial": self.serial}

    def measure(self, now: float | None = None) -> bytes:
        """The 0x2A35 bytes of one measurement taken at `now` (unix s)."""
        r = self.rng
        hypertensive = r.random() < 0.3
        systolic = round(r.gauss(152 if hypertensive else 122, 14))
        diastolic = round(r.gauss(94 if hypertensive else 78, 9))
        systolic = max(80, min(240, systolic))
        diastolic = max(45, min(systolic - 15, diastolic))
        mean_arterial = round(diastolic + (systolic - diastolic) / 3)
        pulse = max(45, min(150, round(r.gauss(76, 11))))
        status = 0
        if r.random() < 0.05:
            status |= STATUS_IRREGULAR_PULSE
        if r.random() < 0.03:
            status |= STATUS_BODY_MOVEMENT
        t = time.gmtime(int((now if now is not None else time.time()) + self.clock_offset_s))
        stamp = (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
        return encode_blood_pressure(systolic, diastolic, mean_arterial, timestamp=stamp,
                                     pulse_rate=pulse, user_id=None, status=status)
