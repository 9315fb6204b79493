"""Registry tables: reference places, instruments and their passports,
maintenance, encounters (issue 5). Same `Base` as fleet_server.models."""

from __future__ import annotations

from fleet_server.models import Base as Base
