"""`ummc-gateway flash`: the bundle is checked before anything is written,
the app lands in the inactive slot and is read back file by file, and the
gateway's own OTA code then boots it and verifies it. esptool cannot run
without a board: its exact command lines are checked here, and a real board
run is part of hil_tests (--hil-port)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware import bundle
from firmware.board.ota import Ota
from firmware.tool import flash
from firmware.tool.console import Console
from firmware.tool.errors import Exit, ToolError
from firmware.tool.i18n import Messages
from firmware.tool.progress import Progress
from firmware.tool.target import VirtualTarget
from tests.firmware_tool.conftest import Run, SignedBundle, make_bundle, run_tool


def flash_virtual(vdir: Path, b: SignedBundle, path: Path | None = None, *extra: str,
                  lang: str = "en") -> Run:
    return run_tool("--lang", lang, "flash", "--virtual", str(vdir), "--bundle",
                    str(path or b.tree), "--trust", str(b.pub), *extra)


def test_esptool_command_lines() -> None:
    image = Path("/fw/ESP32_GENERIC-20260101-v1.28.0.bin")
    py = sys.executable
    assert flash.esptool_commands("/dev/ttyUSB0", image) == [
        [py, "-m", "esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud", "460800",
         "erase-flash"],
        [py, "-m", "esptool", "--chip", "esp32", "--port", "/dev/ttyUSB0", "--baud", "460800",
         "write-flash", "0x1000", str(image)],
    ]
    assert flash.esptool_commands("/dev/ttyACM0", image, chip="esp32s3", baud=921600,
                                  erase=False) == [
        [py, "-m", "esptool", "--chip", "esp32s3", "--port", "/dev/ttyACM0", "--baud", "921600",
         "write-flash", "0x0", str(image)]]


def test_the_esptool_commands_are_ones_esptool_accepts() -> None:
    """esptool's own parser takes every argument (it fails later, on the port)."""
    import subprocess

    for cmd in flash.esptool_commands("/dev/null-port", Path(__file__)):
        proc = subprocess.run([*cmd[:-1], cmd[-1], "--help"] if "write-flash" in cmd
                              else [*cmd, "--help"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_flash_installs_verifies_and_the_gateway_boots_it(tmp_path: Path,
                                                          signed: SignedBundle) -> None:
    vdir = tmp_path / "gw"
    r = flash_virtual(vdir, signed)  # a new virtual gateway: the directory is made
    assert r.code == 0, r.err
    assert "Bundle ummc 1.2.3 is genuine and whole (5 files)." in r.out
    assert "ummc 1.2.3 installed in app_a: 7 files read back, all identical." in r.out
    assert "Copying files ... 100% (6/6)" in r.out  # not a terminal: plain lines
    slot = vdir / "app_a"
    for rel, data in signed.files.items():
        assert (slot / rel).read_bytes() == data
    # the gateway's OTA code agrees: it boots app_a and the slot verifies completely
    ota = Ota(str(vdir))
    assert ota.select_slot() == str(vdir / "app_a")
    assert ota.status()["active_version"] == "1.2.3"
    trusted = bundle.trust_map([bundle.load_public_key(str(signed.pub))])
    assert bundle.verify(slot, trusted)["version"] == "1.2.3"


def test_a_second_flash_goes_to_the_other_slot_from_a_container(
        tmp_path: Path, signed: SignedBundle, fleet_key: Ed25519PrivateKey) -> None:
    vdir = tmp_path / "gw"
    assert flash_virtual(vdir, signed).code == 0
    newer = make_bundle(tmp_path / "build2", "1.3.0", fleet_key)
    r = flash_virtual(vdir, newer, newer.container)
    assert r.code == 0, r.err
    assert "installed in app_b" in r.out
    state = json.loads((vdir / "ota_state.json").read_text())
    assert (state["active"], state["pending"], state["last"]["version"]) == ("b", None, "1.3.0")
    assert Ota(str(vdir)).select_slot() == str(vdir / "app_b")
    assert (vdir / "app_a" / "manifest.json").exists()  # the old version is kept whole


@pytest.mark.parametrize("lang", ["fr", "ar", "en"])
def test_a_bundle_not_signed_by_the_fleet_is_refused_before_anything_is_written(
        lang: str, tmp_path: Path, signed: SignedBundle) -> None:
    vdir = tmp_path / "gw"
    vdir.mkdir()
    stranger = make_bundle(tmp_path / "evil", "9.9.9", Ed25519PrivateKey.generate())
    r = run_tool("--lang", lang, "flash", "--virtual", str(vdir), "--bundle",
                 str(stranger.container), "--trust", str(signed.pub))
    assert r.code == 9
    assert {"fr": "REFUSÉ (unknown_key)", "ar": "تم رفض حزمة البرنامج الثابت (unknown_key)",
            "en": "REFUSED (unknown_key)"}[lang] in r.err
    assert list(vdir.iterdir()) == []


def test_a_damaged_bundle_is_refused(tmp_path: Path, signed: SignedBundle) -> None:
    vdir = tmp_path / "gw"
    (signed.tree / "gateway" / "app.mpy").write_bytes(b"tampered")
    r = flash_virtual(vdir, signed)
    assert r.code == 9 and "size_mismatch" in r.err
    assert not vdir.exists()


def test_usage_mistakes(tmp_path: Path, signed: SignedBundle) -> None:
    vdir = tmp_path / "gw"
    r = run_tool("--lang", "en", "flash", "--virtual", str(vdir), "--bundle", str(signed.tree))
    assert r.code == 2 and "--trust" in r.err  # no trusted key: never flash blind
    r = flash_virtual(vdir, signed, None, "--image", str(signed.container))
    assert r.code == 2 and "a virtual gateway has no base image" in r.err
    r = run_tool("flash", "--port", str(tmp_path / "ttyUSB9"), "--bundle", str(signed.tree),
                 "--trust", str(signed.pub), "--image", str(signed.container))
    assert r.code == 3 and "Aucune carte sur" in r.err
    r = flash_virtual(vdir, signed, tmp_path / "missing.ummc")
    assert r.code == 2


class BadFlash(VirtualTarget):
    """A gateway whose flash stores one file wrongly (a worn or failing chip)."""

    def put_files(self, src: Path, files: list[str], dest: str, progress: Progress) -> None:
        super().put_files(src, files, dest, progress)
        victim = self.root / dest / "gateway" / "mqtt" / "client.mpy"
        data = bytearray(victim.read_bytes())
        data[100] ^= 0x01
        victim.write_bytes(bytes(data))


def test_a_file_that_reads_back_wrong_fails_verification_and_the_old_slot_stays(
        tmp_path: Path, signed: SignedBundle, fleet_key: Ed25519PrivateKey) -> None:
    vdir = tmp_path / "gw"
    assert flash_virtual(vdir, signed).code == 0
    newer = make_bundle(tmp_path / "build2", "1.3.0", fleet_key)
    out = io.StringIO()
    console = Console(Messages("en"), out, out, io.StringIO())
    with pytest.raises(ToolError) as caught:
        flash.run(console, BadFlash(vdir), bundle_path=newer.tree, trust=[str(newer.pub)],
                  image=None, chip="esp32", baud=flash.DEFAULT_BAUD, keep_data=False,
                  restart=False)
    assert caught.value.code == Exit.VERIFY_FAILED
    assert caught.value.fields == {"path": "gateway/mqtt/client.mpy"}
    assert not (vdir / "app_b" / "manifest.json").exists()  # never complete, never booted
    assert Ota(str(vdir)).select_slot() == str(vdir / "app_a")


def test_esptool_failing_on_the_port_is_exit_4_with_its_reason(tmp_path: Path,
                                                                signed: SignedBundle) -> None:
    """The real esptool, on a port that exists but is no serial line."""
    image = tmp_path / "micropython.bin"
    image.write_bytes(b"\xe9" + bytes(4095))
    r = run_tool("--lang", "en", "flash", "--port", "/dev/null", "--bundle", str(signed.tree),
                 "--trust", str(signed.pub), "--image", str(image))
    assert r.code == 4, r.out + r.err
    assert "esptool failed: " in r.err and "/dev/null" in r.err
    assert "Erasing the flash ... 0% (0/100)" in r.out
