"""Starting and stopping the service processes the harness runs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start argv in its own session (a terminal's Ctrl-C reaches only us, and
    we stop it in order), its output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=out,
                                start_new_session=True)


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> bool:
    """SIGTERM, wait, then SIGKILL the process group if it did not stop.
    Returns True when it stopped by itself."""
    if proc is None or proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return False


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and its group: no clean shutdown, like a power cut."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def wait_until(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.1) -> T:
    """Poll until predicate() is truthy and return it; TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)
