"""Database engines, sessions and migrations.

`make_engine(url)` is the one place that knows backend quirks (and hides
statement parameters from error messages, which end up in logs):
- SQLite: the parent directory of the file is created; every connection runs
  WAL, foreign keys on, synchronous FULL (an ack promises durability) and a
  busy timeout; transactions start with BEGIN IMMEDIATE, so a transaction
  that reads and then writes waits for the write lock instead of failing
  with SQLITE_BUSY halfway.
- PostgreSQL: `postgresql://` URLs are given the psycopg 3 driver.

`migrate(url)` runs Alembic to the heads with a programmatic config whose script
location is inside this package, so it works from any working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000


def normalize_url(url: str | URL) -> URL:
    """postgresql:// -> postgresql+psycopg:// (psycopg 3 is the driver we ship)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def _sqlite_file(u: URL) -> Path | None:
    db = u.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    u = normalize_url(url)
    # Errors must not carry statement parameters into logs: they can be
    # readings' values (medical data).
    kwargs.setdefault("hide_parameters", True)
    if u.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(u, **kwargs)

    path = _sqlite_file(u)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    engine = create_engine(u, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event own BEGIN (pysqlite's own is lazy and
        # deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if path is not None:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | URL) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Passed as an attribute, not a config option: configparser would choke on
    # a '%' in a password.
    cfg.attributes["url"] = normalize_url(url)
    return cfg


def migrate(url: str | URL, revision: str = "heads") -> None:
    """Bring the database at `url` to `revision` (creating the SQLite file).
    "heads": every branch of the history (independent features may add
    their tables on parallel branches until a merge revision joins them)."""
    u = normalize_url(url)
    if u.get_backend_name() == "sqlite":
        path = _sqlite_file(u)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(u), revision)
