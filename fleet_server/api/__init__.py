"""The REST API (FastAPI): `create_app(settings)` in `main`, routes per
resource in `routes/`, dependencies (session, current user, roles) in `deps`,
response models in `schemas`."""

from fleet_server.api.main import create_app

__all__ = ["create_app"]
