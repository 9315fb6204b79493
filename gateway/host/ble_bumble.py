"""BLE central adapter on bumble (Google's userspace Bluetooth stack).

Issue 4: "give the gateway a bumble-based BLE adapter beside the bleak one
(bumble also drives a USB Bluetooth dongle directly on a Linux gateway without
BlueZ)". The adapter connects to one known instrument by address, pairs and
bonds (or re-encrypts with the stored bond), discovers the services of the
health profiles the units use, and implements the adapter interface of the
portable session (gateway/ble_session.py header): connect(addr, passkey,
on_disconnect), disconnect(), has(), can_write(), read(), write(),
subscribe(uuid16, callback, indicate). BleSession drives it; the gateway core
never sees bumble. Its errors are gateway.ble_session.BleError subclasses
carrying the session's error codes (not_found, pairing_failed, auth_required,
gatt_error, link_lost, missing_characteristic, timeout, connect_failed).

The older direct calls stay: read_identity(), read_battery() and
subscribe_blood_pressure(on_value), where each 0x2A35 indication is handed as
raw bytes to `on_value(inst, uuid16, data)` (Gateway.on_value).

The bumble Device is passed in, never made here: a virtual controller in tests
(gateway/sim/ble_cuff.virtual_device), or on a Linux gateway a dongle, e.g.
    async with await bumble.transport.open_transport("usb:0") as t:
        device = Device.with_hci("ummc-gw", Address("F0:..."), t.source, t.sink)

Indication semantics (bumble's GATT client): the callback runs synchronously
inside the indication handler and the ATT confirmation goes out only after it
returns, so an instrument sees "confirmed" only once the reading is in the
journal. A callback that raises is logged and counted here (the confirmation
still goes out; the link and the other readings go on). Connecting scans
first: bumble's virtual controller never completes a cancelled LE Create
Connection, so a blind connect to an absent address would hang. CPython only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bumble import att, core, hci
from bumble.core import UUID
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt import Characteristic
from bumble.gatt_client import CharacteristicProxy
from bumble.pairing import PairingConfig, PairingDelegate

from device_drivers.gatt import BATTERY_LEVEL, BLOOD_PRESSURE_MEASUREMENT, decode
from gateway import ble_session
from gateway.ble_session import BleError

__all__ = ["BleError", "BumbleCentral", "GattError", "MissingCharacteristic", "NotConnected",
           "NotFound", "PairingError"]

log = logging.getLogger(__name__)

OnValue = Callable[[dict[str, str], int, bytes], object]
OnCharacteristic = Callable[[int, bytes], object]
OnDisconnect = Callable[[int], object]
_T = TypeVar("_T")
_KEEP = object()  # connect(): keep the passkey given to the constructor

_DISCONNECT_TIMEOUT_S = 2.0

# Device Information, Battery, Current Time, and the health profiles:
# blood pressure, glucose, thermometer, pulse oximeter, weight scale
_SERVICES = (0x180A, 0x180F, 0x1805, 0x1810, 0x1808, 0x1809, 0x1822, 0x181D)

# identity key -> Device Information characteristic
_IDENTITY = (("mfr", 0x2A29), ("model", 0x2A24), ("serial", 0x2A25), ("firmware", 0x2A26))
# the keys of the wire protocol's `inst` (docs/protocol.md)
_INST_KEYS = ("addr", "model", "serial", "mfr")


class NotFound(BleError):
    """The instrument did not advertise within the connect timeout."""

    error_code = ble_session.E_NOT_FOUND


class NotConnected(BleError):
    """The call needs a connection and there is none (or the link dropped)."""

    error_code = ble_session.E_LINK


class PairingError(BleError):
    """SMP pairing failed; `reason` is bumble's error name (e.g. CONFIRM_VALUE_FAILED)."""

    error_code = ble_session.E_PAIRING

    def __init__(self, message: str, addr: str | None = None, reason: str = "") -> None:
        super().__init__(message, addr)
        self.reason = reason


_AUTH_ERRORS = (att.ErrorCode.INSUFFICIENT_AUTHENTICATION, att.ErrorCode.INSUFFICIENT_ENCRYPTION)


class GattError(BleError):
    """The instrument answered with an ATT error; `code` is the ATT error code
    (error_code auth_required when it wants a bond, or a better one)."""

    def __init__(self, message: str, addr: str | None = None, code: int = 0) -> None:
        super().__init__(message, addr,
                         ble_session.E_AUTH if code in _AUTH_ERRORS else ble_session.E_GATT)
        self.code = code


class MissingCharacteristic(BleError):
    """The instrument has no characteristic `uuid16`."""

    error_code = ble_session.E_MISSING

    def __init__(self, uuid16: int, addr: str | None = None) -> None:
        super().__init__("no characteristic 0x%04X" % uuid16, addr)
        self.uuid16 = uuid16


