"""`python -m fleet_server <command>` (also the `ummc-fleet` script).

Commands: migrate, register, create-user, seed-places, ingest, api, run. Settings come
from the environment (`UMMC_*`, see settings.py); the flags --database-url,
--mqtt-host, --mqtt-port, --mqtt-username, --mqtt-password (and --host,
--port for the API) override them.

`ingest`, `api` and `run` are long-running: the main thread only waits for
SIGINT/SIGTERM; the API (uvicorn), the ingest worker (paho's network
thread) and, beside the worker, the alert evaluator (alerts.PeriodicEvaluator)
run in threads that are stopped and joined on the signal, so the process
exits 0 with nothing left behind. If a part dies on its own (the API
port is taken, say), the others are stopped and the exit code is 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError
from sqlalchemy import inspect
from sqlalchemy.exc import DBAPIError

from fleet_server import crud
from fleet_server.db import make_engine, migrate, session_factory
from fleet_server.models import Role
from fleet_server.settings import Settings

log = logging.getLogger("fleet_server")

_OVERRIDES = {  # flag dest -> settings field
    "database_url": "database_url", "mqtt_host": "mqtt_host", "mqtt_port": "mqtt_port",
    "mqtt_username": "mqtt_username", "mqtt_password": "mqtt_password",
    "host": "api_host", "port": "api_port",
}


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("settings (override UMMC_* environment variables)")
    g.add_argument("--database-url", help="SQLAlchemy URL (UMMC_DATABASE_URL)")
    g.add_argument("--mqtt-host", help="broker host (UMMC_MQTT_HOST)")
    g.add_argument("--mqtt-port", type=int, help="broker port (UMMC_MQTT_PORT)")
    g.add_argument("--mqtt-username", help="broker username (UMMC_MQTT_USERNAME)")
    g.add_argument("--mqtt-password", help="broker password (UMMC_MQTT_PASSWORD)")
    g.add_argument("--log-level", help="DEBUG, INFO, WARNING ... (UMMC_LOG_LEVEL)")

    p = argparse.ArgumentParser(prog="python -m fleet_server",
                                description="UMMC fleet server")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("migrate", parents=[common], help="create/upgrade the database schema")
    r = sub.add_parser("register", parents=[common],
                       help="register units and gateways from a JSON file (idempotent)")
    r.add_argument("--accounts", required=True, type=Path,
                   help='JSON list of {"unit", "gateway", "name"?, "province"?, "region"?} '
                        '(or an object with such a list under "gateways")')
    u = sub.add_parser("create-user", parents=[common],
                       help="create an API user, or reset its role and password")
    u.add_argument("--username", required=True)
    u.add_argument("--role", required=True, choices=[r.value for r in Role])
    u.add_argument("--password", help="asked for on the terminal when omitted")
    sp = sub.add_parser("seed-places", parents=[common],
                        help="add missing regions/provinces and place registered units "
                             "from the seed (fleet_server/data/morocco_admin.json)")
    sp.add_argument("--force", action="store_true",
                    help="also re-place units that already have a province")
    sub.add_parser("ingest", parents=[common], help="run the MQTT ingest worker")
    for name, text in (("api", "serve the REST API (uvicorn)"),
                       ("run", "migrate, then the ingest worker and the API in one process")):
        a = sub.add_parser(name, parents=[common], help=text)
        a.add_argument("--host", help="API address (UMMC_API_HOST)")
        a.add_argument("--port", type=int, help="API port (UMMC_API_PORT)")
    return p


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {field: getattr(args, dest) for dest, field in _OVERRIDES.items()
                 if getattr(args, dest, None) is not None}
    if getattr(args, "log_level", None):
        overrides["log_level"] = args.log_level
    return Settings(**overrides)


# Options whose value may be a random secret starting with '-', which argparse
# would take for an option: `--password -x7...` is rewritten `--password=-x7...`.
_SECRET_OPTIONS = frozenset({"--password", "--mqtt-password", "--username",
                             "--mqtt-username"})


def _glue_secret_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in _SECRET_OPTIONS:
            value = next(it, None)
            out.append(arg if value is None else f"{arg}={value}")
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(_glue_secret_values(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args)
    except ValidationError as e:
        print(f"fleet_server: bad settings:\n{e}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(settings.log_level.upper())
    command: Callable[[Settings, argparse.Namespace], int] = COMMANDS[args.command]
    try:
        return command(settings, args)
    except DBAPIError as e:
        hint = "" if args.command == "migrate" else " (has `migrate` been run?)"
        print(f"fleet_server {args.command}: database error{hint}: {e.orig}", file=sys.stderr)
        return 1


# --- one-shot commands ---------------------------------------------------------------

def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    migrate(settings.database_url)
    log.info("database at head")
    _seed_places(settings, force=False)
    return 0


def _seed_places(settings: Settings, *, force: bool) -> str:
    """Reference places: missing rows from the seed, then registered units
    without a province placed (all of them with `force`)."""
    from fleet_server import reference_data

    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            added = reference_data.seed_places(session)
            result = reference_data.place_units(session, force=force)
            session.commit()
    finally:
        engine.dispose()
    summary = (f"places added {added}, units placed {len(result.placed)}, kept "
               f"{result.kept}, not in the seed {len(result.not_in_seed)}")
    log.info("%s", summary)
    return summary


def cmd_seed_places(settings: Settings, args: argparse.Namespace) -> int:
    print(_seed_places(settings, force=args.force))
    return 0


def _read_registrations(path: Path) -> list[crud.Registration]:
    doc = json.loads(path.read_text())
    if isinstance(doc, dict):
        doc = doc.get("gateways", [])
    if not isinstance(doc, list):
        raise ValueError("expected a JSON list of registrations")
    return [crud.Registration.model_validate(e) for e in doc]


def cmd_register(settings: Settings, args: argparse.Namespace) -> int:
    try:
        entries = _read_registrations(args.accounts)
    except (OSError, ValueError) as e:  # ValidationError is a ValueError
        print(f"fleet_server register: {args.accounts}: {e}", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            result = crud.register(session, entries=entries, now=datetime.now(UTC))
            session.commit()
    finally:
        engine.dispose()
    print(f"units created {result.units_created}, gateways created "
          f"{result.gateways_created}, moved {result.gateways_moved}, unchanged "
          f"{result.unchanged}")
    return 0


def cmd_create_user(settings: Settings, args: argparse.Namespace) -> int:
    password = args.password or getpass.getpass(f"password for {args.username}: ")
    if not password:
        print("fleet_server create-user: empty password", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            _user, created = crud.create_user(session, username=args.username,
                                              role=Role(args.role), password=password,
                                              now=datetime.now(UTC))
            session.commit()
    finally:
        engine.dispose()
    print(f"user {args.username} ({args.role}) {'created' if created else 'updated'}")
    return 0


# --- long-running commands --------------------------------------------------------------

def _bootstrap_admin(settings: Settings, engine: Any) -> None:
    if not inspect(engine).has_table("users"):
        raise SystemExit("fleet_server: the database has no schema; run `migrate` first")
    with session_factory(engine)() as session:
        if crud.ensure_bootstrap_admin(session, settings=settings, now=datetime.now(UTC)):
            log.warning("created bootstrap admin user %r", settings.bootstrap_admin_username)
        session.commit()


def serve(settings: Settings, *, api: bool, ingest: bool,
          stop: threading.Event | None = None) -> int:
    """Run the API and/or the ingest worker until SIGINT/SIGTERM (or `stop`)."""
    import uvicorn

    from fleet_server.alerts import PeriodicEvaluator
    from fleet_server.api.main import create_app
    from fleet_server.ingest import IngestWorker
    from fleet_server.timeseries import TimeSeriesSink

    stop = stop or threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    previous: dict[signal.Signals, Any] = {}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    engine = make_engine(settings.database_url)
    worker: IngestWorker | None = None
    evaluator: PeriodicEvaluator | None = None
    sink: TimeSeriesSink | None = None
    server: uvicorn.Server | None = None
    api_thread: threading.Thread | None = None
    rc = 0
    try:
        if api:
            _bootstrap_admin(settings, engine)
        if ingest:
            sink = TimeSeriesSink.from_settings(settings)  # None: no UMMC_INFLUX_URL
            worker = w = IngestWorker(settings, session_factory(engine), timeseries=sink)
            worker.start()
            # alerts and the command outbox, every UMMC_EVALUATE_INTERVAL_S;
            # heartbeat timeouts only judged while this worker is subscribed
            evaluator = PeriodicEvaluator(settings, session_factory(engine),
                                          listening=lambda: w.subscribed_at)
            evaluator.start()
        if api:
            app = create_app(settings, engine=engine)
            app.state.ingest_worker = worker
            server = uvicorn.Server(uvicorn.Config(
                app, host=settings.api_host, port=settings.api_port, log_config=None,
                access_log=False))
            api_thread = threading.Thread(target=server.run, name="api", daemon=False)
            api_thread.start()
            log.info("API on http://%s:%d/api/v1 (docs: /docs)", settings.api_host,
                     settings.api_port)
        while not stop.wait(0.5):
            if api_thread is not None and not api_thread.is_alive():
                log.error("the API stopped on its own (port taken?); stopping")
                rc = 1
                break
    finally:
        if server is not None and api_thread is not None:
            server.should_exit = True
            api_thread.join(timeout=30)
        if evaluator is not None:
            evaluator.stop()
        if worker is not None:
            worker.stop()
        if sink is not None:
            sink.close(timeout=5)
        engine.dispose()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return rc


def cmd_ingest(settings: Settings, _args: argparse.Namespace) -> int:
    return serve(settings, api=False, ingest=True)


def cmd_api(settings: Settings, _args: argparse.Namespace) -> int:
    return serve(settings, api=True, ingest=False)


def cmd_run(settings: Settings, _args: argparse.Namespace) -> int:
    migrate(settings.database_url)
    _seed_places(settings, force=False)
    return serve(settings, api=True, ingest=True)


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "migrate": cmd_migrate, "register": cmd_register, "create-user": cmd_create_user,
    "seed-places": cmd_seed_places,
    "ingest": cmd_ingest, "api": cmd_api, "run": cmd_run,
}
