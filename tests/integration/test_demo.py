"""The README's run command, shortened: the demo brings up broker, fleet
server and simulated units; every unit's readings show in the API; Ctrl-C
(SIGINT) stops everything and leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devharness.ports import free_port
from tests.conftest import REPO


def _descendants(root: int) -> dict[int, str]:
    """pid -> command line of every live process below `root`."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":  # zombies are gone already
            parents[int(entry)] = int(fields[1])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                found[pid] = cmd.decode(errors="replace")
                frontier.append(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_demo_shows_every_unit_and_stops_cleanly(tmp_path: Path, broker: str) -> None:
    """With Mosquitto, and with the embedded amqtt broker a machine without
    Mosquitto falls back to."""
    state = tmp_path / "demo"
    units = 5
    proc = subprocess.Popen(
        [sys.executable, "-m", "devharness.demo", "--units", str(units), "--state", str(state),
         "--api-port", str(free_port()), "--first-within", "3", "--report-every", "1",
         "--broker", broker],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen_all = False
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"units with readings in the API.*: (\d+)/(\d+)", line)
            if m and m.group(1) == m.group(2) == str(units):
                seen_all = True
                break
            if time.monotonic() > deadline:
                break
        assert seen_all, "".join(lines)
        children = _descendants(proc.pid)
        commands = " ".join(children.values())
        broker_cmd = "mosquitto" if broker == "mosquitto" else "devharness.amqtt_broker"
        for part in (broker_cmd, "fleet_server", "gateway.sim.fleet"):
            assert part in commands, children
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        lines.append(out)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines)
    assert "stopped cleanly" in "".join(lines)
    left = {pid: cmd for pid, cmd in children.items() if _alive(pid)}
    assert left == {}