class _Dispatch:
    """bumble's subscriber for one characteristic on one link: hands each value
    to the current callback. One object per characteristic, so subscribing
    again replaces the callback (bumble keeps subscribers in a set)."""

    def __init__(self, central: BumbleCentral, uuid16: int, callback: OnCharacteristic) -> None:
        self.central = central
        self.uuid16 = uuid16
        self.callback = callback

    def __call__(self, value: bytes) -> None:
        # Runs inside bumble's ATT handler; an indication is confirmed when it returns.
        central = self.central
        central.indications += 1
        data = bytes(value)
        try:
            self.callback(self.uuid16, data)
        except Exception:
            central.callback_errors += 1
            log.exception("%s: callback failed for 0x%04X", central.address, self.uuid16)


class _PasskeyEntry(PairingDelegate):
    """The gateway's side of passkey pairing: the passkey the cuff shows,
    typed in by the technician beforehand (provisioning)."""

    def __init__(self, passkey: int) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY)
        self.passkey = passkey

    async def get_number(self) -> int | None:
        return self.passkey


class BumbleCentral:
    """One BLE link from the gateway to one instrument, over a bumble Device.

    `passkey`: None pairs "Just Works"; a 6-digit number is entered when the
    instrument asks for passkey entry (MITM-protected bond). The bond lives in
    `device.keystore` (bumble's MemoryKeyStore by default, a JsonKeyStore on a
    real gateway) and is re-used on the next connect(); a bond made without a
    passkey is replaced (paired again) once a passkey is configured. The
    adapter installs its pairing configuration on the Device
    (device.pairing_config_factory)."""

    def __init__(self, device: Device, *, passkey: int | None = None,
                 connect_timeout: float = 10.0) -> None:
        self.device = device
        self.passkey = passkey
        self.connect_timeout = connect_timeout
        self.address: str | None = None
        self.connection: Connection | None = None
        self.peer: Peer | None = None
        self.identity: dict[str, str] = {}
        self.new_bond = False  # connect() ran SMP pairing (else re-used a bond)
        self.indications = 0
        self.callback_errors = 0
        self.disconnect_reason: int | None = None
        self._on_disconnect: OnDisconnect | None = None
        self._dispatch: dict[int, _Dispatch] = {}
        device.pairing_config_factory = self._pairing_config

    # -- state --------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.connection is not None

    @property
    def encrypted(self) -> bool:
        return self.connection is not None and self.connection.is_encrypted

    @property
    def inst(self) -> dict[str, str]:
        """The instrument identity the gateway journals (only keys known)."""
        return {k: self.identity[k] for k in _INST_KEYS if k in self.identity}

    async def bond_keys_authenticated(self) -> bool | None:
        """None without a bond; else whether the bond is MITM-protected."""
        if self.address is None or self.device.keystore is None:
            return None
        keys = await self.device.keystore.get(self.address)
        if keys is None:
            return None
        return any(k is not None and k.authenticated
                   for k in (keys.ltk, keys.ltk_central, keys.ltk_peripheral))

    # -- connection ---------------------------------------------------------

    async def connect(self, address: str, passkey: object = _KEEP,
                      on_disconnect: OnDisconnect | None = None) -> None:
        """Connect, secure the link (bond or re-encrypt), discover services.

        `passkey` (None: Just Works; an int: the PIN the instrument shows)
        replaces the constructor's; on_disconnect(reason) is called if the link
        drops later (or is closed by disconnect())."""
        if self.connection is not None:
            raise BleError("already connected", self.address)
        if passkey is not _KEEP:
            if passkey is not None and not isinstance(passkey, int):
                raise ValueError("passkey must be None or an int")
            self.passkey = passkey
        peer_address = hci.Address(address)
        addr = peer_address.to_string(with_type_qualifier=False)
        if not self.device.powered_on:
            await self.device.power_on()
        await self._await_advertising(peer_address, addr)
        try:
            connection = await self.device.connect(peer_address, timeout=self.connect_timeout)
        except core.TimeoutError:
            raise BleError("no connection within %.1f s" % self.connect_timeout, addr,
                           ble_session.E_CONNECT)
        except (core.BaseBumbleError, hci.HCI_Error) as e:
            raise BleError("connection failed: %s" % e, addr, ble_session.E_CONNECT)
        self.address = str(peer_address)
        self.identity = {"addr": addr}
        self.connection = connection
        self.peer = Peer(connection)
        self.disconnect_reason = None
        self._dispatch = {}
        self._on_disconnect = on_disconnect
        connection.on(connection.EVENT_DISCONNECTION,
                      lambda reason: self._on_disconnection(connection, reason))
        try:
            await self._secure(connection, addr)
            await self._discover()
        except Exception:
            await self.disconnect()
            raise

    async def _await_advertising(self, peer_address: hci.Address, addr: str) -> None:
        """Scan until the instrument advertises (a cuff does so for a while
        after a measurement). Connecting only then keeps connect_timeout honest:
        bumble's virtual controller never completes a cancelled LE Create
        Connection, so a blind connect to an absent address would hang."""
        device = self.device
        seen: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_advertisement(advertisement: Advertisement) -> None:
            if advertisement.address == peer_address and advertisement.is_connectable \
                    and not seen.done():
                seen.set_result(None)

        was_scanning = device.scanning
        device.on(device.EVENT_ADVERTISEMENT, on_advertisement)
        try:
            if not was_scanning:
                await device.start_scanning()
            await asyncio.wait_for(seen, self.connect_timeout)
        except TimeoutError:
            raise NotFound("not advertising (waited %.1f s)" % self.connect_timeout, addr)
        finally:
            device.remove_listener(device.EVENT_ADVERTISEMENT, on_advertisement)
            if not was_scanning and device.scanning:
                await device.stop_scanning()

    async def _on_link(self, what: str, awaitable: Awaitable[_T]) -> _T:
        """Await a bumble operation; bumble aborts it with CancelledError when
        the link drops -- turn that into NotConnected unless we were cancelled."""
        try:
            return await awaitable
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise NotConnected("link lost during %s" % what, self.address)

    async def _secure(self, connection: Connection, addr: str) -> None:
        keystore = self.device.keystore
        if keystore is not None and self.address is not None and self.passkey is not None \
                and await self.bond_keys_authenticated() is False:
            # A PIN is configured now but the bond was made without one (Just
            # Works): the instrument will not trust it. Pair again, with the PIN.
            log.warning("%s: bond without MITM protection; pairing again with the passkey",
                        addr)
            await keystore.delete(self.address)
        if keystore is not None and self.address is not None \
                and await keystore.get(self.address) is not None:
            try:
                await self._on_link("encryption", connection.encrypt())
                self.new_bond = False
                return
            except hci.HCI_Error as e:
                if e.error_code != hci.HCI_ErrorCode.PIN_OR_KEY_MISSING_ERROR:
                    raise PairingError("encryption with the stored bond failed: %s" % e, addr,
                                       reason=str(e.error_name))
                # The instrument forgot the bond (reset, new batteries): pair anew.
                log.warning("%s lost our bond; pairing again", addr)
                await keystore.delete(self.address)
        try:
            await self._on_link("pairing", connection.pair())
        except core.ProtocolError as e:
            raise PairingError("pairing failed: %s" % e, addr, reason=str(e.error_name))
        self.new_bond = True

    async def _discover(self) -> None:
        peer = self._peer()
        uuids = [UUID.from_16_bits(u) for u in _SERVICES]
        await self._on_link("discovery", peer.discover_services(uuids))
        for service in peer.services:
            await self._on_link("discovery", service.discover_characteristics())

    async def disconnect(self) -> None:
        connection = self.connection
        if connection is None:
            return
        try:
            await asyncio.wait_for(connection.disconnect(), _DISCONNECT_TIMEOUT_S)
        except (core.BaseBumbleError, hci.HCI_Error, TimeoutError) as e:
            log.warning("%s: disconnect: %r", self.address, e)
        self._forget()

    def _on_disconnection(self, connection: Connection, reason: int) -> None:
        log.info("%s disconnected (reason 0x%02X)", self.address, reason)
        if connection is self.connection:  # not a stale event from an old link
            self.disconnect_reason = reason
            callback = self._on_disconnect
            self._forget()
            if callback is not None:
                try:
                    callback(reason)
                except Exception:
                    log.exception("%s: on_disconnect failed", self.address)

    def _forget(self) -> None:
        self.connection = None
        self.peer = None
        self._on_disconnect = None
        self._dispatch = {}

    # -- GATT ---------------------------------------------------------------

    def _peer(self) -> Peer:
        if self.peer is None:
            raise NotConnected("not connected", self.address)
        return self.peer

    def _characteristic(self, uuid16: int) -> CharacteristicProxy[bytes]:
        found = self._peer().get_characteristics_by_uuid(UUID.from_16_bits(uuid16))
        if not found:
            raise MissingCharacteristic(uuid16, self.address)
        return found[0]

    def has(self, uuid16: int) -> bool:
        """Whether the instrument has characteristic `uuid16` (False when not connected)."""
        if self.peer is None:
            return False
        return bool(self.peer.get_characteristics_by_uuid(UUID.from_16_bits(uuid16)))

    def can_write(self, uuid16: int) -> bool:
        """Whether `uuid16` exists and its properties allow a write."""
        if not self.has(uuid16):
            return False
        props = self._characteristic(uuid16).properties
        return bool(props & (Characteristic.Properties.WRITE
                             | Characteristic.Properties.WRITE_WITHOUT_RESPONSE))

    async def read(self, uuid16: int) -> bytes:
        return await self._read(uuid16)

    async def _read(self, uuid16: int) -> bytes:
        characteristic = self._characteristic(uuid16)
        try:
            value = await self._on_link("read", self._peer().read_value(characteristic))
        except att.ATT_Error as e:
            raise GattError("read 0x%04X: %s" % (uuid16, e.error_name), self.address,
                            code=e.error_code)
        except (core.TimeoutError, TimeoutError):
            raise BleError("read 0x%04X timed out" % uuid16, self.address, ble_session.E_TIMEOUT)
        return bytes(value)

    async def write(self, uuid16: int, data: bytes, response: bool = True) -> None:
        """Write a characteristic value (a Write Request when `response`)."""
        characteristic = self._characteristic(uuid16)
        try:
            await self._on_link("write", self._peer().write_value(
                characteristic, bytes(data), with_response=response))
        except att.ATT_Error as e:
            raise GattError("write 0x%04X: %s" % (uuid16, e.error_name), self.address,
                            code=e.error_code)
        except (core.TimeoutError, TimeoutError):
            raise BleError("write 0x%04X timed out" % uuid16, self.address,
                           ble_session.E_TIMEOUT)

    async def subscribe(self, uuid16: int, callback: OnCharacteristic,
                        indicate: bool = False) -> None:
        """Enable notifications (or indications) on `uuid16`; each value calls
        callback(uuid16, bytes) in arrival order, and an indication is
        confirmed after it returns. Subscriptions live as long as the link;
        subscribing again on one link replaces the callback."""
        characteristic = self._characteristic(uuid16)
        dispatch = self._dispatch.get(uuid16)
        if dispatch is None:
            dispatch = self._dispatch[uuid16] = _Dispatch(self, uuid16, callback)
        else:
            dispatch.callback = callback
        try:
            await self._on_link("subscribe", self._peer().subscribe(
                characteristic, dispatch, prefer_notify=not indicate))
        except att.ATT_Error as e:
            raise GattError("subscribe 0x%04X: %s" % (uuid16, e.error_name), self.address,
                            code=e.error_code)
        except (core.TimeoutError, TimeoutError):
            raise BleError("subscribe 0x%04X timed out" % uuid16, self.address,
                           ble_session.E_TIMEOUT)

    async def read_identity(self) -> dict[str, str]:
        """{addr, mfr, model, serial, firmware} from Device Information, the
        ones the instrument has (NUL padding stripped)."""
        identity = {"addr": self.identity.get("addr", "")}
        peer = self._peer()
        for key, uuid16 in _IDENTITY:
            if not peer.get_characteristics_by_uuid(UUID.from_16_bits(uuid16)):
                continue
            raw = await self._read(uuid16)
            text = raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
            if text:
                identity[key] = text
        self.identity = identity
        return dict(identity)

    async def read_battery(self) -> int:
        """Battery Level in percent; DecodeError when the value is not 0-100."""
        level = decode(BATTERY_LEVEL, await self._read(BATTERY_LEVEL))["level"]
        assert isinstance(level, int)
        return level

    async def subscribe_blood_pressure(self, callback: OnValue) -> None:
        """Enable 0x2A35 indications; each one calls callback(inst, 0x2A35, bytes).

        Reads the identity first if read_identity() has not run, so every
        reading carries the serial and model. Call again after a reconnect
        (subscriptions live as long as the link); calling it twice on one link
        replaces the callback, it does not deliver twice."""
        self._characteristic(BLOOD_PRESSURE_MEASUREMENT)
        if "serial" not in self.identity and "model" not in self.identity:
            await self.read_identity()

        def deliver(uuid16: int, data: bytes) -> None:
            callback(self.inst, uuid16, data)

        await self.subscribe(BLOOD_PRESSURE_MEASUREMENT, deliver, indicate=True)

    # -- bumble callbacks ---------------------------------------------------

    def _pairing_config(self, _connection: Connection) -> PairingConfig:
        if self.passkey is None:
            return PairingConfig(sc=True, mitm=False, bonding=True, delegate=PairingDelegate(
                io_capability=PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT))
        return PairingConfig(sc=True, mitm=True, bonding=True,
                             delegate=_PasskeyEntry(self.passkey))
