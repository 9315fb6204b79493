"""The tool and the board firmware agree on where things are on flash: the
state directory and the no-watchdog marker (firmware/board/hw.py and the
virtual gateway's unix_hw.py define them; the tool cannot import board code)."""

from __future__ import annotations

import re
from pathlib import Path

from firmware.tool.boardscripts import MAINTENANCE
from firmware.tool.target import STATE_DIR

BOARD = Path(__file__).resolve().parents[2] / "firmware" / "board"


def test_state_directory_and_watchdog_marker_match_the_board_code() -> None:
    hw = (BOARD / "hw.py").read_text()
    unix_hw = (BOARD / "unix_hw.py").read_text()
    assert re.search(r'^STATE = "/%s"$' % STATE_DIR, hw, re.M)
    assert re.search(r'^STATE = "%s"$' % STATE_DIR, unix_hw, re.M)
    assert f'os.stat("/{MAINTENANCE}")' in hw
