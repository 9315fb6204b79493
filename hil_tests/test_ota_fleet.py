"""OTA from the fleet server (docs/protocol.md "OTA"): an admin uploads a
signed bundle and rolls it out to a unit; the gateway downloads it in HTTP
ranges, checks it, stages it beside the running version, switches, restarts
into it, reports the new version in its birth and confirms it. A bundle
signed by a key the gateway does not trust is refused, and the gateway stays
on its version. Everything is asserted through the fleet's API."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devharness.stack import FleetStack
from firmware import bundle
from firmware.build import Built, build
from hil_tests.bench import config_doc, needs_bench, wait_for
from hil_tests.conftest import MakeTarget


@dataclass
class OtaStack(FleetStack):
    """The fleet stack with a bundle directory and the release keys it trusts."""

    extra: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra}


@dataclass(frozen=True)
class Releases:
    v1: Built
    v2: Built
    foreign: Built  # signed by a key the gateways do not trust
    trust: str  # what the fleet trusts: both keys


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    d = tmp_path_factory.mktemp("ota-releases")
    key, other = d / "fleet-fw.pem", d / "other.pem"
    pub, pub_other = bundle.generate_key(key), bundle.generate_key(other)
    return Releases(build("1.0.0", d / "build", key), build("2.0.0", d / "build", key),
                    build("1.5.0", d / "other", other), f"{pub.hex()},{pub_other.hex()}")


@pytest.fixture(scope="module")
def ota_stack(tmp_path_factory: pytest.TempPathFactory, releases: Releases
              ) -> Iterator[OtaStack]:
    work = tmp_path_factory.mktemp("ota-fleet")
    s = OtaStack(work, units=1, extra={"UMMC_FIRMWARE_DIR": str(work / "firmware"),
                                       "UMMC_FIRMWARE_TRUST": releases.trust})
    try:
        s.setup()
        yield s
    finally:
        s.teardown()


def api(stack: FleetStack, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {stack.token}", **kw.pop("headers", {})}
    return httpx.request(method, f"{stack.api}/api/v1{path}", timeout=30, headers=headers,
                         **kw)


def upload(stack: FleetStack, b: Built) -> dict[str, Any]:
    r = api(stack, "POST", "/firmware/bundles", content=b.container.read_bytes(),
            headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    assert out["sha256"] == b.sha256
    return out


def rollout(stack: FleetStack, version: str, unit: str) -> dict[str, Any]:
    r = api(stack, "POST", "/firmware/rollouts",
            json={"version": version, "target": {"unit": unit}, "deadline_s": 120})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def finished(stack: FleetStack, rid: int) -> dict[str, Any] | None:
    r: dict[str, Any] = stack.get(f"/firmware/rollouts/{rid}")
    return r if all(g["status"] not in ("pending", "held") for g in r["gateways"]) else None


def fw_of(stack: FleetStack, gateway: str) -> str | None:
    for g in stack.get("/gateways"):
        if g["gateway"] == gateway:
            return str(g["fw"]) if g["fw"] else None
    return None


def install(flash: Path, tree: Path) -> None:
    """What the technician's flash leaves: the tree in slot a, manifest last."""
    slot = flash / "app_a"
    shutil.copytree(tree, slot, ignore=shutil.ignore_patterns("manifest.json"))
    shutil.copyfile(tree / "manifest.json", slot / "manifest.json")


def test_rollout_from_the_fleet_updates_the_gateway_and_refuses_a_foreign_bundle(
        make_target: MakeTarget, ota_stack: OtaStack, releases: Releases) -> None:
    acc = ota_stack.gateways[0]
    assert ota_stack.broker is not None
    target = needs_bench(make_target(env={"UMMC_VG_GOOD_BOOT_MS": "1500"}),
                         "the bench runs the virtual gateway here")
    target.flash.mkdir(parents=True)
    install(target.flash, releases.v1.tree)
    target.provision(config_doc(acc, "127.0.0.1", ota_stack.broker.port))
    target.start()
    wait_for("version 1.0.0 at the fleet", lambda: fw_of(ota_stack, acc.gateway) == "1.0.0", 30)

    def ota_state() -> dict[str, Any]:
        st: dict[str, Any] = json.loads((target.flash / "ota_state.json").read_text())
        return st

    # A bundle the fleet accepts (it trusts both keys) but this gateway does
    # not: refused after the download, nothing switched.
    upload(ota_stack, releases.foreign)
    bad = rollout(ota_stack, "1.5.0", acc.unit)
    assert bad["gateways"][0]["status"] == "pending" and bad["gateways"][0]["published"]
    done = wait_for("the foreign bundle's answer", lambda: finished(ota_stack, bad["id"]), 30)
    g = done["gateways"][0]
    assert (g["status"], g["error"]) == ("error", "unknown_key"), g
    assert fw_of(ota_stack, acc.gateway) == "1.0.0"
    assert ota_state()["pending"] is None
    assert not (target.flash / "ota_incoming.bin").exists()

    # The link is the download's only permission.
    url = f"{ota_stack.api}/api/v1/firmware/bundles/2.0.0"
    assert httpx.get(url, params={"token": "x" * 43}).status_code == 401

    # The real update: ok once staged and switched, then version 2.0.0 in the
    # birth after the restart, confirmed healthy by the gateway itself.
    upload(ota_stack, releases.v2)
    good = rollout(ota_stack, "2.0.0", acc.unit)
    done = wait_for("the update's answer", lambda: finished(ota_stack, good["id"]), 30)
    g = done["gateways"][0]
    assert g["status"] == "ok", g
    assert g["result"]["version"] == "2.0.0" and g["result"]["previous"] == "1.0.0"
    wait_for("version 2.0.0 at the fleet", lambda: fw_of(ota_stack, acc.gateway) == "2.0.0", 30)
    wait_for("version 2.0.0 confirmed",
             lambda: ota_state()["pending"] is None
             and (ota_state().get("last") or {}).get("event") == "confirmed", 30)
    assert ota_state()["active"] == "b"
    status: dict[str, Any] = ota_stack.get(f"/firmware/rollouts/{good['id']}")
    assert status["counts"]["updated"] == 1 and status["gateways"][0]["updated"]
    m = bundle.verify(target.flash / "app_b", bundle.trust_map([bytes.fromhex(
        releases.trust.split(",")[0])]))
    assert m["version"] == "2.0.0"
