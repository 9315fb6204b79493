"""The bumble instrument simulators (gateway/sim/ble_*.py) answer like the
real instruments: Device Information, Battery, Current Time (writable only
where the device allows it), a bond before any measurement, and the glucose
meter's Record Access Control Point with the Glucose Service's response
codes. Driven through the gateway's bumble adapter over virtual controllers
(real ATT/GATT/SMP), so a simulator bug cannot hide behind the session.

CPython only (bumble)."""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from bumble.link import LocalLink

from device_drivers.common_chars import decode_current_time, encode_current_time
from device_drivers.glucose import decode_measurement, decode_racp
from gateway.host.ble_bumble import BumbleCentral, GattError
from gateway.sim.ble_common import SimInstrument, virtual_device
from gateway.sim.ble_glucometer import BleGlucometer
from gateway.sim.ble_oximeter import BleOximeter
from gateway.sim.ble_scale import BleScale
from gateway.sim.ble_thermometer import BleThermometer
from tests.gateway.test_ble_session import run

ADDR = "C4:7C:8D:6A:00:61"
RACP = 0x2A52
M = 0x2A18


@asynccontextmanager
async def linked(make: Callable[[Any], SimInstrument]) -> AsyncIterator[
        tuple[Any, BumbleCentral]]:
    link = LocalLink()
    instrument = make(virtual_device(link, ADDR, "instrument"))
    central = BumbleCentral(virtual_device(link, "F0:1D:00:00:00:03", "gw"), connect_timeout=2.0)
    await instrument.start()
    try:
        await central.connect(ADDR)
        yield instrument, central
    finally:
        await central.disconnect()
        await instrument.stop()
        await central.device.power_off()
        await asyncio.sleep(0)


@pytest.mark.parametrize("make, measurement, clock_writable", [
    (lambda d: BleGlucometer(d, clock_offset_s=-86400), 0x2A18, True),
    (lambda d: BleThermometer(d, clock_offset_s=-86400), 0x2A1C, True),
    (lambda d: BleOximeter(d, clock_offset_s=-86400), 0x2A5E, False),
    (lambda d: BleScale(d, clock_offset_s=-86400, clock_writable=False), 0x2A9D, False),
])
def test_every_simulator_has_identity_battery_and_its_own_clock(
        make: Callable[[Any], SimInstrument], measurement: int, clock_writable: bool) -> None:
    async def scenario() -> None:
        async with linked(make) as (instrument, central):
            identity = await central.read_identity()
            assert identity["serial"] == instrument.serial
            assert identity["model"] == instrument.model
            assert identity["mfr"] == instrument.manufacturer and identity["firmware"]
            assert await central.read_battery() == instrument.battery
            assert central.has(measurement) and not central.can_write(measurement)
            ct = decode_current_time(await central.read(0x2A2B))
            shown = calendar.timegm((*ct["timestamp"], 0, 0, 0))
            assert abs(shown - (time.time() - 86400)) < 3  # a day behind
            assert central.can_write(0x2A2B) is clock_writable
            value = encode_current_time(tuple(time.gmtime())[:6], 1, 0, 0)
            if clock_writable:
                await central.write(0x2A2B, value)
                assert abs(instrument.clock_offset_s) < 2 and instrument.clock_writes == 1
            else:
                with pytest.raises(GattError):
                    await central.write(0x2A2B, value)
                assert instrument.clock_offset_s == -86400

    run(scenario)


class Meter:
    """A central driving the glucometer's RACP by hand."""

    def __init__(self, central: BumbleCentral) -> None:
        self.central = central
        self.got: list[tuple[int, bytes]] = []
        self.answer = asyncio.Event()

    def on(self, uuid16: int, data: bytes) -> None:
        self.got.append((uuid16, data))
        if uuid16 == RACP:
            self.answer.set()

    async def ask(self, request: str) -> tuple[list[int], dict[str, Any]]:
        """Write an RACP request; (sequence numbers notified, the RACP answer)."""
        self.got.clear()
        self.answer.clear()
        await self.central.write(RACP, bytes.fromhex(request))
        await asyncio.wait_for(self.answer.wait(), 2.0)
        seqs = [decode_measurement(d)["sequence"] for u, d in self.got if u == M]
        return seqs, decode_racp(self.got[-1][1])


