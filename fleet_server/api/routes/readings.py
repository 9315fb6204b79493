"""GET /readings — stored readings, newest first (by gateway receive time);
GET /readings/{id}/samples — the samples of an ECG strip (the list leaves
them out: a 10 s strip is 2,500 of them)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from fleet_server import crud
from fleet_server.api.deps import SessionDep, allow, roles_note
from fleet_server.api.registry_common import EARLIEST, LATEST, OptUtcTime
from fleet_server.api.schemas import ReadingPublic
from fleet_server.models import Reading, Role, User
from fleet_server.protocol import ID_PATTERN, MAX_BIGINT, EcgStrip

router = APIRouter(tags=["readings"])

ROLES = (Role.admin, Role.nurse, Role.technician)


@router.get("/readings", response_model=list[ReadingPublic], description=roles_note(*ROLES))
def list_readings(
    session: SessionDep,
    _user: Annotated[User, allow(*ROLES)],
    unit: Annotated[str | None, Query(pattern=ID_PATTERN, description="unit code")] = None,
    gateway: Annotated[str | None, Query(pattern=ID_PATTERN, description="gateway id")] = None,
    type: Annotated[str | None, Query(max_length=32, description="reading type")] = None,
    kind: Literal["reading", "event", "health"] = "reading",
    since: Annotated[OptUtcTime, Query(
        description="gateway receive time >= since (ISO 8601; UTC if no zone; "
                    f"years {EARLIEST} to {LATEST})")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ReadingPublic]:
    rows = crud.list_readings(session, unit=unit, gateway=gateway, type=type, kind=kind,
                              since=since, limit=limit)
    return [ReadingPublic.of(r) for r in rows]


class EcgSamplesPublic(BaseModel):
    """One lead of an ECG strip as the gateway recorded it (docs/protocol.md,
    "ECG strips"): microvolts = offset_uv + scale_uv * sample."""

    reading_id: int
    fs: int = Field(description="sample rate (Hz)")
    n: int = Field(description="number of samples")
    unit: str = Field(description="unit of offset_uv + scale_uv * sample: uV")
    lead: str | None
    channel: int | None
    gain: int | None
    offset_uv: int
    scale_uv: int | float
    samples: list[int] = Field(description="int16 samples, in time order")
    r_peaks: list[int] = Field(description="sample indices of the R waves the gateway found")
    gaps: list[tuple[int, int]] = Field(
        description="[index, count] of runs the gateway filled by interpolation "
                    "(packets lost on the instrument's link)")
    missing: int = Field(description="samples filled in")
    railed: int = Field(description="samples at the amplifier's rail (electrode off)")


@router.get("/readings/{reading_id}/samples", response_model=EcgSamplesPublic,
            description=roles_note(*ROLES) + " 404 when the reading does not exist or "
                                             "carries no samples.")
def reading_samples(
    session: SessionDep,
    _user: Annotated[User, allow(*ROLES)],
    reading_id: Annotated[int, Path(ge=1, le=MAX_BIGINT)],
) -> EcgSamplesPublic:
    row = session.get(Reading, reading_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"reading {reading_id} not found")
    doc = getattr(row, "ecg", None)  # readings.ecg (the stored `ecg` member)
    if not doc:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"reading {reading_id} carries no samples")
    strip = EcgStrip.model_validate(doc)  # validated at ingest: stored as accepted
    return EcgSamplesPublic(
        reading_id=row.id, fs=strip.fs, n=strip.n, unit=strip.unit, lead=strip.lead,
        channel=strip.channel, gain=strip.gain, offset_uv=strip.offset_uv,
        scale_uv=strip.scale_uv, samples=strip.samples().tolist(), r_peaks=list(strip.r_peaks),
        gaps=[(a, b) for a, b in strip.gaps], missing=strip.missing, railed=strip.railed)
