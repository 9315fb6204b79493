"""Shared fixtures: real services on free loopback ports, started by the tests.

Never depends on the services this machine runs on standard ports: every
broker (and database) here is started by the fixture and stopped after it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devharness.broker import GatewayAccount, Mosquitto, ServiceAccount

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Lines the MicroPython runs printed, echoed in pytest's terminal summary.
MPY_SUMMARIES: list[str] = []


def _tool(name: str) -> str:
    """A command from the venv's bin directory (or PATH)."""
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"`{name}` is not installed: run the README's set-up (make test)")
    return found


@pytest.fixture(scope="session")
def micropython_bin() -> str:
    return _tool("micropython")


@pytest.fixture(scope="session")
def mpy_cross_bin() -> str:
    return _tool("mpy-cross")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A shared anonymous Mosquitto for tests that only need a broker."""
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start a private Mosquitto with given accounts (per-gateway ACLs)."""
    started: list[Mosquitto] = []

    def make(gateways: list[GatewayAccount] | None = None,
             services: list[ServiceAccount] | None = None) -> Mosquitto:
        b = Mosquitto(tmp_path / f"mosquitto{len(started)}", gateways=gateways or [],
                      services=services or []).start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


@pytest.fixture(scope="session")
def mpy_image(mpy_cross_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The firmware image's modules compiled by mpy-cross, as on a board.

    A board runs precompiled .mpy (frozen or on flash): compiling 20 KB of
    source at import would not fit the ~100 KB heap, and is not what ships.
    MicroPython runs put this directory first on their path."""
    from firmware.image import compile_file, image_files

    out = tmp_path_factory.mktemp("mpy-image")
    for rel in image_files():
        proc = compile_file(mpy_cross_bin, REPO, rel, out)
        if proc.returncode != 0:
            pytest.fail(f"mpy-cross failed on {rel}: {proc.stderr}")
    return out


def mpy_env(image: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a `micropython` run: compiled image first, then the
    repository (for tests), then the port's frozen modules (asyncio)."""
    env = dict(os.environ)
    env["MICROPYPATH"] = f"{image}:{REPO}:.frozen"
    env.update(extra or {})
    return env


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MPY_SUMMARIES:
        terminalreporter.section("MicroPython Unix port")
        for line in MPY_SUMMARIES:
            terminalreporter.write_line(line)
