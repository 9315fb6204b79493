"""The bumble BLE central adapter against the bumble cuff simulator: two
virtual controllers on one in-process LocalLink, with real HCI, L2CAP, ATT/GATT
and SMP between them (no radio, no mocks). Each test runs its own event loop
(asyncio.run) with a deadline and checks it leaves no task behind.

CPython only (bumble); not a MicroPython-portable module."""

from __future__ import annotations

import asyncio
import calendar
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from bumble import att
from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Peer
from bumble.hci import Address
from bumble.link import LocalLink

from device_drivers import DecodeError
from device_drivers.gatt import BLOOD_PRESSURE_MEASUREMENT, decode, encode_blood_pressure
from device_drivers.ieee11073 import date_time_bytes
from gateway.host.ble_bumble import (
    BleError,
    BumbleCentral,
    GattError,
    NotConnected,
    PairingError,
)
from gateway.sim.ble_cuff import BleCuff, CuffError, LinkLost, NotSubscribed, virtual_device
from gateway.sim.cuff import SimulatedCuff

CUFF_ADDR = "C4:7C:8D:6A:00:21"
GATEWAY_ADDR = "F0:1D:00:00:00:01"
CUFF_NAME = "UA-651BLE_0021"
DEADLINE_S = 5.0

Received = list[tuple[dict[str, str], int, bytes]]


@dataclass
class Bench:
    cuff: BleCuff
    central: BumbleCentral
    sim: SimulatedCuff
    received: Received = field(default_factory=list)

    def on_value(self, inst: dict[str, str], uuid16: int, data: bytes) -> None:
        self.received.append((inst, uuid16, data))


