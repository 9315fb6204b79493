"""Run a real MQTT broker for tests and the demo.

Mosquitto (Debian's `mosquitto`) is the broker: started on a free loopback
port with a generated configuration, a password file (hashed by
`mosquitto_passwd -U`) and an ACL that lets each gateway publish and read only
its own topic subtree (see docs/protocol.md, "Security").

Optionally a second listener speaks TLS (`enable_tls`, certificates from
devharness/tlscerts.py) beside the plain one, with the same accounts and ACL.

Facts this relies on (../shared/design/FIELD-NOTES.md): the default
`max_queued_messages 1000` drops QoS 1 messages for a lagging subscriber, so
it is raised; persistence needs `user root` when running as root.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devharness.ports import free_port, wait_for_port
from devharness.processes import spawn, terminate

TOPIC_ROOT = "ummc/v1"
GATEWAY_PUBLISHES = ("state", "birth", "health", "data", "cmd/result")
GATEWAY_READS = ("ack", "cmd")


@dataclass(frozen=True)
class GatewayAccount:
    """One gateway's broker identity: its unit, its id (= MQTT username) and password."""

    unit: str
    gateway: str
    password: str

    @property
    def prefix(self) -> str:
        return f"{TOPIC_ROOT}/{self.unit}/{self.gateway}"


@dataclass(frozen=True)
class ServiceAccount:
    """A fleet-side account (ingest worker, API) with read/write on the whole tree."""

    username: str
    password: str


def acl_text(gateways: Iterable[GatewayAccount], services: Iterable[ServiceAccount]) -> str:
    """Mosquitto ACL: a gateway may only touch its own subtree, services all of it."""
    lines: list[str] = []
    for svc in services:
        lines += [f"user {svc.username}", f"topic readwrite {TOPIC_ROOT}/#", ""]
    for gw in gateways:
        lines.append(f"user {gw.gateway}")
        lines += [f"topic write {gw.prefix}/{leaf}" for leaf in GATEWAY_PUBLISHES]
        lines += [f"topic read {gw.prefix}/{leaf}" for leaf in GATEWAY_READS]
        lines.append("")
    return "\n".join(lines) + "\n"


def _write_password_file(path: Path, users: Mapping[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{u}:{p}\n" for u, p in users.items()))
    os.chmod(path, 0o600)
    subprocess.run(["mosquitto_passwd", "-U", str(path)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass
class Mosquitto:
    """A mosquitto process with its own config in `workdir`; restartable in place."""

    workdir: Path
    gateways: list[GatewayAccount] = field(default_factory=list)
    services: list[ServiceAccount] = field(default_factory=list)
    port: int = 0
    max_queued_messages: int = 1_000_000
    proc: subprocess.Popen[bytes] | None = None
    # Files kept elsewhere (e.g. written afterwards by the fleet server,
    # fleet_server/broker_accounts.py): the accounts above are written there
    # at start-up, and `reload()` makes the broker read them again. A pid
    # file is written by Mosquitto itself (`pid_file`).
    password_file: Path | None = None
    acl_file: Path | None = None
    pid_file: Path | None = None
    # A TLS listener on `tls_port` as well when a certificate is set
    # (`enable_tls`); the plain listener on `port` stays.
    tls_port: int = 0
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    tls_cafile: Path | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        self._write_config()

    @property
    def anonymous(self) -> bool:
        return not (self.gateways or self.services or self.password_file)

    def _write_config(self) -> None:
        conf = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.workdir}/",
            f"max_queued_messages {self.max_queued_messages}",
            "max_inflight_messages 20",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if os.geteuid() == 0:
            conf.append("user root")
        if self.pid_file is not None:
            conf.append(f"pid_file {self.pid_file}")
        if self.anonymous:
            conf.append("allow_anonymous true")
        else:
            users = {s.username: s.password for s in self.services}
            users.update({g.gateway: g.password for g in self.gateways})
            passwd = self.password_file or self.workdir / "passwd"
            _write_password_file(passwd, users)
            acl = self.acl_file or self.workdir / "acl"
            acl.write_text(acl_text(self.gateways, self.services))
            conf += ["allow_anonymous false", f"password_file {passwd}", f"acl_file {acl}"]
        if self.tls_certfile is not None:
            # Last: the lines after `listener` belong to that listener.
            conf += [f"listener {self.tls_port} 127.0.0.1",
                     f"certfile {self.tls_certfile}", f"keyfile {self.tls_keyfile}"]
            if self.tls_cafile is not None:
                conf.append(f"cafile {self.tls_cafile}")
        (self.workdir / "mosquitto.conf").write_text("\n".join(conf) + "\n")

    def enable_tls(self, certfile: Path, keyfile: Path, cafile: Path | None = None,
                   port: int = 0) -> Mosquitto:
        """Add a TLS listener (on `port`, or a free one: `tls_port`). Takes
        effect at the next start (or restart)."""
        self.tls_certfile, self.tls_keyfile, self.tls_cafile = certfile, keyfile, cafile
        self.tls_port = port or self.tls_port or free_port()
        self._write_config()
        return self

    def start(self) -> Mosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = spawn([binary, "-c", str(self.workdir / "mosquitto.conf")],
                          self.workdir / "mosquitto.log")
        try:
            wait_for_port(self.port, timeout=10)
            if self.tls_certfile is not None:
                wait_for_port(self.tls_port, timeout=10)
        except TimeoutError:
            self.stop()
            raise RuntimeError("mosquitto did not start; see "
                               f"{self.workdir / 'mosquitto.log'}") from None
        return self

    def stop(self) -> None:
        """Stop gracefully (SIGTERM: the broker saves its persistent sessions)."""
        terminate(self.proc, timeout=10)
        self.proc = None

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its password and ACL files again."""
        assert self.proc is not None, "not started"
        self.proc.send_signal(signal.SIGHUP)

    def restart(self, pause: float = 0.0) -> None:
        self.stop()
        if pause:
            time.sleep(pause)
        self.start()

    def log_text(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


def mosquitto_available() -> bool:
    return shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()
