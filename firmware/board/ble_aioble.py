# BLE central adapter on aioble (micropython-lib) for the board: the adapter
# interface of gateway/ble_session.py (connected, connect, disconnect, has,
# can_write, read, write, subscribe) over MicroPython's `bluetooth` module.
# One object per paired instrument (ummc_main makes one per instrument task);
# they share the one radio, so scanning and connecting are serialised by a
# module lock (aioble has a single active scanner).
#
# Bonds: aioble keeps them in `<state>/ble_secrets.json` (loaded before the
# radio starts), so a bonded instrument is re-encrypted after a reboot
# without pairing again. Passkey entry: aioble leaves _IRQ_PASSKEY_ACTION to
# the app; this module answers it with the configured 6-digit PIN.
#
# Values: aioble keeps only the last notification per characteristic, which
# would lose records of a glucose download; this module registers its own
# IRQ handler and queues every notification and indication (bounded:
# QUEUE_MAX, overflow counted), then a task hands them to the session's
# callback in arrival order. On ESP32/NimBLE the stack confirms an indication
# itself when the IRQ is delivered, before the callback has journaled it (the
# bumble adapter confirms after): a reading lost between the two is one a
# power cut takes within a few milliseconds of arrival.
#
# NOT RUN HERE: there is no radio on the build machine and the Unix port has
# no `bluetooth` module. It is compiled by mpy-cross with the image and type-
# checked against the MicroPython ESP32 stubs (`python -m firmware.build
# typecheck firmware/board/ble_aioble.py`; aioble has no stubs, so its calls
# are checked by reading only). The same sessions run over bumble in
# tests/gateway/test_ble_session.py and through the virtual gateway's bridge
# (unix_ble.py) in hil_tests/.
import asyncio
from collections import deque

from micropython import const

from gateway.ble_session import (
    E_AUTH,
    E_CONNECT,
    E_GATT,
    E_LINK,
    E_MISSING,
    E_NOT_FOUND,
    E_PAIRING,
    E_TIMEOUT,
    BleError,
)

# aioble (micropython-lib, installed on the board) has no stubs: imported by
# name so the type checks take it as Any
aioble = __import__("aioble")

_IRQ_GATTC_NOTIFY = const(18)
_IRQ_GATTC_INDICATE = const(19)
_IRQ_PASSKEY_ACTION = const(31)
_PASSKEY_ACTION_INPUT = const(2)
_IO_KEYBOARD_ONLY = const(2)
_IO_NO_INPUT_OUTPUT = const(3)
_FLAG_WRITE_NO_RESPONSE = const(0x0004)
_FLAG_WRITE = const(0x0008)
_ATT_INSUFFICIENT_AUTHENTICATION = const(0x05)
_ATT_INSUFFICIENT_ENCRYPTION = const(0x0F)
QUEUE_MAX = 64

# Device Information, Battery, Current Time and the health profiles' services
_SERVICES = (0x180A, 0x180F, 0x1805, 0x1810, 0x1808, 0x1809, 0x1822, 0x181D)

_lock = asyncio.Lock()  # one scan/connect at a time on the one radio
_routes = {}  # type: dict  # conn_handle -> AiobleCentral
_passkeys = {}  # type: dict  # conn_handle -> passkey while pairing
_registered = False
_secrets_loaded = False


def _irq(event, data):
    if event == _IRQ_GATTC_NOTIFY or event == _IRQ_GATTC_INDICATE:
        conn, handle, payload = data
        central = _routes.get(conn)
        if central is not None:
            central._queue_value(handle, bytes(payload))
    elif event == _IRQ_PASSKEY_ACTION:
        conn, action, _ = data
        if action == _PASSKEY_ACTION_INPUT and conn in _passkeys:
            aioble.core.ble.gap_passkey(conn, action, _passkeys[conn])
    return None


