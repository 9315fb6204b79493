"""Response and request models of the API (pydantic v2). Times are ISO 8601
UTC with milliseconds and a `Z` (e.g. `2026-11-29T08:43:01.250Z`)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainSerializer

from fleet_server.crud import RejectionCount
from fleet_server.models import DeadLetter, Gateway, Reading, Unit


def _iso_utc(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


UtcTime = Annotated[datetime, PlainSerializer(_iso_utc, return_type=str, when_used="json")]
Value = tuple[str, int | float, str]


class TokenRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: UtcTime
    role: str


class InstrumentPublic(BaseModel):
    addr: str | None
    model: str | None
    serial: str | None
    mfr: str | None


class ReadingPublic(BaseModel):
    id: int
    unit: str
    gateway: str
    jid: str
    seq: int
    kind: str
    type: str | None
    instrument: InstrumentPublic
    iseq: int | None
    instrument_time: str | None = Field(
        description="The instrument's own clock, 'YYYY-MM-DDTHH:MM:SS' as it sent it; "
                    "unknown parts are 0 (not a UTC time).")
    received_at: UtcTime = Field(description="Gateway receive time (UTC)")
    ingested_at: UtcTime = Field(description="Server commit time (UTC)")
    values: list[Value]
    flags: list[str]

    @classmethod
    def of(cls, r: Reading) -> ReadingPublic:
        return cls(id=r.id, unit=r.unit.code, gateway=r.gateway.gateway_id, jid=r.jid,
                   seq=r.seq, kind=r.kind, type=r.type,
                   instrument=InstrumentPublic(addr=r.inst_addr, model=r.inst_model,
                                               serial=r.inst_serial, mfr=r.inst_mfr),
                   iseq=r.iseq, instrument_time=r.itime, received_at=r.received_at,
                   ingested_at=r.ingested_at,
                   values=[(str(n), v, str(u)) for n, v, u in r.values], flags=r.flags)


class UnitPublic(BaseModel):
    code: str
    name: str | None
    province: str | None
    region: str | None
    gateways: list[str]

    @classmethod
    def of(cls, u: Unit) -> UnitPublic:
        return cls(code=u.code, name=u.name, province=u.province, region=u.region,
                   gateways=[g.gateway_id for g in u.gateways])


class GatewayPublic(BaseModel):
    gateway: str
    unit: str
    registered_at: UtcTime
    state: str | None = Field(description="online | offline (retained state, last will)")
    state_reason: str | None
    state_at: UtcTime | None
    last_seen_at: UtcTime | None
    fw: str | None
    boot_count: int | None
    health: dict[str, Any] | None = Field(description="The last heartbeat as sent")

    @classmethod
    def of(cls, g: Gateway) -> GatewayPublic:
        return cls(gateway=g.gateway_id, unit=g.unit.code, registered_at=g.registered_at,
                   state=g.last_state, state_reason=g.last_state_reason,
                   state_at=g.last_state_at, last_seen_at=g.last_seen_at, fw=g.fw,
                   boot_count=g.boot_count, health=g.last_health)


class DeadLetterPublic(BaseModel):
    id: int
    received_at: UtcTime
    topic: str
    gateway: str | None
    unit: str | None
    reason: str
    detail: str
    jid: str | None
    seq: int | None
    raw_size: int
    raw_text: str | None = Field(default=None,
                                 description="With include_raw, when the bytes are UTF-8")
    raw_base64: str | None = Field(default=None, description="With include_raw")

    @classmethod
    def of(cls, d: DeadLetter, include_raw: bool) -> DeadLetterPublic:
        out = cls(id=d.id, received_at=d.received_at, topic=d.topic, gateway=d.gateway,
                  unit=d.unit, reason=d.reason, detail=d.detail, jid=d.jid, seq=d.seq,
                  raw_size=len(d.raw))
        if include_raw:
            out.raw_base64 = base64.b64encode(d.raw).decode()
            try:
                out.raw_text = d.raw.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return out


class RejectionCountPublic(BaseModel):
    gateway: str | None
    unit: str | None
    reason: str
    count: int
    last_at: UtcTime

    @classmethod
    def of(cls, c: RejectionCount) -> RejectionCountPublic:
        return cls(gateway=c.gateway, unit=c.unit, reason=c.reason, count=c.count,
                   last_at=c.last_at)


class HealthPublic(BaseModel):
    status: str
    database: str
    ingest: dict[str, Any] | None = None
