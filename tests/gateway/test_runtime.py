"""The gateway application (gateway/runtime.py) against a real Mosquitto with
per-gateway ACLs: commands from the fleet and their correlated results,
idempotent replays, a config that breaks the uplink rolled back by itself,
a reboot command, and the boot record in `birth`. The test plays the fleet
server with paho-mqtt on a service account."""

from __future__ import annotations

import asyncio
import json
import queue
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devharness.broker import GatewayAccount, Mosquitto, ServiceAccount
from gateway.config import ConfigStore
from gateway.runtime import Runtime, make_mqtt_client

GW = GatewayAccount("U001", "gw-u001", "gw-secret-1")
SVC = ServiceAccount("fleet", "fleet-secret")
PREFIX = GW.prefix
CUFF = "C4:7C:8D:6A:00:01"


class Fleet:
    """The fleet server's side of `cmd`/`cmd/result`, `birth` and `state`."""

    def __init__(self, port: int) -> None:
        self.messages: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fleet-test")
        c.username_pw_set(SVC.username, SVC.password)
        c.on_message = lambda _c, _u, m: self.messages.put((m.topic, json.loads(m.payload)))
        c.connect("127.0.0.1", port)
        c.subscribe([(f"{PREFIX}/cmd/result", 1), (f"{PREFIX}/birth", 1)])
        c.loop_start()
        self.client = c

    def command(self, cid: str, op: str, **args: Any) -> None:
        body = {"v": 1, "id": cid, "op": op, "args": args, "ts": 0}
        self.client.publish(f"{PREFIX}/cmd", json.dumps(body), qos=1).wait_for_publish(5)

    async def next(self, leaf: str, timeout: float = 20) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no {leaf} message")
            try:
                topic, body = await asyncio.to_thread(self.messages.get, True, min(left, 1))
            except queue.Empty:
                continue
            if topic == f"{PREFIX}/{leaf}":
                return body

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def broker(broker_factory: Callable[..., Mosquitto]) -> Mosquitto:
    return broker_factory(gateways=[GW], services=[SVC])


@pytest.fixture
def fleet(broker: Mosquitto) -> Iterator[Fleet]:
    f = Fleet(broker.port)
    yield f
    f.close()


def provision(state: Path, port: int, **uplink: Any) -> None:
    state.mkdir(parents=True, exist_ok=True)
    up = {"broker_host": "127.0.0.1", "broker_port": port, "tls": False,
          "password": GW.password, "backoff_min_s": 1, "backoff_max_s": 1}
    up.update(uplink)
    ConfigStore(str(state)).save({
        "version": 1, "unit": GW.unit, "gateway": GW.gateway, "uplink": up,
        "network": {"mode": "host"},
        "instruments": [{"addr": CUFF, "kind": "ble", "profile": "blood_pressure"}]})


def runtime(state: Path, sessions: list[str] | None = None, **kw: Any) -> Runtime:
    async def run_session(_rt: Runtime, inst: dict[str, Any]) -> None:
        if sessions is not None:
            sessions.append(inst["addr"])

    return Runtime(str(state), make_mqtt_client, fw="1.0.0-test", run_session=run_session,
                   **kw)


def test_commands_get_correlated_results_and_replays_do_not_act_twice(
        broker: Mosquitto, fleet: Fleet, tmp_path: Path) -> None:
    provision(tmp_path, broker.port)
    sessions: list[str] = []

    async def scenario() -> None:
        rt = runtime(tmp_path, sessions, sync_every_ms=3_600_000)
        task = asyncio.create_task(rt.run())
        birth = await fleet.next("birth")
        assert birth["reset"] == "first_boot" and birth["boot"] == 1 and birth["cfg"] == 1
        assert birth["instruments"] == [{"addr": CUFF, "type": "blood_pressure",
                                         "kind": "ble"}]
        assert sessions == [CUFF]  # the first session at start

        fleet.command("c-1", "sync_now")
        r = await fleet.next("cmd/result")
        assert r == {"v": 1, "id": "c-1", "op": "sync_now", "ok": True, "ts": r["ts"],
                     "result": {"started": [CUFF], "unknown": []}}
        await asyncio.sleep(0.2)
        assert sessions == [CUFF, CUFF]

        fleet.command("c-1", "sync_now")  # re-delivered: answered, not run again
        r = await fleet.next("cmd/result")
        assert r["id"] == "c-1" and r["replay"] is True and r["ok"] is True
        await asyncio.sleep(0.2)
        assert sessions == [CUFF, CUFF]

        before = rt.clock.now_ms()
        fleet.command("c-2", "set_time", time=before + 3_600_000)
        r = await fleet.next("cmd/result")
        assert r["ok"] and abs(r["result"]["correction_ms"] - 3_600_000) < 5_000
        assert rt.clock.now_ms() - before >= 3_590_000

        fleet.command("c-3", "diagnostics")
        r = await fleet.next("cmd/result")
        d = r["result"]
        assert d["cfg"] == 1 and d["boot"]["count"] == 1 and d["journal"]["depth"] >= 0
        assert d["config"]["uplink"]["password"] == "***"
        assert GW.password not in json.dumps(r)

        fleet.command("c-4", "self_destruct")
        r = await fleet.next("cmd/result")
        assert (r["ok"], r["error"]) == (False, "unknown_op")

        fleet.command("c-5", "set_time", time="noon")
        r = await fleet.next("cmd/result")
        assert (r["ok"], r["error"]) == (False, "bad_args") and "args.time" in r["detail"]
        rt.stop()
        await task

    asyncio.run(scenario())


