"""A simulated BLE pulse oximeter as a bumble GATT server (issue 4, item 10).

  Pulse Oximeter 0x1822:  0x2A5E PLX Spot-check Measurement (indicate),
                          0x2A5F PLX Continuous Measurement (notify),
                          0x2A60 PLX Features (read)
  plus Device Information, Battery, Current Time and pairing (ble_common.py)

`await spot_check(97, 72)` indicates a spot-check (stamped with the
oximeter's own clock) and returns its bytes once confirmed; `await
continuous(96, 75)` notifies one continuous sample. Bytes come from the
device_drivers encoders. CPython only, not in the firmware image.
"""

from __future__ import annotations

import random

from bumble import gatt
from bumble.device import Device

from device_drivers.pulse_oximeter import encode_continuous, encode_features, encode_spot_check
from gateway.sim.ble_common import CONFIRM_TIMEOUT_S, SimInstrument, uuid16

PLX_SERVICE = 0x1822
PLX_SPOT_CHECK = 0x2A5E
PLX_CONTINUOUS = 0x2A5F
PLX_FEATURES = 0x2A60


class BleOximeter(SimInstrument):
    SERVICE = PLX_SERVICE

    def __init__(self, device: Device, *, model: str = "PO-60",
                 serial: str = "6000000001", manufacturer: str = "Beurer",
                 firmware: str = "2.0.1", battery: int = 80, passkey: int | None = None,
                 clock_offset_s: float = 0.0, clock_writable: bool = False,
                 rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.spot = self.measurement_characteristic(PLX_SPOT_CHECK, indicate=True)
        self.stream = self.measurement_characteristic(PLX_CONTINUOUS, notify=True)
        features: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuid16(PLX_FEATURES), gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE, encode_features(0))
        super().__init__(
            device, [gatt.Service(uuid16(PLX_SERVICE), [self.spot, self.stream, features])],
            model=model, serial=serial, manufacturer=manufacturer, firmware=firmware,
            battery=battery, passkey=passkey, clock_writable=clock_writable,
            clock_offset_s=clock_offset_s)

    def _values(self, spo2: float | None, pulse: float | None) -> tuple[float, float]:
        if spo2 is None:
            spo2 = float(max(85, min(100, round(self.rng.gauss(97, 1.5)))))
        if pulse is None:
            pulse = float(max(45, min(150, round(self.rng.gauss(76, 11)))))
        return spo2, pulse

    async def spot_check(self, spo2: float | None = None, pulse_rate: float | None = None,
                         now: float | None = None,
                         timeout: float = CONFIRM_TIMEOUT_S) -> bytes:
        spo2, pulse_rate = self._values(spo2, pulse_rate)
        data = encode_spot_check(spo2, pulse_rate, timestamp=self.instrument_stamp(now))
        await self.send(self.spot, data, indicate=True, timeout=timeout)
        return data

    async def continuous(self, spo2: float | None = None,
                         pulse_rate: float | None = None) -> bytes:
        spo2, pulse_rate = self._values(spo2, pulse_rate)
        data = encode_continuous(spo2, pulse_rate)
        await self.send(self.stream, data, indicate=False)
        return data
