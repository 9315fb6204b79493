"""First boot and provisioning: an unprovisioned gateway says so and waits
(no crash loop); once the technician's config is on its flash it starts,
reports to the fleet (birth: first boot), and answers the fleet's commands.
And a firmware that crashes at every start ends in safe mode, still
reporting, with its crash record readable from the fleet."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from devharness.broker import GatewayAccount
from hil_tests.bench import (
    Fleet,
    VirtualTarget,
    config_doc,
    needs_bench,
    provision_with_tool,
    wait_for,
)
from hil_tests.conftest import MakeTarget


def test_first_boot_waits_for_provisioning_then_reports_to_the_fleet(
        make_target: MakeTarget, fleet: Fleet, account: GatewayAccount,
        broker_host: str, network: dict[str, Any], tmp_path: Path) -> None:
    target = make_target()
    gw = account.gateway
    if isinstance(target, VirtualTarget):
        # Unboxed: no config yet. The gateway says why it waits, and waits.
        target.start()
        wait_for("the 'not provisioned' message",
                 lambda: "gateway not provisioned" in target.log(), 15)
        time.sleep(1.0)
        assert target.gw.running and target.gw.restarts == 0
        assert fleet.gateway(gw)["state"] is None  # never heard of it yet

    # The technician's step (docs/technician.md): `ummc-gateway provision`.
    provision_with_tool(target, account, broker_host, fleet.broker_port, tmp_path / "labels",
                        network=network)

    g = wait_for("the gateway online at the fleet",
                 lambda: (lambda g: g if g["state"] == "online" and g["health"] else None)(
                     fleet.gateway(gw)), 30)
    assert g["boot_count"] == 1 and g["fw"]
    assert g["health"]["journal_depth"] == 0 and g["health"]["resets_unexpected"] == 0

    # What a technician reads from the fleet: why it booted, and its config
    # without the secrets.
    c = fleet.command(gw, "diagnostics")
    assert c["status"] == "ok", c
    d = c["result"]
    assert d["boot"]["reason"] == "first_boot" and d["boot"]["count"] == 1
    assert d["config"]["uplink"]["password"] == "***"
    assert account.password not in str(c)
    if isinstance(target, VirtualTarget):
        assert target.gw.restarts == 0  # the config was picked up without a reset

    # A reboot from the fleet: answered, then the board restarts, expectedly.
    c = fleet.command(gw, "reboot", delay_ms=200)
    assert c["status"] == "ok", c
    wait_for("the gateway back after its reboot",
             lambda: fleet.gateway(gw)["boot_count"] == 2, 30)
    d = fleet.command(gw, "diagnostics")["result"]
    assert d["boot"]["reason"] in ("clean_restart", "soft_reset") and d["boot"]["unexpected"] == 0


def test_a_crash_loop_ends_in_safe_mode_that_still_reports(
        make_target: MakeTarget, fleet: Fleet, account: GatewayAccount,
        broker_host: str) -> None:
    target = needs_bench(make_target(env={"UMMC_VG_FAULT": "started"}),
                         "needs a firmware that crashes at every start")
    target.provision(config_doc(account, broker_host, fleet.broker_port))
    target.start()
    gw = account.gateway
    # Three crashes at start (each: crash record, reset), then safe mode.
    target.gw.wait_restarts(3, timeout=30)
    h = wait_for("a safe-mode heartbeat",
                 lambda: (lambda g: g if g["health"] and "safe_mode" in g["health"]["alarms"]
                          else None)(fleet.gateway(gw)), 30)
    assert h["boot_count"] == 4
    assert h["health"]["resets_unexpected"] == 3
    assert h["health"]["last_error"].startswith("safe_mode")
    time.sleep(1.0)
    assert target.gw.restarts == 3  # no more crashes: safe mode runs no session
    d = fleet.command(gw, "diagnostics")["result"]
    assert d["boot"]["reason"] == "crash"
    assert d["boot"]["last_crash"]["detail"] == "RuntimeError: injected fault at started"
    assert d["boot"]["last_crash"]["where"].startswith("unix_hw")
    assert "safe_mode" in d["alarms"]
