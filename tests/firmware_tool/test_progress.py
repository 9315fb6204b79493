"""Progress bars: redrawn in place on a terminal, a few plain lines in a log."""

from __future__ import annotations

import io

from firmware.tool.progress import Progress


def test_a_log_gets_plain_lines_at_each_quarter() -> None:
    out = io.StringIO()
    bar = Progress("Copying files", 8, out, tty=False)
    for _ in range(8):
        bar.advance()
    bar.finish()
    assert out.getvalue().splitlines() == [
        "Copying files ... 0% (0/8)", "Copying files ... 25% (2/8)",
        "Copying files ... 50% (4/8)", "Copying files ... 75% (6/8)",
        "Copying files ... 100% (8/8)"]
    assert "\r" not in out.getvalue()


def test_a_terminal_gets_one_line_redrawn() -> None:
    out = io.StringIO()
    bar = Progress("Writing", 100, out, tty=True)
    bar.update(50)
    bar.finish()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "\rWriting [############------------]  50%" in text
    assert text.rstrip("\n").endswith("[########################] 100%")
