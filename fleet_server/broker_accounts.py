"""Gateway credentials on the broker: the fleet server writes Mosquitto's
password file and ACL file itself (no `mosquitto_passwd`, no shell), then
makes the broker reload them.

How it fits: `POST /api/v1/gateways/{id}/credentials` (api/routes/
credentials.py) calls `issue_credentials`, which registers the gateway if it
is new, makes a random password, stores only its hash on the gateway row
(`gateways.broker_password_hash`: Mosquitto's own hash, so the files can be
written again from the database alone), rewrites both files and reloads the
broker; the password goes back to the caller once and is kept nowhere.
Rotating is issuing again: the new hash replaces the old one, and after the
reload the old password no longer logs in.

The files (docs/operations.md, "Gateway credentials and the broker"):
- password file: Mosquitto 2's `user:$7$<iterations>$<base64 salt>$<base64
  PBKDF2-HMAC-SHA512>` lines (12-byte salt, 64-byte key, standard base64
  with padding: what `mosquitto_passwd -b` writes). The line of every
  gateway with a hash in the database is written from it; every other line
  (service accounts, gateways whose password was made by hand, comments)
  is kept as it was.
- ACL file, generated whole: the service users of the settings read and
  write `ummc/v1/#`; each registered gateway that has a line in the password
  file writes only its state, birth, health, data and cmd/result topics
  and reads only its ack and cmd topics under `ummc/v1/<unit>/<gateway>/`
  (the same text as devharness/broker.py's `acl_text`).
Both are replaced atomically (temporary file, fsync, rename) with the
configured mode, keeping the group of the file they replace. Writers take an
exclusive lock (flock on a `.lock` file beside the password file), so two
API processes on one machine never interleave. If the reload fails, the
previous files are put back and the error raised: the broker and the
database then still agree on the old password.

Reload: SIGHUP to the pid in UMMC_BROKER_PID_FILE (Mosquitto reloads its
password and ACL files on SIGHUP), or UMMC_BROKER_RELOAD_COMMAND (e.g.
`systemctl reload mosquitto`); neither: the files wait for the broker's
next reload or restart, and the caller is told (`reloaded` false).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import logging
import os
import secrets
import shlex
import signal
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.models import Gateway, Unit
from fleet_server.settings import Settings

log = logging.getLogger(__name__)
audit = logging.getLogger("fleet_server.audit")

TOPIC_ROOT = "ummc/v1"
GATEWAY_PUBLISHES = ("state", "birth", "health", "data", "cmd/result")
GATEWAY_READS = ("ack", "cmd")
SALT_BYTES = 12  # as mosquitto_passwd
PASSWORD_BYTES = 24  # token_urlsafe: 32 characters, 192 bits
RELOAD_TIMEOUT_S = 30


class BrokerError(Exception):
    """The files could not be written or the broker not reloaded (nothing changed)."""


class CredentialError(Exception):
    """kind: 'conflict' (409) or 'invalid' (422, on `field`)."""

    def __init__(self, kind: Literal["conflict", "invalid"], msg: str,
                 field: str | None = None) -> None:
        super().__init__(msg)
        self.kind = kind
        self.field = field


# --- Mosquitto's password hash -----------------------------------------------------------

def mosquitto_hash(password: str, *, iterations: int = 1000, salt: bytes | None = None) -> str:
    """`$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>`."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(key).decode()}")


def verify_hash(password: str, encoded: str) -> bool:
    """Whether `password` matches a `$7$` hash (False for any other format)."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt, key = base64.b64decode(parts[3], validate=True), base64.b64decode(
            parts[4], validate=True)
    except ValueError:
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(got, key)


# --- the two files' text -----------------------------------------------------------------

def _user_of(line: str) -> str | None:
    """The user a password-file line is about (None: blank or comment)."""
    text = line.strip()
    if not text or text.startswith("#") or ":" not in text:
        return None
    return text.split(":", 1)[0]


def password_file_users(text: str) -> set[str]:
    return {u for u in map(_user_of, text.splitlines()) if u is not None}


def render_password_file(current: str, hashes: Mapping[str, str]) -> str:
    """`current` with the line of every user in `hashes` (re)written from it,
    in place (new users appended, sorted); other lines kept as they are."""
    out: list[str] = []
    done: set[str] = set()
    for line in current.splitlines():
        user = _user_of(line)
        if user is not None and user in hashes:
            if user not in done:  # a duplicate line goes
                out.append(f"{user}:{hashes[user]}")
                done.add(user)
        else:
            out.append(line)
    out += [f"{user}:{hashes[user]}" for user in sorted(set(hashes) - done)]
    return "".join(line + "\n" for line in out)


def acl_text(gateways: Iterable[tuple[str, str]], services: Iterable[str]) -> str:
    """Mosquitto ACL: services read/write the whole tree; each (unit, gateway)
    touches only its own subtree."""
    lines: list[str] = []
    for user in services:
        lines += [f"user {user}", f"topic readwrite {TOPIC_ROOT}/#", ""]
    for unit, gateway in gateways:
        prefix = f"{TOPIC_ROOT}/{unit}/{gateway}"
        lines.append(f"user {gateway}")
        lines += [f"topic write {prefix}/{leaf}" for leaf in GATEWAY_PUBLISHES]
        lines += [f"topic read {prefix}/{leaf}" for leaf in GATEWAY_READS]
        lines.append("")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str, mode: int) -> None:
    """Replace `path` by `text` whole (a crash leaves the old or the new file),
    with `mode`, keeping the replaced file's group when we may."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # whatever the umask
        try:
            os.chown(tmp, -1, path.stat().st_gid)
        except (FileNotFoundError, PermissionError):
            pass
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --- the broker's files and its reload ----------------------------------------------------

