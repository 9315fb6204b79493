"""Firmware bundles and OTA rollouts on the fleet side (docs/protocol.md, "OTA").

- Upload: an admin posts a `.ummc` container. It is checked exactly as a
  gateway checks it (signature by a release key the fleet trusts, target,
  every file's hash, exact length) by running `python -m firmware.build
  verify` as a subprocess. Why a subprocess: the architecture's import rules
  keep `fleet_server` from importing `firmware`, and a second copy of the
  format check here could drift from the gateway's; the build's `verify`
  command runs the gateway's own code (firmware/board/ota.py). Only the
  container's header (magic, lengths, manifest JSON: docs/firmware.md) is
  read here, for the version and commit to show. Bundles are kept as
  `<firmware_dir>/ummc-<version>.ummc`, one per version, never replaced.
- Rollout: a bundle to a target (one unit, a list of units, a province or a
  region) resolved to that place's gateways; each gets an `ota` command
  (fleet_server/commands.py store and publish it like any other command)
  with a download URL carrying the rollout's token: gateways have only MQTT
  credentials, so the link itself is the read permission, unguessable
  (32 bytes) and expiring. With `canary: n` only the first n gateways (by
  id) get their command; the rest are held until the rollout is released.
- Status: per gateway, the command's state and result, and the firmware
  version its last `birth` reported (`updated` when it is the bundle's).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server import commands, protocol
from fleet_server.models import (
    Command,
    FirmwareBundle,
    FirmwareRollout,
    FirmwareRolloutGateway,
    Gateway,
    Unit,
)
from fleet_server.settings import Settings

MAGIC = b"UMMCFW\x00\x01"
MAX_BUNDLE_BYTES = 8 * 1024 * 1024
VERIFY_TIMEOUT_S = 60
REPO = Path(__file__).resolve().parents[1]


class FirmwareError(Exception):
    """A request about firmware that cannot be done: `code` and a message."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


# --- bundles ---------------------------------------------------------------------------


def read_manifest(data: bytes) -> dict[str, Any]:
    """The manifest of a container (header only; the signature is verify's)."""
    if len(data) < 16 or data[:8] != MAGIC:
        raise FirmwareError("bad_format", "not a UMMC firmware bundle (magic)")
    mlen = int.from_bytes(data[8:12], "little")
    if mlen > 65536 or 16 + mlen > len(data):
        raise FirmwareError("bad_format", "manifest length")
    try:
        m = json.loads(data[16:16 + mlen])
    except ValueError:
        raise FirmwareError("bad_format", "manifest is not JSON") from None
    if not isinstance(m, dict) or not isinstance(m.get("version"), str):
        raise FirmwareError("bad_format", "manifest has no version")
    return m


def _signature_key(data: bytes, manifest_len: int) -> str:
    slen = int.from_bytes(data[12:16], "little")
    try:
        sig = json.loads(data[16 + manifest_len:16 + manifest_len + slen])
        return str(sig["key"])[:16]
    except (ValueError, KeyError, TypeError):
        raise FirmwareError("bad_format", "manifest.sig") from None


def trusted_keys(settings: Settings) -> list[str]:
    return [k.strip() for k in settings.firmware_trust.split(",") if k.strip()]


def verify_file(path: Path, trust: list[str]) -> None:
    """Run the gateway's check on a bundle file (see the module header);
    FirmwareError(refused code) when it is refused."""
    cmd = [sys.executable, "-m", "firmware.build", "verify", str(path)]
    for k in trust:
        cmd += ["--trust", k]
    env = {k: v for k, v in os.environ.items() if k != "UMMC_FIRMWARE_TRUST"}
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=VERIFY_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FirmwareError("verify_failed", f"bundle check did not run: {type(e).__name__}") \
            from None
    if proc.returncode == 3:  # "REFUSED <path>: <code>: <detail>"
        msg = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "refused"
        _, _, rest = msg.partition(": ")
        code, _, detail = rest.partition(": ")
        raise FirmwareError(code or "refused", detail or msg)
    if proc.returncode != 0:
        raise FirmwareError("verify_failed", (proc.stderr.strip() or "bundle check failed")[-200:])


def bundle_path(settings: Settings, version: str) -> Path:
    return settings.firmware_dir / f"ummc-{version}.ummc"


def store_bundle(session: Session, settings: Settings, data: bytes, *, user: str | None,
                 now: datetime) -> FirmwareBundle:
    """Check and keep an uploaded bundle; its row (flushed, not committed)."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise FirmwareError("too_long", f"bundle over {MAX_BUNDLE_BYTES} bytes")
    m = read_manifest(data)
    trust = trusted_keys(settings)
    if not trust:
        raise FirmwareError("no_trust", "no release key configured (UMMC_FIRMWARE_TRUST)")
    version = m["version"]
    if session.scalar(select(FirmwareBundle).where(FirmwareBundle.version == version)):
        raise FirmwareError("exists", f"version {version} was already uploaded")
    settings.firmware_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.firmware_dir / f".upload-{secrets.token_hex(8)}.ummc"
    try:
        tmp.write_bytes(data)
        verify_file(tmp, trust)
        final = bundle_path(settings, version)
        if final.exists():
            raise FirmwareError("exists", f"{final.name} is already in the bundle directory")
        tmp.rename(final)
    finally:
        tmp.unlink(missing_ok=True)
    mlen = int.from_bytes(data[8:12], "little")
    b = FirmwareBundle(version=version, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                       key_id=_signature_key(data, mlen),
                       commit=str(m.get("commit"))[:64] if m.get("commit") else None,
                       built_ms=m.get("created") if isinstance(m.get("created"), int) else None,
                       uploaded_at=now, uploaded_by=user)
    session.add(b)
    session.flush()
    return b


def get_bundle(session: Session, version: str) -> FirmwareBundle | None:
    return session.scalar(select(FirmwareBundle).where(FirmwareBundle.version == version))


def token_allows(session: Session, token: str, version: str, now: datetime) -> bool:
    """A rollout's download token, unexpired, for this version."""
    r = session.scalar(select(FirmwareRollout).where(FirmwareRollout.token == token))
    return r is not None and r.bundle.version == version and r.token_expires_at > now


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a single `bytes=a-b` / `bytes=a-` / `bytes=-n` range;
    None without a header; ValueError when it cannot be served."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip() != "bytes" or "," in spec:
        raise ValueError("one bytes range only")
    a, sep, b = spec.strip().partition("-")
    if not sep:
        raise ValueError("not a range")
    if not a:  # the last n bytes
        n = int(b)
        if n <= 0:
            raise ValueError("empty suffix")
        return max(size - n, 0), size - 1
    first = int(a)
    last = int(b) if b else size - 1
    if first >= size or last < first:
        raise ValueError("outside the file")
    return first, min(last, size - 1)


