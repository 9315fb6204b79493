"""Accounts for a fleet run on one machine: one broker identity per gateway
(username = gateway id, random password) plus the fleet server's own.

Written as two files: `accounts.json` (with passwords: the broker's password
file and the simulated gateways read it) and `registry.json` (units and
gateways only: what the fleet server registers)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from devharness.broker import GatewayAccount, ServiceAccount


def make_accounts(units: int) -> tuple[list[GatewayAccount], ServiceAccount]:
    gateways = [GatewayAccount(unit=f"U{i:03d}", gateway=f"gw-u{i:03d}",
                               password=secrets.token_urlsafe(18)) for i in range(1, units + 1)]
    return gateways, ServiceAccount("fleet-server", secrets.token_urlsafe(18))


def write_account_files(directory: Path, gateways: list[GatewayAccount],
                        service: ServiceAccount) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    accounts = directory / "accounts.json"
    accounts.write_text(json.dumps({
        "gateways": [{"unit": g.unit, "gateway": g.gateway, "password": g.password}
                     for g in gateways],
        "service": {"username": service.username, "password": service.password},
    }, indent=1))
    accounts.chmod(0o600)
    registry = directory / "registry.json"
    registry.write_text(json.dumps([{"unit": g.unit, "gateway": g.gateway} for g in gateways],
                                   indent=1))
    return accounts, registry
