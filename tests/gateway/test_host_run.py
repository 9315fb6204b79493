"""The Linux-class gateway as its own process (`python -m gateway.host.run`,
as systemd runs it on a Raspberry Pi) against a real fleet: Mosquitto and
the fleet server (devharness.stack.FleetStack). Its instruments are real
protocol simulators: a OneTouch meter on a pseudo-terminal (the gateway
opens the slave path with pyserial, as it would /dev/ttyUSB0) and a BLE cuff
on a bumble virtual controller in this process, reached by the gateway over
bumble's TCP HCI transport (`--ble tcp-client:...`, where a Pi says
`--ble usb:0`). Checked: both instruments' readings reach the fleet API,
SIGTERM stops the gateway cleanly (retained state offline/shutdown, exit 0),
and an unprovisioned state directory exits 6 with a message."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport import open_transport

from devharness.ports import free_port
from devharness.processes import wait_until
from devharness.stack import FleetStack
from gateway.config import ConfigStore
from gateway.host.run import EXIT_NOT_PROVISIONED, EXIT_REBOOT
from gateway.sim.ble_cuff import BleCuff, virtual_device
from gateway.sim.cuff import SimulatedCuff
from gateway.sim.serial_instruments import OneTouchSim

REPO = Path(__file__).resolve().parents[2]
CUFF = "C4:7C:8D:6A:00:31"
METER = "onetouch-bedside"
READINGS = [{"timestamp": (2026, 11, 20 + k, 7, 15, 30), "glucose": 90 + 7 * k}
            for k in range(3)]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[FleetStack]:
    s = FleetStack(tmp_path / "fleet", units=1)
    try:
        s.setup()
        yield s
    finally:
        s.teardown()


def provision(state: Path, stack: FleetStack, meter_port: str, ble: bool = True) -> None:
    acc = stack.gateways[0]
    assert stack.broker is not None
    state.mkdir(parents=True, exist_ok=True)
    ConfigStore(str(state)).save({
        "version": 1, "unit": acc.unit, "gateway": acc.gateway,
        "uplink": {"broker_host": "127.0.0.1", "broker_port": stack.broker.port, "tls": False,
                   "password": acc.password, "backoff_min_s": 1, "backoff_max_s": 2},
        "network": {"mode": "host"},
        "instruments": [
            {"addr": METER, "kind": "serial", "profile": "onetouch", "port": meter_port},
        ] + ([{"addr": CUFF, "kind": "ble", "profile": "blood_pressure"}] if ble else [])})


def readings(stack: FleetStack) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = stack.get("/readings", gateway=stack.gateways[0].gateway)
    return rows


def test_host_gateway_delivers_serial_and_ble_readings_and_stops_cleanly(
        stack: FleetStack, tmp_path: Path) -> None:
    acc = stack.gateways[0]
    log = tmp_path / "gateway.log"

    async def scenario(meter: OneTouchSim) -> tuple[int, bytes]:
        # The gateway's radio: a virtual controller on the cuff's link, its
        # HCI served over TCP for the gateway process to open.
        link = LocalLink()
        cuff = BleCuff(virtual_device(link, CUFF, "cuff"),
                       SimulatedCuff(addr=CUFF, serial="5140200031", rng=random.Random(31)))
        hci_port = free_port()
        hci = await open_transport(f"tcp-server:127.0.0.1:{hci_port}")
        Controller("gateway-radio", host_source=hci.source, host_sink=hci.sink, link=link)
        await cuff.start()
        provision(tmp_path / "state", stack, meter.port)
        with open(log, "wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.host.run", "--state", str(tmp_path / "state"),
                "--ble", f"tcp-client:127.0.0.1:{hci_port}", cwd=REPO, stdout=out,
                stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        try:
            await cuff.wait_subscribed(timeout=20)
            data = await cuff.take_measurement()
            await asyncio.to_thread(wait_until, lambda: len(readings(stack)) >= 4, 20)
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await cuff.stop()
            await hci.close()
        return rc, data

    with OneTouchSim(READINGS, serial="ZDP0031AY") as meter:
        try:
            rc, cuff_bytes = asyncio.run(scenario(meter))
        except Exception:
            print(log.read_text(errors="replace"))
            raise
    output = log.read_text(errors="replace")
    assert rc == 0, output
    assert "stopped" in output

    rows = readings(stack)
    meter_rows = [r for r in rows if r["instrument"]["addr"] == METER]
    assert sorted(r["values"][0][1] for r in meter_rows) == [90, 97, 104]
    assert {r["instrument"]["serial"] for r in meter_rows} == {"ZDP0031AY"}
    (cuff_row,) = [r for r in rows if r["instrument"]["addr"] == CUFF]
    assert cuff_row["type"] == "blood_pressure"
    assert cuff_row["instrument"]["serial"] == "5140200031"
    assert cuff_bytes  # the indication the gateway confirmed

    g = wait_until(lambda: [x for x in stack.get("/gateways")
                            if x["gateway"] == acc.gateway and x["state"] == "offline"], 20)[0]
    assert g["state_reason"] == "shutdown"
    assert (tmp_path / "state" / "ble_bonds.json").exists()  # the bond survives a restart


def test_a_reboot_command_exits_75_for_systemd_and_the_next_start_is_clean(
        stack: FleetStack, tmp_path: Path) -> None:
    acc = stack.gateways[0]
    state = tmp_path / "state"
    # this one runs over paho-mqtt (the other, over the project's own client)
    argv = [sys.executable, "-m", "gateway.host.run", "--state", str(state), "--ble", "none",
            "--mqtt", "paho"]

    def online() -> bool:
        return any(g["gateway"] == acc.gateway and g["state"] == "online"
                   for g in stack.get("/gateways"))

    with OneTouchSim(READINGS[:1]) as meter:
        provision(state, stack, meter.port, ble=False)
        first = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: len(readings(stack)) == 1 and online(), 20)
            r = httpx.post(f"{stack.api}/api/v1/gateways/{acc.gateway}/commands",
                           headers={"Authorization": f"Bearer {stack.token}"},
                           json={"op": "reboot", "args": {"delay_ms": 100}}, timeout=10)
            assert r.status_code == 201, r.text
            out, _ = first.communicate(timeout=20)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        assert first.returncode == EXIT_REBOOT == 75, out
        assert "reboot requested" in out
        # what systemd's Restart=always does next
        second = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(online, 20)
            second.send_signal(signal.SIGINT)
            out, _ = second.communicate(timeout=15)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
    assert second.returncode == 0, out
    assert "(boot 2, clean_restart)" in out
    assert len(readings(stack)) == 1  # the meter's record is not sent twice


def test_an_unprovisioned_state_dir_exits_6_with_a_message(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.host.run", "--state", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == EXIT_NOT_PROVISIONED == 6
    assert "not provisioned" in proc.stderr and "config.json" in proc.stderr