# --- rollouts --------------------------------------------------------------------------


@dataclass
class Target:
    unit: str | None = None
    units: list[str] | None = None
    province: str | None = None
    region: str | None = None


def resolve_target(session: Session, t: Target) -> list[Gateway]:
    """The gateways of a target, sorted by gateway id; FirmwareError when a
    named unit, province or region has none."""
    q = select(Gateway).join(Unit, Gateway.unit_id == Unit.id)
    if t.unit is not None:
        q, what = q.where(Unit.code == t.unit), f"unit {t.unit}"
    elif t.units is not None:
        q, what = q.where(Unit.code.in_(t.units)), f"units {', '.join(t.units)}"
    elif t.province is not None:
        q, what = q.where(Unit.province == t.province), f"province {t.province}"
    else:
        q, what = q.where(Unit.region == t.region), f"region {t.region}"
    gws = list(session.scalars(q.order_by(Gateway.gateway_id)).all())
    if not gws:
        raise FirmwareError("no_gateways", f"no registered gateway in {what}")
    if t.units is not None:
        found = {g.unit.code for g in gws}
        missing = [u for u in t.units if u not in found]
        if missing:
            raise FirmwareError("no_gateways", f"no registered gateway in units {missing}")
    return gws


def download_url(settings: Settings, version: str, token: str) -> str:
    base = (settings.firmware_public_url or f"http://{settings.api_host}:{settings.api_port}")
    return f"{base.rstrip('/')}/api/v1/firmware/bundles/{version}?token={token}"


def _ota_command(session: Session, settings: Settings, rollout: FirmwareRollout, gw: Gateway,
                 user: str | None, now: datetime) -> Command:
    b = rollout.bundle
    args = {"version": b.version, "url": download_url(settings, b.version, rollout.token),
            "size": b.size, "sha256": b.sha256, "deadline_s": rollout.deadline_s}
    cmd = Command(command_id=commands.new_command_id(), gateway=gw, op="ota", args=args,
                  status=commands.PENDING, created_at=now, created_by=user,
                  ts=protocol.to_unix_ms(now), expires_at=rollout.token_expires_at,
                  publish_attempts=0)
    session.add(cmd)
    return cmd


def create_rollout(session: Session, settings: Settings, *, bundle: FirmwareBundle,
                   target: Target, canary: int | None, deadline_s: int, user: str | None,
                   now: datetime) -> tuple[FirmwareRollout, list[Command]]:
    """The rollout and the `ota` commands to send now (flushed, not committed)."""
    gws = resolve_target(session, target)
    r = FirmwareRollout(bundle=bundle, target={k: v for k, v in vars(target).items()
                                               if v is not None},
                        canary=canary, deadline_s=deadline_s, token=secrets.token_urlsafe(32),
                        token_expires_at=now + timedelta(seconds=settings.firmware_link_expire_s),
                        created_at=now, created_by=user)
    session.add(r)
    sent: list[Command] = []
    for i, gw in enumerate(gws):
        cmd = None
        if canary is None or i < canary:
            cmd = _ota_command(session, settings, r, gw, user, now)
            sent.append(cmd)
        session.add(FirmwareRolloutGateway(rollout=r, gateway=gw, command=cmd))
    session.flush()
    return r, sent


def release(session: Session, settings: Settings, rollout: FirmwareRollout, *,
            user: str | None, now: datetime) -> list[Command]:
    """Commands for the gateways held behind the canary (flushed)."""
    if rollout.token_expires_at <= now:
        raise FirmwareError("expired", "the rollout's download link has expired")
    sent = []
    for m in rollout.members:
        if m.command is None:
            m.command = _ota_command(session, settings, rollout, m.gateway, user, now)
            sent.append(m.command)
    session.flush()
    return sent


def get_rollout(session: Session, rollout_id: int) -> FirmwareRollout | None:
    return session.get(FirmwareRollout, rollout_id)


def list_rollouts(session: Session, limit: int = 100) -> list[FirmwareRollout]:
    return list(session.scalars(select(FirmwareRollout).order_by(FirmwareRollout.id.desc())
                                .limit(limit)).all())


def member_status(m: FirmwareRolloutGateway, version: str) -> dict[str, Any]:
    c = m.command
    return {"gateway": m.gateway.gateway_id, "unit": m.gateway.unit.code, "fw": m.gateway.fw,
            "updated": m.gateway.fw == version,
            "status": "held" if c is None else c.status,
            "command": None if c is None else c.command_id,
            "published": None if c is None else c.published_at is not None,
            "result": None if c is None else c.result,
            "error": None if c is None else c.error,
            "detail": None if c is None else c.detail}
