"""The board path of the tool, end to end over a serial line: the real
mpremote talks to MicroPython (the Unix port) on a pseudo-terminal, as it
would to an ESP32 on /dev/ttyUSB0. flash (app deploy + read-back), provision
and doctor run their board code: maintenance hold and reset, `fs cp`,
atomic rename and SHA-256 read-back and the doctor's survey, all executed
by MicroPython. Only esptool is left out (no chip here)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from firmware.board.ota import Ota
from gateway.bootinfo import BootInfo
from gateway.config import ConfigStore
from gateway.journal import Journal
from gateway.protocol import reading_payload
from tests.firmware_tool.conftest import PtyBoard, Run, SignedBundle, run_tool


def on_board(board: PtyBoard, command: str, *argv: str) -> Run:
    return run_tool("--lang", "en", command, "--port", board.port, "--board-root",
                    str(board.root), *argv, cwd=board.root.parent)


def test_flash_provision_and_doctor_over_a_serial_line(pty_board: PtyBoard, signed: SignedBundle,
                                                       ca_file: Path) -> None:
    root = pty_board.root
    r = on_board(pty_board, "flash", "--bundle", str(signed.container), "--trust",
                 str(signed.pub))
    assert r.code == 0, r.out + r.err
    assert "ummc 1.2.3 installed in app_a: 7 files read back, all identical." in r.out
    assert Ota(str(root)).select_slot() == str(root / "app_a")
    for rel, data in signed.files.items():
        assert (root / "app_a" / rel).read_bytes() == data
    # held in maintenance (a reset), then restarted into the app (another)
    assert pty_board.wait_boots(3) == 3
    assert not (root / "maintenance").exists()

    r = on_board(pty_board, "provision", "--unit", "U031", "--apn", "iam.ma", "--broker",
                 "mqtts://fleet.example.ma", "--ca", str(ca_file), "--no-label")
    assert r.code == 0, r.out + r.err
    cfg = ConfigStore(str(root / "data")).load()
    assert (cfg["unit"], cfg["gateway"], cfg["network"]["apn"]) == ("U031", "gw-u031", "iam.ma")
    assert (cfg["uplink"]["broker_port"], cfg["uplink"]["tls"]) == (8883, True)
    assert not (root / "data" / "config.json.tmp").exists()
    assert (root / "ca.pem").read_bytes() == ca_file.read_bytes()

    # the gateway ran a while: a boot record and two readings waiting
    now = int(time.time() * 1000)
    BootInfo(str(root / "data"), now - 7_200_000).mark_clean()
    j = Journal(str(root / "data" / "journal"))
    for i in range(2):
        j.append(reading_payload({"type": "glucose", "values": [["glucose", 5.4, "mmol/L"]],
                                  "flags": [], "itime": None},
                                 {"addr": "D1:22:33:44:55:66"}, now - 7_200_000 + i))
    r = on_board(pty_board, "doctor", "--offline")
    assert r.code == 0, r.out + r.err
    lines = r.out.splitlines()
    assert lines[1].startswith("✔ Board found: linux, MicroPython ")
    assert "✔ Firmware ummc 1.2.3 (app_a)" in lines
    assert any(ln.startswith("✔ Clock on time (") for ln in lines)
    assert "✔ Journal: 2 record(s) waiting to be sent (0 KB), the oldest from 2 h ago." in lines
    assert "· 1 start(s), 0 of them unexpected." in lines
    assert lines[-1] == "✔ VERDICT: gateway in good order, ready to go."
    assert json.loads((root / "ota_state.json").read_text())["active"] == "a"


def test_a_board_that_is_not_there(tmp_path: Path, signed: SignedBundle) -> None:
    r = run_tool("--lang", "en", "doctor", "--port", str(tmp_path / "ttyUSB7"))
    assert r.code == 3 and f"No board on {tmp_path / 'ttyUSB7'}" in r.err
