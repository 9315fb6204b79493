"""Route x role row of gateway credentials (merged into test_api.ROUTES).
gw-u001 is registered to U001: asking for it under U002 is a 409 for the
roles allowed, so the table's calls never write broker files."""

from __future__ import annotations

from fleet_server.models import Role
from tests.fleet_server.helpers import RouteSpec

ISSUE = frozenset({Role.admin, Role.technician})

ROUTES: dict[tuple[str, str], RouteSpec] = {
    ("POST", "/api/v1/gateways/{gateway_id}/credentials"): RouteSpec(
        ISSUE, url="/api/v1/gateways/gw-u001/credentials", body={"unit": "U002"}, status=409),
}
