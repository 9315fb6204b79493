"""`ummc-gateway pair` against instrument simulators: bumble GATT servers on
virtual controllers, joined on an in-process link to the tool's own bumble
controller (real HCI, advertising, SMP passkey pairing, GATT reads). The
tool runs in-process; its BLE transport is handed in instead of --ble."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from bumble.link import LocalLink

from firmware.tool.pair import TOOL_ADDRESS
from gateway.config import ConfigStore
from gateway.sim.ble_cuff import BleCuff, virtual_device
from gateway.sim.ble_glucometer import BleGlucometer
from gateway.sim.cuff import SimulatedCuff
from tests.firmware_tool.conftest import Run, run_tool

CUFF = "C4:7C:8D:6A:00:21"
METER = "D1:22:33:44:55:66"
CUFF_PIN = 123456


class Bench:
    """Two instruments advertising near the technician's laptop."""

    def __init__(self) -> None:
        self.cuff: BleCuff | None = None
        self.meter: BleGlucometer | None = None

    @asynccontextmanager
    async def ble(self) -> AsyncIterator[Any]:
        link = LocalLink()
        self.cuff = BleCuff(virtual_device(link, CUFF, "UA-651BLE_0021"),
                            SimulatedCuff(addr=CUFF, serial="5140200021",
                                          rng=random.Random(1)), passkey=CUFF_PIN)
        self.meter = BleGlucometer(virtual_device(link, METER, "Contour_5566"))
        tool = virtual_device(link, TOOL_ADDRESS, "ummc-tool")
        await self.cuff.start()
        await self.meter.start()
        try:
            yield tool
        finally:
            await self.cuff.stop()
            await self.meter.stop()
            await tool.power_off()
            await asyncio.sleep(0)


@pytest.fixture
def gw(tmp_path: Path) -> Path:
    vdir = tmp_path / "gw"
    vdir.mkdir()
    r = run_tool("provision", "--virtual", str(vdir), "--unit", "U012", "--network", "host",
                 "--broker", "mqtt://127.0.0.1:1883", "--no-label", cwd=tmp_path)
    assert r.code == 0, r.err
    return vdir


def pair(vdir: Path, *argv: str, stdin: str = "", lang: str = "en") -> Run:
    bench = Bench()
    return run_tool("--lang", lang, "pair", "--virtual", str(vdir), "--scan-seconds", "2",
                    *argv, stdin=stdin, ble=bench.ble)


def test_pair_a_cuff_with_its_pin(gw: Path) -> None:
    r = pair(gw, "--addr", CUFF, "--pin", str(CUFF_PIN))
    assert r.code == 0, r.out + r.err
    assert f"✔ Blood pressure monitor {CUFF} paired (configuration version 2)." in r.out
    assert "  Model UA-651BLE, serial number 5140200021" in r.out
    cfg = ConfigStore(str(gw / "data")).load()
    assert cfg["instruments"] == [{"addr": CUFF, "kind": "ble", "profile": "blood_pressure",
                                   "name": "UA-651BLE_0021", "passkey": "123456", "port": None,
                                   "baud": None, "quirks": [], "set_clock": True}]
    # what the fleet will see in the next birth message
    lines = r.out.splitlines()
    i = lines.index("At its next start the gateway will report to the fleet (birth message):")
    assert json.loads(lines[i + 1]) == {
        "cfg": 2, "instruments": [{"addr": CUFF, "type": "blood_pressure", "kind": "ble"}]}


def test_choose_from_the_list_and_type_no_pin(gw: Path) -> None:
    r = pair(gw, stdin="2\n\n", lang="fr")  # the list is sorted: C4:... then D1:...
    assert r.code == 0, r.out + r.err
    assert "2 instrument(s) trouvé(s) :" in r.out
    assert f"  1) {CUFF}  UA-651BLE_0021  Tensiomètre" in r.out
    assert f"  2) {METER}  Contour_5566  Glucomètre" in r.out
    assert "Numéro de l'instrument (1-2) :" in r.out
    assert "Code PIN affiché par l'instrument" in r.out
    assert f"✔ Glucomètre {METER} appairé (configuration version 2)." in r.out
    inst = ConfigStore(str(gw / "data")).load()["instruments"]
    assert [(i["addr"], i["profile"], i["passkey"]) for i in inst] == [(METER, "glucose", None)]


@pytest.mark.parametrize("lang", ["fr", "ar", "en"])
def test_a_wrong_pin_is_caught_here_and_nothing_is_recorded(lang: str, gw: Path) -> None:
    before = (gw / "data" / "config.json").read_bytes()
    r = pair(gw, "--addr", CUFF, "--pin", "654321", lang=lang)
    assert r.code == 8
    assert {"fr": f"Appairage REFUSÉ par {CUFF}", "ar": f"رفض الجهاز {CUFF} الاقتران",
            "en": f"Pairing REFUSED by {CUFF}"}[lang] in r.err
    assert (gw / "data" / "config.json").read_bytes() == before


def test_mistakes(gw: Path, tmp_path: Path) -> None:
    r = pair(gw, "--addr", "AA:BB:CC:DD:EE:FF", "--pin", "123456", "--scan-seconds", "0.5")
    assert r.code == 8 and "Instrument AA:BB:CC:DD:EE:FF was not seen" in r.err
    r = pair(gw, "--addr", CUFF, "--pin", "12345")
    assert r.code == 2 and "The PIN must have 6 digits." in r.err
    r = pair(gw, "--scan-seconds", "0.5", stdin="7\n")
    assert r.code == 2 and 'Choice "7" is not valid' in r.err
    r = run_tool("--lang", "en", "pair", "--virtual", str(gw), "--addr", CUFF)
    assert r.code == 2 and "--ble" in r.err  # no Bluetooth given for a virtual gateway
    empty = tmp_path / "new"
    empty.mkdir()
    r = pair(empty, "--addr", CUFF)
    assert r.code == 6 and "Gateway not provisioned" in r.err


def test_pair_again_serial_instrument_and_remove(gw: Path) -> None:
    assert pair(gw, "--addr", CUFF, "--pin", str(CUFF_PIN), "--no-test").code == 0
    r = pair(gw, "--addr", CUFF, "--pin", str(CUFF_PIN), "--no-test")
    assert r.code == 0 and "paired again (configuration version 3)" in r.out
    r = run_tool("--lang", "en", "pair", "--virtual", str(gw), "--serial", "/dev/ttyS1",
                 "--profile", "onetouch", "--name", "onetouch-1")
    assert r.code == 0, r.err
    assert "✔ OneTouch glucose meter onetouch-1 on /dev/ttyS1 recorded" in r.out
    cfg = ConfigStore(str(gw / "data")).load()
    assert [(i["addr"], i["kind"], i["baud"]) for i in cfg["instruments"]] == \
        [(CUFF, "ble", None), ("onetouch-1", "serial", 9600)]
    r = run_tool("--lang", "en", "pair", "--virtual", str(gw), "--remove", CUFF.lower())
    assert r.code == 0 and f"{CUFF} removed from the gateway (configuration version 5)" in r.out
    cfg = ConfigStore(str(gw / "data")).load()
    assert [i["addr"] for i in cfg["instruments"]] == ["onetouch-1"]
    r = run_tool("--lang", "en", "pair", "--virtual", str(gw), "--remove", CUFF)
    assert r.code == 8
