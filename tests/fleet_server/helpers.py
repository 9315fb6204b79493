"""Helpers shared by the fleet server tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from fleet_server import crud
from fleet_server.models import Role
from fleet_server.settings import Settings

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "docs" / "golden"
NOW = datetime(2026, 11, 29, 7, 3, 2, 512000, tzinfo=UTC)  # = golden ack server_time
DATA_TOPIC = "ummc/v1/U001/gw-u001/data"


@dataclass(frozen=True)
class RouteSpec:
    """One row of the API's route x role table (tests/fleet_server/test_api.py):
    the roles allowed, and for a route with path parameters or a body, a
    concrete `url` and `body` to call it with. `status`, when set, is what an
    allowed role must get (otherwise anything but 401/403/5xx)."""

    roles: frozenset[Role]
    url: str | None = None
    body: Any = None
    status: int | None = None


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def golden_json(name: str) -> Any:
    return json.loads(golden(name))


def register(session: Session, *pairs: tuple[str, str]) -> None:
    crud.register(session, entries=[crud.Registration(unit=u, gateway=g) for u, g in pairs],
                  now=NOW)
    session.commit()


def make_settings(database_url: str, **extra: Any) -> Settings:
    """Settings for a test: a real secret, no bootstrap admin."""
    values: dict[str, Any] = {"env": "development", "database_url": database_url,
                              "secret_key": "t" * 40, "bootstrap_admin_password": None}
    values.update(extra)
    return Settings(**values)


def bp_record(seq: int, systolic: int = 120, **extra: Any) -> dict[str, Any]:
    """A valid blood-pressure record."""
    rec: dict[str, Any] = {
        "seq": seq, "kind": "reading", "type": "blood_pressure",
        "inst": {"addr": "C4:7C:8D:6A:11:02", "model": "UA-651BLE", "serial": "5140201234"},
        "iseq": None, "itime": [2026, 11, 29, 8, 0, seq % 60], "rtime": 1795935781250 + seq,
        "values": [["systolic", systolic, "mm[Hg]"], ["diastolic", 80, "mm[Hg]"]],
        "flags": [],
    }
    rec.update(extra)
    return rec


def batch(records: list[dict[str, Any]], base: int | None = None, jid: str = "3f9a1c02",
          **extra: Any) -> bytes:
    doc: dict[str, Any] = {"v": 1, "jid": jid,
                           "base": base if base is not None else records[0]["seq"],
                           "sent": 1795935781500, "records": records}
    doc.update(extra)
    return json.dumps(doc, separators=(",", ":")).encode()
