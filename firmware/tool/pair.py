"""`ummc-gateway pair`: guided pairing of an instrument with a gateway.

1. Scan for health instruments (services 0x1810 blood pressure, 0x1808
   glucose, 0x1809 thermometer, 0x1822 pulse oximeter, 0x181D weight
   scale). On a board the board's own radio scans (aioble, through
   mpremote); for a virtual gateway this computer scans with bumble over the
   transport given by --ble (a USB dongle `usb:0`, or in tests a virtual
   controller on an in-process link beside the instrument simulators).
2. Choose: --addr, or a number typed by the technician from the list.
3. PIN: --pin, or typed (the 6 digits the instrument shows; empty = none).
4. When this computer scanned, it also pairs once with that PIN and reads
   the instrument's identity, so a wrong PIN is caught here (exit 8), not
   days later in the field. It never subscribes to measurements: a real
   cuff would hand over (and forget) its stored readings.
5. The instrument goes into the gateway's config (`instruments`, validated,
   version + 1, written atomically), and the tool prints what the gateway
   will report to the fleet in its next birth message.
`--serial PORT --profile P` records a serial instrument the same way, and
`--remove ADDR` unpairs one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from firmware.tool import boardscripts as bs
from firmware.tool import configio
from firmware.tool.console import Console
from firmware.tool.errors import Exit, ToolError
from firmware.tool.target import BoardTarget, Target
from gateway.config import SERIAL_PROFILES

SERVICES = {0x1810: "blood_pressure", 0x1808: "glucose", 0x1809: "thermometer",
            0x1822: "pulse_oximeter", 0x181D: "weight_scale"}
TOOL_ADDRESS = "F0:55:4D:4D:43:01"  # random static address of this computer's BLE side

BleFactory = Callable[[], AbstractAsyncContextManager[Any]]  # yields a bumble Device


@dataclass
class Found:
    addr: str
    name: str
    profile: str
    rssi: int


def ble_from_spec(spec: str) -> BleFactory:
    """A bumble Device on a transport spec (`usb:0`, `tcp-client:HOST:PORT`...)."""

    @asynccontextmanager
    async def factory() -> AsyncIterator[Any]:
        from bumble.device import Device
        from bumble.hci import Address
        from bumble.transport import open_transport

        try:
            transport = await open_transport(spec)
        except Exception as e:  # bumble raises many kinds for a missing dongle
            raise ToolError(Exit.DEVICE_NOT_FOUND, "ble_missing", spec=spec,
                            detail=str(e)[:160]) from None
        async with transport:
            device = Device.with_hci("ummc-tool", Address(TOOL_ADDRESS), transport.source,
                                     transport.sink)
            await device.power_on()
            try:
                yield device
            finally:
                await device.power_off()

    return factory


async def scan_bumble(device: Any, seconds: float, console: Console,
                      want: str | None = None) -> list[Found]:
    from bumble.core import UUID, AdvertisingData

    by_uuid = {UUID.from_16_bits(k): v for k, v in SERVICES.items()}
    found: dict[str, Found] = {}
    done = asyncio.Event()

    def on_advertisement(adv: Any) -> None:
        if not adv.is_connectable:
            return
        uuids = (adv.data.get(AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS)
                 or adv.data.get(AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS)
                 or [])
        profile = next((by_uuid[u] for u in uuids if u in by_uuid), None)
        if profile is None:
            return
        addr = adv.address.to_string(with_type_qualifier=False).upper()
        name = (adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME)
                or adv.data.get(AdvertisingData.SHORTENED_LOCAL_NAME) or "")
        found[addr] = Found(addr, str(name), profile, int(adv.rssi))
        if want is not None and addr == want:
            done.set()

    steps = max(1, int(seconds * 4))
    bar = console.progress("scanning", steps)
    if not device.powered_on:
        await device.power_on()
    device.on(device.EVENT_ADVERTISEMENT, on_advertisement)
    await device.start_scanning()
    try:
        for _ in range(steps):
            try:
                await asyncio.wait_for(done.wait(), seconds / steps)
                break
            except TimeoutError:
                bar.advance()
    finally:
        await device.stop_scanning()
        device.remove_listener(device.EVENT_ADVERTISEMENT, on_advertisement)
    bar.finish()
    return sorted(found.values(), key=lambda f: (-f.rssi, f.addr))


def scan_board(target: BoardTarget, seconds: float, console: Console) -> list[Found]:
    console.say("scanning_board", seconds=seconds)
    result = target.exec(bs.ble_scan(seconds), timeout=seconds + 30, fail=Exit.PAIRING_FAILED,
                         key="board_scan_failed")
    return sorted((Found(str(r["addr"]), str(r.get("name") or ""), str(r["profile"]),
                         int(r.get("rssi") or 0)) for r in result),
                  key=lambda f: (-f.rssi, f.addr))


def choose(found: list[Found], console: Console, addr: str | None) -> Found:
    if not found:
        raise ToolError(Exit.PAIRING_FAILED, "none_found")
    if addr is not None:
        for f in found:
            if f.addr == addr.upper():
                return f
        raise ToolError(Exit.PAIRING_FAILED, "addr_not_found", addr=addr)
    console.say("found_list", n=len(found))
    for i, f in enumerate(found, 1):
        console.raw(f"  {i}) {f.addr}  {f.name or '-'}  {console.t('profile_' + f.profile)}"
                    f"  {f.rssi} dBm")
    answer = console.ask("ask_choice", n=len(found))
    if not answer.isdigit() or not 1 <= int(answer) <= len(found):
        raise ToolError(Exit.USAGE, "bad_choice", answer=answer, n=len(found))
    return found[int(answer) - 1]


def ask_pin(console: Console, pin: str | None, no_pin: bool) -> str | None:
    if no_pin:
        return None
    if pin is None:
        pin = console.ask("ask_pin")
    if pin == "":
        return None
    if len(pin) != 6 or not pin.isdigit():
        raise ToolError(Exit.USAGE, "bad_pin")
    return pin


async def test_pairing(device: Any, inst: Found, pin: str | None) -> dict[str, str]:
    """Pair once with the PIN and read Device Information; ToolError on failure."""
    from gateway.host.ble_bumble import BleError, BumbleCentral, PairingError

    central = BumbleCentral(device, passkey=int(pin) if pin else None, connect_timeout=10.0)
    try:
        await central.connect(inst.addr)
        return await central.read_identity()
    except PairingError as e:
        raise ToolError(Exit.PAIRING_FAILED, "pin_refused", addr=inst.addr,
                        detail=e.reason or str(e)) from None
    except BleError as e:
        raise ToolError(Exit.PAIRING_FAILED, "pair_error", addr=inst.addr,
                        detail=str(e)[:160]) from None
    finally:
        await central.disconnect()


def _with_instrument(doc: dict[str, Any], entry: dict[str, Any] | None,
                     remove: str | None = None) -> tuple[dict[str, Any], bool]:
    """A new document with `entry` added (or replacing the same address), or
    with `remove` taken out; and whether the address was there before."""
    key = (entry["addr"] if entry else remove or "").upper()
    insts = [dict(i) for i in doc.get("instruments") or [] if isinstance(i, dict)]
    before = [i for i in insts if str(i.get("addr", "")).upper() == key]
    insts = [i for i in insts if str(i.get("addr", "")).upper() != key]
    if entry is not None:
        insts.append(entry)
    new = dict(doc)
    new["instruments"] = insts
    new["version"] = configio.next_version(doc)
    return new, bool(before)


def _record(console: Console, target: Target, doc: dict[str, Any]) -> dict[str, Any]:
    cfg = configio.check(doc)
    configio.save(target, doc)
    return cfg


def _report(console: Console, cfg: dict[str, Any]) -> None:
    console.say("birth_preview")
    console.raw("    " + json.dumps({"cfg": cfg["version"],
                                     "instruments": configio.birth_instruments(cfg)}))


def run(console: Console, target: Target, *, ble: BleFactory | None, scan_seconds: float,
        addr: str | None, pin: str | None, no_pin: bool, test: bool, remove: str | None,
        serial: str | None, profile: str | None, name: str | None, baud: int | None,
        restart: bool) -> Exit:
    target.open(hold=True)
    try:
        doc, _ = configio.load(target)
        if remove is not None:
            new, was = _with_instrument(doc, None, remove=remove)
            if not was:
                raise ToolError(Exit.PAIRING_FAILED, "not_paired", addr=remove)
            cfg = _record(console, target, new)
            console.check("ok", "unpaired", addr=remove.upper(), version=cfg["version"])
        elif serial is not None:
            if profile not in SERIAL_PROFILES:
                raise ToolError(Exit.USAGE, "serial_profile", profiles=", ".join(SERIAL_PROFILES))
            entry = {"addr": name or serial, "kind": "serial", "profile": profile,
                     "port": serial, "name": name, "baud": baud}
            new, was = _with_instrument(doc, {k: v for k, v in entry.items() if v is not None})
            cfg = _record(console, target, new)
            console.check("ok", "paired_serial", addr=entry["addr"], port=serial,
                          profile=console.t("profile_" + str(profile)), version=cfg["version"])
        else:
            inst, chosen_pin, identity = _ble_steps(console, target, ble=ble,
                                                    scan_seconds=scan_seconds, addr=addr,
                                                    pin=pin, no_pin=no_pin, test=test)
            entry = {"addr": inst.addr, "kind": "ble", "profile": inst.profile,
                     "name": (inst.name or identity.get("model") or "")[:32] or None,
                     "passkey": chosen_pin}
            new, was = _with_instrument(doc, {k: v for k, v in entry.items() if v is not None})
            cfg = _record(console, target, new)
            console.check("ok", "paired_again" if was else "paired", addr=inst.addr,
                          profile=console.t("profile_" + inst.profile), version=cfg["version"])
            if identity:
                console.say("identity", model=identity.get("model", "?"),
                            serial=identity.get("serial", "?"))
    finally:
        target.close(restart=restart)
    _report(console, cfg)
    if target.kind == "virtual":
        console.say("virtual_restart_hint")
    elif restart:
        console.say("restarting")
    return Exit.OK


def _ble_steps(console: Console, target: Target, *, ble: BleFactory | None,
               scan_seconds: float, addr: str | None, pin: str | None, no_pin: bool,
               test: bool) -> tuple[Found, str | None, dict[str, str]]:
    if isinstance(target, BoardTarget) and ble is None:
        inst = choose(scan_board(target, scan_seconds, console), console, addr)
        chosen = ask_pin(console, pin, no_pin)
        console.say("board_pairs_later")
        return inst, chosen, {}
    if ble is None:
        raise ToolError(Exit.USAGE, "ble_needed")
    factory = ble

    async def steps() -> tuple[Found, str | None, dict[str, str]]:
        async with factory() as device:
            found = await scan_bumble(device, scan_seconds, console,
                                      want=addr.upper() if addr else None)
            inst = choose(found, console, addr)
            chosen = ask_pin(console, pin, no_pin)
            identity: dict[str, str] = {}
            if test:
                console.say("testing_pairing", addr=inst.addr)
                identity = await test_pairing(device, inst, chosen)
            return inst, chosen, identity

    return asyncio.run(steps())


__all__ = ["Found", "ble_from_spec", "run", "scan_bumble"]