def test_apply_config_confirmed_once_the_uplink_is_back(broker: Mosquitto, fleet: Fleet,
                                                        tmp_path: Path) -> None:
    provision(tmp_path, broker.port)

    async def scenario() -> None:
        rt = runtime(tmp_path, trial_ms=15_000)
        task = asyncio.create_task(rt.run())
        await fleet.next("birth")
        fleet.command("c-10", "apply_config", version=2,
                      config={"uplink": {"heartbeat_s": 120, "keepalive_s": 30}})
        r = await fleet.next("cmd/result")
        assert r["ok"] and r["result"] == {"version": 2, "previous": 1}
        assert rt.uplink.heartbeat_ms == 120_000
        rt.stop()
        await task

    asyncio.run(scenario())
    assert ConfigStore(str(tmp_path)).load()["version"] == 2


def test_a_config_that_breaks_the_uplink_is_rolled_back(broker: Mosquitto, fleet: Fleet,
                                                        tmp_path: Path) -> None:
    """A wrong broker password: the gateway cannot connect with it, restores
    the config that worked, comes back, and says so."""
    provision(tmp_path, broker.port)

    async def scenario() -> None:
        rt = runtime(tmp_path, trial_ms=3_000)
        task = asyncio.create_task(rt.run())
        await fleet.next("birth")
        fleet.command("c-20", "apply_config", version=2,
                      config={"uplink": {"password": "not-the-password"}})
        r = await fleet.next("cmd/result", timeout=30)
        assert (r["id"], r["ok"], r["error"]) == ("c-20", False, "rolled_back")
        assert rt.cfg["version"] == 1 and rt.uplink.connected
        rt.stop()
        await task

    asyncio.run(scenario())
    store = ConfigStore(str(tmp_path))
    assert store.load()["version"] == 1
    assert store.load()["uplink"]["password"] == GW.password


def test_reboot_answers_first_then_restarts_cleanly(broker: Mosquitto, fleet: Fleet,
                                                   tmp_path: Path) -> None:
    provision(tmp_path, broker.port)
    rebooted: list[bool] = []

    async def first_life() -> Runtime:
        rt = runtime(tmp_path, reboot=lambda: rebooted.append(True))
        task = asyncio.create_task(rt.run())
        await fleet.next("birth")
        fleet.command("c-30", "reboot", delay_ms=300)
        r = await fleet.next("cmd/result")
        assert r["ok"] and r["result"] == {"in_ms": 300}
        await asyncio.wait_for(task, 10)  # run() ends: the gateway restarts
        return rt

    rt = asyncio.run(first_life())
    assert rebooted == [True] and rt.reboot_requested

    async def second_life() -> None:
        rt = runtime(tmp_path)
        task = asyncio.create_task(rt.run())
        birth = await fleet.next("birth")
        assert (birth["boot"], birth["reset"]) == (2, "clean_restart")
        fleet.command("c-30", "reboot", delay_ms=300)  # the same command again
        r = await fleet.next("cmd/result")
        assert r["replay"] is True
        await asyncio.sleep(0.6)
        assert not rt.reboot_requested  # a replay never reboots
        rt.stop()
        await task

    asyncio.run(second_life())