def _register(state_dir):
    global _registered, _secrets_loaded
    __import__("aioble.core")
    __import__("aioble.security")
    if not _secrets_loaded:
        aioble.security.load_secrets(state_dir + "/ble_secrets.json")
        _secrets_loaded = True
    if not _registered:
        try:
            aioble.core.register_irq_handler(_irq, None)
        except TypeError:  # older aioble: register_irq_handler(handler)
            aioble.core.register_irq_handler(_irq)
        _registered = True


def _u16(uuid):
    b = bytes(uuid)
    return b[0] | (b[1] << 8) if len(b) == 2 else None


def _gatt_error(e, what, addr):
    status = getattr(e, "_status", 0)
    code = E_AUTH if status in (_ATT_INSUFFICIENT_AUTHENTICATION,
                                _ATT_INSUFFICIENT_ENCRYPTION) else E_GATT
    return BleError("%s: ATT error 0x%02X" % (what, status), addr, code)


class AiobleCentral:
    def __init__(self, state_dir, scan_ms=10000, connect_ms=10000, op_ms=5000,
                 pair_ms=20000):
        self.state_dir = state_dir
        self.scan_ms = scan_ms
        self.connect_ms = connect_ms
        self.op_ms = op_ms
        self.pair_ms = pair_ms
        self.addr = None
        self._conn = None
        self._chars = {}  # uuid16 -> ClientCharacteristic
        self._by_handle = {}  # value handle -> uuid16
        self._callbacks = {}  # uuid16 -> callback
        # MicroPython's deque takes maxlen only positionally
        self._queue = deque((), QUEUE_MAX)  # type: deque  # noqa: RUF037
        self._flag = asyncio.ThreadSafeFlag()  # type: ignore[attr-defined]
        self._tasks = []
        self._on_disconnect = None
        self.overflow = 0

    @property
    def connected(self):
        return self._conn is not None and self._conn.is_connected()

    # --- connection -------------------------------------------------------------
    async def connect(self, addr, passkey=None, on_disconnect=None):
        _register(self.state_dir)
        if self.connected:
            raise BleError("already connected", self.addr, E_CONNECT)
        self.addr = addr
        async with _lock:
            device = await self._find(addr)
            try:
                conn = await device.connect(timeout_ms=self.connect_ms)
            except asyncio.TimeoutError:
                raise BleError("no connection in %d ms" % self.connect_ms, addr, E_CONNECT)
            except OSError as e:
                raise BleError("connection failed: %s" % e, addr, E_CONNECT)
        self._conn = conn
        self._on_disconnect = on_disconnect
        _routes[conn._conn_handle] = self
        try:
            await self._secure(conn, addr, passkey)
            await self._discover(conn)
        except BleError:
            await self.disconnect()
            raise
        except (asyncio.TimeoutError, aioble.DeviceDisconnectedError) as e:
            await self.disconnect()
            raise BleError("link lost while connecting: %s" % type(e).__name__, addr, E_LINK)
        self._tasks = [asyncio.create_task(self._watch(conn)),
                       asyncio.create_task(self._dispatch())]

    async def _find(self, addr):
        want = addr.upper()
        async with aioble.scan(self.scan_ms, interval_us=30000, window_us=30000,
                               active=False) as scanner:
            async for result in scanner:
                if result.connectable and result.device.addr_hex().upper() == want:
                    return result.device
        raise BleError("not advertising (scanned %d ms)" % self.scan_ms, addr, E_NOT_FOUND)

    async def _secure(self, conn, addr, passkey):
        if passkey is not None:
            _passkeys[conn._conn_handle] = int(passkey)
        try:
            await conn.pair(bond=True, le_secure=True, mitm=passkey is not None,
                            io=_IO_KEYBOARD_ONLY if passkey is not None else _IO_NO_INPUT_OUTPUT,
                            timeout_ms=self.pair_ms)
        except asyncio.TimeoutError:
            raise BleError("pairing timed out", addr, E_PAIRING)
        finally:
            _passkeys.pop(conn._conn_handle, None)
        if not conn.encrypted:
            raise BleError("link not encrypted after pairing", addr, E_PAIRING)

    async def _discover(self, conn):
        self._chars = {}
        self._by_handle = {}
        services = []
        async for service in conn.services(None, self.op_ms):
            if _u16(service.uuid) in _SERVICES:
                services.append(service)
        for service in services:
            async for char in service.characteristics(None, self.op_ms):
                u = _u16(char.uuid)
                if u is not None and u not in self._chars:
                    self._chars[u] = char
                    self._by_handle[char._value_handle] = u

    async def _watch(self, conn):
        try:
            await conn.disconnected(timeout_ms=None)
        except asyncio.CancelledError:
            return
        callback = self._on_disconnect
        self._forget()
        if callback is not None:
            try:
                callback(None)
            except Exception:
                pass

    async def disconnect(self):
        conn = self._conn
        if conn is None:
            return
        self._on_disconnect = None
        try:
            await conn.disconnect(timeout_ms=2000)
        except Exception:
            pass
        self._forget()

    def _forget(self):
        conn = self._conn
        if conn is not None and conn._conn_handle is not None:
            _routes.pop(conn._conn_handle, None)
        for t in self._tasks:
            if t is not asyncio.current_task():
                t.cancel()
        self._tasks = []
        self._conn = None
        self._chars = {}
        self._callbacks = {}

    # --- GATT -------------------------------------------------------------------
    def has(self, uuid16):
        return uuid16 in self._chars

    def can_write(self, uuid16):
        c = self._chars.get(uuid16)
        return c is not None and bool(c.properties & (_FLAG_WRITE | _FLAG_WRITE_NO_RESPONSE))

    def _char(self, uuid16):
        if not self.connected:
            raise BleError("not connected", self.addr, E_LINK)
        c = self._chars.get(uuid16)
        if c is None:
            raise BleError("no characteristic 0x%04X" % uuid16, self.addr, E_MISSING)
        return c

    async def _op(self, what, coro):
        try:
            return await coro
        except asyncio.TimeoutError:
            raise BleError("%s timed out" % what, self.addr, E_TIMEOUT)
        except aioble.DeviceDisconnectedError:
            raise BleError("link lost during %s" % what, self.addr, E_LINK)
        except aioble.GattError as e:
            raise _gatt_error(e, what, self.addr)
        except ValueError as e:  # aioble: "Unsupported" property, CCCD not found
            raise BleError("%s: %s" % (what, e), self.addr, E_GATT)

    async def read(self, uuid16):
        c = self._char(uuid16)
        data = await self._op("read 0x%04X" % uuid16, c.read(timeout_ms=self.op_ms))
        return bytes(data)

    async def write(self, uuid16, data, response=True):
        c = self._char(uuid16)
        await self._op("write 0x%04X" % uuid16,
                       c.write(data, response=response, timeout_ms=self.op_ms))

    async def subscribe(self, uuid16, callback, indicate=False):
        c = self._char(uuid16)
        self._callbacks[uuid16] = callback
        await self._op("subscribe 0x%04X" % uuid16,
                       c.subscribe(notify=not indicate, indicate=indicate))

    # --- values -----------------------------------------------------------------
    def _queue_value(self, handle, data):
        # Called from the BLE IRQ (scheduled, not a hard interrupt).
        if len(self._queue) >= QUEUE_MAX:
            self.overflow += 1
        self._queue.append((handle, data))
        self._flag.set()

    async def _dispatch(self):
        while True:
            await self._flag.wait()
            while self._queue:
                handle, data = self._queue.popleft()
                u = self._by_handle.get(handle)
                cb = self._callbacks.get(u)
                if cb is not None:
                    try:
                        cb(u, data)
                    except Exception as e:
                        print("ble callback 0x%04X: %s" % (u or 0, type(e).__name__))
