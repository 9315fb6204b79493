# BLE central adapter of the virtual gateway (MicroPython Unix port, which
# has no `bluetooth` module): the adapter interface of gateway/ble_session.py
# carried over a TCP connection to the bench's BLE bridge
# (firmware/virtual/bench.py), where a bumble central on a virtual controller
# does the real HCI/L2CAP/ATT/GATT/SMP work against bumble instrument
# simulators. One TCP connection per adapter (one per paired instrument), so
# the bridge drops the BLE link when this process dies, as a radio does when
# a board loses power.
#
# Wire: one JSON object per line. Requests {"id", "op", ...} get a reply
# {"id", "ok": true, ...} or {"id", "ok": false, "code": <ble_session E_*>,
# "msg"}:
#   connect {addr, passkey}      -> {chars: [[uuid16, properties], ...]}
#   disconnect {}
#   read {u}                     -> {d: hex}
#   write {u, d: hex, response}
#   subscribe {u, indicate}
# Events from the bridge: {"ev": "value", "u", "d": hex, "n"?} for each
# notification or indication ("n" marks an indication: this side answers
# {"op": "confirm", "n"} once the callback has returned, and only then does
# the bridge send the ATT confirmation to the instrument: a reading is
# confirmed after the gateway journaled it); {"ev": "down", "reason"} when
# the link drops. MicroPython Unix port (and CPython: plain asyncio streams).
import asyncio
import json
from binascii import hexlify, unhexlify

from gateway.ble_session import E_CONNECT, E_LINK, E_TIMEOUT, BleError

_WRITE = 0x08
_WRITE_NO_RESPONSE = 0x04


class _Waiter:
    def __init__(self):
        self.event = asyncio.Event()
        self.reply = None  # type: dict | None


class BridgeCentral:
    def __init__(self, host, port, op_ms=10000, connect_ms=30000):
        self.host = host
        self.port = port
        self.op_ms = op_ms
        self.connect_ms = connect_ms
        self.addr = None
        self._r = None
        self._w = None
        self._lock = asyncio.Lock()  # one writer at a time on the stream
        self._next = 1
        self._waiting = {}  # type: dict  # request id -> _Waiter
        self._chars = {}  # uuid16 -> properties
        self._callbacks = {}  # uuid16 -> callback
        self._on_disconnect = None
        self._link = False
        self._task = None

    @property
    def connected(self):
        return self._link

    # --- the bridge connection ---------------------------------------------------------
    async def _open(self):
        if self._w is not None:
            return
        if not self.port:
            raise BleError("no BLE bridge configured (UMMC_VG_BRIDGE)", self.addr, E_CONNECT)
        try:
            self._r, self._w = await asyncio.open_connection(self.host, self.port)
        except OSError as e:
            raise BleError("BLE bridge unreachable: %s" % e, self.addr, E_CONNECT)
        self._task = asyncio.create_task(self._read_loop(self._r))

    async def _send(self, msg):
        data = json.dumps(msg).encode() + b"\n"
        async with self._lock:
            w = self._w
            if w is None:
                raise BleError("BLE bridge connection lost", self.addr, E_LINK)
            w.write(data)
            await w.drain()

    async def _read_loop(self, r):
        try:
            while True:
                line = await r.readline()
                if not line:
                    break
                msg = json.loads(line)
                if "id" in msg:
                    waiter = self._waiting.pop(msg["id"], None)
                    if waiter is not None:
                        waiter.reply = msg
                        waiter.event.set()
                elif msg.get("ev") == "value":
                    await self._value(msg)
                elif msg.get("ev") == "down":
                    self._down(msg.get("reason"))
        except (OSError, ValueError):
            pass
        finally:
            self._lost()

    async def _value(self, msg):
        u = msg["u"]
        cb = self._callbacks.get(u)
        if cb is not None:
            try:
                cb(u, unhexlify(msg["d"]))
            except Exception as e:
                print("ble callback 0x%04X: %s" % (u, type(e).__name__))
        if "n" in msg:  # an indication: confirmed only now
            try:
                await self._send({"op": "confirm", "n": msg["n"]})
            except (OSError, BleError):
                pass

    def _down(self, reason):
        was = self._link
        self._link = False
        callback = self._on_disconnect
        self._on_disconnect = None
        self._callbacks = {}
        if was and callback is not None:
            try:
                callback(reason)
            except Exception:
                pass

    def _lost(self):
        w = self._w
        self._r = self._w = None
        if w is not None:
            try:
                w.close()
            except OSError:
                pass
        for waiter in self._waiting.values():
            waiter.event.set()  # no reply: the connection is gone
        self._waiting = {}
        self._down("bridge connection lost")

    async def _call(self, op, timeout_ms, **args):
        await self._open()
        n = self._next
        self._next += 1
        waiter = _Waiter()
        self._waiting[n] = waiter
        args["op"] = op
        args["id"] = n
        try:
            await self._send(args)
            await asyncio.wait_for(waiter.event.wait(), timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise BleError("%s: no answer from the BLE bridge" % op, self.addr, E_TIMEOUT)
        finally:
            self._waiting.pop(n, None)
        reply = waiter.reply
        if reply is None:
            raise BleError("BLE bridge connection lost during %s" % op, self.addr, E_LINK)
        if not reply.get("ok"):
            raise BleError(reply.get("msg") or op, self.addr, reply.get("code") or "ble_error")
        return reply

    # --- the adapter interface -----------------------------------------------------------
    async def connect(self, addr, passkey=None, on_disconnect=None):
        self.addr = addr
        reply = await self._call("connect", self.connect_ms, addr=addr, passkey=passkey)
        self._chars = {}
        for u, props in reply["chars"]:
            self._chars[u] = props
        self._callbacks = {}
        self._on_disconnect = on_disconnect
        self._link = True

    async def disconnect(self):
        if not self._link:
            return
        self._on_disconnect = None
        try:
            await self._call("disconnect", self.op_ms)
        except BleError:
            pass
        self._link = False
        self._callbacks = {}

    def has(self, uuid16):
        return self._link and uuid16 in self._chars

    def can_write(self, uuid16):
        return self.has(uuid16) and bool(self._chars[uuid16] & (_WRITE | _WRITE_NO_RESPONSE))

    def _need_link(self):
        if not self._link:
            raise BleError("not connected", self.addr, E_LINK)

    async def read(self, uuid16):
        self._need_link()
        reply = await self._call("read", self.op_ms, u=uuid16)
        return unhexlify(reply["d"])

    async def write(self, uuid16, data, response=True):
        self._need_link()
        await self._call("write", self.op_ms, u=uuid16, d=hexlify(bytes(data)).decode(),
                         response=bool(response))

    async def subscribe(self, uuid16, callback, indicate=False):
        self._need_link()
        self._callbacks[uuid16] = callback
        await self._call("subscribe", self.op_ms, u=uuid16, indicate=bool(indicate))
