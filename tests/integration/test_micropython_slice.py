"""The gateway side of the slice running under the real MicroPython Unix port
with the project's own MQTT client, publishing to a real Mosquitto; the fleet
server (CPython) commits and acks; the records are freed and readable through
the API.

Heap budget: an ESP32 without PSRAM has about 100 KB of MicroPython heap once
BLE is up, and the firmware freezes the application's bytecode into flash
(firmware/manifest.py), where it takes no heap. The Unix port cannot freeze
it: loading the .mpy files puts their bytecode in the heap. So the cap is
100 KB plus exactly what importing the application's modules costs here,
measured first in the same runtime: the gateway must run in 100 KB beside its
code, as on the board."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devharness.stack import FleetStack
from tests.conftest import MPY_SUMMARIES, REPO, mpy_env

# what mpy_gateway_slice.py imports (its own small source aside)
SLICE_MODULES = ("asyncio", "json", "device_drivers.gatt", "device_drivers.reading",
                 "device_drivers.quirks", "device_drivers.blood_pressure", "gateway.app",
                 "gateway.clock", "gateway.indicator", "gateway.journal", "gateway.mqtt.client",
                 "gateway.protocol", "gateway.uplink")


def test_micropython_gateway_publishes_through_real_broker(stack: FleetStack,
                                                           micropython_bin: str,
                                                           mpy_image: Path,
                                                           tmp_path: Path) -> None:
    acc = stack.gateways[0]
    assert stack.broker is not None
    env = mpy_env(mpy_image, {"SLICE_UNIT": acc.unit, "SLICE_GATEWAY": acc.gateway,
                   "SLICE_PASSWORD": acc.password, "SLICE_PORT": str(stack.broker.port),
                   "SLICE_JOURNAL": str(tmp_path / "journal"), "SLICE_READINGS": "3"})
    probe = subprocess.run(
        [micropython_bin, "-X", "heapsize=400k", "-c", "import gc\n" + "".join(
            f"import {m}\n" for m in SLICE_MODULES) + "gc.collect()\nprint(gc.mem_alloc())"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=True)
    code_bytes = int(probe.stdout.split()[-1])
    heap = 100 * 1024 + code_bytes
    proc = subprocess.run([micropython_bin, "-X", f"heapsize={heap}",
                           "tests/integration/mpy_gateway_slice.py"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr + stack.server_log()[-3000:]
    first = proc.stdout.splitlines()[0]
    MPY_SUMMARIES.append(f"gateway slice under MicroPython (heap 100 KB + {code_bytes} bytes "
                         f"of loaded bytecode): {first}")
    assert "depth 0 acked 3" in first
    # the unsynced board clock was corrected from the server time in the ack
    assert "clock_synced True" in first

    rows = stack.get("/readings", gateway=acc.gateway)
    assert sorted(r["seq"] for r in rows) == [1, 2, 3]
    by_seq = {r["seq"]: r for r in rows}
    assert by_seq[1]["instrument"]["serial"] == "5140209999"
    values = {v[0]: v[1] for v in by_seq[3]["values"]}
    assert values["systolic"] == 120 and values["diastolic"] == 78
    # readings taken before the clock was corrected say so
    assert "gateway_clock_unsynced" in by_seq[1]["flags"]
