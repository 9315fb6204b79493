"""Start the virtual gateway by hand (docs/virtual_gateway.md):

    python -m firmware.virtual --with-fleet      # everything, in build/virtual-gateway/
    python -m firmware.virtual                   # a gateway provisioned by the tool
    python -m firmware.virtual ctl measure addr=C4:7C:8D:6A:00:01

The first form starts a fleet (Mosquitto with per-gateway accounts and the
fleet server on SQLite), the bench (BLE bridge and instrument simulators: a
cuff, a glucose meter with 20 records, a thermometer, a Cyton on a pty) and
the gateway, provisioned for the fleet's first gateway account with those
instruments; it prints where the API is and how to log in. Without
--with-fleet the gateway runs on the config already in <flash>/data
(`ummc-gateway provision` against the virtual gateway writes it). Ctrl-C
stops everything; the flash directory keeps the journal, boot record and
slots for the next start. `ctl` sends one request to the running bench
(add, measure, add_records, set, stats, list; see Bench.control).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from firmware.virtual.bench import BenchClient, BenchError, BenchProcess
from firmware.virtual.launcher import VirtualGateway, build_image

DEFAULT_WORKDIR = Path("build/virtual-gateway")
DEFAULT_BENCH: list[dict[str, Any]] = [
    {"profile": "blood_pressure", "addr": "C4:7C:8D:6A:00:01"},
    {"profile": "glucose", "addr": "C4:7C:8D:6A:00:02", "options": {"records": 20}},
    {"profile": "thermometer", "addr": "C4:7C:8D:6A:00:03"},
    {"profile": "ecg_cyton", "addr": "cyton1", "options": {"speed": 1.0}},
]


def _instruments(info: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for i in info["instruments"]:
        item = {"addr": i["addr"], "kind": i["kind"], "profile": i["profile"]}
        if i["kind"] == "serial":
            item["port"] = i["port"]
        out.append(item)
    return out


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def ctl(workdir: Path, op: str, pairs: list[str]) -> int:
    ready = workdir / "bench" / "bench.ready"
    if not ready.exists():
        print(f"no bench running in {workdir} (start `python -m firmware.virtual` first)")
        return 2
    args = {k: _value(v) for k, _, v in (p.partition("=") for p in pairs)}
    client = BenchClient(json.loads(ready.read_text())["bridge"])
    try:
        print(json.dumps(client.call(op, **args), indent=1))
    except BenchError as e:
        print(f"{e.code}: {e}")
        return 1
    finally:
        client.close()
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from gateway.config import ConfigStore

    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    image = build_image(workdir / "image")
    bench = BenchProcess(workdir / "bench", DEFAULT_BENCH if not args.empty_bench else [])
    stack = None
    gw = None
    try:
        bench.start()
        gw = VirtualGateway(workdir / "flash", image, bridge=bench.address)
        if args.with_fleet:
            from devharness.stack import FleetStack

            stack = FleetStack(workdir / "fleet", units=1).setup()
            assert stack.broker is not None
            acc = stack.gateways[0]
            gw.state.mkdir(parents=True, exist_ok=True)
            ConfigStore(str(gw.state)).save({
                "version": 1, "unit": acc.unit, "gateway": acc.gateway,
                "uplink": {"broker_host": "127.0.0.1", "broker_port": stack.broker.port,
                           "tls": False, "password": acc.password},
                "network": {"mode": "host"}, "instruments": _instruments(bench.info)})
            print(f"fleet API:  {stack.api}/docs   (admin / {stack.admin_password})")
        gw.start()
        print(f"bench:      {bench.address}   {len(bench.info['instruments'])} instruments")
        print(f"gateway:    flash {gw.flash}, log {gw.log_path}")
        print("try:        python -m firmware.virtual ctl measure "
              "addr=C4:7C:8D:6A:00:01   (Ctrl-C stops everything)")
        signal.signal(signal.SIGTERM, _interrupt)
        shown = 0
        while True:
            text = gw.log()
            if len(text) > shown:
                sys.stdout.write(text[shown:])
                sys.stdout.flush()
                shown = len(text)
            if not gw.running and gw.exits and gw.exits[-1] != 75:
                print(f"gateway exited with code {gw.exits[-1]}")
                return 1
            time.sleep(0.3)
    except KeyboardInterrupt:
        return 0
    finally:
        if gw is not None:
            gw.stop()
        bench.stop()
        if stack is not None:
            stack.teardown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m firmware.virtual", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                   help=f"flash, bench, fleet and logs (default {DEFAULT_WORKDIR})")
    p.add_argument("--with-fleet", action="store_true",
                   help="start a fleet (broker + server) and provision the gateway for it")
    p.add_argument("--empty-bench", action="store_true", help="no simulated instrument")
    p.add_argument("command", nargs="*", help="ctl OP [key=value ...]")
    args = p.parse_args(argv)
    if args.command:
        if args.command[0] != "ctl" or len(args.command) < 2:
            p.error("the only command is: ctl OP [key=value ...]")
        return ctl(args.workdir, args.command[1], args.command[2:])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
