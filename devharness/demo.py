"""`make demo`: the whole fleet on one machine.

Starts, as separate processes: a real Mosquitto (per-gateway accounts and
ACLs), the fleet server on SQLite (migrations, ingest worker, API), and the
simulated units (gateway core + simulated cuffs). Prints where the API is and
a token to call it with. Ctrl-C stops the simulator, then the fleet server,
then the broker, and leaves no process behind.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devharness.accounts import make_accounts, write_account_files
from devharness.amqtt_broker import AmqttBroker
from devharness.broker import Mosquitto, mosquitto_available
from devharness.ports import free_port, wait_for_port
from devharness.processes import spawn, terminate

REPO = Path(__file__).resolve().parent.parent


def _port_free(port: int) -> bool:
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Processes:
    """Children started in their own sessions, stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.procs.append((name, spawn(argv, log, env=env, cwd=REPO)))

    def check(self) -> str | None:
        for name, p in self.procs:
            if p.poll() is not None:
                return f"{name} exited with code {p.returncode}"
        return None

    def stop_all(self) -> None:
        for name, p in reversed(self.procs):
            if not terminate(p, timeout=15):
                print(f"demo: {name} did not stop in 15 s; it was killed")


def _count_readings(api: str, token: str) -> int:
    req = urllib.request.Request(f"{api}/api/v1/readings?limit=1000",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        rows = json.load(r)
    return len({row["unit"] for row in rows})


def _token(api: str, user: str, password: str) -> str:
    body = json.dumps({"username": user, "password": password}).encode()
    req = urllib.request.Request(f"{api}/api/v1/auth/token", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(json.load(r)["access_token"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--units", type=int, default=100)
    p.add_argument("--state", default=str(REPO / "var" / "demo"))
    p.add_argument("--api-port", type=int, default=8000)
    p.add_argument("--mean-interval", type=float, default=600.0,
                   help="mean seconds between patients per unit")
    p.add_argument("--first-within", type=float, default=30.0,
                   help="every unit's first patient arrives within this many seconds")
    p.add_argument("--report-every", type=float, default=10.0,
                   help="seconds between progress lines")
    p.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto",
                   help="auto: Mosquitto when installed, else the embedded amqtt broker")
    p.add_argument("--keep", action="store_true", help="keep the previous run's data")
    args = p.parse_args(argv)

    state = Path(args.state)
    if state.exists() and not args.keep:
        shutil.rmtree(state)
    state.mkdir(parents=True, exist_ok=True)
    use_amqtt = args.broker == "amqtt" or (args.broker == "auto" and not mosquitto_available())
    if args.broker == "mosquitto" and not mosquitto_available():
        print("demo: mosquitto is not installed (`apt-get install mosquitto`)", file=sys.stderr)
        return 2

    gateways, service = make_accounts(args.units)
    accounts, registry = write_account_files(state, gateways, service)
    broker: Mosquitto | AmqttBroker
    if use_amqtt:
        print("demo: Mosquitto not available: using the embedded amqtt broker "
              "(MQTT 3.1.1, one ingest worker)", flush=True)
        broker = AmqttBroker(state / "broker", gateways=gateways, services=[service]).start()
    else:
        broker = Mosquitto(state / "broker", gateways=gateways, services=[service]).start()
    api_port = args.api_port if _port_free(args.api_port) else free_port()
    api = f"http://127.0.0.1:{api_port}"
    admin_password = secrets.token_urlsafe(12)
    env = dict(os.environ,
               UMMC_ENV="development",
               UMMC_DATABASE_URL=f"sqlite:///{state / 'fleet.db'}",
               UMMC_MQTT_HOST="127.0.0.1", UMMC_MQTT_PORT=str(broker.port),
               UMMC_MQTT_USERNAME=service.username, UMMC_MQTT_PASSWORD=service.password,
               UMMC_API_HOST="127.0.0.1", UMMC_API_PORT=str(api_port),
               UMMC_SECRET_KEY=secrets.token_urlsafe(32),
               UMMC_BOOTSTRAP_ADMIN_PASSWORD="",  # the admin is created below
               UMMC_MQTT_PROTOCOL="3.1.1" if use_amqtt else "5")
    py = sys.executable
    fleet = [py, "-m", "fleet_server"]
    subprocess.run([*fleet, "migrate"], env=env, cwd=REPO, check=True)
    subprocess.run([*fleet, "register", "--accounts", str(registry)], env=env, cwd=REPO,
                   check=True)
    subprocess.run([*fleet, "create-user", "--username", "admin", "--role", "admin",
                    "--password", admin_password], env=env, cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)

    procs = Processes()
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        procs.start("fleet server", [*fleet, "run"], env, state / "fleet_server.log")
        wait_for_port(api_port, timeout=30)
        procs.start("simulated units",
                    [py, "-m", "gateway.sim.fleet", "--accounts", str(accounts),
                     "--port", str(broker.port), "--state", str(state / "gateways"),
                     "--mean-interval", str(args.mean_interval),
                     "--first-within", str(args.first_within)],
                    env, state / "units.log")
        token = _token(api, "admin", admin_password)
        print(f"""
UMMC fleet demo: {args.units} simulated units, broker on 127.0.0.1:{broker.port}
  API and OpenAPI docs: {api}/docs
  user admin, password {admin_password}
  token: {token}
  e.g.   curl -H 'Authorization: Bearer {token}' {api}/api/v1/readings?limit=5
  logs:  {state}/fleet_server.log, {state}/units.log, {state}/broker/
Ctrl-C stops everything.
""", flush=True)
        started = time.monotonic()
        last_report = 0.0
        while not stopping:
            time.sleep(0.5)
            problem = procs.check()
            if problem:
                print(f"demo: {problem}; stopping (see logs)", file=sys.stderr)
                return 1
            if time.monotonic() - last_report >= args.report_every:
                last_report = time.monotonic()
                try:
                    n = _count_readings(api, token)
                    print(f"[{time.monotonic() - started:5.0f} s] units with readings in the "
                          f"API (last 1000 readings): {n}/{args.units}", flush=True)
                except OSError as e:
                    print(f"demo: API not answering: {e}", file=sys.stderr)
    finally:
        print("demo: stopping simulated units, fleet server, broker ...", flush=True)
        procs.stop_all()
        broker.stop()
    print("demo: stopped cleanly")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
