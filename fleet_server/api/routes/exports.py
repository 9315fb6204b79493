"""/exports/*.csv (logistics: instruments, maintenance, due lists; admin:
readings) and /fhir/Observation (HL7 FHIR R4 searchset Bundle of readings,
for nurses and the admin). CSV is streamed (export_csv.py); FHIR pages with
`_count` / `_offset` and a `next` link."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from fleet_server import export_csv, fhir, registry
from fleet_server.api.deps import SessionDep, allow, roles_note
from fleet_server.api.registry_common import (
    EXPORT,
    EXPORT_READINGS,
    PATIENT_DATA,
    OptUtcTime,
    now,
    sync_instruments,
    utc,
)
from fleet_server.models import User
from fleet_server.protocol import ID_PATTERN

router = APIRouter(tags=["exports"])

CSV = "text/csv; charset=utf-8"
FHIR_JSON = "application/fhir+json"
_CSV_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "CSV (UTF-8, RFC 4180)"}}


def _csv(lines: Iterator[str], filename: str, bom: bool) -> StreamingResponse:
    def body() -> Iterator[bytes]:
        if bom:  # lets Excel read the accents of place names
            yield "\ufeff".encode()
        for line in lines:
            yield line.encode("utf-8")
    return StreamingResponse(body(), media_type=CSV, headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})


Bom = Annotated[bool, Query(description="start with a UTF-8 byte order mark (for Excel)")]


@router.get("/exports/instruments.csv", response_class=StreamingResponse, responses=_CSV_DOC,
            description=roles_note(*EXPORT))
def instruments_csv(session: SessionDep, _user: Annotated[User, allow(*EXPORT)],
                    bom: Bom = False) -> StreamingResponse:
    """Every instrument with its unit, place, due dates and open tickets,
    by region, province and unit."""
    sync_instruments(session)
    lines = list(export_csv.instruments_lines(session, today=now().date()))
    return _csv(iter(lines), "instruments.csv", bom)


@router.get("/exports/calibration-due.csv", response_class=StreamingResponse,
            responses=_CSV_DOC, description=roles_note(*EXPORT))
def due_csv(session: SessionDep, _user: Annotated[User, allow(*EXPORT)],
            within_days: Annotated[int, Query(ge=0, le=3650)] = 30,
            bom: Bom = False) -> StreamingResponse:
    """Calibrations and validations overdue or due within `within_days`."""
    sync_instruments(session)
    lines = list(export_csv.due_lines(session, today=now().date(), within_days=within_days))
    return _csv(iter(lines), "calibration-due.csv", bom)


@router.get("/exports/maintenance.csv", response_class=StreamingResponse, responses=_CSV_DOC,
            description=roles_note(*EXPORT))
def maintenance_csv(session: SessionDep, _user: Annotated[User, allow(*EXPORT)],
                    status: Literal["open", "in_progress", "closed"] | None = None,
                    bom: Bom = False) -> StreamingResponse:
    lines = list(export_csv.maintenance_lines(session, now=now(), status=status))
    return _csv(iter(lines), "maintenance.csv", bom)


@router.get("/exports/readings.csv", response_class=StreamingResponse, responses=_CSV_DOC,
            description=roles_note(*EXPORT_READINGS))
def readings_csv(
    request: Request, session: SessionDep, _user: Annotated[User, allow(*EXPORT_READINGS)],
    unit: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    since: Annotated[OptUtcTime, Query(alias="from", description="received at >= from")]
    = None,
    until: Annotated[OptUtcTime, Query(alias="to", description="received at < to")] = None,
    bom: Bom = False,
) -> StreamingResponse:
    """One line per value, with the encounter and pseudonymous patient
    reference when bound; unit by unit (region, province order), streamed."""
    # The stream reads with sessions of its own: end this one's transaction
    # (on SQLite it holds the write lock until the response is sent).
    session.rollback()
    lines = export_csv.readings_lines(request.app.state.sessions, unit=unit, since=utc(since),
                                      until=utc(until))
    return _csv(lines, "readings.csv", bom)


@router.get("/fhir/Observation", response_class=Response,
            responses={200: {"content": {FHIR_JSON: {}},
                             "description": "FHIR R4 Bundle (searchset) of Observations"}},
            description=roles_note(*PATIENT_DATA))
def fhir_observations(
    request: Request, session: SessionDep, _user: Annotated[User, allow(*PATIENT_DATA)],
    unit: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    since: Annotated[OptUtcTime, Query(alias="from", description="received at >= from")]
    = None,
    until: Annotated[OptUtcTime, Query(alias="to", description="received at < to")] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=500,
                                description="readings per page")] = 100,
    offset: Annotated[int, Query(alias="_offset", ge=0, le=10**9)] = 0,
) -> Response:
    """Patient readings (control-solution results excluded) as Observations
    with LOINC codes and UCUM units; `subject` is the encounter's
    pseudonymous reference when the reading is bound."""
    pairs = registry.readings_with_encounters(session, unit=unit, since=utc(since),
                                              until=utc(until), limit=count + 1, offset=offset)
    more = len(pairs) > count
    next_url = (str(request.url.include_query_params(_offset=offset + count, _count=count))
                if more else None)
    doc = fhir.bundle(list(pairs[:count]), self_url=str(request.url), next_url=next_url,
                      now=now())
    return Response(json.dumps(doc, ensure_ascii=False), media_type=FHIR_JSON)
