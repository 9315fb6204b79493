"""Route x role rows of the device-health model, alerts, commands and metrics
(merged into test_api.ROUTES). Calls that would act on something real use
unknown ids (404): the role check runs first either way."""

from __future__ import annotations

from fleet_server.models import Role
from tests.fleet_server.helpers import RouteSpec

READ = frozenset({Role.admin, Role.logistics, Role.technician})
SCHEDULE = frozenset({Role.admin, Role.logistics})
SEND = frozenset({Role.admin, Role.technician})
METRICS = frozenset({Role.admin, Role.logistics})

ROUTES: dict[tuple[str, str], RouteSpec] = {
    ("GET", "/api/v1/fleet/health"): RouteSpec(READ, status=200),
    ("GET", "/api/v1/fleet/availability"): RouteSpec(READ, status=200),
    ("GET", "/api/v1/fleet/firmware"): RouteSpec(READ, status=200),
    ("GET", "/api/v1/fleet/battery"): RouteSpec(
        READ, url="/api/v1/fleet/battery?gateway=gw-u001&addr=nope", status=404),
    ("GET", "/api/v1/fleet/schedules/{unit}"): RouteSpec(
        READ, url="/api/v1/fleet/schedules/U001", status=200),
    ("PUT", "/api/v1/fleet/schedules/{unit}"): RouteSpec(
        SCHEDULE, url="/api/v1/fleet/schedules/U001",
        body={"weekdays": "1111110", "start": "08:30", "end": "16:00"}, status=200),
    ("PUT", "/api/v1/fleet/schedules/{unit}/days/{day}"): RouteSpec(
        SCHEDULE, url="/api/v1/fleet/schedules/U001/days/2026-12-25",
        body={"working": False, "note": "holiday"}, status=200),
    ("DELETE", "/api/v1/fleet/schedules/{unit}/days/{day}"): RouteSpec(
        SCHEDULE, url="/api/v1/fleet/schedules/U001/days/2026-12-24", status=404),
    ("GET", "/api/v1/alerts"): RouteSpec(READ, status=200),
    ("POST", "/api/v1/alerts/{alert_id}/ack"): RouteSpec(
        READ, url="/api/v1/alerts/999999/ack", body={"note": "on it"}, status=404),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): RouteSpec(
        READ, url="/api/v1/alerts/999999/resolve", body={}, status=404),
    ("POST", "/api/v1/gateways/{gateway_id}/commands"): RouteSpec(
        SEND, url="/api/v1/gateways/gw-nope/commands", body={"op": "diagnostics"},
        status=404),
    ("GET", "/api/v1/gateways/{gateway_id}/commands"): RouteSpec(
        READ, url="/api/v1/gateways/gw-u001/commands", status=200),
    ("GET", "/api/v1/commands/{command_id}"): RouteSpec(
        READ, url="/api/v1/commands/c-0000", status=404),
    ("GET", "/api/v1/metrics"): RouteSpec(METRICS, status=200),
}
