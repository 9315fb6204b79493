"""A simulated blood-pressure cuff as a real BLE peripheral, on bumble.

Issue 4: "give the gateway a bumble-based BLE adapter beside the bleak one
(bumble also drives a USB Bluetooth dongle directly on a Linux gateway without
BlueZ)". This is the instrument side of it: a bumble GATT server with the SIG
profiles a real cuff exposes, so a reading reaches the gateway over real
HCI/L2CAP/ATT/GATT and SMP. `SimulatedCuff` (gateway/sim/cuff.py) still makes
the bytes; this module only carries them.

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

The bumble Device is passed in (`virtual_device()` makes one on an in-process
LocalLink for tests and the demo); nothing here creates a radio at import.
CPython only, not in the firmware image.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import struct
import time

from bumble import att, gatt
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.hci import Address
from bumble.host import Host
from bumble.keys import PairingKeys
from bumble.link import LocalLink
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.profiles.battery_service import BatteryService
from bumble.profiles.device_information_service import DeviceInformationService
from bumble.transport.common import AsyncPipeSink

from device_drivers import DecodeError
from device_drivers.ieee11073 import date_time_bytes, read_date_time
from gateway.sim.cuff import SimulatedCuff

log = logging.getLogger(__name__)

BLOOD_PRESSURE_SERVICE = 0x1810
BLOOD_PRESSURE_MEASUREMENT = 0x2A35
BLOOD_PRESSURE_FEATURE = 0x2A49
CURRENT_TIME = 0x2A2B

# 0x2A49 bits: body movement detection (0), irregular pulse detection (2),
# as SimulatedCuff can flag both.
DEFAULT_FEATURE = 0x0005

_CONFIRM_TIMEOUT_S = 5.0


class CuffError(Exception):
    """The simulated cuff could not do what was asked."""


class NotSubscribed(CuffError):
    """No central has indications enabled on 0x2A35."""


class LinkLost(CuffError):
    """The link dropped before the central confirmed the indication."""


def virtual_device(link: LocalLink, address: str, name: str) -> Device:
    """A bumble Device on a virtual controller joined to `link` (in-process).

    `address` is its random static address ("C4:..." style). Call it inside a
    running event loop (bumble's pipe binds to it). Power it on yourself or let
    BleCuff.start() / the central adapter do it."""
    controller = Controller(name, link=link)
    host = Host(controller, AsyncPipeSink(controller))
    return Device(name=name, address=Address(address), host=host)


def _uuid(uuid16: int) -> UUID:
    return UUID.from_16_bits(uuid16)


def _not_permitted(code: int) -> att.ATT_Error:
    return att.ATT_Error(code)


def _key_is_authenticated(keys: PairingKeys | None) -> bool:
    if keys is None:
        return False
    return any(k is not None and k.authenticated
               for k in (keys.ltk, keys.ltk_central, keys.ltk_peripheral))


class _PasskeyDisplay(PairingDelegate):
    """The cuff's LCD: shows a fixed passkey (a technician types it in)."""

    def __init__(self, passkey: int) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY)
        self.passkey = passkey

    async def generate_passkey(self) -> int:
        return self.passkey

    async def display_number(self, number: int, digits: int) -> None:
        log.info("cuff display: passkey %0*d", digits, number)


