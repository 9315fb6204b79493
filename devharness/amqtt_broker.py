"""Embedded fallback broker (amqtt, MQTT 3.1.1) for a machine without
Mosquitto, used by the demo only.

Same accounts and topic rules as the Mosquitto set-up (devharness/broker.py):
argon2-hashed password file, publish and subscribe ACLs per gateway. Facts
from ../shared/design/FIELD-NOTES.md: amqtt speaks MQTT 3.1.1 only (no shared
subscriptions, so one ingest worker), about 1,900 QoS 1 messages/s, weak
persistence across restarts: good enough for a 100-unit demo, never used for
the durability tests.

    python -m devharness.amqtt_broker CONFIG.json   (written by AmqttBroker)
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from devharness.broker import (
    GATEWAY_PUBLISHES,
    GATEWAY_READS,
    TOPIC_ROOT,
    GatewayAccount,
    ServiceAccount,
)
from devharness.ports import free_port, wait_for_port
from devharness.processes import spawn, terminate


def amqtt_config(port: int, passwd: Path, gateways: list[GatewayAccount],
                 services: list[ServiceAccount]) -> dict[str, object]:
    publish: dict[str, list[str]] = {s.username: [f"{TOPIC_ROOT}/#"] for s in services}
    subscribe: dict[str, list[str]] = {s.username: [f"{TOPIC_ROOT}/#"] for s in services}
    for g in gateways:
        publish[g.gateway] = [f"{g.prefix}/{leaf}" for leaf in GATEWAY_PUBLISHES]
        subscribe[g.gateway] = [f"{g.prefix}/{leaf}" for leaf in GATEWAY_READS]
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.FileAuthPlugin": {"password_file": str(passwd)},
            "amqtt.plugins.topic_checking.TopicAccessControlListPlugin": {
                # this plugin version names the subscribe ACL `acl`
                "publish_acl": publish, "acl": subscribe},
        },
    }


@dataclass
class AmqttBroker:
    workdir: Path
    gateways: list[GatewayAccount] = field(default_factory=list)
    services: list[ServiceAccount] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        from pwdlib import PasswordHash
        from pwdlib.hashers.argon2 import Argon2Hasher

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        hasher = PasswordHash((Argon2Hasher(),))
        users = {s.username: s.password for s in self.services}
        users.update({g.gateway: g.password for g in self.gateways})
        passwd = self.workdir / "passwd"
        passwd.write_text("".join(f"{u}:{hasher.hash(p)}\n" for u, p in users.items()))
        passwd.chmod(0o600)
        (self.workdir / "amqtt.json").write_text(json.dumps(
            amqtt_config(self.port, passwd, self.gateways, self.services)))

    def start(self) -> AmqttBroker:
        self.proc = spawn([sys.executable, "-m", "devharness.amqtt_broker",
                           str(self.workdir / "amqtt.json")], self.workdir / "amqtt.log")
        wait_for_port(self.port, timeout=30)
        return self

    def stop(self) -> None:
        terminate(self.proc, timeout=10)
        self.proc = None


async def _serve(config: dict[str, object]) -> None:
    from amqtt.broker import Broker

    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    started = time.monotonic()
    asyncio.run(_serve(config))
    print(f"amqtt broker stopped after {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
