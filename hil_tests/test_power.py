"""Power cuts: the gateway process killed (SIGKILL: nothing flushed, nothing
closed) at random moments while a glucose meter's records flow into the
journal and out to the fleet, and while an update is being installed. After
each cut the gateway boots again; the fleet ends with every record exactly
once, and with a version that verifies completely."""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from devharness.broker import GatewayAccount
from firmware import bundle
from firmware.board.ota import Ota
from firmware.build import Built, build
from firmware.virtual.bench import BenchClient
from hil_tests.bench import Fleet, config_doc, needs_bench, wait_for
from hil_tests.conftest import MakeTarget
from hil_tests.test_instruments import ble_addr

CUTS = 5


def test_power_cuts_while_readings_flow_lose_and_duplicate_nothing(
        make_target: MakeTarget, fleet: Fleet, bench: BenchClient, account: GatewayAccount,
        broker_host: str) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    meter = ble_addr()
    n = 300
    bench.call("add", profile="glucose", addr=meter, options={"serial": "7100019301"})
    bench.call("add_records", addr=meter, n=n, context_every=4)
    bench.call("set", addr=meter, attrs={"pace_s": 0.01})  # a download lasts ~3 s
    target = needs_bench(make_target(), "a power cut needs a relay on the board's supply")
    target.provision(config_doc(account, broker_host, fleet.broker_port, [
        {"addr": meter, "kind": "ble", "profile": "glucose"}]))
    cut_at = []
    for _ in range(CUTS):
        target.start()
        cut_at.append(round(rng.uniform(0.4, 2.0), 2))
        time.sleep(cut_at[-1])
        target.power_cut()
    target.start()

    rows = wait_for(f"all {n} records (seed {seed}, cuts at {cut_at} s)",
                    lambda: (lambda r: r if len(r) >= n else None)(
                        fleet.readings(account.gateway)), 60)
    iseqs = sorted(r["iseq"] for r in rows)
    assert iseqs == list(range(1, n + 1)), f"seed {seed}, cuts at {cut_at} s"
    d = fleet.command(account.gateway, "diagnostics")["result"]
    assert d["boot"]["reason"] == "unexpected_exit"  # a power cut, as the fleet sees it
    assert 1 <= d["boot"]["unexpected"] <= CUTS
    assert d["journal"]["recovery"]["corrupt_records"] == 0


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Built, dict[str, bytes]]:
    """Versions 1.0.0 and 2.0.0 of this firmware, signed by a release key."""
    d = tmp_path_factory.mktemp("releases")
    key = d / "fleet-fw.pem"
    pub = bundle.generate_key(key)
    v1 = build("1.0.0", d / "build", key)
    v2 = build("2.0.0", d / "build", key)
    return v1, v2, bundle.trust_map([pub])


def install(flash: Path, tree: Path) -> None:
    """What the technician's flash leaves: the bundle tree in slot a,
    manifest.json last."""
    slot = flash / "app_a"
    shutil.copytree(tree, slot, ignore=shutil.ignore_patterns("manifest.json"))
    shutil.copyfile(tree / "manifest.json", slot / "manifest.json")


def deliver(flash: Path, container: Path) -> None:
    """What the OTA transport leaves on flash: the whole bundle, received in
    chunks through ota.Receiver (resumable, its size and hash in the meta)."""
    data = container.read_bytes()
    rx = Ota(str(flash)).receiver(len(data), bundle.sha256_file(container))
    while not rx.complete:
        rx.write(rx.offset, data[rx.offset:rx.offset + 4096])


def test_power_cuts_during_an_update_always_leave_a_version_that_boots(
        make_target: MakeTarget, fleet: Fleet, account: GatewayAccount, broker_host: str,
        releases: tuple[Built, Built, dict[str, bytes]]) -> None:
    v1, v2, trusted = releases
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    target = needs_bench(make_target(env={"UMMC_VG_GOOD_BOOT_MS": "1500"}),
                         "a power cut needs a relay on the board's supply")
    target.flash.mkdir(parents=True)
    install(target.flash, v1.tree)
    target.provision(config_doc(account, broker_host, fleet.broker_port))
    target.start()
    wait_for("version 1.0.0 at the fleet",
             lambda: fleet.gateway(account.gateway)["fw"] == "1.0.0", 30)

    # The update arrives; the power goes at random moments while the gateway
    # stages it (at boot, as soon as it sees the whole bundle), switches,
    # restarts into it and tries it.
    target.power_cut()
    deliver(target.flash, v2.container)
    cut_at = []
    for _ in range(CUTS):
        target.start()
        cut_at.append(round(rng.uniform(0.05, 1.2), 2))
        time.sleep(cut_at[-1])
        target.power_cut()
        state = Ota(str(target.flash)).state()
        assert state is not None and Ota(str(target.flash)).complete(state["active"]), \
            f"no bootable version after a cut at {cut_at[-1]} s (seed {seed})"

    def ota_state() -> dict[str, Any]:
        with open(target.flash / "ota_state.json") as f:
            st: dict[str, Any] = json.loads(f.read())
        return st

    target.start()
    wait_for("the gateway back at the fleet",
             lambda: fleet.gateway(account.gateway)["state"] == "online", 30)
    last = ota_state().get("last") or {}
    if isinstance(last, dict) and last.get("event") == "rolled_back":
        # The cuts used up the new version's tries: the old one runs, whole.
        # The update can simply be delivered again.
        assert fleet.gateway(account.gateway)["fw"] == "1.0.0"
        target.power_cut()
        deliver(target.flash, v2.container)
        target.start()
    else:  # cut before the switch: the bundle is still whole on flash
        assert ota_state().get("pending") or (target.flash / "ota_incoming.bin").exists() \
            or ota_state().get("active") == "b", ota_state()

    wait_for("version 2.0.0 confirmed",
             lambda: (lambda s: s.get("pending") is None and isinstance(s.get("last"), dict)
                      and s["last"].get("event") == "confirmed")(ota_state()), 60)
    wait_for("version 2.0.0 at the fleet",
             lambda: fleet.gateway(account.gateway)["fw"] == "2.0.0", 30)
    active = str(ota_state()["active"])
    m = bundle.verify(target.flash / f"app_{active}", trusted)  # every file, signature
    assert m["version"] == "2.0.0", f"seed {seed}, cuts at {cut_at} s"
    assert not (target.flash / "ota_incoming.bin").exists()
