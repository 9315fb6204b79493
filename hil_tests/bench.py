"""What the bench scenarios share (not a test module): the gateway under test
(the virtual gateway by default, a real board with --hil-port), its
provisioned configuration, and the fleet server's API as a technician sees
it (readings, gateways, health, commands and their results).

A target is what a technician has on the bench:
  VirtualTarget  the firmware's boot.py + main.py under the MicroPython Unix
                 port (firmware/virtual/launcher.py), a directory as flash, the
                 bench process's instrument simulators (firmware/virtual/bench.py)
  BoardTarget    a board on a serial port driven with mpremote: provisioning
                 (config.json copied to :data/config.json) and resets; what
                 needs simulated instruments, a power relay or simulated time
                 is skipped there with the reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from devharness.broker import GatewayAccount
from devharness.stack import FleetStack
from firmware.virtual.bench import BenchClient
from firmware.virtual.launcher import VirtualGateway
from gateway.config import ConfigStore

T = TypeVar("T")
YEAR_S = 365 * 86400


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 30.0,
             interval: float = 0.2) -> T:
    """Poll fn() until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except (httpx.HTTPError, ConnectionError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        time.sleep(interval)


class Fleet:
    """The fleet server's API, as the technician's browser uses it."""

    def __init__(self, stack: FleetStack) -> None:
        self.stack = stack

    @property
    def broker_port(self) -> int:
        assert self.stack.broker is not None
        return self.stack.broker.port

    def get(self, path: str, **params: Any) -> Any:
        return self.stack.get(path, **params)

    def readings(self, gateway: str, kind: str = "reading", **params: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.get("/readings", gateway=gateway, kind=kind,
                                              limit=1000, **params)
        return sorted(rows, key=lambda r: r["seq"])

    def gateway(self, gateway: str) -> dict[str, Any]:
        for g in self.get("/gateways"):
            if g["gateway"] == gateway:
                return dict(g)
        raise KeyError(gateway)

    def health(self, gateway: str) -> dict[str, Any]:
        for g in self.get("/fleet/health"):
            if g["gateway"] == gateway:
                return dict(g)
        raise KeyError(gateway)

    def command(self, gateway: str, op: str, timeout: float = 30.0,
                **args: Any) -> dict[str, Any]:
        """Send a command through the API and wait for the gateway's answer."""
        r = httpx.post(f"{self.stack.api}/api/v1/gateways/{gateway}/commands",
                       json={"op": op, "args": args},
                       headers={"Authorization": f"Bearer {self.stack.token}"}, timeout=10)
        r.raise_for_status()
        cid = r.json()["id"]

        def done() -> dict[str, Any] | None:
            c: dict[str, Any] = self.get(f"/commands/{cid}")
            return c if c["status"] != "pending" else None

        return wait_for(f"the result of {op}", done, timeout)


def config_doc(acc: GatewayAccount, broker_host: str, broker_port: int,
               instruments: list[dict[str, Any]] | None = None, *,
               network: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    """What the technician's tool provisions (gateway/config.py)."""
    uplink = {"broker_host": broker_host, "broker_port": broker_port, "tls": False,
              "password": acc.password, "backoff_min_s": 1, "backoff_max_s": 2,
              "heartbeat_s": 10, "resend_after_s": 5}
    uplink.update(sections.pop("uplink", {}))
    doc: dict[str, Any] = {"version": 1, "unit": acc.unit, "gateway": acc.gateway,
                           "uplink": uplink, "network": network or {"mode": "host"},
                           "instruments": instruments or []}
    doc.update(sections)
    return doc


def provision_with_tool(target: VirtualTarget | BoardTarget, acc: GatewayAccount,
                        broker_host: str, broker_port: int, label_dir: Path,
                        network: dict[str, Any] | None = None) -> None:
    """Provision as a technician does (docs/technician.md): the
    `ummc-gateway provision` command, on the virtual gateway's flash or the
    board's serial port. Checks it exits 0 and leaves the QR label."""
    from firmware.tool.cli import main as tool

    where = (["--virtual", str(target.flash)] if isinstance(target, VirtualTarget)
             else ["--port", target.port])
    net = network or {"mode": "host"}
    args = ["--lang", "en", "provision", *where, "--unit", acc.unit, "--gateway", acc.gateway,
            "--broker", f"mqtt://{broker_host}:{broker_port}", "--password", acc.password,
            "--label-dir", str(label_dir), "--accounts-dir", str(label_dir)]
    if net.get("wifi_ssid"):
        args += ["--wifi-ssid", net["wifi_ssid"], "--wifi-password", net.get("wifi_password", "")]
    else:
        args += ["--network", net["mode"]]
    if isinstance(target, VirtualTarget):
        args.append("--no-restart")  # it is waiting for its config: no reset needed
    rc = tool(args)
    assert rc == 0, f"ummc-gateway provision exited {rc}"
    assert list(label_dir.glob("*.png")), "no QR label saved"


class VirtualTarget:
    """The virtual gateway on the bench."""

    virtual = True

    def __init__(self, root: Path, image: Path, bench_address: str,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.gw = VirtualGateway(root / "flash", image, bridge=bench_address, env=env)
        self.bench_address = bench_address

    @property
    def flash(self) -> Path:
        return self.gw.flash

    @property
    def state(self) -> Path:
        return self.gw.state

    def provision(self, doc: dict[str, Any]) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        ConfigStore(str(self.state)).save(doc)

    def start(self) -> None:
        self.gw.start()

    def power_cut(self) -> None:
        self.gw.kill()

    def stop(self) -> None:
        self.gw.stop()

    def log(self) -> str:
        return self.gw.log()


class BoardTarget:
    """A real board on a serial port, through mpremote."""

    virtual = False

    def __init__(self, port: str, root: Path) -> None:
        self.port = port
        self.root = root
        self.tool = shutil.which("mpremote")
        if self.tool is None:
            pytest.skip("--hil-port needs mpremote (pip install mpremote)")

    def _run(self, *args: str, timeout: float = 60.0) -> str:
        assert self.tool is not None
        proc = subprocess.run([self.tool, "connect", self.port, *args], capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"mpremote {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def provision(self, doc: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        local = self.root / "config.json"
        local.write_text(json.dumps(doc))
        self._run("exec", "import os\ntry:\n os.mkdir('/data')\nexcept OSError:\n pass")
        self._run("fs", "cp", str(local), ":/data/config.json.tmp")
        self._run("exec", "import os\nos.rename('/data/config.json.tmp', '/data/config.json')")

    def start(self) -> None:
        self._run("reset")

    def power_cut(self) -> None:
        pytest.skip("a power cut needs a relay on the board's supply")

    def stop(self) -> None:
        pass

    def log(self) -> str:
        return ""


def needs_bench(target: VirtualTarget | BoardTarget, why: str) -> VirtualTarget:
    """Skip on a real board: the scenario needs the virtual bench."""
    if not isinstance(target, VirtualTarget):
        pytest.skip(f"real board: {why}")
    return target


def wait_subscribed(bench: BenchClient, addr: str, timeout: float = 20.0) -> None:
    wait_for(f"the gateway to subscribe to {addr}",
             lambda: bench.call("stats", addr=addr)["subscribed"], timeout)
