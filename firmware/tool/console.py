"""What the technician sees and types: plain lines in the chosen language,
check lines (✔ ok, ✘ failed, ! warning, · information) for `doctor`, progress
bars, and questions (instrument number, PIN).

Everything goes through one Console object made by cli.main, so tests run
the commands with string streams and read exactly what a technician reads."""

from __future__ import annotations

from typing import Any, TextIO

from firmware.tool.errors import Exit, ToolError
from firmware.tool.i18n import Messages
from firmware.tool.progress import Progress

MARKS = {"ok": "✔", "fail": "✘", "warn": "!", "info": "·"}


class Console:
    def __init__(self, msgs: Messages, out: TextIO, err: TextIO, inp: TextIO) -> None:
        self.msgs = msgs
        self.out = out
        self.err = err
        self.inp = inp

    @property
    def lang(self) -> str:
        return self.msgs.lang

    def t(self, key: str, **fields: Any) -> str:
        return self.msgs.t(key, **fields)

    def say(self, key: str, **fields: Any) -> None:
        self.raw(self.t(key, **fields))

    def raw(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def check(self, status: str, key: str, **fields: Any) -> None:
        """One line of a verdict: `✔ text`, `✘ text`, `! text` or `· text`."""
        self.raw(f"{MARKS[status]} {self.t(key, **fields)}")

    def error(self, key: str, **fields: Any) -> None:
        self.err.write(f"✘ {self.t(key, **fields)}\n")
        self.err.flush()

    def progress(self, key: str, total: int, **fields: Any) -> Progress:
        return Progress(self.t(key, **fields), total, self.out)

    def ask(self, key: str, **fields: Any) -> str:
        """A line typed by the technician (stripped); EOF is a usage error."""
        self.out.write(self.t(key, **fields) + " ")
        self.out.flush()
        line = self.inp.readline()
        if not line:
            raise ToolError(Exit.USAGE, "no_answer")
        return line.strip()
