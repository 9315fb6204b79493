"""Runs every portable test module under the real MicroPython Unix port with the
heap capped near an ESP32's free heap once BLE is up.

Portable test modules start with the line `# mpy-portable`; pytest runs them on
CPython as usual, and this test runs the same files under `micropython`.
"""

from __future__ import annotations

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


def test_portable_suite_passes_under_micropython(micropython_bin: str, tmp_path: Path) -> None:
    files = portable_test_files()
    assert files, "no portable test modules found"
    proc = subprocess.run(
        [micropython_bin, "-X", f"heapsize={HEAP}", "tests/mpy_runner.py", *files],
        cwd=REPO, env=mpy_env({"UMMC_TMP": str(tmp_path)}),
        capture_output=True, text=True, timeout=600,
    )
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1] if lines else "(no output)"
    MPY_SUMMARIES.append(f"{len(files)} modules, heap {HEAP}: {summary}"
                         + (f" ({lines[-2]})" if len(lines) > 1 else ""))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary.endswith(" 0 failed")
