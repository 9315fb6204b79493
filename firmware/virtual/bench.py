"""The virtual gateway's bench: the instruments on the table and the radio.

One CPython process (`python -m firmware.virtual.bench`) hosts

- BLE instrument simulators: bumble GATT servers (gateway/sim/ble_*.py) on
  virtual controllers joined by one in-process LocalLink;
- the BLE bridge: the MicroPython Unix port has no `bluetooth` module, so
  the firmware's BLE adapter (firmware/board/unix_ble.py) sends the adapter
  calls (connect, read, write, subscribe) here over TCP, and a bumble central
  (gateway/host/ble_bumble.py) on its own virtual controller does them over
  real HCI/L2CAP/ATT/GATT/SMP. An indication reaches the instrument's
  confirmation only after the gateway has answered `confirm`, i.e. after the
  firmware's callback journaled it. When the gateway's TCP connection drops
  (the process died: a power cut) the BLE link is dropped too;
- serial instrument simulators on pseudo-terminals (gateway/sim/
  serial_instruments.py): the gateway opens the pty path as its port.

The same TCP port takes control requests from the tests (or a person with
BenchClient): add an instrument, make it measure, give it records, read its
state. JSON lines; see `Bench.control` for the operations.

One central per instrument (its gateway-side address derived from the
instrument's): a board has one radio with several links; here each link has
its own virtual controller, and its bonds live as long as the bench, as a
board's bonds live in its flash.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bumble import att
from bumble.link import LocalLink

from gateway import ble_session
from gateway.ble_session import BleError
from gateway.host.ble_bumble import BumbleCentral
from gateway.sim.ble_common import NotSubscribed, SimError, SimInstrument, virtual_device

log = logging.getLogger("ummc.bench")

CONFIRM_TIMEOUT_S = 10.0
BLE_PROFILES = ("blood_pressure", "glucose", "thermometer", "pulse_oximeter", "weight_scale")
SERIAL_PROFILES = ("ecg_cyton", "onetouch", "astm")


class BenchError(Exception):
    """A control request the bench cannot do; `code` names why."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code


def _u16(uuid: Any) -> int | None:
    b = bytes(uuid.uuid_bytes)
    return int.from_bytes(b, "little") if len(b) == 2 else None


@dataclass
class Instrument:
    addr: str
    kind: str
    profile: str
    sim: Any
    port: str | None = None
    confirmed: list[str] = field(default_factory=list)  # measurements confirmed (hex)
    unconfirmed: int = 0  # measurements whose confirmation never came

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"addr": self.addr, "kind": self.kind, "profile": self.profile}
        if self.port:
            d["port"] = self.port
        return d


def _ble_sim(profile: str, device: Any, addr: str, opts: dict[str, Any]) -> SimInstrument:
    common = {k: opts[k] for k in ("serial", "model", "passkey", "battery", "clock_writable")
              if k in opts}
    if profile == "blood_pressure":
        from gateway.sim.ble_cuff import BleCuff
        from gateway.sim.cuff import SimulatedCuff

        cuff = SimulatedCuff(addr, model=common.pop("model", "UA-651BLE"),
                             serial=common.pop("serial", "5140200001"),
                             clock_offset_s=opts.get("clock_offset_s", 0.0))
        return BleCuff(device, cuff, **common)
    if profile == "glucose":
        from gateway.sim.ble_glucometer import BleGlucometer

        return BleGlucometer(device, clock_offset_s=opts.get("clock_offset_s", 0.0), **common)
    if profile == "thermometer":
        from gateway.sim.ble_thermometer import BleThermometer

        return BleThermometer(device, clock_offset_s=opts.get("clock_offset_s", 0.0), **common)
    if profile == "pulse_oximeter":
        from gateway.sim.ble_oximeter import BleOximeter

        return BleOximeter(device, clock_offset_s=opts.get("clock_offset_s", 0.0), **common)
    from gateway.sim.ble_scale import BleScale

    return BleScale(device, clock_offset_s=opts.get("clock_offset_s", 0.0), **common)


