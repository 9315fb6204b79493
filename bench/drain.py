"""End-to-end drain rate: N gateways each with M readings buffered in their
journals (as after a long outage) come online at once; the benchmark times
until every record is committed by the fleet server and acknowledged back,
so every journal is empty. Everything real: the gateway core and its own MQTT
client, Mosquitto with per-gateway ACLs, the fleet server process (ingest
worker + API) on SQLite or PostgreSQL.

    .venv/bin/python -m bench.drain --gateways 20 --readings 500
    .venv/bin/python -m bench.drain --gateways 20 --readings 500 --postgres

With `--link-kbps` each gateway reaches the broker through its own link
proxy (devharness.netproxy) throttled to that rate in each direction, with
`--latency-ms` one-way latency: a unit on a slow rural link.

    .venv/bin/python -m bench.drain --gateways 1 --readings 10000 \
        --link-kbps 256 --latency-ms 150
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from devharness.netproxy import LinkProxy
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


async def drain(stack: FleetStack, workdir: Path, readings: int,
                proxies: list[LinkProxy] | None = None, window: int = 4) -> tuple[float, int]:
    assert stack.broker is not None
    workdir.mkdir(parents=True, exist_ok=True)
    cores = []
    for i, acc in enumerate(stack.gateways):
        journal = Journal(str(workdir / acc.gateway), capacity_bytes=50_000_000)
        clock = GatewayClock(synced=True)
        port = proxies[i].port if proxies else stack.broker.port
        client = MQTTClient(acc.gateway, "127.0.0.1", port, username=acc.gateway,
                            password=acc.password, clean_session=False,
                            will=(topic(acc.unit, acc.gateway, "state"), LAST_WILL, 1, True))
        uplink = Uplink(journal, client, acc.unit, acc.gateway, clock, Indicator(),
                        window=window)
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
    p.add_argument("--link-kbps", type=int, default=0,
                   help="throttle each gateway's link to this many kbit/s (0: no proxy)")
    p.add_argument("--latency-ms", type=int, default=0, help="one-way latency of that link")
    p.add_argument("--window", type=int, default=4, help="data messages in flight (uplink)")
    args = p.parse_args()
    proxies: list[LinkProxy] = []
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
            assert stack.broker is not None
            if args.link_kbps:
                proxies = [LinkProxy(stack.broker.port, rate_bps=args.link_kbps * 1000,
                                     latency_ms=args.latency_ms).start()
                           for _ in stack.gateways]
            elapsed, total = asyncio.run(drain(stack, work / "journals", args.readings,
                                               proxies, args.window))
            rows = len(stack.get("/readings", limit=1000))
        finally:
            for proxy in proxies:
                proxy.stop()
            stack.teardown()
            if pg is not None:
                pg.stop()
    store = "PostgreSQL (fsync off)" if args.postgres else "SQLite (WAL)"
    link = ""
    if proxies:
        up = sum(p.bytes_up for p in proxies)
        down = sum(p.bytes_down for p in proxies)
        link = (f" with window {args.window} through {args.link_kbps} kbit/s links "
                f"({args.latency_ms} ms one way): "
                f"{up} bytes up ({up / total:.0f} per record, {up * 8 / elapsed / 1000:.0f} "
                f"kbit/s), {down} bytes down")
    print(f"{store}: {total} records from {args.gateways} gateways committed and acked in "
          f"{elapsed:.1f} s = {total / elapsed:.0f} records/s{link} "
          f"(API spot check: {rows} rows)")


if __name__ == "__main__":
    main()
