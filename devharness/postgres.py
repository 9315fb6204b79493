"""A throwaway PostgreSQL server for tests (and anyone who wants one).

`Postgres().start()` runs `initdb` into a fresh temporary directory and
`pg_ctl start` on a free loopback port (never the machine's own server on
5432), with its unix socket in that directory and durability switched off
(fsync, synchronous_commit, full_page_writes: a test database need not
survive a power cut). `stop()` stops it and removes the directory.

Binaries: the newest /usr/lib/postgresql/<version>/bin, else PATH.
initdb refuses to run as root: as root the directory is handed to the
`postgres` system user and the commands run through `runuser -u postgres --`.

`UMMC_TEST_POSTGRES_DSN` names an existing server to use instead (a
superuser or CREATEDB role; the DSN's database is used for CREATE/DROP
DATABASE): `server_for_tests()` honours it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from devharness.ports import free_port, wait_for_port

DSN_ENV = "UMMC_TEST_POSTGRES_DSN"
SYSTEM_PORT = 5432
_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def find_bindir() -> Path | None:
    """Directory with initdb/pg_ctl: the newest /usr/lib/postgresql/*/bin, else PATH."""
    candidates: list[tuple[int, Path]] = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        if (d / "initdb").exists() and d.parent.name.isdigit():
            candidates.append((int(d.parent.name), d))
    if candidates:
        return max(candidates)[1]
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def postgres_available() -> bool:
    return bool(os.environ.get(DSN_ENV)) or find_bindir() is not None


class PostgresError(RuntimeError):
    """The throwaway server could not be set up."""


class ServerBase:
    """What tests need from a server: make and drop databases, URLs to them."""

    def url(self, dbname: str) -> str:
        raise NotImplementedError

    def admin_url(self) -> str:
        raise NotImplementedError

    def _admin_execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url().replace("postgresql+psycopg", "postgresql"),
                             autocommit=True) as conn:
            conn.execute(sql.encode())

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """CREATE DATABASE (optionally from a template); returns its name."""
        name = name or "t_" + uuid.uuid4().hex[:16]
        if not _SAFE_NAME.match(name) or (template and not _SAFE_NAME.match(template)):
            raise ValueError(f"unsafe database name {name!r}")
        sql = f'CREATE DATABASE "{name}"'
        if template:
            sql += f' TEMPLATE "{template}"'
        self._admin_execute(sql)
        return name

    def drop_database(self, name: str) -> None:
        if not _SAFE_NAME.match(name):
            raise ValueError(f"unsafe database name {name!r}")
        self._admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        pass


@dataclass
class ExternalPostgres(ServerBase):
    """A server someone else runs, named by a DSN (`UMMC_TEST_POSTGRES_DSN`)."""

    dsn: str

    def _with_db(self, dbname: str) -> str:
        from sqlalchemy import make_url

        u = make_url(self.dsn)
        if u.drivername in ("postgresql", "postgres"):
            u = u.set(drivername="postgresql+psycopg")
        return u.set(database=dbname).render_as_string(hide_password=False)

    def url(self, dbname: str) -> str:
        return self._with_db(dbname)

    def admin_url(self) -> str:
        from sqlalchemy import make_url

        return self._with_db(make_url(self.dsn).database or "postgres")


@dataclass
class Postgres(ServerBase):
    """A PostgreSQL cluster of our own in a temporary directory."""

    port: int = 0
    bindir: Path | None = None
    durable: bool = False
    workdir: Path | None = None
    user: str = "postgres"  # the database superuser initdb creates
    _as_postgres: bool = field(default=False, init=False)

    @property
    def datadir(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "data"

    @property
    def logfile(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "postgres.log"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def admin_url(self) -> str:
        return self.url("postgres")

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    def start(self) -> Postgres:
        self.bindir = self.bindir or find_bindir()
        if self.bindir is None:
            raise PostgresError("PostgreSQL binaries not found (apt-get install postgresql)")
        while not self.port or self.port == SYSTEM_PORT:
            self.port = free_port()
        # A fresh directory under the system temp dir: pytest's tmp dirs are
        # 0700 root-owned, which the postgres user could not enter.
        self.workdir = Path(tempfile.mkdtemp(prefix="ummc-pg-"))
        (self.workdir / "sock").mkdir()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            for p in (self.workdir, self.workdir / "sock"):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        r = self._run([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.user,
                       "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        if r.returncode != 0:
            self._cleanup()
            raise PostgresError(f"initdb failed: {r.stderr.strip() or r.stdout.strip()}")
        opts = [f"-p {self.port}", "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.workdir / 'sock'}",
                "-c max_connections=200"]
        if not self.durable:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        r = self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l",
                       str(self.logfile), "-w", "-t", "60", "-o", " ".join(opts), "start"])
        if r.returncode != 0:
            log = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
            self.stop()
            raise PostgresError(f"pg_ctl start failed: {r.stderr.strip()}\n{log[-2000:]}")
        wait_for_port(self.port, timeout=30)
        return self

    def stop(self) -> None:
        if self.workdir is None:
            return
        if self.bindir is not None and (self.datadir / "postmaster.pid").exists():
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast",
                       "-w", "-t", "60", "stop"])
        self._cleanup()

    def _cleanup(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def server_for_tests() -> ServerBase:
    """The server tests use: `UMMC_TEST_POSTGRES_DSN` if set, else a fresh one."""
    dsn = os.environ.get(DSN_ENV)
    if dsn:
        return ExternalPostgres(dsn)
    return Postgres().start()
