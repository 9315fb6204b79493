"""Commands to gateways and their correlated results (docs/protocol.md, `cmd`).

Outbox pattern: `create_command` stores the command (`c-<16 hex>`, status
`pending`) and the caller commits; only then `send` publishes it to
`ummc/v1/<unit>/<gw>/cmd` (QoS 1, not retained: the gateway's persistent
session keeps it while the gateway is away) and records `published_at` once
the broker has PUBACKed it. A command the broker did not take (broker down)
stays pending and unpublished; `publish_outbox` (run by the periodic
evaluator) sends it again until it expires. Re-sending is harmless: the
gateway executes an `id` once and answers a repeat with its stored result
(`replay`).

Publishing uses a short-lived MQTT connection of the fleet service account
per send: commands are rare and human-triggered, so the API process needs no
long-lived client of its own, with `run` and `api` alike.

The ingest worker hands each `cmd/result` to `apply_result`, which correlates
it by (gateway, id): `ok` -> status ok with the result object; not ok ->
status error with the gateway's error code and detail. A result for no
command sent to that gateway is refused (`unknown_command`, dead-lettered by
ingest). The first result is kept; later copies (a re-delivery, a replay)
change nothing. A command still pending past its expiry (plus a margin for
the answer to travel) is marked `expired`; a late answer still replaces that.

Logs name gateways, command ids and ops; never arguments or results.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, sessionmaker

from fleet_server import protocol
from fleet_server.models import Command, Gateway
from fleet_server.protocol import CommandResult, Reason, Rejection, Text64, UnixMs
from fleet_server.settings import Settings

log = logging.getLogger(__name__)

PENDING, OK, ERROR, EXPIRED = "pending", "ok", "error", "expired"
STATUSES = (PENDING, OK, ERROR, EXPIRED)
# A pending command is marked expired this long after its expiry (the
# gateway's `expired` answer may still be on its way).
EXPIRY_MARGIN = timedelta(minutes=5)
MAX_EXPIRES_S = 7 * 86_400


# --- arguments per operation (docs/protocol.md) ------------------------------------------


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApplyConfigArgs(_Args):
    version: Annotated[int, Strict(), Field(ge=0, le=2**31 - 1)]
    config: dict[str, Any]


class SyncNowArgs(_Args):
    instruments: Annotated[list[Text64], Field(max_length=64)] | None = None


class SetTimeArgs(_Args):
    time: UnixMs


class RebootArgs(_Args):
    delay_ms: Annotated[int, Strict(), Field(ge=0, le=600_000)] | None = None


class DiagnosticsArgs(_Args):
    pass


ARGS: dict[str, type[_Args]] = {
    "apply_config": ApplyConfigArgs, "sync_now": SyncNowArgs, "set_time": SetTimeArgs,
    "reboot": RebootArgs, "diagnostics": DiagnosticsArgs,
}
assert tuple(ARGS) == protocol.COMMAND_OPS

Op = Literal["apply_config", "sync_now", "set_time", "reboot", "diagnostics"]


class CommandRequest(BaseModel):
    """POST /gateways/{id}/commands: the operation, its arguments, how long
    the gateway may still act on it."""

    model_config = ConfigDict(extra="forbid")

    op: Op
    args: dict[str, Any] = Field(default_factory=dict)
    expires_in_s: int | None = Field(default=None, ge=10, le=MAX_EXPIRES_S)

    @model_validator(mode="after")
    def _check_args(self) -> CommandRequest:
        try:
            parsed = ARGS[self.op].model_validate(self.args)
        except ValidationError as e:
            err = e.errors(include_url=False, include_input=False)[0]
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
            raise ValueError(f"args{where}: {err['msg']} (op {self.op})") from None
        self.args = parsed.model_dump(mode="json", exclude_none=True)
        bad = protocol.bad_text_path(self.args)
        if bad is not None:
            raise ValueError(f"args.{bad}: must be valid text (no NUL, no lone surrogates)")
        return self


# --- the store -------------------------------------------------------------------------------


def new_command_id() -> str:
    return "c-" + secrets.token_hex(8)


def create_command(session: Session, *, gw: Gateway, request: CommandRequest,
                   created_by: str | None, now: datetime,
                   default_expires_s: int) -> Command:
    """A pending command row (flushed, not committed, not yet published)."""
    expires_s = request.expires_in_s or default_expires_s
    ts = protocol.to_unix_ms(now)
    cmd = Command(command_id=new_command_id(), gateway=gw, op=request.op,
                  args=request.args, status=PENDING, created_at=now, created_by=created_by,
                  ts=ts, expires_at=now + timedelta(seconds=expires_s), publish_attempts=0)
    session.add(cmd)
    session.flush()
    return cmd


def topic_of(cmd: Command) -> str:
    return protocol.topic(cmd.gateway.unit.code, cmd.gateway.gateway_id, protocol.CMD_LEAF)


def payload_of(cmd: Command) -> bytes:
    return protocol.command_payload(id=cmd.command_id, op=cmd.op, args=cmd.args, ts=cmd.ts,
                                    expires=protocol.to_unix_ms(cmd.expires_at))


def get_command(session: Session, *, command_id: str) -> Command | None:
    return session.scalar(select(Command).options(joinedload(Command.gateway)
                                                  .joinedload(Gateway.unit))
                          .where(Command.command_id == command_id))


def list_commands(session: Session, *, gw: Gateway, status: str | None = None,
                  limit: int = 100) -> Sequence[Command]:
    """Newest first."""
    q = (select(Command).options(joinedload(Command.gateway).joinedload(Gateway.unit))
         .where(Command.gateway_pk == gw.id))
    if status is not None:
        q = q.where(Command.status == status)
    return session.scalars(q.order_by(Command.created_at.desc(), Command.id.desc())
                           .limit(limit)).all()


def apply_result(session: Session, gw: Gateway, res: CommandResult,
                 now: datetime) -> Rejection | None:
    """Store a gateway's result on its command (see the module header)."""
    cmd = session.scalar(select(Command).where(Command.command_id == res.id,
                                               Command.gateway_pk == gw.id)
                         .with_for_update())
    if cmd is None:
        return Rejection(Reason.unknown_command,
                         f"id: no command {res.id} was sent to gateway {gw.gateway_id}")
    if res.op is not None and res.op != cmd.op:
        return Rejection(Reason.unknown_command,
                         f"op: command {res.id} is {cmd.op}, not {res.op}")
    if cmd.status in (OK, ERROR):
        return None  # the first result stands; this is a copy or a replay
    cmd.status = OK if res.ok else ERROR
    cmd.result = res.result if res.ok else None
    cmd.error = None if res.ok else res.error
    cmd.detail = res.detail
    cmd.replay = res.replay
    cmd.result_ts = res.ts
    cmd.result_at = now
    return None