class BleCuff:
    """The GATT server of one simulated cuff on a bumble Device.

    `await start()` powers the device on (if needed) and advertises its name
    and 0x1810; it re-advertises after every disconnection. Once a central has
    enabled indications, `await take_measurement()` sends SimulatedCuff bytes
    and returns when the central has confirmed them (ATT Handle Value
    Confirmation)."""

    def __init__(self, device: Device, sim: SimulatedCuff, *,
                 manufacturer: str = "A&D Medical", firmware: str = "1.2.0",
                 battery: int = 87, feature: int = DEFAULT_FEATURE,
                 passkey: int | None = None) -> None:
        if passkey is not None and not 0 <= passkey <= 999999:
            raise ValueError("passkey must have 6 digits")
        self.device = device
        self.sim = sim
        self.manufacturer = manufacturer
        self.firmware = firmware
        self.battery = battery
        self.passkey = passkey
        self.confirmed = 0  # indications confirmed by a central
        self._indicating: set[Connection] = set()
        self._subscribed = asyncio.Event()

        self.measurement: gatt.Characteristic[bytes] = gatt.Characteristic(
            _uuid(BLOOD_PRESSURE_MEASUREMENT), gatt.Characteristic.Properties.INDICATE,
            gatt.Characteristic.Permissions(0),
            gatt.CharacteristicValue(read=self._read_not_permitted,
                                     write=self._write_not_permitted))
        # Our own CCCD (bumble adds an open one otherwise): subscribing needs a bond.
        cccd = gatt.Descriptor(
            gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
            att.Attribute.READABLE | att.Attribute.WRITEABLE
            | att.Attribute.WRITE_REQUIRES_ENCRYPTION,
            att.AttributeValueV2(read=self._read_cccd, write=self._write_cccd))
        self.measurement.descriptors = [cccd]
        self.measurement.on(gatt.Characteristic.EVENT_SUBSCRIPTION, self._on_subscription)
        feature_char: gatt.Characteristic[bytes] = gatt.Characteristic(
            _uuid(BLOOD_PRESSURE_FEATURE), gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE, struct.pack("<H", feature))
        self.current_time: gatt.Characteristic[bytes] = gatt.Characteristic(
            _uuid(CURRENT_TIME),
            gatt.Characteristic.Properties.READ | gatt.Characteristic.Properties.WRITE
            | gatt.Characteristic.Properties.NOTIFY,
            gatt.Characteristic.READABLE | gatt.Characteristic.WRITEABLE
            | gatt.Characteristic.WRITE_REQUIRES_ENCRYPTION,
            gatt.CharacteristicValue(read=self._read_time, write=self._write_time))
        self.battery_service = BatteryService(lambda _connection: self.battery)
        device.add_services([
            gatt.Service(gatt.GATT_BLOOD_PRESSURE_SERVICE, [self.measurement, feature_char]),
            DeviceInformationService(manufacturer_name=manufacturer, model_number=sim.model,
                                     serial_number=sim.serial, firmware_revision=firmware),
            self.battery_service,
            gatt.Service(gatt.GATT_CURRENT_TIME_SERVICE, [self.current_time]),
        ])
        device.pairing_config_factory = self._pairing_config
        device.on(device.EVENT_CONNECTION, self._on_connection)

    # -- life cycle ---------------------------------------------------------

    def advertising_data(self) -> bytes:
        return bytes(AdvertisingData([
            (AdvertisingData.FLAGS,
             bytes([AdvertisingData.LE_GENERAL_DISCOVERABLE_MODE_FLAG
                    | AdvertisingData.BR_EDR_NOT_SUPPORTED_FLAG])),
            (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
             struct.pack("<H", BLOOD_PRESSURE_SERVICE)),
            (AdvertisingData.COMPLETE_LOCAL_NAME, self.device.name.encode()),
        ]))

    async def start(self, interval_ms: float = 20.0) -> None:
        if not self.device.powered_on:
            await self.device.power_on()
        await self.device.start_advertising(
            auto_restart=True, advertising_data=self.advertising_data(),
            advertising_interval_min=interval_ms, advertising_interval_max=interval_ms)

    async def stop(self) -> None:
        """Stop advertising, drop links, power off (leaves no task behind)."""
        if not self.device.powered_on:
            return
        await self.device.stop_advertising()
        for connection in list(self.device.connections.values()):
            try:
                await asyncio.wait_for(connection.disconnect(), 2.0)
            except Exception as e:  # the link may already be going down
                log.warning("cuff %s: disconnect: %r", self.sim.addr, e)
        await self.device.power_off()
        await asyncio.sleep(0)  # let bumble's cancelled restart task finish

    # -- measurements -------------------------------------------------------

    @property
    def subscribed(self) -> bool:
        return bool(self._indicating)

    async def wait_subscribed(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._subscribed.wait(), timeout)

    async def take_measurement(self, now: float | None = None,
                               timeout: float = _CONFIRM_TIMEOUT_S) -> bytes:
        """Measure, indicate 0x2A35, return the bytes once confirmed."""
        data = self.sim.measure(now)
        await self.send_measurement(data, timeout)
        return data

    async def send_measurement(self, data: bytes,
                               timeout: float = _CONFIRM_TIMEOUT_S) -> None:
        """Indicate these exact bytes (tests send malformed ones with it) to
        every subscribed central; return when each has confirmed."""
        if not self._indicating:
            raise NotSubscribed("no central has enabled 0x2A35 indications")
        for connection in list(self._indicating):
            await self._indicate(connection, data, timeout)
            self.confirmed += 1

    async def _indicate(self, connection: Connection, data: bytes, timeout: float) -> None:
        # bumble waits up to 30 s for a confirmation and is not woken by a
        # disconnection: race the indication against the link going down.
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()

        def on_disconnection(_reason: int) -> None:
            if not lost.done():
                lost.set_result(None)

        connection.on(connection.EVENT_DISCONNECTION, on_disconnection)
        task = asyncio.ensure_future(
            self.device.indicate_subscriber(connection, self.measurement, data))
        try:
            done, _ = await asyncio.wait({task, lost}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()
                return
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if lost.done():
                raise LinkLost("link to %s lost before confirmation" % connection.peer_address)
            raise CuffError("no confirmation from %s in %.1f s"
                            % (connection.peer_address, timeout))
        finally:
            connection.remove_listener(connection.EVENT_DISCONNECTION, on_disconnection)

    async def set_battery(self, level: int) -> None:
        self.battery = level
        await self.device.notify_subscribers(
            self.battery_service.battery_level_characteristic, level)

    # -- bumble callbacks ---------------------------------------------------

    def _pairing_config(self, _connection: Connection) -> PairingConfig:
        if self.passkey is None:
            return PairingConfig(sc=True, mitm=False, bonding=True, delegate=PairingDelegate(
                io_capability=PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT))
        return PairingConfig(sc=True, mitm=True, bonding=True,
                             delegate=_PasskeyDisplay(self.passkey))

    def _on_connection(self, connection: Connection) -> None:
        log.debug("cuff %s: connection from %s", self.sim.addr, connection.peer_address)

        def on_disconnection(_reason: int) -> None:
            self._indicating.discard(connection)
            if not self._indicating:
                self._subscribed.clear()

        connection.on(connection.EVENT_DISCONNECTION, on_disconnection)

    def _on_subscription(self, bearer: att.Bearer, _notify: bool, indicate: bool) -> None:
        if not isinstance(bearer, Connection):
            return  # EATT bearers are not used here
        if indicate:
            self._indicating.add(bearer)
            self._subscribed.set()
        else:
            self._indicating.discard(bearer)
            if not self._indicating:
                self._subscribed.clear()

    def _read_cccd(self, bearer: att.Bearer) -> bytes:
        return self.device.gatt_server.read_cccd(bearer, self.measurement)

    async def _write_cccd(self, bearer: att.Bearer, value: bytes) -> None:
        if self.passkey is not None and isinstance(bearer, Connection):
            keys = None
            if self.device.keystore is not None:
                keys = await self.device.keystore.get(str(bearer.peer_address))
            if not _key_is_authenticated(keys):
                raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_AUTHENTICATION)
        self.device.gatt_server.write_cccd(bearer, self.measurement, value)

    def _read_not_permitted(self, _connection: Connection) -> bytes:
        raise _not_permitted(att.ErrorCode.READ_NOT_PERMITTED)

    def _write_not_permitted(self, _connection: Connection, _value: bytes) -> None:
        raise _not_permitted(att.ErrorCode.WRITE_NOT_PERMITTED)

    def _read_time(self, _connection: Connection) -> bytes:
        """0x2A2B Exact Time 256: Date Time, day of week, fractions, adjust reason."""
        t = time.gmtime(int(time.time() + self.sim.clock_offset_s))
        stamp = (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
        return date_time_bytes(stamp) + bytes((t.tm_wday + 1, 0, 0))

    def _write_time(self, _connection: Connection, value: bytes) -> None:
        if len(value) != 10:
            raise att.ATT_Error(att.ErrorCode.INVALID_ATTRIBUTE_LENGTH)
        try:
            stamp = read_date_time(value, 0, "current_time")
        except DecodeError:
            raise att.ATT_Error(att.ErrorCode.VALUE_NOT_ALLOWED)
        if 0 in stamp[:3]:
            raise att.ATT_Error(att.ErrorCode.VALUE_NOT_ALLOWED)
        self.sim.clock_offset_s = calendar.timegm((*stamp, 0, 0, 0)) - time.time()
        log.info("cuff %s: clock set to %s", self.sim.addr, stamp)
