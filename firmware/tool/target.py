"""Where the gateway lives: a board on a serial port, or a virtual gateway's
state directory on this machine. The commands (flash, provision, pair,
doctor) see only the Target interface, so one code path serves both.

Paths are relative to the flash root: `/` on a board, the virtual gateway's
flash directory (firmware/virtual/launcher.py) on this machine. Layout, as
firmware/board/hw.py and unix_hw.py use it:
  app_a/, app_b/, ota_state.json   app slots and OTA state (docs/firmware.md)
  ca.pem, client.pem, client.key   TLS: the broker's CA, the gateway's own
                                   certificate (firmware/board/ummc_main.py)
  nowdt                            no watchdog while it exists (hw.py)
  data/                            the app's state directory (STATE_DIR):
                                   config.json (+ config.prev, trial),
                                   boot.json, journal/ (s<seq>.j, acked,
                                   meta), cursors, command results

BoardTarget runs the real `mpremote` (as `python -m mpremote`, the one
installed beside this tool) with `connect PORT resume`: `fs cp` for files,
`exec` for small MicroPython snippets (firmware/tool/boardscripts.py) that
hash, rename and survey on the board. Before changing anything it puts the
board in maintenance (hold()): a marker file and a reset, so the board comes
back without its watchdog (firmware/board/hw.py starts none while `/nowdt`
exists), so mpremote's Ctrl-C stops the app and leaves a REPL that no
watchdog will reset under our feet; release() removes the marker and resets
into the gateway app. A marker found on arrival (a session that never
ended) is reported by doctor.

VirtualTarget does the same with files in a directory. `survey()` there
opens the journal with gateway.journal.Journal on a copy, so the gateway's
own files are never rewritten by a diagnosis."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from firmware.tool import boardscripts as bs
from firmware.tool.errors import Exit, ToolError
from firmware.tool.progress import Progress

STATE_DIR = "data"  # hw.py STATE "/data", unix_hw.py STATE "data"
# what doctor reads (client.key only to try the broker as the gateway would)
ROOT_FILES = ("ota_state.json", "ca.pem", "client.pem", "client.key")
STATE_FILES = ("config.json", "boot.json", "seen.json")


def in_state(name: str) -> str:
    """A path in the app's state directory, relative to the flash root."""
    return f"{STATE_DIR}/{name}"
_BATCH = 16  # files per mpremote invocation when copying


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Target(ABC):
    kind = ""

    @abstractmethod
    def where(self) -> str:
        """For messages: `/dev/ttyUSB0` or the directory."""

    @abstractmethod
    def open(self, create: bool = False, hold: bool = True, wait_s: float = 0.0) -> None:
        """Check the gateway is there (DEVICE_NOT_FOUND otherwise); with
        `hold`, make it safe to change (a board goes to maintenance); a board
        that is starting up is given `wait_s` seconds to answer."""

    @abstractmethod
    def close(self, restart: bool = True) -> None:
        """End the session; with `restart` a board restarts into the gateway app."""

    @abstractmethod
    def read(self, rel: str) -> bytes | None:
        """A file's bytes, or None when it does not exist."""

    @abstractmethod
    def write_atomic(self, rel: str, data: bytes) -> None:
        """Write `<rel>.tmp`, then rename it over `rel`."""

    @abstractmethod
    def remove(self, rel: str) -> None:
        """Remove a file (nothing if it is not there)."""

    @abstractmethod
    def makedirs(self, rel: str) -> None:
        """Create a directory (and its parents) unless it exists."""

    @abstractmethod
    def rmtree(self, rel: str) -> None:
        """Remove a directory and everything in it (nothing if it is not there)."""

    @abstractmethod
    def put_files(self, src: Path, files: list[str], dest: str, progress: Progress) -> None:
        """Copy src/<f> to <dest>/<f> for each f, in this order, making directories."""

    @abstractmethod
    def hashes(self, rel: str) -> dict[str, str]:
        """SHA-256 (hex) of every file under the directory, read back from the gateway."""

    @abstractmethod
    def survey(self) -> dict[str, Any]:
        """What doctor reads (see boardscripts.survey)."""


# --- a virtual gateway's state directory ------------------------------------------

