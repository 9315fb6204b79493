"""Bench (hardware-in-the-loop) suite: the scenarios a technician runs before a
gateway ships (issue 6). With `--hil-port /dev/ttyUSB0` it drives a real
board; by default it drives the virtual gateway: the firmware's boot.py and
main.py under the MicroPython Unix port, instruments simulated by the bench
process (BLE through its bridge, serial on pseudo-terminals), against a real
Mosquitto and a real fleet server (devharness/stack.py). Every scenario
asserts what the fleet server's API shows. docs/virtual_gateway.md maps the
scenarios to a real board.

Shared across the session (started once): the fleet stack with a gateway
account per scenario, the compiled image, the bench process. Each scenario
has its own gateway identity, flash directory and instruments."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from devharness.broker import GatewayAccount
from devharness.stack import FleetStack
from firmware.virtual.bench import BenchClient, BenchProcess
from firmware.virtual.launcher import build_image
from hil_tests.bench import BoardTarget, Fleet, VirtualTarget

UNITS = 16  # gateway accounts: one per scenario
MakeTarget = Callable[..., VirtualTarget | BoardTarget]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--hil-port", default=None,
                     help="serial port of a real gateway board (default: the virtual gateway)")
    parser.addoption("--hil-broker-host", default=None,
                     help="with --hil-port: the address the board reaches this machine's "
                          "broker at (its LAN address)")
    parser.addoption("--hil-wifi", default=None,
                     help="with --hil-port: SSID:PASSWORD of the bench's Wi-Fi")


@pytest.fixture(scope="session")
def hil_port(request: pytest.FixtureRequest) -> str | None:
    port: str | None = request.config.getoption("--hil-port")
    return port


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetStack]:
    s = FleetStack(tmp_path_factory.mktemp("hil-fleet"), units=UNITS)
    try:
        s.setup()
        yield s
    finally:
        s.teardown()


@pytest.fixture(scope="session")
def fleet(stack: FleetStack) -> Fleet:
    return Fleet(stack)


_accounts = itertools.count()


@pytest.fixture
def account(stack: FleetStack) -> GatewayAccount:
    """A gateway identity of its own for each scenario."""
    i = next(_accounts)
    if i >= len(stack.gateways):
        pytest.fail(f"more scenarios than gateway accounts: raise UNITS ({UNITS})")
    return stack.gateways[i]


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The firmware image compiled by mpy-cross (the virtual gateway's base image)."""
    return build_image(tmp_path_factory.mktemp("hil-image"))


@pytest.fixture(scope="session")
def bench_process(tmp_path_factory: pytest.TempPathFactory,
                  hil_port: str | None) -> Iterator[BenchProcess | None]:
    if hil_port:
        yield None
        return
    b = BenchProcess(tmp_path_factory.mktemp("hil-bench")).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def bench(bench_process: BenchProcess | None) -> Iterator[BenchClient]:
    """Control of the bench's instrument simulators."""
    if bench_process is None:
        pytest.skip("real board: this scenario needs the bench's simulated instruments, "
                    "which cannot reach a board's radio or UART")
    c = bench_process.client()
    yield c
    c.close()


@pytest.fixture
def broker_host(request: pytest.FixtureRequest, hil_port: str | None) -> str:
    if not hil_port:
        return "127.0.0.1"
    host: str | None = request.config.getoption("--hil-broker-host")
    if not host:
        pytest.skip("--hil-port needs --hil-broker-host (this machine's address on the "
                    "board's network)")
    return host


@pytest.fixture
def network(request: pytest.FixtureRequest, hil_port: str | None) -> dict[str, Any]:
    """The config's `network` section: nothing to bring up for the virtual
    gateway; the bench's Wi-Fi (--hil-wifi SSID:PASSWORD) for a board."""
    if not hil_port:
        return {"mode": "host"}
    wifi: str | None = request.config.getoption("--hil-wifi")
    if not wifi or ":" not in wifi:
        pytest.skip("--hil-port needs --hil-wifi SSID:PASSWORD (the board's network)")
    ssid, _, password = wifi.partition(":")
    return {"mode": "wifi", "wifi_ssid": ssid, "wifi_password": password}


@pytest.fixture
def make_target(request: pytest.FixtureRequest, hil_port: str | None, image: Path,
                bench_process: BenchProcess | None,
                tmp_path: Path) -> Iterator[MakeTarget]:
    """make_target(env=None) -> the gateway under test (stopped at the end)."""
    made: list[VirtualTarget | BoardTarget] = []

    def make(env: dict[str, str] | None = None) -> VirtualTarget | BoardTarget:
        t: VirtualTarget | BoardTarget
        if hil_port:
            t = BoardTarget(hil_port, tmp_path / "board")
        else:
            assert bench_process is not None
            t = VirtualTarget(tmp_path / f"gw{len(made)}", image, bench_process.address, env)
        made.append(t)
        return t

    yield make
    for t in made:
        t.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            text = t.log()
            if len(text) > 6000:
                text = text[:2000] + "\n[...]\n" + text[-4000:]
            print(f"--- {getattr(t, 'root', '')} log ---\n{text}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                               ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # keeps each phase's report on the item, for make_target's teardown
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep
