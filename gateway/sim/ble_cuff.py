"""A simulated blood-pressure cuff as a real BLE peripheral (bumble GATT server).

Issue 4: "give the gateway a bumble-based BLE adapter beside the bleak one
(bumble also drives a USB Bluetooth dongle directly on a Linux gateway without
BlueZ)". This is the instrument side of it: a bumble GATT server with the SIG
profiles a real cuff exposes, so a reading reaches the gateway over real
HCI/L2CAP/ATT/GATT and SMP. `SimulatedCuff` (gateway/sim/cuff.py) still makes
the bytes; this module only carries them. Device Information, Battery,
Current Time and pairing come from gateway/sim/ble_common.py.

  Blood Pressure 0x1810:      0x2A35 Measurement (indicate), 0x2A49 Feature (read)
  Device Information 0x180A:  0x2A29 manufacturer, 0x2A24 model, 0x2A25 serial,
                              0x2A26 firmware
  Battery 0x180F:             0x2A19 level (read, notify)
  Current Time 0x1805:        0x2A2B (read, write, notify): a write sets the
                              cuff's clock (SimulatedCuff.clock_offset_s)

Like a real cuff it wants a bond before it indicates: the 0x2A35 CCCD (and the
clock) can only be written on an encrypted link. Pairing is "Just Works" by
default; with `passkey=` the cuff "displays" that fixed 6-digit passkey and
accepts the subscription only from a central that bonded with MITM protection.

CPython only, not in the firmware image.
"""

from __future__ import annotations

import struct

from bumble import gatt
from bumble.device import Device

from gateway.sim.ble_common import (
    CONFIRM_TIMEOUT_S,
    LinkLost,
    NotSubscribed,
    SimError,
    SimInstrument,
    uuid16,
    virtual_device,
)
from gateway.sim.cuff import SimulatedCuff

__all__ = ["BleCuff", "CuffError", "LinkLost", "NotSubscribed", "virtual_device"]

BLOOD_PRESSURE_SERVICE = 0x1810
BLOOD_PRESSURE_MEASUREMENT = 0x2A35
BLOOD_PRESSURE_FEATURE = 0x2A49
CURRENT_TIME = 0x2A2B

# 0x2A49 bits: body movement detection (0), irregular pulse detection (2),
# as SimulatedCuff can flag both.
DEFAULT_FEATURE = 0x0005

CuffError = SimError  # the simulated cuff could not do what was asked


class BleCuff(SimInstrument):
    """The GATT server of one simulated cuff on a bumble Device.

    `await start()` powers the device on (if needed) and advertises its name
    and 0x1810; it re-advertises after every disconnection. Once a central has
    enabled indications, `await take_measurement()` sends SimulatedCuff bytes
    and returns when the central has confirmed them (ATT Handle Value
    Confirmation)."""

    SERVICE = BLOOD_PRESSURE_SERVICE

    def __init__(self, device: Device, sim: SimulatedCuff, *,
                 manufacturer: str = "A&D Medical", firmware: str = "1.2.0",
                 battery: int = 87, feature: int = DEFAULT_FEATURE,
                 passkey: int | None = None, clock_writable: bool = True) -> None:
        self.sim = sim
        self.measurement = self.measurement_characteristic(BLOOD_PRESSURE_MEASUREMENT,
                                                           indicate=True)
        feature_char: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuid16(BLOOD_PRESSURE_FEATURE), gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE, struct.pack("<H", feature))
        super().__init__(
            device, [gatt.Service(gatt.GATT_BLOOD_PRESSURE_SERVICE,
                                  [self.measurement, feature_char])],
            model=sim.model, serial=sim.serial, manufacturer=manufacturer,
            firmware=firmware, battery=battery, passkey=passkey,
            clock_writable=clock_writable)

    @property
    def clock_offset_s(self) -> float:
        return self.sim.clock_offset_s

    @clock_offset_s.setter
    def clock_offset_s(self, value: float) -> None:
        self.sim.clock_offset_s = value

    # -- measurements -------------------------------------------------------

    @property
    def subscribed(self) -> bool:
        return bool(self.subscribers(self.measurement, indicate=True))

    async def wait_subscribed(self, timeout: float = 5.0) -> None:
        await self.wait_for_subscription(self.measurement, timeout)

    async def take_measurement(self, now: float | None = None,
                               timeout: float = CONFIRM_TIMEOUT_S) -> bytes:
        """Measure, indicate 0x2A35, return the bytes once confirmed."""
        data = self.sim.measure(now)
        await self.send_measurement(data, timeout)
        return data

    async def send_measurement(self, data: bytes,
                               timeout: float = CONFIRM_TIMEOUT_S) -> None:
        """Indicate these exact bytes (tests send malformed ones with it) to
        every subscribed central; return when each has confirmed."""
        await self.send(self.measurement, data, indicate=True, timeout=timeout)