@dataclass(frozen=True)
class BrokerFiles:
    """Where the broker's files are and how it is reloaded (from the settings)."""

    password_file: Path
    acl_file: Path
    pid_file: Path | None = None
    reload_command: str | None = None
    service_users: tuple[str, ...] = ()
    mode: int = 0o600
    iterations: int = 1000

    @classmethod
    def from_settings(cls, s: Settings) -> BrokerFiles | None:
        """None when the server does not manage the broker's accounts."""
        if s.broker_password_file is None or s.broker_acl_file is None:
            return None
        return cls(password_file=s.broker_password_file, acl_file=s.broker_acl_file,
                   pid_file=s.broker_pid_file, reload_command=s.broker_reload_command,
                   service_users=tuple(s.broker_service_user_list),
                   mode=int(s.broker_file_mode, 8), iterations=s.broker_hash_iterations)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across processes on this machine (flock)."""
        lock = self.password_file.with_name(f".{self.password_file.name}.lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise BrokerError(f"cannot lock {lock}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def read(self) -> tuple[str | None, str | None]:
        """The files' current text (None: the file does not exist)."""
        def text(p: Path) -> str | None:
            try:
                return p.read_text()
            except FileNotFoundError:
                return None
            except OSError as e:
                raise BrokerError(f"cannot read {p}: {e.strerror}") from None
        return text(self.password_file), text(self.acl_file)

    def render(self, session: Session, current_passwd: str | None) -> tuple[str, str]:
        """(password file, ACL file) for the registry as the session sees it."""
        rows = session.execute(select(Gateway.gateway_id, Unit.code,
                                      Gateway.broker_password_hash)
                               .join(Gateway.unit).order_by(Gateway.gateway_id)).all()
        services = set(self.service_users)
        hashes = {g: h for g, _u, h in rows if h and g not in services}
        passwd = render_password_file(current_passwd or "", hashes)
        present = password_file_users(passwd)
        gateways = [(u, g) for g, u, _h in rows if g in present and g not in services]
        return passwd, acl_text(gateways, self.service_users)

    def _write(self, passwd: str | None, acl: str | None) -> None:
        for path, text in ((self.password_file, passwd), (self.acl_file, acl)):
            try:
                if text is None:
                    path.unlink(missing_ok=True)
                else:
                    write_atomic(path, text, self.mode)
            except OSError as e:
                raise BrokerError(f"cannot write {path}: {e.strerror}") from None

    def reload(self) -> bool:
        """Tell the broker to reload; False when no way is configured."""
        if self.pid_file is not None:
            try:
                pid = int(self.pid_file.read_text().strip())
                os.kill(pid, signal.SIGHUP)
            except (OSError, ValueError) as e:
                detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                raise BrokerError(f"cannot signal the broker (pid file {self.pid_file}): "
                                  f"{detail}") from None
            return True
        if self.reload_command:
            argv = shlex.split(self.reload_command)
            try:
                proc = subprocess.run(argv, capture_output=True, timeout=RELOAD_TIMEOUT_S,
                                      check=False)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise BrokerError(f"reload command {argv[0]!r} failed: {e}") from None
            if proc.returncode != 0:
                err = proc.stderr.decode(errors="replace").strip()[-300:]
                raise BrokerError(f"reload command {argv[0]!r} exited "
                                  f"{proc.returncode}: {err}")
            return True
        return False

    def apply(self, session: Session) -> bool:
        """Write both files from the session's view and reload the broker (call
        under `locked()`). On failure the previous files are put back and
        BrokerError raised. Returns whether the broker was told to reload."""
        old_passwd, old_acl = self.read()
        passwd, acl = self.render(session, old_passwd)
        try:
            self._write(passwd, acl)
            return self.reload()
        except BrokerError:
            self.restore(old_passwd, old_acl)
            raise

    def restore(self, passwd: str | None, acl: str | None) -> None:
        try:
            self._write(passwd, acl)
        except BrokerError as e:
            log.error("could not put the broker's previous files back: %s", e)


