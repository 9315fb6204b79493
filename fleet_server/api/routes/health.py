"""GET /healthz — liveness without authentication: database reachable, and the
ingest worker's counters when it runs in the same process (`run`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import text

from fleet_server.api.deps import SessionDep
from fleet_server.api.schemas import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthPublic)
def healthz(request: Request, session: SessionDep) -> HealthPublic:
    """No authentication."""
    try:
        session.execute(text("SELECT 1"))
    except Exception as e:  # the database is down or unreachable
        raise HTTPException(status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                            detail=f"database unavailable: {type(e).__name__}") from None
    worker = getattr(request.app.state, "ingest_worker", None)
    ingest = None
    if worker is not None:
        ingest = {"connected": worker.connected.is_set(), **dict(worker.stats)}
    return HealthPublic(status="ok", database="ok", ingest=ingest)
