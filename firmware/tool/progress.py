"""A progress bar with no dependency, readable on a terminal and in a log.

On a terminal it redraws one line (`\\r`): `label [#########-----------]  45%`.
When the output is not a terminal (CI, a log file, a pipe) it never writes
`\\r`: it prints one line at 0 %, at each quarter and at 100 %, so a log
shows where a long step stopped."""

from __future__ import annotations

from typing import TextIO

_WIDTH = 24
_STEPS = (25, 50, 75)


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO, tty: bool | None = None) -> None:
        self.label = label
        self.total = max(int(total), 1)
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.done = 0
        self._printed: set[int] = set()
        self._finished = False
        self._draw()

    def _percent(self) -> int:
        return min(100, self.done * 100 // self.total)

    def _draw(self) -> None:
        pct = self._percent()
        if self.tty:
            filled = _WIDTH * pct // 100
            bar = "#" * filled + "-" * (_WIDTH - filled)
            self.stream.write(f"\r{self.label} [{bar}] {pct:3d}%")
            self.stream.flush()
            return
        mark = 0 if self.done == 0 else max([s for s in _STEPS if pct >= s] or [-1])
        if pct == 100:
            mark = 100
        if mark >= 0 and mark not in self._printed:
            self._printed.add(mark)
            self.stream.write(f"{self.label} ... {mark}% ({min(self.done, self.total)}/"
                              f"{self.total})\n")
            self.stream.flush()

    def update(self, done: int) -> None:
        """Set how much is done (0..total)."""
        self.done = max(0, min(int(done), self.total))
        self._draw()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def finish(self) -> None:
        """Mark the step complete (100 %) and end the line."""
        if self._finished:
            return
        self._finished = True
        self.update(self.total)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def stop(self) -> None:
        """End the line where it is (the step failed)."""
        if not self._finished and self.tty:
            self.stream.write("\n")
            self.stream.flush()
        self._finished = True