class VirtualTarget(Target):
    kind = "virtual"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def where(self) -> str:
        return str(self.root)

    def _p(self, rel: str) -> Path:
        return self.root / rel

    def open(self, create: bool = False, hold: bool = True, wait_s: float = 0.0) -> None:
        if not self.root.is_dir():
            if create and self.root.parent.is_dir():
                self.root.mkdir()
                return
            raise ToolError(Exit.DEVICE_NOT_FOUND, "virtual_missing", path=str(self.root))

    def close(self, restart: bool = True) -> None:
        pass

    def read(self, rel: str) -> bytes | None:
        try:
            return self._p(rel).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def write_atomic(self, rel: str, data: bytes) -> None:
        path = self._p(rel)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def remove(self, rel: str) -> None:
        self._p(rel).unlink(missing_ok=True)

    def makedirs(self, rel: str) -> None:
        self._p(rel).mkdir(parents=True, exist_ok=True)

    def rmtree(self, rel: str) -> None:
        path = self._p(rel)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    def put_files(self, src: Path, files: list[str], dest: str, progress: Progress) -> None:
        for rel in files:
            out = self._p(dest) / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "wb") as f:
                f.write((src / rel).read_bytes())
                f.flush()
                os.fsync(f.fileno())
            progress.advance()

    def hashes(self, rel: str) -> dict[str, str]:
        top = self._p(rel)
        if not top.is_dir():
            return {}
        return {p.relative_to(top).as_posix(): sha256_bytes(p.read_bytes())
                for p in sorted(top.rglob("*")) if p.is_file()}

    def survey(self) -> dict[str, Any]:
        files = {}
        for name in ROOT_FILES + STATE_FILES:
            data = self.read(in_state(name) if name in STATE_FILES else name)
            files[name] = None if data is None else data.decode(errors="replace")
        slots: dict[str, str | None] = {}
        for s in ("a", "b"):
            data = self.read(f"app_{s}/manifest.json")
            if data is None:
                slots[s] = None
                continue
            try:
                slots[s] = json.loads(data).get("version") or "?"
            except (ValueError, AttributeError):
                slots[s] = "?"
        try:
            free: int | None = shutil.disk_usage(self.root).free
        except OSError:
            free = None
        return {"platform": "virtual", "micropython": None, "now_ms": int(time.time() * 1000),
                "files": files, "trial": self._p(in_state("trial")).exists(), "slots": slots,
                "journal": self._journal(), "flash_free": free, "mem_free": None}

    def _journal(self) -> dict[str, Any] | None:
        from gateway.journal import KIND_READING, Journal, JournalError

        src = self._p(in_state("journal"))
        if not src.is_dir():
            return None
        with tempfile.TemporaryDirectory(prefix="ummc-doctor-") as tmp:
            copy = Path(tmp) / "journal"
            shutil.copytree(src, copy)
            had_meta = (copy / "meta").exists()
            try:
                j = Journal(str(copy))
            except (OSError, ValueError, JournalError):
                return {"acked": 0, "jid": None, "depth": 0, "bytes": 0, "oldest_rtime": None,
                        "instruments": {}, "damaged": 1}
            out: dict[str, Any] = {
                "acked": j.acked, "jid": j.jid if had_meta else None, "depth": j.depth,
                "bytes": j.bytes_used, "oldest_rtime": None, "instruments": {},
                "damaged": j.recovery["corrupt_records"] + (1 if j.recovery["torn_bytes"] else 0),
            }
            after = j.acked
            while True:
                batch = j.read(after, limit=256, max_bytes=1 << 20)
                if not batch:
                    break
                for seq, kind, payload in batch:
                    after = seq
                    if kind & 0x7F != KIND_READING:
                        continue
                    _count_reading(out, payload)
            return out


def _count_reading(out: dict[str, Any], payload: bytes) -> None:
    """Instrument address and receive time of one journaled reading (its
    values are never looked at)."""
    try:
        p = json.loads(payload)
        rt = p.get("rtime")
        addr = (p.get("inst") or {}).get("addr") or "?"
    except (ValueError, AttributeError):
        rt, addr = None, "?"
    if isinstance(rt, int) and (out["oldest_rtime"] is None or rt < out["oldest_rtime"]):
        out["oldest_rtime"] = rt
    e = out["instruments"].setdefault(addr, {"pending": 0, "last_rtime": None})
    e["pending"] += 1
    if isinstance(rt, int) and (e["last_rtime"] is None or rt > e["last_rtime"]):
        e["last_rtime"] = rt


# --- a board on a serial port, through mpremote ------------------------------------

def mpremote_command() -> list[str]:
    """The mpremote installed beside this tool."""
    return [sys.executable, "-m", "mpremote"]


