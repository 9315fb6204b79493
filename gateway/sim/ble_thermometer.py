"""A simulated BLE health thermometer as a bumble GATT server (issue 4, item 10).

  Health Thermometer 0x1809:  0x2A1C Temperature Measurement (indicate),
                              0x2A1D Temperature Type (read)
  plus Device Information, Battery, Current Time and pairing (ble_common.py)

`await take_measurement(37.2)` indicates the 0x2A1C bytes (device_drivers
encoder, stamped with the thermometer's own clock) and returns them once the
central has confirmed. CPython only, not in the firmware image.
"""

from __future__ import annotations

import random

from bumble import gatt
from bumble.device import Device

from device_drivers.thermometer import encode_measurement
from gateway.sim.ble_common import CONFIRM_TIMEOUT_S, SimInstrument, uuid16

THERMOMETER_SERVICE = 0x1809
TEMPERATURE_MEASUREMENT = 0x2A1C
TEMPERATURE_TYPE = 0x2A1D
TYPE_EAR = 3


class BleThermometer(SimInstrument):
    SERVICE = THERMOMETER_SERVICE

    def __init__(self, device: Device, *, model: str = "TH-839S",
                 serial: str = "8390000001", manufacturer: str = "A&D Medical",
                 firmware: str = "1.0.4", battery: int = 90, passkey: int | None = None,
                 clock_offset_s: float = 0.0, clock_writable: bool = True,
                 temperature_type: int = TYPE_EAR, unit: str = "C",
                 rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.temperature_type = temperature_type
        self.unit = unit
        self.measurement = self.measurement_characteristic(TEMPERATURE_MEASUREMENT,
                                                           indicate=True)
        type_char: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuid16(TEMPERATURE_TYPE), gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE, bytes((temperature_type,)))
        super().__init__(
            device, [gatt.Service(uuid16(THERMOMETER_SERVICE), [self.measurement, type_char])],
            model=model, serial=serial, manufacturer=manufacturer, firmware=firmware,
            battery=battery, passkey=passkey, clock_writable=clock_writable,
            clock_offset_s=clock_offset_s)

    def measure(self, temperature: float | None = None, now: float | None = None) -> bytes:
        """The 0x2A1C bytes of one measurement (plausible when not given)."""
        if temperature is None:
            temperature = round(self.rng.gauss(36.9, 0.5), 1)
        return encode_measurement(temperature, unit=self.unit,
                                  timestamp=self.instrument_stamp(now),
                                  temperature_type=self.temperature_type)

    async def take_measurement(self, temperature: float | None = None,
                               now: float | None = None,
                               timeout: float = CONFIRM_TIMEOUT_S) -> bytes:
        data = self.measure(temperature, now)
        await self.send(self.measurement, data, indicate=True, timeout=timeout)
        return data
