"""Journal append and recovery-scan rates, on CPython and under the
MicroPython Unix port (100 KB heap), with 300-byte records (a blood-pressure
reading's journal payload) on the local filesystem. The scan runs in a new
process, as after a reboot: on a heap fragmented by a long run, a second
Journal could not get its 8 KB segment buffer (the firmware makes one
Journal, early, at boot).

    .venv/bin/python -m bench.journal_rate
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
N = 2000

# Runs on both runtimes: APPEND prints appends/s, SCAN prints records/s
_TIMER = """
import time
from gateway.journal import Journal
try:
    now_us, diff = time.ticks_us, time.ticks_diff
except AttributeError:
    now_us = lambda: int(time.perf_counter() * 1000000)
    diff = lambda a, b: a - b
root = %r
n = %d
"""
_APPEND = _TIMER + """
payload = b'{' + b'x' * 298 + b'}'
j = Journal(root, capacity_bytes=50000000)
t0 = now_us()
for _ in range(n):
    j.append(payload)
print(n * 1000000 // diff(now_us(), t0))
"""
_SCAN = _TIMER + """
t0 = now_us()
j = Journal(root, capacity_bytes=50000000)
us = diff(now_us(), t0)
assert j.depth == n
print(n * 1000000 // us)
"""


def run(argv: list[str], root: str, env: dict[str, str]) -> tuple[int, int]:
    rates = []
    for script in (_APPEND, _SCAN):
        out = subprocess.run([*argv, "-c", script % (root, N)], env=env, cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
        rates.append(int(out.split()[-1]))
    return rates[0], rates[1]


def main() -> None:
    mpy = shutil.which("micropython") or str(Path(sys.executable).parent / "micropython")
    rows = []
    for name, argv, env in (
            ("CPython", [sys.executable], dict(os.environ, PYTHONPATH=str(REPO))),
            ("MicroPython Unix port, 100k heap", [mpy, "-X", "heapsize=100k"],
             dict(os.environ, MICROPYPATH=f"{REPO}:.frozen"))):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append((name, *run(argv, tmp + "/j", env)))
    print(f"{N} records of 300 bytes (each append flushed and fsynced where the runtime can)")
    print("| runtime | appends/s | recovery scan records/s |")
    print("|---|---|---|")
    for name, app, scan in rows:
        print(f"| {name} | {app:,} | {scan:,} |")


if __name__ == "__main__":
    main()
