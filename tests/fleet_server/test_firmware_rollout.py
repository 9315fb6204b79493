"""Firmware bundles and OTA rollouts through the API (fleet_server/firmware_store.py,
docs/protocol.md "OTA"): an upload is checked as a gateway checks it (the
build's `verify`, run as a subprocess), a rollout makes `ota` commands for a
province's gateways with a canary held back, and the gateway's download link
(the rollout's token) serves the bundle in HTTP ranges. The gateway side runs
end to end in hil_tests/test_ota_fleet.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from devharness.ports import free_port
from firmware import bundle
from fleet_server import crud
from fleet_server.api.main import create_app
from fleet_server.db import session_factory
from fleet_server.models import FirmwareRollout, Gateway, Role, User
from fleet_server.security import hash_password
from tests.fleet_server.helpers import NOW, make_settings

SECRET = "s" * 40


def make_bundle(out: Path, version: str, key: Ed25519PrivateKey,
                files: dict[str, bytes] | None = None) -> bytes:
    """A small signed container (the format of firmware/build.py, any files)."""
    files = files or {"main.mpy": b"M\x06" + version.encode() * 50, "lib/x.mpy": b"x" * 3000}
    entries = [bundle.FileEntry.of(p, d) for p, d in files.items()]
    manifest = bundle.manifest_bytes(version=version, files=entries, created_ms=1795935781000,
                                     commit="abc123", target_micropython="1.28.0",
                                     mpy_version="6.3")
    tree = out / f"tree-{version}-{bundle.ota.key_id(bundle.public_bytes(key))}"
    bundle.write_tree(tree, manifest, bundle.signature_record(key, manifest), files)
    bundle.pack(tree, out / "b.ummc")
    return (out / "b.ummc").read_bytes()


@dataclass
class Fw:
    client: TestClient
    engine: Engine
    tokens: dict[Role, str]
    key: Ed25519PrivateKey
    tmp: Path

    def call(self, method: str, path: str, role: Role = Role.admin,
             **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"}
        return self.client.request(method, "/api/v1" + path, headers=headers, **kw)  # type: ignore[arg-type]

    def upload(self, data: bytes) -> httpx.Response:
        return self.client.post("/api/v1/firmware/bundles", content=data,
                                headers={"Authorization": f"Bearer {self.tokens[Role.admin]}",
                                         "Content-Type": "application/octet-stream"})


@pytest.fixture
def fw(engine: Engine, tmp_path: Path) -> Iterator[Fw]:
    key = Ed25519PrivateKey.generate()
    sessions = session_factory(engine)
    tokens: dict[Role, str] = {}
    with sessions() as s:
        crud.register(s, entries=[
            crud.Registration(unit=u, gateway=g, province="Tata", region="Souss-Massa")
            for u, g in (("U001", "gw-u001"), ("U002", "gw-u002"))] + [
            crud.Registration(unit="U003", gateway="gw-u003", province="Azilal",
                              region="Beni Mellal-Khenifra")], now=NOW)
        pw = hash_password("pw-123456789")
        for role in (Role.admin, Role.logistics):
            user = User(username=role.value, role=role.value, password_hash=pw, is_active=True,
                        created_at=NOW)
            s.add(user)
            s.flush()
            tokens[role], _ = crud.issue_token(s, user=user, secret_key=SECRET,
                                               ttl=timedelta(hours=1), now=datetime.now(UTC))
        s.commit()
    settings = make_settings(str(engine.url), secret_key=SECRET,
                             firmware_dir=tmp_path / "firmware",
                             firmware_trust=bundle.public_bytes(key).hex(),
                             firmware_public_url="https://fleet.example.ma",
                             mqtt_port=free_port(), command_publish_timeout_s=0.5)
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:
        yield Fw(client, engine, tokens, key, tmp_path)


def test_an_upload_is_checked_as_a_gateway_checks_it(fw: Fw) -> None:
    good = make_bundle(fw.tmp, "1.2.0", fw.key)
    r = fw.upload(good)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == "1.2.0" and r.json()["size"] == len(good)
    assert fw.upload(good).status_code == 409  # a version is never replaced

    stranger = make_bundle(fw.tmp, "1.3.0", Ed25519PrivateKey.generate())
    r = fw.upload(stranger)
    assert r.status_code == 422 and r.json()["detail"].startswith("unknown_key"), r.text
    tampered = bytearray(make_bundle(fw.tmp, "1.4.0", fw.key))
    tampered[-10] ^= 0xFF
    r = fw.upload(bytes(tampered))
    assert r.status_code == 422 and r.json()["detail"].startswith("hash_mismatch"), r.text
    r = fw.upload(b"PK\x03\x04 a zip file")
    assert r.status_code == 422 and r.json()["detail"].startswith("bad_format")
    versions = [b["version"] for b in fw.call("GET", "/firmware/bundles", Role.logistics).json()]
    assert versions == ["1.2.0"]  # nothing refused was kept


def test_a_province_rollout_holds_back_all_but_the_canary(fw: Fw) -> None:
    data = make_bundle(fw.tmp, "2.0.0", fw.key)
    assert fw.upload(data).status_code == 201
    r = fw.call("POST", "/firmware/rollouts",
                json={"version": "2.0.0", "target": {"province": "Tata"}, "canary": 1})
    assert r.status_code == 201, r.text
    ro = r.json()
    assert [g["gateway"] for g in ro["gateways"]] == ["gw-u001", "gw-u002"]  # not Azilal's
    assert [g["status"] for g in ro["gateways"]] == ["pending", "held"]
    assert ro["gateways"][0]["published"] is False  # no broker: re-sent by the outbox

    cmd = fw.call("GET", f"/commands/{ro['gateways'][0]['command']}").json()
    assert cmd["op"] == "ota"
    args = cmd["args"]
    assert (args["version"], args["size"], args["deadline_s"]) == ("2.0.0", len(data), 3600)
    assert args["sha256"] == bundle.hashlib.sha256(data).hexdigest()
    assert args["url"].startswith("https://fleet.example.ma/api/v1/firmware/bundles/2.0.0?token=")

    assert fw.call("POST", f"/firmware/rollouts/{ro['id']}/release", Role.logistics
                   ).status_code == 403
    r = fw.call("POST", f"/firmware/rollouts/{ro['id']}/release")
    assert [g["status"] for g in r.json()["gateways"]] == ["pending", "pending"]

    # The gateway's answer and its next birth, as ingest stores them.
    with session_factory(fw.engine)() as s:
        s.execute(update(Gateway).where(Gateway.gateway_id == "gw-u001").values(fw="2.0.0"))
        s.commit()
    st = fw.call("GET", f"/firmware/rollouts/{ro['id']}", Role.logistics).json()
    assert st["gateways"][0]["updated"] is True and st["counts"]["updated"] == 1

    for target in ({"unit": "U404"}, {"province": "Nowhere"}, {"units": ["U001", "U404"]}):
        r = fw.call("POST", "/firmware/rollouts", json={"version": "2.0.0", "target": target})
        assert r.status_code == 422 and "no registered gateway" in r.text, target
    r = fw.call("POST", "/firmware/rollouts",
                json={"version": "2.0.0", "target": {"unit": "U001", "region": "x"}})
    assert r.status_code == 422


def test_the_download_link_serves_ranges_until_it_expires(fw: Fw) -> None:
    data = make_bundle(fw.tmp, "3.0.0", fw.key)
    assert fw.upload(data).status_code == 201
    ro = fw.call("POST", "/firmware/rollouts",
                 json={"version": "3.0.0", "target": {"unit": "U003"}}).json()
    url = fw.call("GET", f"/commands/{ro['gateways'][0]['command']}").json()["args"]["url"]
    token = parse_qs(urlparse(url).query)["token"][0]
    path = "/api/v1/firmware/bundles/3.0.0"

    r = fw.client.get(path, params={"token": token}, headers={"Range": "bytes=100-1123"})
    assert r.status_code == 206
    assert r.content == data[100:1124]
    assert r.headers["content-range"] == f"bytes 100-1123/{len(data)}"
    r = fw.client.get(path, params={"token": token}, headers={"Range": "bytes=3000-"})
    assert r.status_code == 206 and r.content == data[3000:]
    r = fw.client.get(path, params={"token": token})
    assert r.status_code == 200 and r.content == data
    r = fw.client.get(path, params={"token": token}, headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416

    assert fw.client.get(path, params={"token": "x" * 43}).status_code == 401
    assert fw.client.get(path).status_code == 401
    assert fw.call("GET", "/firmware/bundles/3.0.0", Role.logistics).content == data
    with session_factory(fw.engine)() as s:
        s.execute(update(FirmwareRollout).values(
            token_expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        s.commit()
    assert fw.client.get(path, params={"token": token}).status_code == 401


def test_without_a_release_key_uploads_are_refused(engine: Engine, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    settings = make_settings(str(engine.url), secret_key=SECRET, firmware_dir=tmp_path / "fw")
    with session_factory(engine)() as s:
        user = User(username="admin", role="admin", password_hash=hash_password("pw-123456789"),
                    is_active=True, created_at=NOW)
        s.add(user)
        s.flush()
        token, _ = crud.issue_token(s, user=user, secret_key=SECRET, ttl=timedelta(hours=1),
                                    now=datetime.now(UTC))
        s.commit()
    with TestClient(create_app(settings, engine=engine)) as client:
        r = client.post("/api/v1/firmware/bundles", content=make_bundle(tmp_path, "1.0.0", key),
                        headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 503 and "UMMC_FIRMWARE_TRUST" in r.text
