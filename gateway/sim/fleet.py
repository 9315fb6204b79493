"""Simulated units: N gateways, each with a blood-pressure cuff, running the
real gateway core (journal on files, uplink, the project's own MQTT client)
against a real broker. One asyncio loop carries them all.

Schedule: a unit sees 10-60 patients a day; each simulated nurse measures at
Poisson intervals (mean `--mean-interval` seconds, default 600 = about 48
patients in an 8-hour day), and the clinic "opens" at start: every unit's
first patient arrives within `--first-within` seconds.

    python -m gateway.sim.fleet --accounts var/demo/accounts.json --port 1883
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
from dataclasses import dataclass
from pathlib import Path

from device_drivers.gatt import BLOOD_PRESSURE_MEASUREMENT
from gateway.app import Gateway
from gateway.clock import GatewayClock
from gateway.health import HealthSampler
from gateway.indicator import ConsoleIndicator, Indicator
from gateway.journal import Journal
from gateway.mqtt import MQTTClient
from gateway.protocol import LAST_WILL, birth_payload, topic
from gateway.sim.cuff import SimulatedCuff
from gateway.uplink import Uplink

FIRMWARE_VERSION = "0.1.0-sim"
log = logging.getLogger("ummc.sim")


@dataclass
class SimUnit:
    unit: str
    gateway_id: str
    cuff: SimulatedCuff
    core: Gateway
    uplink: Uplink
    indicator: Indicator


def build_unit(account: dict[str, str], host: str, port: int, state_dir: Path,
               rng: random.Random, verbose: bool = False, resend_after_ms: int = 30000,
               heartbeat_ms: int = 60000) -> SimUnit:
    unit, gw = account["unit"], account["gateway"]
    journal = Journal(str(state_dir / gw))
    clock = GatewayClock(synced=True)  # the host's clock is NTP-disciplined
    indicator: Indicator = ConsoleIndicator(gw) if verbose else Indicator()
    client = MQTTClient(gw, host, port, username=gw, password=account["password"],
                        keepalive=60, clean_session=False,
                        will=(topic(unit, gw, "state"), LAST_WILL, 1, True))
    n = int("".join(ch for ch in unit if ch.isdigit()) or "0")
    cuff = SimulatedCuff(addr="C4:7C:8D:6A:%02X:%02X" % (n // 256, n % 256),
                         serial="51402%05d" % n, rng=random.Random(rng.random()),
                         clock_offset_s=rng.gauss(0, 90))

    def birth() -> bytes:
        return birth_payload(FIRMWARE_VERSION, 1, 1, "power_on",
                             [{"addr": cuff.addr, "type": "blood_pressure", "model": cuff.model}],
                             {"depth": journal.depth, "bytes": journal.bytes_used,
                              "jid": journal.jid}, clock.now_ms())

    uplink = Uplink(journal, client, unit, gw, clock, indicator, birth=birth,
                    resend_after_ms=resend_after_ms, heartbeat_ms=heartbeat_ms)
    core = Gateway(journal, uplink, clock, indicator)
    sampler = HealthSampler(journal, uplink, clock, link_probe=lambda: ("wifi", -60 - n % 30),
                            alarms=core.alarms)
    uplink.heartbeat = sampler.payload
    uplink.offline_heartbeat = sampler.journal_sample
    return SimUnit(unit, gw, cuff, core, uplink, indicator)


async def nurse(u: SimUnit, rng: random.Random, first_within: float, mean_interval: float,
                stop: asyncio.Event) -> None:
    """Measure patients on a Poisson schedule until stopped."""
    delay = rng.uniform(0, first_within)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return
        except asyncio.TimeoutError:
            pass
        u.core.on_value(u.cuff.identity, BLOOD_PRESSURE_MEASUREMENT, u.cuff.measure())
        delay = rng.expovariate(1 / mean_interval)


async def run(args: argparse.Namespace) -> int:
    accounts = json.loads(Path(args.accounts).read_text())["gateways"]
    if args.units:
        accounts = accounts[: args.units]
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    units = [build_unit(a, args.host, args.port, state, rng, args.verbose) for a in accounts]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(u.uplink.run()) for u in units]
    tasks += [asyncio.create_task(nurse(u, random.Random(rng.random()), args.first_within,
                                        args.mean_interval, stop)) for u in units]
    log.info("%d simulated units started against %s:%d", len(units), args.host, args.port)
    await stop.wait()
    for u in units:
        u.uplink.stop()
    await asyncio.wait(tasks, timeout=10)
    readings = sum(u.core.readings for u in units)
    pending = sum(u.uplink.journal.depth for u in units)
    log.info("stopped: %d readings taken, %d still buffered in journals", readings, pending)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accounts", required=True, help="JSON file with the gateways' accounts")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--state", default="var/sim", help="directory for the gateways' journals")
    p.add_argument("--units", type=int, default=0, help="simulate only the first N (0 = all)")
    p.add_argument("--first-within", type=float, default=30.0)
    p.add_argument("--mean-interval", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--verbose", action="store_true", help="print each unit's indicator")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
