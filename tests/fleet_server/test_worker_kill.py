"""Issue 5's "done when": an ingest worker is killed mid-batch and a second
worker finishes the work, with nothing lost or doubled.

Real parts only: two `python -m fleet_server ingest` processes on the same
shared subscription of a real Mosquitto (per-gateway ACLs), writing to a
real database (SQLite file, then PostgreSQL); a gateway made of the gateway
core, its journal and our MQTT client, as in the field. The gateway
publishes a few thousand journaled readings; once both workers have stored
batches and acks are coming back, one worker gets SIGKILL (no clean
shutdown: a crash or a power cut). Whatever it held is gone with it:
uncommitted transactions, messages it was handed but never PUBACKed, and
its turn of the next messages while the broker keeps its session: Mosquitto
still deals an offline member of a shared group its share until the session
expires, so the workers run with a 2 s UMMC_MQTT_SESSION_EXPIRY (settings.py:
"keep it to a restart's length"; with the default 3600 s a worker that never
returns stalls half of the batches until the gateways re-send them). The
gateway re-sends what no ack covers, the surviving worker stores it, and
the journal drains. Then the database holds every record exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from devharness.broker import GatewayAccount, Mosquitto, ServiceAccount
from devharness.processes import kill_group, spawn, terminate, wait_until
from device_drivers.gatt import BLOOD_PRESSURE_MEASUREMENT
from fleet_server.models import AckCursor, DeadLetter, Gateway, Reading
from gateway.app import Gateway as GatewayCore
from gateway.clock import GatewayClock
from gateway.indicator import RecordingIndicator
from gateway.journal import Journal
from gateway.mqtt import MQTTClient
from gateway.protocol import LAST_WILL, topic
from gateway.sim.cuff import SimulatedCuff
from gateway.uplink import Uplink
from tests.fleet_server.helpers import REPO, register
from tests.integration.test_end_to_end import wait_async

RECORDS = 3000
ACCOUNT = GatewayAccount("U001", "gw-u001", secrets.token_urlsafe(18))
SERVICE = ServiceAccount("fleet-ingest", secrets.token_urlsafe(18))


def _stored_batches(log: Path) -> int:
    """Data messages a worker committed (its log line per message; ids and counts only)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return sum(1 for line in text.splitlines() if "/data: jid " in line and ": stored " in line)


class Workers:
    """Ingest worker processes, each with its own MQTT client id, one group."""

    def __init__(self, database_url: str, broker: Mosquitto, workdir: Path) -> None:
        self.database_url = database_url
        self.broker = broker
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start(self, name: str) -> None:
        env = dict(os.environ, UMMC_ENV="development", UMMC_DATABASE_URL=self.database_url,
                   UMMC_MQTT_HOST="127.0.0.1", UMMC_MQTT_PORT=str(self.broker.port),
                   UMMC_MQTT_USERNAME=SERVICE.username, UMMC_MQTT_PASSWORD=SERVICE.password,
                   UMMC_MQTT_CLIENT_ID=name, UMMC_INGEST_GROUP="ingest",
                   UMMC_MQTT_SESSION_EXPIRY="2", UMMC_EVALUATE_INTERVAL_S="0",
                   UMMC_SECRET_KEY=secrets.token_urlsafe(32), UMMC_BOOTSTRAP_ADMIN_PASSWORD="",
                   UMMC_LOG_LEVEL="INFO")
        self.procs[name] = spawn([sys.executable, "-m", "fleet_server", "ingest"],
                                 self.log(name), env=env, cwd=REPO)

    def subscribing(self, name: str) -> bool:
        path = self.log(name)
        return path.exists() and "subscribing" in path.read_text(errors="replace")

    def kill(self, name: str) -> None:
        kill_group(self.procs.pop(name))

    def stop_all(self) -> dict[str, int | None]:
        codes = {}
        for name, proc in self.procs.items():
            terminate(proc, timeout=15)
            codes[name] = proc.returncode
        self.procs.clear()
        return codes


