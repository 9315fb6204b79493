"""A simulated BLE weight scale as a bumble GATT server (issue 4, item 10).

  Weight Scale 0x181D:  0x2A9D Weight Measurement (indicate),
                        0x2A9E Weight Scale Feature (read)
  plus Device Information, Battery, Current Time and pairing (ble_common.py)

`await weigh(72.4)` indicates the 0x2A9D bytes (device_drivers encoder,
stamped with the scale's own clock; BMI and height when the scale knows the
user's height) and returns them once the central has confirmed. CPython
only, not in the firmware image.
"""

from __future__ import annotations

import random

from bumble import gatt
from bumble.device import Device

from device_drivers.weight_scale import encode_feature, encode_measurement
from gateway.sim.ble_common import CONFIRM_TIMEOUT_S, SimInstrument, uuid16

WEIGHT_SCALE_SERVICE = 0x181D
WEIGHT_MEASUREMENT = 0x2A9D
WEIGHT_SCALE_FEATURE = 0x2A9E


class BleScale(SimInstrument):
    SERVICE = WEIGHT_SCALE_SERVICE

    def __init__(self, device: Device, *, model: str = "UC-352BLE",
                 serial: str = "3520000001", manufacturer: str = "A&D Medical",
                 firmware: str = "1.1.0", battery: int = 75, passkey: int | None = None,
                 clock_offset_s: float = 0.0, clock_writable: bool = True,
                 rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.measurement = self.measurement_characteristic(WEIGHT_MEASUREMENT, indicate=True)
        feature: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuid16(WEIGHT_SCALE_FEATURE), gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE,
            encode_feature(("time_stamp", "bmi"), weight_resolution=3, height_resolution=3))
        super().__init__(
            device, [gatt.Service(uuid16(WEIGHT_SCALE_SERVICE), [self.measurement, feature])],
            model=model, serial=serial, manufacturer=manufacturer, firmware=firmware,
            battery=battery, passkey=passkey, clock_writable=clock_writable,
            clock_offset_s=clock_offset_s)

    def measure(self, kg: float | None = None, height_m: float | None = None,
                now: float | None = None) -> bytes:
        """The 0x2A9D bytes of one weighing (plausible when kg is None)."""
        if kg is None:
            kg = round(self.rng.gauss(68, 12) * 10) / 10
        bmi = round(kg / (height_m * height_m), 1) if height_m else None
        return encode_measurement(kg, timestamp=self.instrument_stamp(now), bmi=bmi,
                                  height=height_m)

    async def weigh(self, kg: float | None = None, height_m: float | None = None,
                    now: float | None = None, timeout: float = CONFIRM_TIMEOUT_S) -> bytes:
        data = self.measure(kg, height_m, now)
        await self.send(self.measurement, data, indicate=True, timeout=timeout)
        return data
