"""A fleet stack for end-to-end tests and benchmarks: a real Mosquitto with
per-gateway accounts, the fleet server as its own process
(`python -m fleet_server run`) on a SQLite file (or the database URL given),
and helpers to call its API. The server can be killed (SIGKILL, like a power
cut) and started again on the same database."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devharness.accounts import make_accounts, write_account_files
from devharness.broker import GatewayAccount, Mosquitto, ServiceAccount
from devharness.ports import free_port, wait_for_port
from devharness.processes import kill_group, spawn, terminate

REPO = Path(__file__).resolve().parents[1]


@dataclass
class FleetStack:
    workdir: Path
    units: int = 2
    gateways: list[GatewayAccount] = field(default_factory=list)
    service: ServiceAccount | None = None
    broker: Mosquitto | None = None
    api_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    database_url: str = ""

    @property
    def db_path(self) -> Path:
        return self.workdir / "fleet.db"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        assert self.broker is not None and self.service is not None
        return dict(os.environ, UMMC_ENV="development",
                    UMMC_DATABASE_URL=self.database_url or f"sqlite:///{self.db_path}",
                    UMMC_MQTT_HOST="127.0.0.1", UMMC_MQTT_PORT=str(self.broker.port),
                    UMMC_MQTT_USERNAME=self.service.username,
                    UMMC_MQTT_PASSWORD=self.service.password,
                    UMMC_API_HOST="127.0.0.1", UMMC_API_PORT=str(self.api_port),
                    UMMC_SECRET_KEY=secrets.token_urlsafe(32),
                    UMMC_BOOTSTRAP_ADMIN_PASSWORD="")

    def cli(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "fleet_server", *args], env=self.env(),
                       cwd=REPO, check=True, capture_output=True)

    def setup(self) -> FleetStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.gateways, self.service = make_accounts(self.units)
        _, registry = write_account_files(self.workdir, self.gateways, self.service)
        self.broker = Mosquitto(self.workdir / "broker", gateways=self.gateways,
                                services=[self.service]).start()
        self.api_port = free_port()
        self.cli("migrate")
        self.cli("register", "--accounts", str(registry))
        self.admin_password = secrets.token_urlsafe(12)
        self.cli("create-user", "--username", "admin", "--role", "admin",
                 "--password", self.admin_password)
        self.start_server()
        return self

    def start_server(self) -> None:
        self.proc = spawn([sys.executable, "-m", "fleet_server", "run"],
                          self.workdir / "fleet_server.log", env=self.env(), cwd=REPO)
        wait_for_port(self.api_port, timeout=30)
        r = httpx.post(f"{self.api}/api/v1/auth/token",
                       json={"username": "admin", "password": self.admin_password})
        r.raise_for_status()
        self.token = r.json()["access_token"]

    def kill_server(self) -> None:
        """SIGKILL: no clean shutdown, like a crash or a power cut."""
        if self.proc is not None:
            kill_group(self.proc)
        self.proc = None

    def stop_server(self) -> None:
        terminate(self.proc)
        self.proc = None

    def teardown(self) -> None:
        self.stop_server()
        if self.broker is not None:
            self.broker.stop()

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.api}/api/v1{path}", params=params,
                      headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
        r.raise_for_status()
        return r.json()

    def server_log(self) -> str:
        path = self.workdir / "fleet_server.log"
        return path.read_text(errors="replace") if path.exists() else ""