# --- issuing -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Issued:
    gateway: str
    unit: str
    password: str
    registered: bool  # the gateway was new: registered now
    reloaded: bool  # the broker was told to reload (else: at its next reload)
    issued_at: datetime


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


class NotConfigured(BrokerError):
    """The settings name no password and ACL files: this server does not manage them."""


def _target(session: Session, *, gateway_id: str, unit_code: str, may_create_unit: bool,
            for_update: bool) -> tuple[Gateway | None, Unit | None]:
    """The gateway (None: new) and its unit (None: to be created), or CredentialError."""
    q = select(Gateway).where(Gateway.gateway_id == gateway_id)
    gw = session.scalar(q.with_for_update() if for_update else q)
    if gw is not None and gw.unit.code != unit_code:
        raise CredentialError(
            "conflict", f"gateway {gateway_id} is registered to unit {gw.unit.code}, not "
                        f"{unit_code}; an administrator moves it with `python -m fleet_server "
                        "register`")
    unit = gw.unit if gw is not None else session.scalar(
        select(Unit).where(Unit.code == unit_code))
    if unit is None and not may_create_unit:
        raise CredentialError("invalid", f"unknown unit {unit_code}: an administrator "
                                         "registers new units", "unit")
    return gw, unit


def issue_credentials(session: Session, files: BrokerFiles | None, *, gateway_id: str,
                      unit_code: str, by: str, may_create_unit: bool, now: datetime) -> Issued:
    """Give `gateway_id` (registered to `unit_code`, or registered there now)
    a new broker password; write the files, reload the broker, COMMIT.
    Refused: a gateway registered to another unit or named like a service
    account (conflict), an unknown unit when `may_create_unit` is False
    (invalid, field `unit`); then, with no files configured, NotConfigured.
    The password is returned, never stored."""
    if files is not None and gateway_id in files.service_users:
        raise CredentialError("conflict", f"{gateway_id} is a service account of the broker, "
                                          "not a gateway")
    # The request's own mistakes first (whatever the configuration) ...
    _target(session, gateway_id=gateway_id, unit_code=unit_code,
            may_create_unit=may_create_unit, for_update=False)
    session.rollback()
    if files is None:
        raise NotConfigured("this server does not manage broker accounts: set "
                            "UMMC_BROKER_PASSWORD_FILE and UMMC_BROKER_ACL_FILE")
    # ... then again under the lock, where it counts.
    with files.locked():
        try:
            gw, unit = _target(session, gateway_id=gateway_id, unit_code=unit_code,
                               may_create_unit=may_create_unit, for_update=True)
            if unit is None:
                unit = Unit(code=unit_code, created_at=now)
                session.add(unit)
            registered = gw is None
            if gw is None:
                gw = Gateway(gateway_id=gateway_id, unit=unit, registered_at=now)
                session.add(gw)
            password = new_password()
            gw.broker_password_hash = mosquitto_hash(password, iterations=files.iterations)
            gw.credentials_issued_at = now
            gw.credentials_issued_by = by
            session.flush()
            old_passwd, old_acl = files.read()
            reloaded = files.apply(session)
            try:
                session.commit()
            except Exception:
                files.restore(old_passwd, old_acl)
                try:
                    files.reload()
                except BrokerError as e:
                    log.error("broker not reloaded after putting its files back: %s", e)
                raise
        except BaseException:
            session.rollback()
            raise
    audit.info("broker credentials issued: gateway %s unit %s by %s%s%s", gateway_id, unit_code,
               by, " (gateway registered now)" if registered else "",
               "" if reloaded else "; broker NOT reloaded (no pid file or reload command)")
    return Issued(gateway=gateway_id, unit=unit_code, password=password, registered=registered,
                  reloaded=reloaded, issued_at=now)


def write_broker_files(session: Session, files: BrokerFiles) -> bool:
    """Write both files from the database and reload (e.g. after `register`
    moved a gateway, or for a new broker host). Returns `reloaded`."""
    with files.locked():
        return files.apply(session)
