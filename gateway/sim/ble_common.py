"""What every simulated BLE instrument shares: a bumble GATT server with the
services a real one carries beside its measurement.

Issue 4, item 10: instrument simulators as bumble GATT servers on virtual
controllers, so the gateway's BLE sessions run over real HCI/L2CAP/ATT/GATT
and SMP. Each instrument module (ble_cuff, ble_glucometer, ble_thermometer,
ble_oximeter, ble_scale) subclasses `SimInstrument` and adds its profile's
service; this module gives it:

  Device Information 0x180A:  0x2A29 manufacturer, 0x2A24 model, 0x2A25 serial,
                              0x2A26 firmware
  Battery 0x180F:             0x2A19 level (read, notify)
  Current Time 0x1805:        0x2A2B (read, notify; write when the real device
                              lets a collector set its clock: `clock_writable`)
                              over the instrument's own clock (`clock_offset_s`
                              = instrument clock minus true time)
  pairing:                    "Just Works", or with `passkey=` a fixed 6-digit
                              passkey the instrument "displays" (MITM bond)
  measurement CCCDs:          writable only on an encrypted link, and with a
                              passkey only from a MITM-protected bond, as real
                              instruments refuse to indicate before bonding
  send():                     notify, or indicate and wait for the central's
                              confirmation, raced against the link going down

The bumble Device is passed in (`virtual_device()` makes one on an in-process
LocalLink); nothing here creates a radio at import. CPython only, never in
the firmware image.
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

log = logging.getLogger(__name__)

CURRENT_TIME = 0x2A2B
CURRENT_TIME_SERVICE = 0x1805

CONFIRM_TIMEOUT_S = 5.0

Stamp = tuple[int, int, int, int, int, int]


class SimError(Exception):
    """The simulated instrument could not do what was asked."""


class NotSubscribed(SimError):
    """No central has notifications/indications enabled on the characteristic."""


class LinkLost(SimError):
    """The link dropped before the central confirmed the indication."""


def virtual_device(link: LocalLink, address: str, name: str) -> Device:
    """A bumble Device on a virtual controller joined to `link` (in-process).

    `address` is its random static address ("C4:..." style). Call it inside a
    running event loop (bumble's pipe binds to it). Power it on yourself or let
    the simulator's start() / the central adapter do it."""
    controller = Controller(name, link=link)
    host = Host(controller, AsyncPipeSink(controller))
    return Device(name=name, address=Address(address), host=host)


def uuid16(value: int) -> UUID:
    return UUID.from_16_bits(value)


def key_is_authenticated(keys: PairingKeys | None) -> bool:
    if keys is None:
        return False
    return any(k is not None and k.authenticated
               for k in (keys.ltk, keys.ltk_central, keys.ltk_peripheral))


def stamp_of(unix_s: float) -> Stamp:
    t = time.gmtime(int(unix_s))
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


class _PasskeyDisplay(PairingDelegate):
    """The instrument's display: shows a fixed passkey (a technician types it in)."""

    def __init__(self, passkey: int) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY)
        self.passkey = passkey

    async def generate_passkey(self) -> int:
        return self.passkey

    async def display_number(self, number: int, digits: int) -> None:
        log.info("instrument display: passkey %0*d", digits, number)


