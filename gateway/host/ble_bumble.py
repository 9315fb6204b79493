"""BLE central adapter on bumble (Google's userspace Bluetooth stack).

Issue 4: "give the gateway a bumble-based BLE adapter beside the bleak one
(bumble also drives a USB Bluetooth dongle directly on a Linux gateway without
BlueZ)". The adapter connects to one known instrument by address, pairs and
bonds (or re-encrypts with the stored bond), discovers services, reads Device
Information and Battery Level, and subscribes to Blood Pressure Measurement
(0x2A35) indications. Each indication is handed, as raw bytes, to a callback
`on_value(inst, uuid16, data)` -- in the gateway that is Gateway.on_value,
which decodes and journals; the gateway core never sees bumble.

The bumble Device is passed in, never made here: a virtual controller in tests
(gateway/sim/ble_cuff.virtual_device), or on a Linux gateway a dongle, e.g.
    async with await bumble.transport.open_transport("usb:0") as t:
        device = Device.with_hci("ummc-gw", Address("F0:..."), t.source, t.sink)

Indication semantics (bumble's GATT client): the callback runs synchronously
inside the indication handler and the ATT confirmation goes out only after it
returns, so a cuff sees "confirmed" only once the reading is in the journal.
A callback that raises is logged and counted here (the confirmation still
goes out; the link and the other readings go on). CPython only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bumble import att, core, hci
from bumble.core import UUID
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy
from bumble.pairing import PairingConfig, PairingDelegate

from device_drivers.gatt import BATTERY_LEVEL, BLOOD_PRESSURE_MEASUREMENT, decode

log = logging.getLogger(__name__)

OnValue = Callable[[dict[str, str], int, bytes], object]
_T = TypeVar("_T")

_DISCONNECT_TIMEOUT_S = 2.0

_DEVICE_INFORMATION = 0x180A
_BATTERY = 0x180F
_BLOOD_PRESSURE = 0x1810
_CURRENT_TIME = 0x1805
_SERVICES = (_DEVICE_INFORMATION, _BATTERY, _BLOOD_PRESSURE, _CURRENT_TIME)

# identity key -> Device Information characteristic
_IDENTITY = (("mfr", 0x2A29), ("model", 0x2A24), ("serial", 0x2A25), ("firmware", 0x2A26))
# the keys of the wire protocol's `inst` (docs/protocol.md)
_INST_KEYS = ("addr", "model", "serial", "mfr")


class BleError(Exception):
    """A BLE operation on an instrument failed; `addr` names the instrument."""

    def __init__(self, message: str, addr: str | None = None) -> None:
        super().__init__("%s: %s" % (addr, message) if addr else message)
        self.addr = addr


class NotConnected(BleError):
    """The call needs a connection and there is none."""


class PairingError(BleError):
    """SMP pairing failed; `reason` is bumble's error name (e.g. CONFIRM_VALUE_FAILED)."""

    def __init__(self, message: str, addr: str | None = None, reason: str = "") -> None:
        super().__init__(message, addr)
        self.reason = reason


class GattError(BleError):
    """The instrument answered with an ATT error; `code` is the ATT error code."""

    def __init__(self, message: str, addr: str | None = None, code: int = 0) -> None:
        super().__init__(message, addr)
        self.code = code


class MissingCharacteristic(BleError):
    """The instrument has no characteristic `uuid16`."""

    def __init__(self, uuid16: int, addr: str | None = None) -> None:
        super().__init__("no characteristic 0x%04X" % uuid16, addr)
        self.uuid16 = uuid16


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
    real gateway) and is re-used on the next connect(). The adapter installs
    its pairing configuration on the Device (device.pairing_config_factory)."""

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
        self._on_bp: OnValue | None = None
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

    async def connect(self, address: str) -> None:
        """Connect, secure the link (bond or re-encrypt), discover services."""
        if self.connection is not None:
            raise BleError("already connected", self.address)
        peer_address = hci.Address(address)
        addr = peer_address.to_string(with_type_qualifier=False)
        if not self.device.powered_on:
            await self.device.power_on()
        await self._await_advertising(peer_address, addr)
        try:
            connection = await self.device.connect(peer_address, timeout=self.connect_timeout)
        except core.TimeoutError:
            raise BleError("no connection within %.1f s" % self.connect_timeout, addr)
        except (core.BaseBumbleError, hci.HCI_Error) as e:
            raise BleError("connection failed: %s" % e, addr)
        self.address = str(peer_address)
        self.identity = {"addr": addr}
        self.connection = connection
        self.peer = Peer(connection)
        self.disconnect_reason = None
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
            raise BleError("not advertising (waited %.1f s)" % self.connect_timeout, addr)
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
        if keystore is not None and self.address is not None \
                and await keystore.get(self.address) is not None:
            try:
                await self._on_link("encryption", connection.encrypt())
                self.new_bond = False
                return
            except hci.HCI_Error as e:
                if e.error_code != hci.HCI_ErrorCode.PIN_OR_KEY_MISSING_ERROR:
                    raise BleError("encryption with the stored bond failed: %s" % e, addr)
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
            self._forget()

    def _forget(self) -> None:
        self.connection = None
        self.peer = None

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

    async def _read(self, uuid16: int) -> bytes:
        characteristic = self._characteristic(uuid16)
        try:
            value = await self._on_link("read", self._peer().read_value(characteristic))
        except att.ATT_Error as e:
            raise GattError("read 0x%04X: %s" % (uuid16, e.error_name), self.address,
                            code=e.error_code)
        except core.TimeoutError:
            raise BleError("read 0x%04X timed out" % uuid16, self.address)
        return bytes(value)

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
        characteristic = self._characteristic(BLOOD_PRESSURE_MEASUREMENT)
        if "serial" not in self.identity and "model" not in self.identity:
            await self.read_identity()
        self._on_bp = callback
        try:
            # a bound method: bumble keeps subscribers in a set, so re-subscribing
            # with it does not add a second delivery
            await self._on_link("subscribe", self._peer().subscribe(
                characteristic, self._on_bp_indication, prefer_notify=False))
        except att.ATT_Error as e:
            raise GattError("subscribe 0x2A35: %s" % e.error_name, self.address,
                            code=e.error_code)

    def _on_bp_indication(self, value: bytes) -> None:
        # Runs inside bumble's ATT handler; the confirmation is sent when it returns.
        self.indications += 1
        data = bytes(value)
        inst = self.inst
        try:
            if self._on_bp is not None:
                self._on_bp(inst, BLOOD_PRESSURE_MEASUREMENT, data)
        except Exception:
            self.callback_errors += 1
            log.exception("%s: on_value failed for 0x2A35 %s", inst.get("addr"), data.hex())

    # -- bumble callbacks ---------------------------------------------------

    def _pairing_config(self, _connection: Connection) -> PairingConfig:
        if self.passkey is None:
            return PairingConfig(sc=True, mitm=False, bonding=True, delegate=PairingDelegate(
                io_capability=PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT))
        return PairingConfig(sc=True, mitm=True, bonding=True,
                             delegate=_PasskeyEntry(self.passkey))
