"""Alembic migrations of `fleet_server.models` (run with `fleet_server.db.migrate`)."""
