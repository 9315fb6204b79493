"""Runs every portable test module under the real MicroPython Unix port with the
heap capped near an ESP32's free heap once BLE is up (100 KB).

Portable test modules start with the line `# mpy-portable`; pytest runs them on
CPython as usual, and this test runs the same files under `micropython`, one
process per module (a fresh heap each, as after a reset), against the
firmware image's modules compiled by mpy-cross (`mpy_image`).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import MPY_SUMMARIES, REPO, mpy_env

HEAP = "100k"


def portable_test_files() -> list[str]:
    found = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        with open(path, encoding="utf-8") as f:
            if f.readline().startswith("# mpy-portable"):
                found.append(str(path.relative_to(REPO)))
    return found


def test_portable_suite_passes_under_micropython(micropython_bin: str, mpy_image: Path,
                                                 tmp_path: Path) -> None:
    files = portable_test_files()
    assert files, "no portable test modules found"
    passed = failed = live_max = 0
    failures = []
    for rel in files:
        proc = subprocess.run(
            [micropython_bin, "-X", f"heapsize={HEAP}", "tests/mpy_runner.py", rel],
            cwd=REPO, env=mpy_env(mpy_image, {"UMMC_TMP": str(tmp_path)}),
            capture_output=True, text=True, timeout=600,
        )
        m = re.search(r"^(\d+) passed, (\d+) failed$", proc.stdout, re.M)
        heap = re.search(r"^heap live max (\d+) bytes$", proc.stdout, re.M)
        if m is None or proc.returncode != 0:
            failed += int(m.group(2)) if m else 1
            failures.append(f"--- {rel} (exit {proc.returncode})\n{proc.stdout}{proc.stderr}")
        if m:
            passed += int(m.group(1))
        if heap:
            live_max = max(live_max, int(heap.group(1)))
    MPY_SUMMARIES.append(f"{len(files)} modules, heap capped at {HEAP}, largest live heap "
                         f"{live_max} bytes: {passed} passed, {failed} failed")
    assert not failures, "\n".join(failures)
    assert passed > 0 and failed == 0