class SimInstrument:
    """The GATT server of one simulated instrument on a bumble Device.

    Subclasses set SERVICE (the 16-bit service UUID they advertise) and give
    their profile's services to __init__ (`services`), building their
    characteristics with measurement_characteristic(). `await start()` powers
    the device on and advertises (again after every disconnection)."""

    SERVICE = 0x0000

    def __init__(self, device: Device, services: list[gatt.Service], *, model: str,
                 serial: str, manufacturer: str, firmware: str, battery: int = 87,
                 passkey: int | None = None, clock_writable: bool = True,
                 clock_offset_s: float | None = None) -> None:
        if passkey is not None and not 0 <= passkey <= 999999:
            raise ValueError("passkey must have 6 digits")
        self.device = device
        self.model = model
        self.serial = serial
        self.manufacturer = manufacturer
        self.firmware = firmware
        self.battery = battery
        self.passkey = passkey
        self.clock_writable = clock_writable
        if clock_offset_s is not None:
            self.clock_offset_s = clock_offset_s
        self.clock_writes = 0  # times a central set the clock
        self.confirmed = 0  # indications confirmed by a central
        self._subscribed: dict[int, dict[Connection, tuple[bool, bool]]] = {}
        self._subscription_change = asyncio.Event()

        props = gatt.Characteristic.Properties.READ | gatt.Characteristic.Properties.NOTIFY
        perms = gatt.Characteristic.READABLE
        if clock_writable:
            props |= gatt.Characteristic.Properties.WRITE
            perms |= gatt.Characteristic.WRITEABLE | gatt.Characteristic.WRITE_REQUIRES_ENCRYPTION
        self.current_time: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuid16(CURRENT_TIME), props, perms,
            gatt.CharacteristicValue(read=self._read_time, write=self._write_time))
        self.battery_service = BatteryService(lambda _connection: self.battery)
        device.add_services([
            *services,
            DeviceInformationService(manufacturer_name=manufacturer, model_number=model,
                                     serial_number=serial, firmware_revision=firmware),
            self.battery_service,
            gatt.Service(uuid16(CURRENT_TIME_SERVICE), [self.current_time]),
        ])
        device.pairing_config_factory = self._pairing_config
        device.on(device.EVENT_CONNECTION, self._on_connection)

    # -- the instrument's clock ---------------------------------------------

    @property
    def clock_offset_s(self) -> float:
        """The instrument's clock minus true time, in seconds."""
        return self._clock_offset_s

    @clock_offset_s.setter
    def clock_offset_s(self, value: float) -> None:
        self._clock_offset_s = value

    _clock_offset_s = 0.0

    def instrument_time(self, now: float | None = None) -> float:
        """What the instrument's clock shows at true time `now` (unix s)."""
        return (time.time() if now is None else now) + self.clock_offset_s

    def instrument_stamp(self, now: float | None = None) -> Stamp:
        return stamp_of(self.instrument_time(now))

    def _read_time(self, _connection: Connection) -> bytes:
        """0x2A2B Exact Time 256: Date Time, day of week, fractions, adjust reason."""
        t = self.instrument_time()
        wday = time.gmtime(int(t)).tm_wday + 1
        return date_time_bytes(stamp_of(t)) + bytes((wday, int((t % 1) * 256), 0))

    def _write_time(self, _connection: Connection, value: bytes) -> None:
        if not self.clock_writable:
            raise att.ATT_Error(att.ErrorCode.WRITE_NOT_PERMITTED)
        if len(value) != 10:
            raise att.ATT_Error(att.ErrorCode.INVALID_ATTRIBUTE_LENGTH)
        try:
            stamp = read_date_time(value, 0, "current_time")
        except DecodeError:
            raise att.ATT_Error(att.ErrorCode.VALUE_NOT_ALLOWED)
        if 0 in stamp[:3]:
            raise att.ATT_Error(att.ErrorCode.VALUE_NOT_ALLOWED)
        self.clock_offset_s = calendar.timegm((*stamp, 0, 0, 0)) + value[8] / 256 - time.time()
        self.clock_writes += 1
        log.info("%s %s: clock set by a central", self.model, self.serial)

    # -- characteristics ----------------------------------------------------

    def measurement_characteristic(self, uuid: int, *, notify: bool = False,
                                   indicate: bool = False) -> gatt.Characteristic[bytes]:
        """A notify and/or indicate characteristic that cannot be read or
        written, with a CCCD that only a bonded central may write."""
        props = gatt.Characteristic.Properties(0)
        if notify:
            props |= gatt.Characteristic.Properties.NOTIFY
        if indicate:
            props |= gatt.Characteristic.Properties.INDICATE
        characteristic: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuid16(uuid), props, gatt.Characteristic.Permissions(0),
            gatt.CharacteristicValue(read=self._read_not_permitted,
                                     write=self._write_not_permitted))
        self.secure_cccd(characteristic)
        return characteristic

    def secure_cccd(self, characteristic: gatt.Characteristic[bytes]) -> None:
        """Give `characteristic` our own CCCD (bumble adds an open one otherwise):
        subscribing needs a bond, a MITM-protected one when we have a passkey."""

        def read(bearer: att.Bearer) -> bytes:
            return self.device.gatt_server.read_cccd(bearer, characteristic)

        async def write(bearer: att.Bearer, value: bytes) -> None:
            if self.passkey is not None and isinstance(bearer, Connection):
                keys = None
                if self.device.keystore is not None:
                    keys = await self.device.keystore.get(str(bearer.peer_address))
                if not key_is_authenticated(keys):
                    raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_AUTHENTICATION)
            self.device.gatt_server.write_cccd(bearer, characteristic, value)

        def on_subscription(bearer: att.Bearer, notify: bool, indicate: bool) -> None:
            if not isinstance(bearer, Connection):
                return  # EATT bearers are not used here
            subs = self._subscribed.setdefault(characteristic.handle, {})
            if notify or indicate:
                subs[bearer] = (notify, indicate)
            else:
                subs.pop(bearer, None)
            self._subscription_change.set()

        characteristic.descriptors = [gatt.Descriptor(
            gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
            att.Attribute.READABLE | att.Attribute.WRITEABLE
            | att.Attribute.WRITE_REQUIRES_ENCRYPTION,
            att.AttributeValueV2(read=read, write=write))]
        characteristic.on(gatt.Characteristic.EVENT_SUBSCRIPTION, on_subscription)

    def _read_not_permitted(self, _connection: Connection) -> bytes:
        raise att.ATT_Error(att.ErrorCode.READ_NOT_PERMITTED)

    def _write_not_permitted(self, _connection: Connection, _value: bytes) -> None:
        raise att.ATT_Error(att.ErrorCode.WRITE_NOT_PERMITTED)

    # -- subscriptions ------------------------------------------------------

    def subscribers(self, characteristic: gatt.Characteristic[bytes],
                    indicate: bool) -> list[Connection]:
        """Connections with indications (or notifications) enabled on it."""
        subs = self._subscribed.get(characteristic.handle, {})
        return [c for c, (n, i) in subs.items() if (i if indicate else n)]

    def is_subscribed(self, characteristic: gatt.Characteristic[bytes]) -> bool:
        return bool(self._subscribed.get(characteristic.handle))

    async def wait_for_subscription(self, characteristic: gatt.Characteristic[bytes],
                                    timeout: float = 5.0) -> None:
        async def until() -> None:
            while not self.is_subscribed(characteristic):
                self._subscription_change.clear()
                await self._subscription_change.wait()

        await asyncio.wait_for(until(), timeout)

    # -- sending ------------------------------------------------------------

    async def send(self, characteristic: gatt.Characteristic[bytes], data: bytes, *,
                   indicate: bool, timeout: float = CONFIRM_TIMEOUT_S) -> int:
        """Notify or indicate these exact bytes to every subscribed central;
        an indication returns once each central has confirmed it. Returns the
        number of centrals reached; NotSubscribed when there is none."""
        targets = self.subscribers(characteristic, indicate)
        if not targets:
            raise NotSubscribed("no central has enabled %s on %s" % (
                "indications" if indicate else "notifications", characteristic.uuid))
        for connection in targets:
            if indicate:
                await self.indicate_to(connection, characteristic, data, timeout)
            else:
                await self.device.notify_subscriber(connection, characteristic, data)
        return len(targets)

    async def indicate_to(self, connection: Connection,
                          characteristic: gatt.Characteristic[bytes], data: bytes,
                          timeout: float = CONFIRM_TIMEOUT_S) -> None:
        """Indicate to one central; return once it confirmed (LinkLost, SimError)."""
        # bumble waits up to 30 s for a confirmation and is not woken by a
        # disconnection: race the indication against the link going down.
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()

        def on_disconnection(_reason: int) -> None:
            if not lost.done():
                lost.set_result(None)

        connection.on(connection.EVENT_DISCONNECTION, on_disconnection)
        task = asyncio.ensure_future(
            self.device.indicate_subscriber(connection, characteristic, data))
        try:
            done, _ = await asyncio.wait({task, lost}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()
                self.confirmed += 1
                return
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if lost.done():
                raise LinkLost("link to %s lost before confirmation" % connection.peer_address)
            raise SimError("no confirmation from %s in %.1f s"
                           % (connection.peer_address, timeout))
        finally:
            connection.remove_listener(connection.EVENT_DISCONNECTION, on_disconnection)

    async def set_battery(self, level: int) -> None:
        self.battery = level
        await self.device.notify_subscribers(
            self.battery_service.battery_level_characteristic, level)

    async def drop_links(self) -> None:
        """Drop every link from the instrument's side (it powers down, walks
        out of range)."""
        for connection in list(self.device.connections.values()):
            try:
                await asyncio.wait_for(connection.disconnect(), 2.0)
            except Exception as e:  # the link may already be going down
                log.warning("%s: disconnect: %r", self.serial, e)

    # -- life cycle ---------------------------------------------------------

    def advertising_data(self) -> bytes:
        return bytes(AdvertisingData([
            (AdvertisingData.FLAGS,
             bytes([AdvertisingData.LE_GENERAL_DISCOVERABLE_MODE_FLAG
                    | AdvertisingData.BR_EDR_NOT_SUPPORTED_FLAG])),
            (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
             struct.pack("<H", self.SERVICE)),
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
        await self.drop_links()
        await self.device.power_off()
        await asyncio.sleep(0)  # let bumble's cancelled restart task finish

    # -- bumble callbacks ---------------------------------------------------

    def _pairing_config(self, _connection: Connection) -> PairingConfig:
        if self.passkey is None:
            return PairingConfig(sc=True, mitm=False, bonding=True, delegate=PairingDelegate(
                io_capability=PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT))
        return PairingConfig(sc=True, mitm=True, bonding=True,
                             delegate=_PasskeyDisplay(self.passkey))

    def _on_connection(self, connection: Connection) -> None:
        log.debug("%s %s: connection from %s", self.model, self.serial, connection.peer_address)

        def on_disconnection(_reason: int) -> None:
            for subs in self._subscribed.values():
                subs.pop(connection, None)
            self._subscription_change.set()
            self.on_link_down(connection)

        connection.on(connection.EVENT_DISCONNECTION, on_disconnection)

    def on_link_down(self, connection: Connection) -> None:
        """Subclasses stop what they were doing for this central."""

