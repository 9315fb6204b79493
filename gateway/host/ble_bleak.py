"""BLE central adapter on bleak (BlueZ over D-Bus on a Linux gateway).

NOT RUN ON THIS MACHINE. There is no BlueZ (and no radio) here: bleak's
scanner raises at once (docs FIELD-NOTES, "Bluetooth on a host without a
radio"), so this module is only type-checked (mypy, ruff) and has no test;
the same adapter interface is exercised over a real stack by the bumble
adapter (gateway/host/ble_bumble.py, tests/gateway/test_ble_session.py).
Try it on a Raspberry Pi-class gateway before relying on it.

It implements the adapter interface of the portable session (the header of
gateway/ble_session.py): connect(addr, passkey, on_disconnect), disconnect(),
has(), can_write(), read(), write(), subscribe(uuid16, callback, indicate),
raising gateway.ble_session.BleError with the session's error codes.

Differences from the bumble adapter that the session tolerates:
- Pairing is BlueZ's: `connect()` asks bleak to pair (pair=True) when the
  device is not bonded yet. A passkey cannot be typed in from here: BlueZ asks
  a registered D-Bus agent for it. Pair PIN instruments once during
  provisioning (`bluetoothctl`, `agent KeyboardOnly`, `pair <addr>`); the bond
  then lives in BlueZ and is re-used. `passkey` is accepted and ignored.
- BlueZ confirms indications itself, before the callback runs: an instrument
  sees "confirmed" as soon as BlueZ has the value, not once it is journaled.
- `indicate` cannot be chosen: BlueZ's StartNotify uses notifications when the
  characteristic has both, indications when it has only indicate.
- Connecting scans first (find_device_by_address), bounded by connect_timeout.
CPython only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakDBusError, BleakError, BleakGATTProtocolError

from gateway import ble_session
from gateway.ble_session import BleError

log = logging.getLogger(__name__)

OnCharacteristic = Callable[[int, bytes], object]
OnDisconnect = Callable[[int], object]

_AUTH_ATT_CODES = (0x05, 0x0F)  # insufficient authentication / encryption
_PAIRING_DBUS = ("org.bluez.Error.AuthenticationFailed", "org.bluez.Error.AuthenticationRejected",
                 "org.bluez.Error.AuthenticationCanceled", "org.bluez.Error.AuthenticationTimeout",
                 "org.bluez.Error.ConnectionAttemptFailed")
_AUTH_DBUS = ("org.bluez.Error.NotPermitted", "org.bluez.Error.NotAuthorized")


def uuid128(uuid16: int) -> str:
    return "0000%04x-0000-1000-8000-00805f9b34fb" % uuid16


class BleakCentral:
    """One BLE link from the gateway to one instrument, through BlueZ."""

    def __init__(self, *, connect_timeout: float = 10.0, adapter: str | None = None) -> None:
        self.connect_timeout = connect_timeout
        self.adapter = adapter  # e.g. "hci0"; None: BlueZ's default
        self.address: str | None = None
        self.client: BleakClient | None = None
        self.callback_errors = 0
        self._on_disconnect: OnDisconnect | None = None

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected

    async def connect(self, addr: str, passkey: int | None = None,
                      on_disconnect: OnDisconnect | None = None) -> None:
        if self.client is not None:
            raise BleError("already connected", self.address)
        del passkey  # BlueZ asks its agent (see the module header)
        device = await BleakScanner.find_device_by_address(
            addr, timeout=self.connect_timeout,
            bluez={"adapter": self.adapter} if self.adapter else {})
        if device is None:
            raise BleError("not advertising (waited %.1f s)" % self.connect_timeout, addr,
                           ble_session.E_NOT_FOUND)
        client = BleakClient(device, disconnected_callback=self._disconnected,
                             timeout=self.connect_timeout, pair=True)
        self.address = addr
        self._on_disconnect = on_disconnect
        try:
            await client.connect()
        except BleakDBusError as e:
            code = ble_session.E_PAIRING if e.dbus_error in _PAIRING_DBUS \
                else ble_session.E_CONNECT
            raise BleError("connection failed: %s" % e, addr, code)
        except (BleakError, asyncio.TimeoutError) as e:
            raise BleError("connection failed: %r" % e, addr, ble_session.E_CONNECT)
        self.client = client

    async def disconnect(self) -> None:
        client = self.client
        self.client = None
        if client is None:
            return
        try:
            await client.disconnect()
        except (BleakError, asyncio.TimeoutError) as e:
            log.warning("%s: disconnect: %r", self.address, e)

    def _disconnected(self, client: BleakClient) -> None:
        if client is not self.client and self.client is not None:
            return  # a stale event from an old link
        self.client = None
        callback, self._on_disconnect = self._on_disconnect, None
        if callback is not None:
            try:
                callback(0)  # BlueZ does not pass the HCI reason on
            except Exception:
                log.exception("%s: on_disconnect failed", self.address)

    # -- GATT -----------------------------------------------------------------

    def _characteristic(self, uuid16: int) -> BleakGATTCharacteristic:
        client = self.client
        if client is None or not client.is_connected:
            raise BleError("not connected", self.address, ble_session.E_LINK)
        found = client.services.get_characteristic(uuid128(uuid16))
        if found is None:
            raise BleError("no characteristic 0x%04X" % uuid16, self.address,
                           ble_session.E_MISSING)
        return found

    def has(self, uuid16: int) -> bool:
        client = self.client
        if client is None or not client.is_connected:
            return False
        return client.services.get_characteristic(uuid128(uuid16)) is not None

    def can_write(self, uuid16: int) -> bool:
        if not self.has(uuid16):
            return False
        props = self._characteristic(uuid16).properties
        return "write" in props or "write-without-response" in props

    def _error(self, what: str, e: Exception) -> BleError:
        if isinstance(e, BleakGATTProtocolError):
            code = ble_session.E_AUTH if int(e.code) in _AUTH_ATT_CODES else ble_session.E_GATT
            err = BleError("%s: %s" % (what, e), self.address, code)
        elif isinstance(e, BleakDBusError) and e.dbus_error in _AUTH_DBUS:
            err = BleError("%s: %s" % (what, e), self.address, ble_session.E_AUTH)
        elif isinstance(e, asyncio.TimeoutError):
            err = BleError("%s timed out" % what, self.address, ble_session.E_TIMEOUT)
        elif not self.connected:
            err = BleError("link lost during %s" % what, self.address, ble_session.E_LINK)
        else:
            err = BleError("%s: %r" % (what, e), self.address, ble_session.E_GATT)
        return err

    async def read(self, uuid16: int) -> bytes:
        characteristic = self._characteristic(uuid16)
        assert self.client is not None
        try:
            return bytes(await self.client.read_gatt_char(characteristic))
        except (BleakError, asyncio.TimeoutError) as e:
            raise self._error("read 0x%04X" % uuid16, e)

    async def write(self, uuid16: int, data: bytes, response: bool = True) -> None:
        characteristic = self._characteristic(uuid16)
        assert self.client is not None
        try:
            await self.client.write_gatt_char(characteristic, bytes(data), response=response)
        except (BleakError, asyncio.TimeoutError) as e:
            raise self._error("write 0x%04X" % uuid16, e)

    async def subscribe(self, uuid16: int, callback: OnCharacteristic,
                        indicate: bool = False) -> None:
        """callback(uuid16, bytes) for each value (see the header on `indicate`)."""
        del indicate
        characteristic = self._characteristic(uuid16)
        assert self.client is not None

        def deliver(_sender: BleakGATTCharacteristic, data: bytearray) -> None:
            try:
                callback(uuid16, bytes(data))
            except Exception:
                self.callback_errors += 1
                log.exception("%s: callback failed for 0x%04X", self.address, uuid16)

        try:
            await self.client.start_notify(characteristic, deliver)
        except (BleakError, asyncio.TimeoutError) as e:
            raise self._error("subscribe 0x%04X" % uuid16, e)