@pytest.fixture
def workers(migrated_url: str, broker_factory: Callable[..., Mosquitto],
            tmp_path: Path, session: Session) -> Iterator[Workers]:
    register(session, (ACCOUNT.unit, ACCOUNT.gateway))
    broker = broker_factory(gateways=[ACCOUNT], services=[SERVICE])
    w = Workers(migrated_url, broker, tmp_path)
    yield w
    w.stop_all()


def _gateway(port: int, journal_dir: Path) -> tuple[GatewayCore, Uplink]:
    journal = Journal(str(journal_dir))
    clock = GatewayClock(synced=True)
    indicator = RecordingIndicator()
    client = MQTTClient(ACCOUNT.gateway, "127.0.0.1", port, username=ACCOUNT.gateway,
                        password=ACCOUNT.password, keepalive=30, clean_session=False,
                        will=(topic(ACCOUNT.unit, ACCOUNT.gateway, "state"), LAST_WILL, 1, True))
    uplink = Uplink(journal, client, ACCOUNT.unit, ACCOUNT.gateway, clock, indicator,
                    resend_after_ms=2000, backoff_min_ms=200, backoff_max_ms=1000)
    return GatewayCore(journal, uplink, clock, indicator), uplink


def test_a_killed_worker_loses_and_doubles_nothing(workers: Workers, engine: Engine,
                                                    tmp_path: Path) -> None:
    for name in ("ingest-a", "ingest-b"):
        workers.start(name)
    wait_until(lambda: workers.subscribing("ingest-a") and workers.subscribing("ingest-b"),
               timeout=30)
    core, uplink = _gateway(workers.broker.port, tmp_path / "journal")
    cuff = SimulatedCuff(addr="C4:7C:8D:6A:00:01", serial="5140200001", rng=random.Random(5))
    for _ in range(RECORDS):  # the clinic's backlog, journaled before the link comes up
        assert core.on_value(cuff.identity, BLOOD_PRESSURE_MEASUREMENT, cuff.measure())
    journal = core.journal
    assert journal.depth == RECORDS
    seen: dict[str, int] = {}

    async def scenario() -> None:
        task = asyncio.create_task(uplink.run())
        # Both workers are taking batches and acks are flowing back ...
        await wait_async(lambda: _stored_batches(workers.log("ingest-a")) >= 3
                         and _stored_batches(workers.log("ingest-b")) >= 3
                         and uplink.stats["acks"] > 0, timeout=30)
        # ... when worker a dies, with most of the backlog still to go.
        workers.kill("ingest-a")
        seen["depth_at_kill"] = journal.depth
        seen["a"] = _stored_batches(workers.log("ingest-a"))
        seen["b_at_kill"] = _stored_batches(workers.log("ingest-b"))
        await wait_async(lambda: journal.depth == 0, timeout=60)
        uplink.stop()
        await task

    asyncio.run(scenario())
    assert seen["depth_at_kill"] > RECORDS // 3, seen
    assert _stored_batches(workers.log("ingest-b")) > seen["b_at_kill"]  # b took over
    assert uplink.stats["resends"] >= 1  # what a held, the gateway sent again
    assert workers.stop_all() == {"ingest-b": 0}

    with Session(engine) as s:
        gw = s.scalar(select(Gateway).where(Gateway.gateway_id == ACCOUNT.gateway))
        assert gw is not None
        keys = s.execute(select(Reading.jid, Reading.seq)
                         .where(Reading.gateway_pk == gw.id)).all()
        cursor = s.get(AckCursor, (gw.id, journal.jid))
        dead = s.scalar(select(func.count()).select_from(DeadLetter)
                        .where(DeadLetter.gateway == ACCOUNT.gateway))
    assert len(keys) == RECORDS  # nothing lost ...
    assert len(set(keys)) == RECORDS  # ... nothing doubled
    assert {jid for jid, _ in keys} == {journal.jid}
    assert sorted(seq for _, seq in keys) == list(range(1, RECORDS + 1))
    assert cursor is not None and cursor.upto == RECORDS and cursor.rejected == []
    assert dead == 0  # no re-send was taken for a conflicting record
