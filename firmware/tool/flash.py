"""`ummc-gateway flash`: put MicroPython and the gateway app on a board, or
the app alone on a board or a virtual gateway, and prove every file arrived.

Steps (each stops the command with its exit code when it fails):
1. The bundle (a tree `build/ummc-<v>/` or a container `.ummc`) is checked
   as a gateway would check it (firmware/bundle.py: signature by a trusted
   key, every file's hash) BEFORE anything is written: exit 9.
2. With `--image`: esptool `erase-flash` (unless --keep-data), then
   `write-flash <offset> <image>` (MicroPython's own offset for the chip);
   the board resets into MicroPython: exit 4 on failure. esptool_commands()
   builds the exact command lines (the tests check them: no board here).
3. The app goes into the slot that is not active (`app_a` on a fresh
   board), the same way OTA stages one (docs/firmware.md): the slot's
   manifest.json removed first, the slot emptied, the files and manifest.sig
   copied, then every file READ BACK from the gateway and its SHA-256
   compared (exit 5 on a difference, extra file or missing file), and only
   then manifest.json written (atomically) and read back: until that
   moment the slot is incomplete and never booted.
4. `ota_state.json` is replaced atomically: the new slot is `active` (a
   technician's install is not a trial: it must not roll back in a
   workshop without a broker), `last` = {"event": "installed"}.
A power cut at any point leaves the previous slot complete and active."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from firmware import bundle
from firmware.board import ota
from firmware.tool.console import Console
from firmware.tool.errors import Exit, ToolError
from firmware.tool.target import Target, sha256_bytes

# Where MicroPython's image starts in flash, by chip (micropython.org/download).
OFFSETS = {"esp32": "0x1000", "esp32s2": "0x1000", "esp32s3": "0x0", "esp32c3": "0x0",
           "esp32c6": "0x0"}
DEFAULT_BAUD = 460800
_PERCENT = re.compile(rb"(\d{1,3}(?:\.\d+)?)\s?%")


def esptool_commands(port: str, image: Path, chip: str = "esp32", baud: int = DEFAULT_BAUD,
                     erase: bool = True) -> list[list[str]]:
    """The esptool invocations (esptool 5 syntax) that put `image` on the board."""
    base = [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "--baud",
            str(baud)]
    cmds = [[*base, "erase-flash"]] if erase else []
    cmds.append([*base, "write-flash", OFFSETS[chip], str(image)])
    return cmds


def run_esptool(cmd: list[str], console: Console, key: str) -> None:
    """Run one esptool command with a progress bar fed by the percentages it prints."""
    bar = console.progress(key, 100)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:
        bar.stop()
        raise ToolError(Exit.FLASH_FAILED, "esptool_failed", detail=str(e)) from None
    assert proc.stdout is not None
    tail = b""
    while True:
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        tail = (tail + chunk)[-2000:]
        found = _PERCENT.findall(chunk)
        if found:
            bar.update(int(float(found[-1])))
    if proc.wait() != 0:
        bar.stop()
        lines = [ln.decode(errors="replace").strip() for ln in re.split(rb"[\r\n]+", tail)
                 if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        detail = (errors or lines or [f"exit {proc.returncode}"])[-1]
        raise ToolError(Exit.FLASH_FAILED, "esptool_failed", detail=detail[:200])
    bar.finish()


# --- the bundle -------------------------------------------------------------------

def trusted_keys(specs: list[str]) -> dict[str, bytes]:
    try:
        keys = [bundle.load_public_key(s) for s in specs] + bundle.trust_from_env()
    except bundle.KeyFileError as e:
        raise ToolError(Exit.USAGE, "bad_trust_key", detail=str(e)) from None
    if not keys:
        raise ToolError(Exit.USAGE, "no_trust_key", env=bundle.TRUST_ENV)
    return bundle.trust_map(keys)


def unpack(container: Path, out: Path) -> None:
    """A container's files as a tree (the container was verified already)."""
    with container.open("rb") as f:
        mbytes, sig, _ = ota.read_head(f)
        m = ota.parse_manifest(mbytes)
        for e in m["files"]:
            dest = out / e["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            data = f.read(e["size"])
            if len(data) != e["size"] or sha256_bytes(data) != e["sha256"]:
                raise bundle.BundleRejected("hash_mismatch", e["path"])
            dest.write_bytes(data)
    (out / ota.SIGNATURE).write_bytes(sig)
    (out / ota.MANIFEST).write_bytes(mbytes)


def check_bundle(path: Path, trusted: dict[str, bytes]) -> dict[str, Any]:
    if not path.exists():
        raise ToolError(Exit.USAGE, "bundle_missing", path=str(path))
    try:
        return bundle.verify(path, trusted)
    except bundle.BundleRejected as e:
        raise ToolError(Exit.BUNDLE_REFUSED, "bundle_refused", reason=e.code,
                        detail=e.detail) from None


def expected_hashes(tree: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """What the slot must hold once complete: every file of the manifest,
    manifest.sig and manifest.json."""
    want = {e["path"]: e["sha256"] for e in manifest["files"]}
    for name in (ota.SIGNATURE, ota.MANIFEST):
        want[name] = sha256_bytes((tree / name).read_bytes())
    return want


# --- the slot ---------------------------------------------------------------------

def _complete(target: Target, slot: str) -> bool:
    return target.read(f"app_{slot}/{ota.MANIFEST}") is not None


def active_slot(target: Target) -> str | None:
    """The slot the gateway boots now (as ota.Ota.state() decides), or None."""
    data = target.read(ota.STATE)
    st = None
    if data is not None:
        try:
            st = json.loads(data)
        except ValueError:
            st = None
    active = st.get("active") if isinstance(st, dict) else None
    if active in ota.SLOTS and _complete(target, active):
        return str(active)
    for s in ota.SLOTS:
        if _complete(target, s):
            return s
    return None


def deploy(target: Target, tree: Path, manifest: dict[str, Any], console: Console) -> str:
    """Install the bundle tree into the inactive slot, verify, switch; the slot name."""
    active = active_slot(target)
    slot = "a" if active is None else ("b" if active == "a" else "a")
    top = f"app_{slot}"
    version = manifest["version"]
    console.say("deploy_start", version=version, slot=top, where=target.where())
    target.remove(f"{top}/{ota.MANIFEST}")  # the slot is incomplete from here on
    target.rmtree(top)
    files = [e["path"] for e in manifest["files"]] + [ota.SIGNATURE]
    bar = console.progress("copying", len(files))
    try:
        target.put_files(tree, files, top, bar)
    except ToolError:
        bar.stop()
        raise
    bar.finish()

    want = expected_hashes(tree, manifest)
    console.say("verifying", n=len(want))
    got = target.hashes(top)
    _compare({k: v for k, v in want.items() if k != ota.MANIFEST}, got)
    mbytes = (tree / ota.MANIFEST).read_bytes()
    target.write_atomic(f"{top}/{ota.MANIFEST}", mbytes)
    back = target.read(f"{top}/{ota.MANIFEST}")
    if back is None or sha256_bytes(back) != want[ota.MANIFEST]:
        raise ToolError(Exit.VERIFY_FAILED, "verify_mismatch", path=f"{top}/{ota.MANIFEST}")

    state = {"active": slot, "pending": None, "tries": 0, "max_tries": 2, "deadline": None,
             "window_ms": 900000, "last": {"event": "installed", "version": version}}
    target.write_atomic(ota.STATE, json.dumps(state).encode())
    console.check("ok", "deploy_done", version=version, slot=top, n=len(want))
    return slot


def _compare(want: dict[str, str], got: dict[str, str]) -> None:
    for path in sorted(want):
        if path not in got:
            raise ToolError(Exit.VERIFY_FAILED, "verify_missing", path=path)
        if got[path] != want[path]:
            raise ToolError(Exit.VERIFY_FAILED, "verify_mismatch", path=path)
    extra = sorted(set(got) - set(want))
    if extra:
        raise ToolError(Exit.VERIFY_FAILED, "verify_extra", path=extra[0])


# --- the command ------------------------------------------------------------------

def run(console: Console, target: Target, *, bundle_path: Path, trust: list[str],
        image: Path | None, chip: str, baud: int, keep_data: bool, restart: bool) -> Exit:
    trusted = trusted_keys(trust)
    manifest = check_bundle(bundle_path, trusted)
    console.check("ok", "bundle_ok", version=manifest["version"], n=len(manifest["files"]))
    if image is not None:
        if target.kind != "board":
            raise ToolError(Exit.USAGE, "image_needs_board")
        if not image.is_file():
            raise ToolError(Exit.USAGE, "image_missing", path=str(image))
        port = target.where()
        if not Path(port).exists():
            raise ToolError(Exit.DEVICE_NOT_FOUND, "port_missing", port=port)
        cmds = esptool_commands(port, image, chip, baud, erase=not keep_data)
        for cmd in cmds:
            run_esptool(cmd, console, "erasing" if "erase-flash" in cmd else "writing_image")
        console.check("ok", "image_written", image=image.name)
    # After esptool the board boots a fresh MicroPython, which first formats
    # its filesystem: give it time to come up.
    target.open(create=True, hold=True, wait_s=60.0 if image is not None else 0.0)
    try:
        with tempfile.TemporaryDirectory(prefix="ummc-bundle-") as tmp:
            tree = bundle_path
            if bundle_path.is_file():
                tree = Path(tmp) / "tree"
                unpack(bundle_path, tree)
            deploy(target, tree, manifest, console)
    finally:
        target.close(restart=restart)
    if restart and target.kind == "board":
        console.say("restarting")
    console.check("ok", "flash_done", where=target.where())
    return Exit.OK