@asynccontextmanager
async def bench(cuff_passkey: int | None = None,
                central_passkey: int | None = None) -> AsyncIterator[Bench]:
    """A cuff advertising on a fresh LocalLink and a gateway central beside it."""
    link = LocalLink()
    sim = SimulatedCuff(addr=CUFF_ADDR, serial="5140200021", rng=random.Random(21))
    cuff = BleCuff(virtual_device(link, CUFF_ADDR, CUFF_NAME), sim, passkey=cuff_passkey)
    central = BumbleCentral(virtual_device(link, GATEWAY_ADDR, "ummc-gw-test"),
                            passkey=central_passkey, connect_timeout=2.0)
    await cuff.start()
    try:
        yield Bench(cuff, central, sim)
    finally:
        await central.disconnect()
        await cuff.stop()
        await central.device.power_off()
        await asyncio.sleep(0)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run a scenario in its own loop, within the deadline, leaving nothing running."""
    threads = threading.active_count()

    async def main() -> None:
        await asyncio.wait_for(scenario(), DEADLINE_S)
        stray = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert stray == [], stray

    asyncio.run(main())
    assert threading.active_count() == threads


async def connected(b: Bench) -> None:
    await b.central.connect(CUFF_ADDR)
    await b.central.subscribe_blood_pressure(b.on_value)
    await b.cuff.wait_subscribed(1.0)


def test_discovery_identity_and_battery() -> None:
    async def scenario() -> None:
        async with bench() as b:
            await b.central.connect(CUFF_ADDR)
            assert b.central.connected
            assert b.central.peer is not None
            services = {s.uuid for s in b.central.peer.services}
            assert {UUID.from_16_bits(u) for u in (0x1810, 0x180A, 0x180F, 0x1805)} <= services
            identity = await b.central.read_identity()
            assert identity == {"addr": CUFF_ADDR, "mfr": "A&D Medical", "model": "UA-651BLE",
                                "serial": "5140200021", "firmware": "1.2.0"}
            assert b.central.inst == {"addr": CUFF_ADDR, "mfr": "A&D Medical",
                                      "model": "UA-651BLE", "serial": "5140200021"}
            assert await b.central.read_battery() == 87
            await b.cuff.set_battery(42)
            assert await b.central.read_battery() == 42

    run(scenario)


def test_cuff_advertises_its_name_and_the_blood_pressure_service() -> None:
    async def scenario() -> None:
        async with bench() as b:
            device = b.central.device
            await device.power_on()
            seen: asyncio.Future[Advertisement] = asyncio.get_running_loop().create_future()

            def on_advertisement(adv: Advertisement) -> None:
                if adv.address == Address(CUFF_ADDR) and not seen.done():
                    seen.set_result(adv)

            device.on(device.EVENT_ADVERTISEMENT, on_advertisement)
            await device.start_scanning()
            try:
                adv = await asyncio.wait_for(seen, 2.0)
            finally:
                await device.stop_scanning()
                device.remove_listener(device.EVENT_ADVERTISEMENT, on_advertisement)
            assert adv.is_connectable
            assert adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME) == CUFF_NAME
            uuids = adv.data.get(AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS)
            assert uuids == [UUID.from_16_bits(0x1810)]

    run(scenario)


def test_just_works_pairing_bonds_both_sides_and_the_bond_is_reused() -> None:
    async def scenario() -> None:
        async with bench() as b:
            central, cuff = b.central, b.cuff
            await central.connect(CUFF_ADDR)
            assert central.new_bond and central.encrypted
            assert await central.bond_keys_authenticated() is False  # Just Works: no MITM
            assert central.device.keystore is not None and cuff.device.keystore is not None
            assert await central.device.keystore.get(CUFF_ADDR) is not None
            assert await cuff.device.keystore.get(GATEWAY_ADDR) is not None
            await central.disconnect()

            await central.connect(CUFF_ADDR)
            assert not central.new_bond and central.encrypted  # LTK from the bond, no SMP

    run(scenario)


def test_cuff_refuses_indications_on_an_unencrypted_link() -> None:
    """A central that does not pair cannot subscribe (like a real cuff)."""
    async def scenario() -> None:
        async with bench() as b:
            device = b.central.device
            await device.power_on()
            connection = await device.connect(Address(CUFF_ADDR), timeout=2.0)
            async with Peer(connection) as peer:
                bpm = peer.get_characteristics_by_uuid(UUID.from_16_bits(0x2A35))[0]
                with pytest.raises(att.ATT_Error) as caught:
                    await peer.subscribe(bpm, lambda _v: None, prefer_notify=False)
                assert caught.value.error_code == att.ErrorCode.INSUFFICIENT_ENCRYPTION
                with pytest.raises(att.ATT_Error):  # 0x2A35 is indicate-only
                    await peer.read_value(bpm)
            assert not b.cuff.subscribed
            await connection.disconnect()

    run(scenario)


def test_measurement_indication_reaches_the_callback_with_the_exact_bytes() -> None:
    async def scenario() -> None:
        async with bench() as b:
            b.sim.clock_offset_s = -3600
            await connected(b)
            taken_at = time.time()
            data = await b.cuff.take_measurement(taken_at)
            # bumble confirms only after the callback returned: no waiting needed
            assert b.received == [(b.central.inst, BLOOD_PRESSURE_MEASUREMENT, data)]
            assert b.received[0][0]["serial"] == "5140200021"
            twin = SimulatedCuff(addr=CUFF_ADDR, rng=random.Random(21), clock_offset_s=-3600)
            assert data == twin.measure(taken_at)  # what the simulator made, unchanged
            decoded = decode(BLOOD_PRESSURE_MEASUREMENT, b.received[0][2])
            cuff_time = time.gmtime(int(taken_at - 3600))
            assert decoded["timestamp"] == tuple(cuff_time)[:6]
            assert decoded["unit"] == "mmHg"
            assert 80 <= decoded["systolic"] <= 240 and 45 <= decoded["diastolic"] <= 225

            # known values through the same path
            stamp = (2025, 3, 14, 9, 26, 53)
            known = encode_blood_pressure(128, 84, 99, timestamp=stamp, pulse_rate=72,
                                          status=0x0004)
            await b.cuff.send_measurement(known)
            assert b.received[-1][2] == known
            assert decode(BLOOD_PRESSURE_MEASUREMENT, b.received[-1][2]) == {
                "unit": "mmHg", "systolic": 128, "diastolic": 84, "mean_arterial": 99,
                "timestamp": stamp, "pulse_rate": 72, "user_id": None,
                "status": ["irregular_pulse"]}
            assert b.cuff.confirmed == 2 and b.central.indications == 2

    run(scenario)


def test_several_measurements_arrive_in_order() -> None:
    async def scenario() -> None:
        async with bench() as b:
            await connected(b)
            sent = [await b.cuff.take_measurement(1.7e9 + 60 * i) for i in range(5)]
            # a burst: the cuff queues indications, one outstanding at a time
            burst = [encode_blood_pressure(110 + i, 70 + i, 83 + i, status=None)
                     for i in range(5)]
            await asyncio.gather(*(b.cuff.send_measurement(d) for d in burst))
            assert [d for _, _, d in b.received] == sent + burst

    run(scenario)


def test_disconnect_and_reconnect() -> None:
    async def scenario() -> None:
        async with bench() as b:
            await connected(b)
            await b.cuff.take_measurement()
            await b.central.disconnect()
            assert not b.central.connected
            await asyncio.sleep(0.01)
            assert not b.cuff.subscribed
            with pytest.raises(NotSubscribed):
                await b.cuff.take_measurement()
            with pytest.raises(NotConnected):
                await b.central.read_battery()

            await connected(b)  # the cuff advertises again; the bond is re-used
            assert not b.central.new_bond
            await b.cuff.take_measurement()

            # the cuff drops the link itself (it powers down after a reading)
            for connection in list(b.cuff.device.connections.values()):
                await connection.disconnect()
            await asyncio.sleep(0.01)
            assert not b.central.connected and b.central.disconnect_reason is not None

            await connected(b)
            await b.cuff.take_measurement()
            assert len(b.received) == 3
            assert all(inst == b.received[0][0] for inst, _, _ in b.received)

    run(scenario)


def test_malformed_indication_reaches_the_callback_and_the_decoder_rejects_it() -> None:
    async def scenario() -> None:
        async with bench() as b:
            await connected(b)
            good = await b.cuff.take_measurement()
            truncated = good[:6]
            await b.cuff.send_measurement(truncated)
            await b.cuff.send_measurement(b"")
            after = await b.cuff.take_measurement()
            assert [d for _, _, d in b.received] == [good, truncated, b"", after]
            for bad in (truncated, b""):
                with pytest.raises(DecodeError):
                    decode(BLOOD_PRESSURE_MEASUREMENT, bad)
            assert b.central.connected and b.central.callback_errors == 0

    run(scenario)


def test_subscribing_twice_on_one_link_delivers_once() -> None:
    async def scenario() -> None:
        async with bench() as b:
            await connected(b)
            await b.central.subscribe_blood_pressure(b.on_value)
            data = await b.cuff.take_measurement()
            assert [d for _, _, d in b.received] == [data]

    run(scenario)


def test_cuff_gives_up_on_a_central_that_never_confirms() -> None:
    """bumble's server waits 30 s for a confirmation and is not woken by a
    disconnection; the simulator bounds the wait and notices the link going."""
    async def scenario() -> None:
        async with bench() as b:
            await connected(b)
            connection = b.central.connection
            assert connection is not None

            def drop(confirmation: att.ATT_Handle_Value_Confirmation) -> None:
                del confirmation  # a central that never confirms

            connection.gatt_client.send_confirmation = drop  # type: ignore[method-assign]
            with pytest.raises(CuffError):
                await b.cuff.take_measurement(timeout=0.2)
            pending = asyncio.create_task(b.cuff.take_measurement(timeout=3.0))
            await asyncio.sleep(0.05)
            await b.central.disconnect()
            with pytest.raises(LinkLost):
                await pending
            assert len(b.received) == 2  # delivered, just never confirmed

    run(scenario)


def test_a_failing_callback_is_contained() -> None:
    async def scenario() -> None:
        async with bench() as b:
            calls: list[bytes] = []

            def on_value(inst: dict[str, str], uuid16: int, data: bytes) -> None:
                calls.append(data)
                if len(calls) == 1:
                    raise RuntimeError("journal on fire")

            await b.central.connect(CUFF_ADDR)
            await b.central.subscribe_blood_pressure(on_value)
            first = await b.cuff.take_measurement()  # still confirmed
            second = await b.cuff.take_measurement()
            assert calls == [first, second] and b.central.callback_errors == 1
            assert b.central.connected

    run(scenario)


def test_passkey_pairing() -> None:
    async def scenario() -> None:
        async with bench(cuff_passkey=123456, central_passkey=123456) as b:
            await connected(b)
            assert b.central.new_bond
            assert await b.central.bond_keys_authenticated() is True
            await b.cuff.take_measurement()
            assert len(b.received) == 1

    run(scenario)


def test_wrong_passkey_fails_pairing() -> None:
    async def scenario() -> None:
        async with bench(cuff_passkey=123456, central_passkey=654321) as b:
            with pytest.raises(PairingError) as caught:
                await b.central.connect(CUFF_ADDR)
            assert caught.value.addr == CUFF_ADDR and caught.value.reason
            assert not b.central.connected

    run(scenario)


def test_passkey_cuff_refuses_a_just_works_bond() -> None:
    async def scenario() -> None:
        async with bench(cuff_passkey=123456, central_passkey=None) as b:
            await b.central.connect(CUFF_ADDR)  # pairs, but without MITM protection
            assert await b.central.bond_keys_authenticated() is False
            with pytest.raises(GattError) as caught:
                await b.central.subscribe_blood_pressure(b.on_value)
            assert caught.value.code == att.ErrorCode.INSUFFICIENT_AUTHENTICATION
            assert not b.cuff.subscribed

    run(scenario)


def test_cuff_that_forgot_the_bond_is_paired_again() -> None:
    async def scenario() -> None:
        async with bench() as b:
            await b.central.connect(CUFF_ADDR)
            await b.central.disconnect()
            assert b.cuff.device.keystore is not None
            await b.cuff.device.keystore.delete(GATEWAY_ADDR)  # new batteries
            await connected(b)
            assert b.central.new_bond and b.central.encrypted
            await b.cuff.take_measurement()
            assert len(b.received) == 1

    run(scenario)


def test_gateway_sets_the_cuff_clock_through_current_time() -> None:
    async def scenario() -> None:
        async with bench() as b:
            b.sim.clock_offset_s = 86400 * 40  # a cuff whose clock ran off
            await connected(b)
            assert b.central.peer is not None
            (ct,) = b.central.peer.get_characteristics_by_uuid(UUID.from_16_bits(0x2A2B))
            t = time.gmtime()
            value = date_time_bytes(tuple(t)[:6]) + bytes((t.tm_wday + 1, 0, 0x01))
            await b.central.peer.write_value(ct, value, with_response=True)
            assert abs(b.sim.clock_offset_s) < 5
            read_back = await b.central.peer.read_value(ct)
            assert len(read_back) == 10
            data = await b.cuff.take_measurement()
            stamp = decode(BLOOD_PRESSURE_MEASUREMENT, data)["timestamp"]
            assert isinstance(stamp, tuple)
            assert abs(calendar.timegm((*stamp, 0, 0, 0)) - time.time()) < 5
            with pytest.raises(att.ATT_Error):
                await b.central.peer.write_value(ct, b"\x00" * 3, with_response=True)

    run(scenario)


def test_connecting_to_an_absent_instrument_fails_clearly() -> None:
    async def scenario() -> None:
        async with bench() as b:
            b.central.connect_timeout = 0.3
            with pytest.raises(BleError) as caught:
                await b.central.connect("C4:7C:8D:6A:00:99")
            assert caught.value.addr == "C4:7C:8D:6A:00:99"
            assert not b.central.connected
            await b.central.connect(CUFF_ADDR)  # the adapter is still usable
            assert b.central.connected

    run(scenario)