class BoardTarget(Target):
    kind = "board"

    def __init__(self, port: str, root: str = "/", *, ready_timeout: float = 30.0,
                 mpremote: list[str] | None = None) -> None:
        self.port = port
        self.root = root if root.endswith("/") else root + "/"
        self.ready_timeout = ready_timeout
        self.mpremote = mpremote or mpremote_command()
        self.held = False
        self.marker_found = False  # the watchdog was off before this session

    def where(self) -> str:
        return self.port

    def _p(self, rel: str) -> str:
        return self.root + rel.lstrip("/")

    def command(self, *args: str) -> list[str]:
        """The mpremote command line for `args` on this board."""
        return [*self.mpremote, "connect", self.port, "resume", *args]

    def _run(self, args: list[str], timeout: float, code: Exit, key: str
             ) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(self.command(*args), capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolError(code, key, port=self.port, detail="timeout") from None
        if proc.returncode != 0:
            detail = _last_line(proc.stderr) or _last_line(proc.stdout)
            raise ToolError(code, key, port=self.port, detail=detail)
        return proc

    def exec(self, code: str, *, timeout: float = 60.0, fail: Exit = Exit.DEVICE_NOT_FOUND,
             key: str = "board_silent") -> Any:
        """Run a boardscripts snippet and return what it printed after MARK."""
        proc = self._run(["exec", code], timeout, fail, key)
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith(bs.MARK):
                return json.loads(line[len(bs.MARK):])
        raise ToolError(fail, key, port=self.port, detail=_last_line(proc.stdout))

    def _ping(self, timeout: float) -> bool:
        try:
            return bool(self.exec(bs.ping(), timeout=timeout) == "ready")
        except ToolError:
            return False

    def open(self, create: bool = False, hold: bool = True, wait_s: float = 0.0) -> None:
        deadline = time.monotonic() + wait_s
        while not os.path.exists(self.port):  # a native-USB board re-enumerating
            if time.monotonic() >= deadline:
                raise ToolError(Exit.DEVICE_NOT_FOUND, "port_missing", port=self.port)
            time.sleep(0.5)
        while not self._ping(15.0):
            if time.monotonic() >= deadline:
                raise ToolError(Exit.DEVICE_NOT_FOUND, "board_silent", port=self.port,
                                detail="no MicroPython REPL")
            time.sleep(1.0)
        if hold:
            self.marker_found = self.read(bs.MAINTENANCE) is not None
            self._reset_and_wait(bs.hold(self._p(bs.MAINTENANCE)))
            self.held = True

    def _reset_and_wait(self, script: str) -> None:
        # The board resets under mpremote's feet: do not wait for its output.
        self._run(["exec", "--no-follow", script], 15.0, Exit.DEVICE_NOT_FOUND, "board_silent")
        time.sleep(1.0)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._ping(5.0):
                return
            time.sleep(0.5)
        raise ToolError(Exit.DEVICE_NOT_FOUND, "board_no_return", port=self.port)

    def close(self, restart: bool = True) -> None:
        if not self.held:
            return
        self.held = False
        if restart:
            self._run(["exec", "--no-follow", bs.release(self._p(bs.MAINTENANCE))], 15.0,
                      Exit.DEVICE_NOT_FOUND, "board_silent")
        else:
            self.exec(bs.remove(self._p(bs.MAINTENANCE)))

    def read(self, rel: str) -> bytes | None:
        hexdata = self.exec(bs.read(self._p(rel)))
        return None if hexdata is None else bytes.fromhex(hexdata)

    def write_atomic(self, rel: str, data: bytes) -> None:
        path = self._p(rel)
        with tempfile.NamedTemporaryFile(prefix="ummc-", delete=False) as f:
            f.write(data)
            local = f.name
        try:
            self._run(["fs", "cp", local, ":" + path + ".tmp", "+",
                       "exec", bs.rename(path + ".tmp", path)], 60.0, Exit.FLASH_FAILED,
                      "write_failed")
        finally:
            os.unlink(local)

    def remove(self, rel: str) -> None:
        self.exec(bs.remove(self._p(rel)), fail=Exit.FLASH_FAILED, key="write_failed")

    def makedirs(self, rel: str) -> None:
        self.exec(bs.makedirs([self._p(rel).rstrip("/")]), fail=Exit.FLASH_FAILED,
                  key="write_failed")

    def rmtree(self, rel: str) -> None:
        self.exec(bs.rmtree(self._p(rel)), timeout=120.0, fail=Exit.FLASH_FAILED,
                  key="write_failed")

    def put_files(self, src: Path, files: list[str], dest: str, progress: Progress) -> None:
        top = self._p(dest).rstrip("/")
        dirs = sorted({top + "/" + f.rsplit("/", 1)[0] for f in files if "/" in f} | {top})
        self.exec(bs.makedirs(dirs), fail=Exit.FLASH_FAILED, key="copy_failed")
        for i in range(0, len(files), _BATCH):
            args: list[str] = []
            for rel in files[i:i + _BATCH]:
                args += [*(["+"] if args else []), "fs", "cp", str(src / rel), f":{top}/{rel}"]
            self._copy(args, progress)

    def _copy(self, args: list[str], progress: Progress) -> None:
        proc = subprocess.Popen(self.command(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        started = 0
        for line in proc.stdout:  # mpremote prints `cp SRC :DEST` as each copy starts
            if line.startswith("cp "):
                if started:
                    progress.advance()
                started += 1
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise ToolError(Exit.FLASH_FAILED, "copy_failed", port=self.port,
                            detail=_last_line(err))
        if started:
            progress.advance()

    def hashes(self, rel: str) -> dict[str, str]:
        result = self.exec(bs.hashes(self._p(rel).rstrip("/")), timeout=300.0,
                           fail=Exit.VERIFY_FAILED, key="readback_failed")
        return dict(result)

    def survey(self) -> dict[str, Any]:
        result = self.exec(bs.survey(self.root, self._p(STATE_DIR), ROOT_FILES, STATE_FILES),
                           timeout=300.0)
        return dict(result)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""
