"""One cuff reading end to end over a real BLE stack: the bumble cuff
simulator (GATT server, bonded with SMP "Just Works") -> bumble central
adapter (gateway/host/ble_bumble.py) -> Gateway.on_value -> journal ->
uplink -> real Mosquitto -> fleet server ingest -> ack -> journal freed ->
API, which shows the serial, model and manufacturer the gateway read from
the cuff's Device Information service."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from bumble.link import LocalLink

from devharness.stack import FleetStack
from device_drivers.gatt import BLOOD_PRESSURE_MEASUREMENT, decode
from gateway.host.ble_bumble import BumbleCentral
from gateway.sim.ble_cuff import BleCuff, virtual_device
from gateway.sim.cuff import SimulatedCuff
from tests.integration.test_end_to_end import make_gateway, wait_async

CUFF_ADDR = "C4:7C:8D:6A:00:31"


def test_cuff_reading_over_ble_reaches_the_fleet_api(stack: FleetStack, tmp_path: Path) -> None:
    sim = SimulatedCuff(addr=CUFF_ADDR, model="UA-651BLE", serial="5140200031",
                        rng=random.Random(31), clock_offset_s=-120)
    taken_at = time.time()

    async def scenario() -> tuple[bytes, dict[str, str]]:
        core, uplink, indicator = make_gateway(stack, 0, tmp_path / "journal")
        task = asyncio.create_task(uplink.run())
        link = LocalLink()
        cuff = BleCuff(virtual_device(link, CUFF_ADDR, "UA-651BLE_0031"), sim,
                       manufacturer="A&D Medical")
        central = BumbleCentral(virtual_device(link, "F0:1D:00:00:00:31", "ummc-gw-e2e"),
                                connect_timeout=3.0)
        try:
            await cuff.start()
            await central.connect(CUFF_ADDR)
            assert central.new_bond and central.encrypted
            identity = await central.read_identity()
            await central.subscribe_blood_pressure(core.on_value)
            data = await cuff.take_measurement(taken_at)
            # confirmed => on_value already journaled it
            assert core.readings == 1 and ("captured", 1) in indicator.events
            await wait_async(lambda: core.journal.depth == 0)
            assert ("delivered", 1, []) in indicator.events
            return data, identity
        finally:
            await central.disconnect()
            await cuff.stop()
            await central.device.power_off()
            uplink.stop()
            await task

    data, identity = asyncio.run(scenario())
    assert identity["serial"] == "5140200031" and identity["model"] == "UA-651BLE"

    rows = stack.get("/readings", gateway=stack.gateways[0].gateway)
    assert len(rows) == 1
    row = rows[0]
    assert row["type"] == "blood_pressure" and row["seq"] == 1
    assert row["instrument"] == {"addr": CUFF_ADDR, "model": "UA-651BLE",
                                 "serial": "5140200031", "mfr": "A&D Medical"}
    decoded = decode(BLOOD_PRESSURE_MEASUREMENT, data)
    values = {name: value for name, value, _unit in row["values"]}
    assert values["systolic"] == decoded["systolic"]
    assert values["diastolic"] == decoded["diastolic"]
    assert values["pulse_rate"] == decoded["pulse_rate"]
    cuff_time = time.gmtime(int(taken_at - 120))
    assert row["instrument_time"].startswith(
        f"{cuff_time.tm_year:04d}-{cuff_time.tm_mon:02d}-{cuff_time.tm_mday:02d}")