def response(request_opcode: int, code: int) -> dict[str, Any]:
    names = {1: "success", 2: "op_code_not_supported", 3: "invalid_operator",
             4: "operator_not_supported", 5: "invalid_operand", 6: "no_records_found",
             9: "operand_not_supported"}
    return {"opcode": 6, "request_opcode": request_opcode, "response_code": code,
            "response": names[code]}


def test_glucometer_answers_racp_requests_with_the_glucose_service_codes() -> None:
    async def scenario() -> None:
        async with linked(lambda d: BleGlucometer(d)) as (g, central):
            g.add_records(10)
            with pytest.raises(GattError) as caught:  # RACP indications not enabled
                await central.write(RACP, bytes.fromhex("0101"))
            assert caught.value.code == 0x81
            m = Meter(central)
            await central.subscribe(M, m.on)
            await central.subscribe(RACP, m.on, indicate=True)

            assert await m.ask("0401") == ([], {"opcode": 5, "count": 10})
            assert await m.ask("0403010800") == ([], {"opcode": 5, "count": 3})
            assert await m.ask("0101") == (list(range(1, 11)), response(1, 1))
            assert await m.ask("0105") == ([1], response(1, 1))  # first
            assert await m.ask("0106") == ([10], response(1, 1))  # last
            assert await m.ask("01040103000500") == ([3, 4, 5], response(1, 1))
            assert await m.ask("0102010200") == ([1, 2], response(1, 1))
            assert await m.ask("0103010b00") == ([], response(1, 6))
            assert await m.ask("0100") == ([], response(1, 3))  # null operator
            assert await m.ask("0107") == ([], response(1, 4))
            assert await m.ask("0103") == ([], response(1, 5))  # operand missing
            assert await m.ask("01040105000300") == ([], response(1, 5))  # 5..3
            assert await m.ask("010302e907") == ([], response(1, 9))  # by user time
            assert await m.ask("0901") == ([], response(9, 2))
            assert await m.ask("0202010200") == ([], response(2, 1))  # delete <= 2
            assert await m.ask("0401") == ([], {"opcode": 5, "count": 8})
            assert await m.ask("0101") == (list(range(3, 11)), response(1, 1))

    run(scenario)


def test_glucometer_abort_and_procedure_already_in_progress() -> None:
    async def scenario() -> None:
        async with linked(lambda d: BleGlucometer(d)) as (g, central):
            g.add_records(50)
            g.pace_s = 0.01  # a slow meter
            m = Meter(central)
            await central.subscribe(M, m.on)
            await central.subscribe(RACP, m.on, indicate=True)
            await central.write(RACP, bytes.fromhex("0101"))
            while len(m.got) < 3:
                await asyncio.sleep(0.005)
            with pytest.raises(GattError) as caught:
                await central.write(RACP, bytes.fromhex("0401"))
            assert caught.value.code == 0x80  # procedure already in progress
            await central.write(RACP, bytes.fromhex("0300"))
            await asyncio.wait_for(m.answer.wait(), 2.0)
            racp = [decode_racp(d) for u, d in m.got if u == RACP]
            assert racp == [response(3, 1)]  # the abort's answer, no report end
            assert 3 <= len(m.got) - 1 < 50 and g.aborts == 1
            assert await m.ask("0401") == ([], {"opcode": 5, "count": 50})  # free again

    run(scenario)


def test_glucometer_drop_after_and_growth_are_one_shot() -> None:
    async def scenario() -> None:
        async with linked(lambda d: BleGlucometer(d)) as (g, central):
            g.add_records(5)
            g.grow_during_report = 2
            m = Meter(central)
            await central.subscribe(M, m.on)
            await central.subscribe(RACP, m.on, indicate=True)
            assert await m.ask("0101") == ([1, 2, 3, 4, 5], response(1, 1))
            assert await m.ask("0101") == (list(range(1, 8)), response(1, 1))
            g.drop_after = 2
            m.got.clear()
            await central.write(RACP, bytes.fromhex("0101"))
            for _ in range(100):
                if not central.connected:
                    break
                await asyncio.sleep(0.01)
            assert not central.connected and len(m.got) == 2 and g.drop_after is None

    run(scenario)
