"""End-to-end drain rate: N gateways each with M readings buffered in their
journals (as after a long outage) come online at once; the benchmark times
until every record is committed by the fleet server and acknowledged back,
so every journal is empty. Everything real: the gateway core and its own MQTT
client, Mosquitto with per-gateway ACLs, the fleet server process (ingest
worker + API) on SQLite or PostgreSQL.

    .venv/bin/python -m bench.drain --gateways 20 --readings 500
    .venv/bin/python -m bench.drain --gateways 20 --readings 500 --postgres
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from devharness.stack import FleetStack
from device_drivers.gatt import BLOOD_PRESSURE_MEASUREMENT
from gateway.app import Gateway
from gateway.clock import GatewayClock
from gateway.indicator import Indicator
from gateway.journal import Journal
from gateway.mqtt import MQTTClient
from gateway.protocol import LAST_WILL, topic
from gateway.sim.cuff import SimulatedCuff
from gateway.uplink import Uplink


async def drain(stack: FleetStack, workdir: Path, readings: int) -> tuple[float, int]:
    assert stack.broker is not None
    workdir.mkdir(parents=True, exist_ok=True)
    cores = []
    for i, acc in enumerate(stack.gateways):
        journal = Journal(str(workdir / acc.gateway), capacity_bytes=50_000_000)
        clock = GatewayClock(synced=True)
        client = MQTTClient(acc.gateway, "127.0.0.1", stack.broker.port, username=acc.gateway,
                            password=acc.password, clean_session=False,
                            will=(topic(acc.unit, acc.gateway, "state"), LAST_WILL, 1, True))
        uplink = Uplink(journal, client, acc.unit, acc.gateway, clock, Indicator())
        core = Gateway(journal, uplink, clock, Indicator())
        cuff = SimulatedCuff(addr=f"C4:7C:8D:6A:01:{i:02X}", rng=random.Random(i))
        for _ in range(readings):
            core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, cuff.measure())
        cores.append(core)
    total = sum(c.journal.depth for c in cores)
    started = time.perf_counter()
    tasks = [asyncio.create_task(c.uplink.run()) for c in cores]
    while any(c.journal.depth for c in cores):
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    for c in cores:
        c.uplink.stop()
    await asyncio.wait(tasks, timeout=10)
    return elapsed, total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gateways", type=int, default=20)
    p.add_argument("--readings", type=int, default=500, help="buffered readings per gateway")
    p.add_argument("--postgres", action="store_true", help="throwaway PostgreSQL, not SQLite")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pg = None
        url = ""
        if args.postgres:
            from devharness.postgres import Postgres
            pg = Postgres().start()
            url = pg.url(pg.create_database("bench"))
        stack = FleetStack(work / "fleet", units=args.gateways, database_url=url)
        try:
            stack.setup()
            elapsed, total = asyncio.run(drain(stack, work / "journals", args.readings))
            rows = len(stack.get("/readings", limit=1000))
        finally:
            stack.teardown()
            if pg is not None:
                pg.stop()
    store = "PostgreSQL (fsync off)" if args.postgres else "SQLite (WAL)"
    print(f"{store}: {total} records from {args.gateways} gateways committed and acked in "
          f"{elapsed:.1f} s = {total / elapsed:.0f} records/s (API spot check: {rows} rows)")


if __name__ == "__main__":
    main()