def _serial_sim(profile: str, opts: dict[str, Any]) -> Any:
    from gateway.sim import serial_instruments as si

    if profile == "ecg_cyton":
        return si.CytonSim(bpm=opts.get("bpm", 72.0), speed=opts.get("speed", 1.0))
    n = int(opts.get("records", 10))
    now = time.time()
    stamps = [time.gmtime(int(now - (n - i) * 3600)) for i in range(n)]
    if profile == "onetouch":
        readings = [{"timestamp": tuple(t[:6]), "glucose": 90 + i % 60}
                    for i, t in enumerate(stamps)]
        return si.OneTouchSim(readings, serial=opts.get("serial", "ZDP0012AY"))
    results = [(tuple(t[:6]), float(90 + i % 60), "mg/dL", "Glucose")
               for i, t in enumerate(stamps)]
    return si.AstmMeterSim(results, serial=opts.get("serial", "7390-1234567"))


class Bench:
    """The simulators and the bridge, in one asyncio loop."""

    def __init__(self) -> None:
        self.link = LocalLink()
        self.instruments: dict[str, Instrument] = {}
        self.centrals: dict[str, tuple[BumbleCentral, list[GatewayLink | None]]] = {}
        self.server: asyncio.Server | None = None
        self.stopped = asyncio.Event()
        self._serial_n = 0

    # --- instruments ----------------------------------------------------------
    async def add(self, profile: str, addr: str | None = None,
                  options: dict[str, Any] | None = None) -> Instrument:
        opts = dict(options or {})
        if profile in BLE_PROFILES:
            if not addr:
                raise BenchError("bad_request", "a BLE instrument needs an address")
            addr = addr.upper()
            if addr in self.instruments:
                raise BenchError("exists", f"{addr} is already on the bench")
            device = virtual_device(self.link, addr, f"{profile}-{addr[-5:]}")
            sim: Any = _ble_sim(profile, device, addr, opts)
            if profile == "glucose" and opts.get("records"):
                sim.add_records(int(opts["records"]), context_every=3)
            await sim.start()
            inst = Instrument(addr, "ble", profile, sim)
        elif profile in SERIAL_PROFILES:
            self._serial_n += 1
            sim = _serial_sim(profile, opts).start()
            addr = addr or f"{profile}-{self._serial_n}"
            if addr in self.instruments:
                sim.stop()
                raise BenchError("exists", f"{addr} is already on the bench")
            inst = Instrument(addr, "serial", profile, sim, port=sim.port)
        else:
            raise BenchError("bad_request", f"unknown profile {profile!r}")
        self.instruments[addr] = inst
        log.info("added %s %s", profile, addr)
        return inst

    def _inst(self, addr: str) -> Instrument:
        inst = self.instruments.get(addr.upper()) or self.instruments.get(addr)
        if inst is None:
            raise BenchError("unknown", f"no instrument {addr} on the bench")
        return inst

    async def measure(self, inst: Instrument, n: int, pause_s: float) -> dict[str, Any]:
        sim = inst.sim
        take: Callable[[], Any] = {
            "blood_pressure": lambda: sim.take_measurement(),
            "thermometer": lambda: sim.take_measurement(),
            "pulse_oximeter": lambda: sim.spot_check(),
            "weight_scale": lambda: sim.weigh(),
        }.get(inst.profile) or (lambda: None)
        if inst.profile not in ("blood_pressure", "thermometer", "pulse_oximeter",
                                "weight_scale"):
            raise BenchError("bad_request", f"{inst.profile} does not measure on demand")
        sent: list[str] = []
        failed = 0
        for i in range(n):
            try:
                data = await take()
                sent.append(data.hex())
                inst.confirmed.append(data.hex())
            except NotSubscribed as e:
                if not sent and not failed:
                    raise BenchError("not_subscribed", str(e)) from e
                failed += 1
                inst.unconfirmed += 1
            except SimError:
                failed += 1
                inst.unconfirmed += 1
            if pause_s and i + 1 < n:
                await asyncio.sleep(pause_s)
        return {"sent": sent, "failed": failed}

    def stats(self, inst: Instrument) -> dict[str, Any]:
        sim = inst.sim
        out: dict[str, Any] = {"addr": inst.addr, "profile": inst.profile}
        if inst.kind == "ble":
            out.update(clock_offset_s=sim.clock_offset_s, clock_writes=sim.clock_writes,
                       confirmed=len(inst.confirmed), unconfirmed=inst.unconfirmed,
                       connected=bool(sim.device.connections),
                       subscribed=any(bool(s) for s in sim._subscribed.values()))
            for k in ("reports", "records_sent", "aborts", "next_sequence"):
                if hasattr(sim, k):
                    out[k] = getattr(sim, k)
            if hasattr(sim, "records"):
                out["records"] = len(sim.records)
        else:
            out.update(port=inst.port, received=len(sim.received))
            for k in ("starts", "sessions", "commands"):
                if hasattr(sim, k):
                    v = getattr(sim, k)
                    out[k] = len(v) if isinstance(v, list) else v
        return out

    async def control(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Operations:
          add {profile, addr?, options?}      -> {instrument}; options: serial,
              model, passkey, battery, clock_offset_s, clock_writable; records
              (glucose, onetouch, astm: stored readings); bpm, speed (ecg_cyton)
          list {}                             -> {instruments}
          measure {addr, n=1, pause_s=0}      -> {sent: [hex], failed}
          add_records {addr, n, interval_s?, context_every?}  (glucose)
          set {addr, attrs: {name: value}}    simulator switches (pace_s, ...)
          stats {addr}                        -> what the instrument saw
          confirmed {addr}                    -> {confirmed: [hex]} measurements
          drop {addr}                         the instrument drops its links
          stop {}                             the bench ends
        """
        op = msg.get("op")
        if op == "add":
            inst = await self.add(msg["profile"], msg.get("addr"), msg.get("options"))
            return {"instrument": inst.describe()}
        if op == "list":
            return {"instruments": [i.describe() for i in self.instruments.values()]}
        if op == "stop":
            self.stopped.set()
            return {}
        inst = self._inst(str(msg.get("addr")))
        if op == "measure":
            return await self.measure(inst, int(msg.get("n", 1)), float(msg.get("pause_s", 0)))
        if op == "add_records":
            if inst.profile != "glucose":
                raise BenchError("bad_request", "only a glucose meter stores records")
            recs = inst.sim.add_records(int(msg["n"]), interval_s=msg.get("interval_s", 3600.0),
                                        context_every=int(msg.get("context_every", 0)))
            return {"sequences": [r.sequence for r in recs]}
        if op == "set":
            for k, v in dict(msg.get("attrs") or {}).items():
                if not hasattr(inst.sim, k):
                    raise BenchError("bad_request", f"{inst.profile} has no switch {k!r}")
                setattr(inst.sim, k, v)
            return self.stats(inst)
        if op == "stats":
            return self.stats(inst)
        if op == "confirmed":
            return {"confirmed": list(inst.confirmed), "unconfirmed": inst.unconfirmed}
        if op == "drop":
            await inst.sim.drop_links()
            return {}
        raise BenchError("bad_request", f"unknown operation {op!r}")

    # --- the bridge -----------------------------------------------------------
    def central(self, addr: str) -> tuple[BumbleCentral, list[GatewayLink | None]]:
        """The bumble central that links to instrument `addr` (made once)."""
        entry = self.centrals.get(addr)
        if entry is None:
            gw_addr = "F0:1D:" + addr[6:]
            device = virtual_device(self.link, gw_addr, f"ummc-gw-{addr[-5:]}")
            entry = (BumbleCentral(device, connect_timeout=5.0), [None])
            self.centrals[addr] = entry
        return entry

    async def serve(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._client, host, port)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = GatewayLink(self, writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    link.send({"ok": False, "code": "bad_request", "msg": "not JSON"})
                    continue
                if msg.get("op") == "confirm":
                    link.confirm(int(msg.get("n", 0)))
                    continue
                link.spawn(link.handle(msg))
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await link.close()
            with contextlib.suppress(Exception):
                writer.close()

    async def shutdown(self) -> None:
        if self.server is not None:
            self.server.close()
        for central, _owner in self.centrals.values():
            with contextlib.suppress(Exception):
                await central.disconnect()
        for inst in self.instruments.values():
            with contextlib.suppress(Exception):
                if inst.kind == "ble":
                    await inst.sim.stop()
                else:
                    inst.sim.stop()


class GatewayLink:
    """One TCP connection: the gateway's BLE adapter for one instrument (or
    a controller's requests)."""

    def __init__(self, bench: Bench, writer: asyncio.StreamWriter) -> None:
        self.bench = bench
        self.writer = writer
        self.central: BumbleCentral | None = None
        self.owner: list[GatewayLink | None] | None = None
        self.handles: dict[int, int] = {}  # value handle -> uuid16
        self.subscribed: set[int] = set()
        self._confirms: dict[int, asyncio.Future[None]] = {}
        self._n = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run coro as a task, referenced until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send(self, msg: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(json.dumps(msg).encode() + b"\n")

    def confirm(self, n: int) -> None:
        fut = self._confirms.pop(n, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def handle(self, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        try:
            op = msg.get("op")
            if op in ("connect", "disconnect", "read", "write", "subscribe"):
                result = await getattr(self, "_" + op)(msg)
            else:
                result = await self.bench.control(msg)
            reply = {"ok": True, **result}
        except BleError as e:
            reply = {"ok": False, "code": e.error_code, "msg": str(e)}
        except BenchError as e:
            reply = {"ok": False, "code": e.code, "msg": str(e)}
        except (KeyError, TypeError, ValueError) as e:
            reply = {"ok": False, "code": "bad_request", "msg": f"{type(e).__name__}: {e}"}
        except Exception as e:  # never lets one request end the bench
            log.exception("request %s failed", msg.get("op"))
            reply = {"ok": False, "code": ble_session.E_INTERNAL,
                     "msg": f"{type(e).__name__}: {e}"}
        if rid is not None:
            reply["id"] = rid
        self.send(reply)

    # --- adapter calls --------------------------------------------------------
    async def _connect(self, msg: dict[str, Any]) -> dict[str, Any]:
        addr = str(msg["addr"]).upper()
        if addr not in self.bench.instruments:
            raise BleError("not advertising", addr, ble_session.E_NOT_FOUND)
        central, owner = self.bench.central(addr)
        if owner[0] is not None and owner[0] is not self:
            await owner[0].release()  # a stale link of a gateway that died
        owner[0] = self
        self.central, self.owner = central, owner
        passkey = msg.get("passkey")
        await central.connect(addr, passkey=int(passkey) if passkey is not None else None,
                              on_disconnect=self._on_down)
        self.handles = {}
        self.subscribed = set()
        chars: list[list[int]] = []
        assert central.peer is not None
        for service in central.peer.services:
            for c in service.characteristics:
                u = _u16(c.uuid)
                if u is not None:
                    self.handles[c.handle] = u
                    chars.append([u, int(c.properties)])
        self._hook_indications(central)
        return {"chars": chars}

    def _hook_indications(self, central: BumbleCentral) -> None:
        # bumble confirms an indication as soon as its subscribers returned;
        # here the confirmation waits for the gateway's `confirm` instead.
        assert central.connection is not None
        client = central.connection.gatt_client
        loop = asyncio.get_running_loop()

        def on_indication(indication: att.ATT_Handle_Value_Indication) -> None:
            handle = indication.attribute_handle
            client.cache_value(handle, indication.attribute_value)
            u = self.handles.get(handle)
            if u is None or u not in self.subscribed:
                client.send_confirmation(att.ATT_Handle_Value_Confirmation())
                return
            self._n += 1
            n = self._n
            fut: asyncio.Future[None] = loop.create_future()
            self._confirms[n] = fut
            self.send({"ev": "value", "u": u, "d": bytes(indication.attribute_value).hex(),
                       "n": n})

            async def confirm_later() -> None:
                try:
                    await asyncio.wait_for(fut, CONFIRM_TIMEOUT_S)
                except (TimeoutError, asyncio.CancelledError):
                    return  # never confirmed: the instrument keeps it unconfirmed
                if central.connection is not None and central.connection.gatt_client is client:
                    client.send_confirmation(att.ATT_Handle_Value_Confirmation())

            self.spawn(confirm_later())

        client.on_att_handle_value_indication = on_indication  # type: ignore[method-assign]

    def _on_down(self, reason: object) -> None:
        for fut in self._confirms.values():
            if not fut.done():
                fut.cancel()
        self._confirms.clear()
        self.send({"ev": "down", "reason": str(reason)})

    async def _disconnect(self, _msg: dict[str, Any]) -> dict[str, Any]:
        if self.central is not None:
            self.central._on_disconnect = None
            await self.central.disconnect()
        return {}

    def _need(self) -> BumbleCentral:
        if self.central is None or not self.central.connected:
            raise BleError("not connected", None, ble_session.E_LINK)
        return self.central

    async def _read(self, msg: dict[str, Any]) -> dict[str, Any]:
        data = await self._need().read(int(msg["u"]))
        return {"d": data.hex()}

    async def _write(self, msg: dict[str, Any]) -> dict[str, Any]:
        await self._need().write(int(msg["u"]), bytes.fromhex(msg["d"]),
                                 bool(msg.get("response", True)))
        return {}

    async def _subscribe(self, msg: dict[str, Any]) -> dict[str, Any]:
        u = int(msg["u"])
        central = self._need()

        def on_value(uuid16: int, data: bytes) -> None:  # notifications
            self.send({"ev": "value", "u": uuid16, "d": data.hex()})

        self.subscribed.add(u)
        await central.subscribe(u, on_value, bool(msg.get("indicate")))
        return {}

    async def release(self) -> None:
        """Give up the link (this gateway's connection is gone)."""
        central = self.central
        self.central = None
        for fut in self._confirms.values():
            if not fut.done():
                fut.cancel()
        self._confirms.clear()
        if central is not None:
            central._on_disconnect = None
            await central.disconnect()
        if self.owner is not None and self.owner[0] is self:
            self.owner[0] = None

    async def close(self) -> None:
        await self.release()


# --- running it -------------------------------------------------------------------

async def run_bench(host: str, port: int, spec: list[dict[str, Any]],
                    ready: Path | None = None) -> None:
    bench = Bench()
    bound = await bench.serve(host, port)
    for item in spec:
        await bench.add(item["profile"], item.get("addr"), item.get("options"))
    info = {"bridge": f"{host}:{bound}",
            "instruments": [i.describe() for i in bench.instruments.values()]}
    print(json.dumps(info), flush=True)
    if ready is not None:
        tmp = ready.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(ready)
    try:
        await bench.stopped.wait()
    finally:
        await bench.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m firmware.virtual.bench",
                                description="BLE bridge and instrument simulators for the "
                                            "virtual gateway (docs/virtual_gateway.md)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    p.add_argument("--spec", help="JSON file: [{profile, addr?, options?}, ...] to start with")
    p.add_argument("--ready", help="write the bench's address and instruments here once up")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    spec = json.loads(Path(args.spec).read_text()) if args.spec else []
    try:
        asyncio.run(run_bench(args.host, args.port, spec,
                              Path(args.ready) if args.ready else None))
    except KeyboardInterrupt:
        pass
    return 0


# --- the client side (tests, a person) ---------------------------------------------

class BenchClient:
    """Blocking control connection to a bench (JSON lines over TCP)."""

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.file = self.sock.makefile("rwb")
        self._id = 0

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        self._id += 1
        self.file.write(json.dumps({"op": op, "id": self._id, **args}).encode() + b"\n")
        self.file.flush()
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("the bench closed the connection")
            reply: dict[str, Any] = json.loads(line)
            if reply.get("id") == self._id:
                break
        if not reply.get("ok"):
            raise BenchError(str(reply.get("code")), str(reply.get("msg")))
        return reply

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()


class BenchProcess:
    """The bench as its own process (what tests and the launcher start)."""

    def __init__(self, workdir: Path, spec: list[dict[str, Any]] | None = None) -> None:
        self.workdir = workdir
        self.spec = spec or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.info: dict[str, Any] = {}
        self.log_path = workdir / "bench.log"

    def start(self, timeout: float = 30.0) -> BenchProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ready = self.workdir / "bench.ready"
        ready.unlink(missing_ok=True)
        spec = self.workdir / "bench.json"
        spec.write_text(json.dumps(self.spec))
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "firmware.virtual.bench", "--spec", str(spec),
                 "--ready", str(ready)], stdout=log_file, stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2], start_new_session=True)
        deadline = time.monotonic() + timeout
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bench did not start: " + self.log())
            time.sleep(0.05)
        self.info = json.loads(ready.read_text())
        self.address = self.info["bridge"]
        return self

    def client(self) -> BenchClient:
        return BenchClient(self.address)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(Exception):
            c = self.client()
            c.call("stop")
            c.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


if __name__ == "__main__":
    sys.exit(main())
