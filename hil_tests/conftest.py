"""Bench (hardware-in-the-loop) suite: the scenarios a technician runs before a
gateway ships. With `--hil-port /dev/ttyUSB0` it drives a real board; by
default it drives the virtual gateway (MicroPython Unix port). The scenarios
arrive with issue 6; this file fixes the option so the suite's command line
is stable from now on."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--hil-port", default=None,
                     help="serial port of a real gateway board (default: the virtual gateway)")


@pytest.fixture(scope="session")
def hil_port(request: pytest.FixtureRequest) -> str | None:
    port: str | None = request.config.getoption("--hil-port")
    return port
