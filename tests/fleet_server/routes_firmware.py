"""Route x role rows of firmware bundles and OTA rollouts (merged into
test_api.ROUTES). Admins upload and roll out; technicians and logistics read.
Calls that would act use unknown versions and ids (404) or a body that is
not a bundle (422): the role check runs first either way."""

from __future__ import annotations

from fleet_server.models import Role
from tests.fleet_server.helpers import RouteSpec

ADMIN = frozenset({Role.admin})
READ = frozenset({Role.admin, Role.logistics, Role.technician})

ROUTES: dict[tuple[str, str], RouteSpec] = {
    ("POST", "/api/v1/firmware/bundles"): RouteSpec(ADMIN, body={"not": "a bundle"}),
    ("GET", "/api/v1/firmware/bundles"): RouteSpec(READ, status=200),
    ("GET", "/api/v1/firmware/bundles/{version}"): RouteSpec(
        READ, url="/api/v1/firmware/bundles/9.9.9", status=404),
    ("POST", "/api/v1/firmware/rollouts"): RouteSpec(
        ADMIN, body={"version": "9.9.9", "target": {"unit": "U001"}}, status=404),
    ("GET", "/api/v1/firmware/rollouts"): RouteSpec(READ, status=200),
    ("GET", "/api/v1/firmware/rollouts/{rollout_id}"): RouteSpec(
        READ, url="/api/v1/firmware/rollouts/999999", status=404),
    ("POST", "/api/v1/firmware/rollouts/{rollout_id}/release"): RouteSpec(
        ADMIN, url="/api/v1/firmware/rollouts/999999/release", status=404),
}
