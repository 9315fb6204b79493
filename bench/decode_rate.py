"""Decode throughput per GATT measurement characteristic, on CPython and on
the MicroPython Unix port (the same device_drivers source), in packets/s.
Each sample is a realistic packet with every optional field present.

    .venv/bin/python -m bench.decode_rate
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# uuid -> packet (hex): full-flag samples; public vectors where there is one
SAMPLES = {
    0x2A35: "1E8A00580078000000041114293B3C00012700",  # Nordic test vector
    0x2A18: "1B0100E307021B0B0A1EFBFF1E00120501",  # Nordic test vector
    0x2A1C: "06B00E00FEDC070C050B321B04",  # Nordic test vector
    0x2A5E: "0161004800EA070B1D0A0000",  # SpO2 97, PR 72, 2026-11-29 10:00:00
    0x2A9D: "0E6437EA070B1D0A000001E600AE06",  # 70.9 kg, same time, user 1, BMI 23, 1.71 m
}

_MPY_LOOP = """
import time
from device_drivers.gatt import decode
samples = %r
n = %d
for uuid, data in samples:
    t0 = time.ticks_us()
    for _ in range(n):
        decode(uuid, data)
    dt = time.ticks_diff(time.ticks_us(), t0)
    print("%%04X %%d" %% (uuid, n * 1000000 // dt))
"""


def cpython_rates(n: int) -> dict[int, int]:
    from device_drivers.gatt import decode

    rates = {}
    for uuid, hexdata in SAMPLES.items():
        data = bytes.fromhex(hexdata)
        decode(uuid, data)
        t0 = time.perf_counter()
        for _ in range(n):
            decode(uuid, data)
        rates[uuid] = int(n / (time.perf_counter() - t0))
    return rates


def micropython_rates(n: int) -> dict[int, int]:
    binary = shutil.which("micropython") or str(Path(sys.executable).parent / "micropython")
    script = _MPY_LOOP % ([(u, bytes.fromhex(h)) for u, h in SAMPLES.items()], n)
    env = dict(os.environ, MICROPYPATH=f"{REPO}:.frozen")
    out = subprocess.run([binary, "-X", "heapsize=100k", "-c", script], env=env, cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return {int(u, 16): int(r) for u, r in (line.split() for line in out.splitlines())}


def main() -> None:
    from device_drivers.gatt import decode

    for uuid, hexdata in SAMPLES.items():  # every sample must decode
        decode(uuid, bytes.fromhex(hexdata))
    cp = cpython_rates(50_000)
    mp = micropython_rates(20_000)
    print("| characteristic | CPython packets/s | MicroPython (Unix port) packets/s |")
    print("|---|---|---|")
    for uuid in SAMPLES:
        print(f"| 0x{uuid:04X} | {cp[uuid]:,} | {mp[uuid]:,} |")


if __name__ == "__main__":
    main()
