"""Commands to gateways: through the API to a real Mosquitto (with the
per-gateway ACL), answered by a real MQTT client acting as the gateway, the
result ingested by the real worker and shown by the API; the outbox while
the broker is down; result validation and correlation (docs/protocol.md,
`cmd` and `cmd/result`)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import Session

from devharness.broker import GatewayAccount, Mosquitto, ServiceAccount
from devharness.ports import free_port
from fleet_server import commands, protocol
from fleet_server.commands import CommandRequest
from fleet_server.db import session_factory
from fleet_server.ingest import IngestWorker, ingest_result
from fleet_server.models import Command, DeadLetter
from fleet_server.protocol import Reason
from tests.fleet_server import test_api
from tests.fleet_server.helpers import NOW, make_settings
from tests.fleet_server.test_health_model import gateway

api = test_api.api
Role = test_api.Role
RESULT_TOPIC = "ummc/v1/U001/gw-u001/cmd/result"


def _headers(api: test_api.Api, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.tokens[role]}"}


class FakeGateway:
    """A real MQTT client with the gateway's credentials: subscribes to its
    `cmd`, answers each command with a result, and (as a re-delivered QoS 1
    command would make it) once more with the stored result, `replay`."""

    def __init__(self, port: int, user: tuple[str, str] | None = None) -> None:
        self.received: list[dict[str, Any]] = []
        self.got = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-u001-{uuid.uuid4().hex[:6]}",
                        protocol=mqtt.MQTTv311)
        if user:
            c.username_pw_set(*user)
        subscribed = threading.Event()
        c.on_subscribe = lambda *_a: subscribed.set()
        c.on_message = self._on_message
        assert c.connect("127.0.0.1", port) == mqtt.MQTT_ERR_SUCCESS
        c.loop_start()
        c.subscribe("ummc/v1/U001/gw-u001/cmd", qos=1)
        assert subscribed.wait(5)
        self.client = c

    def _on_message(self, c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        cmd = json.loads(msg.payload)
        self.received.append(cmd)
        result = {"v": 1, "id": cmd["id"], "op": cmd["op"], "ok": True,
                  "result": {"started": cmd["args"].get("instruments", []), "unknown": []},
                  "ts": int(time.time() * 1000)}
        c.publish(RESULT_TOPIC, json.dumps(result), qos=1)
        c.publish(RESULT_TOPIC, json.dumps({**result, "result": {}, "replay": True}), qos=1)
        self.got.set()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _poll(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def test_a_command_goes_out_and_its_result_comes_back(api: test_api.Api,
                                                      broker_factory: Any) -> None:
    service = ServiceAccount("fleet-server", "svc-secret")
    secured: Mosquitto = broker_factory(
        gateways=[GatewayAccount("U001", "gw-u001", "gw-secret")], services=[service])
    tag = uuid.uuid4().hex[:8]
    settings = make_settings(str(api.engine.url), secret_key=test_api.SECRET,
                             mqtt_port=secured.port, mqtt_username=service.username,
                             mqtt_password=service.password, mqtt_client_id=f"fleet-{tag}",
                             ingest_group=f"g{tag}", mqtt_session_expiry=60)
    api.app.state.settings = settings
    worker = IngestWorker(settings, session_factory(api.engine))
    worker.start()
    gw = FakeGateway(secured.port, ("gw-u001", "gw-secret"))
    try:
        assert worker.subscribed.wait(10), "the service account may not subscribe cmd/result"
        r = api.client.post("/api/v1/gateways/gw-u001/commands",
                            headers=_headers(api, Role.technician),
                            json={"op": "sync_now", "args": {"instruments": ["C4:01"]},
                                  "expires_in_s": 120})
        assert r.status_code == 201, r.text
        sent = r.json()
        assert sent["id"].startswith("c-") and sent["published_at"] is not None
        assert (sent["op"], sent["created_by"], sent["publish_attempts"]) == \
            ("sync_now", "technician", 1)
        assert gw.got.wait(10)
        [cmd] = gw.received
        assert (cmd["v"], cmd["id"], cmd["op"], cmd["args"]) == \
            (1, sent["id"], "sync_now", {"instruments": ["C4:01"]})
        assert cmd["expires"] - cmd["ts"] == 120_000

        def done() -> Any:
            body = api.get(f"/api/v1/commands/{sent['id']}", Role.logistics).json()
            return body if body["status"] != "pending" else None

        body = _poll(done)
        assert (body["status"], body["result"], body["error"], body["replay"]) == \
            ("ok", {"started": ["C4:01"], "unknown": []}, None, False)
        _poll(lambda: worker.stats["command_results"] >= 2)  # the replay: ignored
        again = api.get(f"/api/v1/commands/{sent['id']}").json()
        assert (again["result"], again["replay"]) == (body["result"], False)
        listed = api.get("/api/v1/gateways/gw-u001/commands", Role.logistics).json()
        assert [c["id"] for c in listed] == [sent["id"]]
        assert api.get("/api/v1/gateways/gw-u001/commands", status="pending").json() == []
        with Session(api.engine) as s:
            assert s.scalars(select(DeadLetter)).all() == []
    finally:
        gw.stop()
        worker.stop()


def test_a_command_waits_in_the_outbox_while_the_broker_is_down(
        api: test_api.Api, broker: Mosquitto) -> None:
    api.app.state.settings = make_settings(str(api.engine.url), secret_key=test_api.SECRET,
                                           mqtt_port=free_port(), command_publish_timeout_s=2)
    r = api.client.post("/api/v1/gateways/gw-u001/commands", headers=_headers(api, Role.admin),
                        json={"op": "reboot", "args": {"delay_ms": 500}})
    assert r.status_code == 201, r.text
    assert (r.json()["published_at"], r.json()["publish_attempts"], r.json()["status"]) == \
        (None, 1, "pending")
    gw = FakeGateway(broker.port)
    try:
        up = make_settings(str(api.engine.url), mqtt_port=broker.port)
        sessions = session_factory(api.engine)
        assert commands.publish_outbox(sessions, up, datetime.now(UTC)) == 1
        assert gw.got.wait(10) and gw.received[0]["id"] == r.json()["id"]
        assert gw.received[0]["args"] == {"delay_ms": 500}
        assert commands.publish_outbox(sessions, up, datetime.now(UTC)) == 0  # sent once
        body = api.get(f"/api/v1/commands/{r.json()['id']}").json()
        assert body["published_at"] is not None and body["publish_attempts"] == 2
    finally:
        gw.stop()


def test_bad_commands_are_refused_with_the_field(api: test_api.Api) -> None:
    def post(body: Any, gateway: str = "gw-u001") -> Any:
        return api.client.post(f"/api/v1/gateways/{gateway}/commands",
                               headers=_headers(api, Role.admin), json=body)

    r = post({"op": "set_time", "args": {"time": "noon"}})
    assert r.status_code == 422 and "args.time: " in r.text
    r = post({"op": "set_time", "args": {}})
    assert r.status_code == 422 and "args.time: Field required" in r.text
    assert post({"op": "format_disk"}).status_code == 422
    r = post({"op": "diagnostics", "args": {"verbose": True}})
    assert r.status_code == 422 and "args.verbose" in r.text
    assert post({"op": "diagnostics", "expires_in_s": 10**9}).status_code == 422
    r = post({"op": "apply_config", "args": {"version": 2, "config": {"name": "a\u0000b"}}})
    assert r.status_code == 422 and "args.config.name: must be valid text" in r.text
    assert post({"op": "diagnostics"}, gateway="gw-nope").status_code == 404
    assert post({"op": "diagnostics"}, gateway="gw nope").status_code == 422
    assert api.get("/api/v1/commands/not an id").status_code == 422
    with Session(api.engine) as s:
        assert s.scalars(select(Command)).all() == []


def _command(session: Session, op: commands.Op = "reboot", expires_s: int = 60) -> Command:
    cmd = commands.create_command(session, gw=gateway(session),
                                  request=CommandRequest(op=op), created_by="t", now=NOW,
                                  default_expires_s=expires_s)
    session.commit()
    return cmd


def _result(cmd_id: str, **fields: Any) -> bytes:
    return json.dumps({"v": 1, "id": cmd_id, "op": "reboot", "ts": 1795939321480,
                       **fields}).encode()


def test_results_are_validated_and_correlated(registry: Session) -> None:
    cmd = _command(registry)
    later = NOW + timedelta(seconds=3)
    refused = {
        "unknown": (_result("c-nope", ok=True, result={}), Reason.unknown_command),
        "op": (_result(cmd.command_id, op="sync_now", ok=True), Reason.unknown_command),
        "no ok": (_result(cmd.command_id), Reason.bad_envelope),
        "no error": (_result(cmd.command_id, ok=False), Reason.bad_envelope),
        "ok text": (_result(cmd.command_id, ok="yes"), Reason.bad_envelope),
        "bad id": (_result("c 1", ok=True), Reason.bad_envelope),
        "json": (b"{", Reason.malformed_json),
    }
    for name, (payload, reason) in refused.items():
        r = ingest_result(registry, RESULT_TOPIC, payload, later)
        assert r is not None and r.reason == reason, name
    r = ingest_result(registry, "ummc/v1/U002/gw-u001/cmd/result", _result(cmd.command_id,
                      ok=True), later)
    assert r is not None and r.reason == Reason.unknown_gateway
    dead = registry.scalars(select(DeadLetter).order_by(DeadLetter.id)).all()
    assert len(dead) == len(refused) + 1
    assert dead[0].detail == "id: no command c-nope was sent to gateway gw-u001"
    assert dead[1].detail == f"op: command {cmd.command_id} is reboot, not sync_now"
    assert dead[3].detail == "error: required when ok is false"
    # an error result is stored with its code and detail; a copy changes nothing
    err = _result(cmd.command_id, ok=False, error="bad_args", detail="args.delay_ms: too big")
    assert ingest_result(registry, RESULT_TOPIC, err, later) is None
    assert ingest_result(registry, RESULT_TOPIC, _result(cmd.command_id, ok=True),
                         later) is None
    registry.expire_all()
    row = registry.scalar(select(Command))
    assert row is not None
    assert (row.status, row.error, row.detail, row.result, row.result_at) == \
        ("error", "bad_args", "args.delay_ms: too big", None, later)


def test_a_command_with_no_answer_expires_and_a_late_answer_still_counts(
        registry: Session) -> None:
    cmd = _command(registry, expires_s=10)
    assert commands.expire_pending(registry, NOW + timedelta(minutes=5)) == 0  # margin
    assert commands.expire_pending(registry, NOW + timedelta(minutes=6)) == 1
    registry.commit()
    late = _result(cmd.command_id, ok=False, error="expired", detail="expired 86400000 ms ago")
    assert ingest_result(registry, RESULT_TOPIC, late, NOW + timedelta(days=1)) is None
    registry.expire_all()
    row = registry.scalar(select(Command))
    assert row is not None and (row.status, row.error) == ("error", "expired")


def test_the_protocol_examples_parse() -> None:
    ok = protocol.parse_command_result(b'{"v":1,"id":"c-000123","op":"sync_now","ok":true,'
                                       b'"result":{"started":["C4:7C:8D:6A:00:01"]},'
                                       b'"ts":1795939321480}')
    assert isinstance(ok, protocol.CommandResult) and ok.result == \
        {"started": ["C4:7C:8D:6A:00:01"]}
    err = protocol.parse_command_result(b'{"v":1,"id":"c-000124","op":"reboot","ok":false,'
                                        b'"error":"expired","detail":"expired 3600000 ms ago",'
                                        b'"ts":1795939321480}')
    assert isinstance(err, protocol.CommandResult) and (err.error, err.replay) == \
        ("expired", False)
    v2 = protocol.parse_command_result(b'{"v":2,"id":"c-1","ok":true,"ts":1}')
    assert isinstance(v2, protocol.Rejection) and v2.reason == Reason.unsupported_version
    t = protocol.parse_result_topic(RESULT_TOPIC)
    assert isinstance(t, protocol.Topic) and (t.unit, t.gateway) == ("U001", "gw-u001")
    for bad in ("ummc/v1/U001/gw-u001/cmd", "ummc/v1/U 1/gw-u001/cmd/result",
                "ummc/v1/U001/gw-u001/data/result"):
        assert isinstance(protocol.parse_result_topic(bad), protocol.Rejection), bad
    doc = json.loads(protocol.command_payload(id="c-000123", op="sync_now", args={},
                                              ts=1795939321000, expires=1795939381000))
    assert doc == {"v": 1, "id": "c-000123", "op": "sync_now", "args": {},
                   "ts": 1795939321000, "expires": 1795939381000}
