"""GET /alerts, POST /alerts/{id}/ack, POST /alerts/{id}/resolve.

Alerts are opened and resolved by the evaluator (fleet_server/alerts.py);
people acknowledge them (with a note) or resolve them by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy.orm import joinedload

from fleet_server import alerts
from fleet_server.api.deps import SessionDep, allow, roles_note
from fleet_server.api.routes.fleet import plain_text
from fleet_server.api.schemas import UtcTime
from fleet_server.models import Alert, Gateway, Role, User
from fleet_server.protocol import ID_PATTERN

router = APIRouter(prefix="/alerts", tags=["alerts"])

ROLES = (Role.admin, Role.logistics, Role.technician)


class AlertPublic(BaseModel):
    id: int
    kind: str
    subject: str = Field(description="gateway:<id>, instrument:<gateway>/<addr> or "
                                     "instrument:<key>")
    gateway: str | None
    unit: str | None
    instrument: str | None
    status: str = Field(description="open | acknowledged | resolved")
    severity: str
    detail: str
    opened_at: UtcTime
    updated_at: UtcTime = Field(description="last evaluation that found the condition")
    acknowledged_at: UtcTime | None
    acknowledged_by: str | None
    ack_note: str | None
    resolved_at: UtcTime | None
    resolved_by: str | None = Field(description="None when resolved automatically")
    resolve_note: str | None

    @classmethod
    def of(cls, a: Alert) -> AlertPublic:
        gw = a.gateway
        return cls(id=a.id, kind=a.kind, subject=a.subject,
                   gateway=gw.gateway_id if gw else None, unit=gw.unit.code if gw else None,
                   instrument=a.instrument, status=a.status, severity=a.severity,
                   detail=a.detail, opened_at=a.opened_at, updated_at=a.updated_at,
                   acknowledged_at=a.acknowledged_at, acknowledged_by=a.acknowledged_by,
                   ack_note=a.ack_note, resolved_at=a.resolved_at, resolved_by=a.resolved_by,
                   resolve_note=a.resolve_note)


class AlertNote(BaseModel):
    note: Annotated[str, Field(max_length=2000), AfterValidator(plain_text)] | None = None


Kind = Literal["unit_offline", "backlog_growing", "journal_full", "clock_drift", "battery_low",
               "instrument_not_seen", "repeated_instrument_errors", "calibration_due"]
assert set(Kind.__args__) == set(alerts.KINDS)  # type: ignore[attr-defined]


@router.get("", response_model=list[AlertPublic], description=roles_note(*ROLES))
def list_alerts(
    session: SessionDep,
    _user: Annotated[User, allow(*ROLES)],
    status: Annotated[Literal["active", "open", "acknowledged", "resolved"] | None, Query(
        description="active = open or acknowledged; all when omitted")] = None,
    kind: Kind | None = None,
    gateway: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertPublic]:
    rows = alerts.list_alerts(session, status=status, kind=kind, gateway=gateway, limit=limit)
    return [AlertPublic.of(a) for a in rows]


def _alert(session: SessionDep, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id, options=[joinedload(Alert.gateway)
                                                  .joinedload(Gateway.unit)])
    if alert is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND,
                            detail=f"no alert {alert_id}")
    return alert


AlertId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.post("/{alert_id}/ack", response_model=AlertPublic, description=roles_note(*ROLES))
def acknowledge(alert_id: AlertId, body: AlertNote, session: SessionDep,
                user: Annotated[User, allow(*ROLES)]) -> AlertPublic:
    """Acknowledge (someone is on it); the note says what is being done."""
    alert = _alert(session, alert_id)
    try:
        alerts.acknowledge(session, alert, user, body.note, datetime.now(UTC))
    except alerts.AlertStateError as e:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(e)) from None
    session.commit()
    return AlertPublic.of(alert)


@router.post("/{alert_id}/resolve", response_model=AlertPublic,
             description=roles_note(*ROLES))
def resolve(alert_id: AlertId, body: AlertNote, session: SessionDep,
            user: Annotated[User, allow(*ROLES)]) -> AlertPublic:
    """Resolve by hand. If the condition still holds, the evaluator opens a
    new alert at its next round (acknowledge to silence one instead)."""
    alert = _alert(session, alert_id)
    try:
        alerts.resolve(session, alert, user, body.note, datetime.now(UTC))
    except alerts.AlertStateError as e:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(e)) from None
    session.commit()
    return AlertPublic.of(alert)