def expire_pending(session: Session, now: datetime) -> int:
    """Mark pending commands long past their expiry `expired`; the count."""
    rows = session.scalars(select(Command).where(
        Command.status == PENDING, Command.expires_at < now - EXPIRY_MARGIN)).all()
    for cmd in rows:
        cmd.status = EXPIRED
    return len(rows)


# --- publishing --------------------------------------------------------------------------------


def publish(settings: Settings, topic: str, payload: bytes) -> bool:
    """Publish one QoS 1 message on a short-lived connection; True once the
    broker has accepted it (PUBACK without an error reason)."""
    timeout = settings.command_publish_timeout_s
    v5 = settings.mqtt_protocol == "5"
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"{settings.mqtt_client_id}-cmd-{secrets.token_hex(4)}",
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    if settings.mqtt_username:
        client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
    settled, acked = threading.Event(), threading.Event()  # connect answered; PUBACK
    connected: list[bool] = []
    refused: list[str] = []

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode,
                   _p: Properties | None) -> None:
        connected.append(not rc.is_failure)
        settled.set()

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, rc: ReasonCode,
                   _p: Properties | None) -> None:
        if rc.is_failure:
            refused.append(str(rc))
        acked.set()

    client.on_connect = on_connect
    client.on_connect_fail = lambda _c, _u: settled.set()
    client.on_publish = on_publish
    try:
        client.connect_async(settings.mqtt_host, settings.mqtt_port, keepalive=30)
        client.loop_start()
        settled.wait(timeout)
        if not any(connected):
            log.warning("command publish: broker %s:%d unreachable", settings.mqtt_host,
                        settings.mqtt_port)
            return False
        client.publish(topic, payload, qos=1, retain=False)
        if not acked.wait(timeout):
            log.warning("command publish: no PUBACK on %s within %.1f s", topic, timeout)
            return False
        if refused:
            log.error("command publish on %s refused by the broker: %s (check the ACL)",
                      topic, refused[0])
            return False
        return True
    except (OSError, ValueError, RuntimeError) as e:
        log.warning("command publish on %s failed: %s", topic, type(e).__name__)
        return False
    finally:
        client.disconnect()
        client.loop_stop()


def send(session: Session, settings: Settings, cmd: Command, now: datetime) -> bool:
    """Publish a committed command and record the attempt (the caller commits)."""
    cmd.publish_attempts += 1
    ok = publish(settings, topic_of(cmd), payload_of(cmd))
    if ok:
        cmd.published_at = now
        log.info("command %s (%s) published to %s", cmd.command_id, cmd.op,
                 cmd.gateway.gateway_id)
    return ok


def publish_outbox(sessions: sessionmaker[Session], settings: Settings, now: datetime,
                   limit: int = 100) -> int:
    """Send the pending commands the broker has not taken yet (and that have
    not expired); the number published."""
    with sessions() as session:
        rows = session.scalars(select(Command).options(
            joinedload(Command.gateway).joinedload(Gateway.unit)).where(
            Command.status == PENDING, Command.published_at.is_(None),
            Command.expires_at > now).order_by(Command.id).limit(limit)).all()
        sent = 0
        for cmd in rows:
            if send(session, settings, cmd, now):
                sent += 1
            session.commit()
            if not cmd.published_at:
                break  # the broker is down: try again at the next round
        return sent

