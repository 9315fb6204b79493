"""CSV exports for logistics (instruments, maintenance, calibration and
validation due lists) and for the administrator (readings). Every export
groups by region, then province, then unit (units with no place last).

Generators of text lines (header first), so a route can stream them. UTF-8,
comma separated, RFC 4180 quoting; times ISO 8601 UTC; text cells that a
spreadsheet would run as a formula (starting with = + - @ or a tab) get a
leading apostrophe. `readings_lines` opens its own sessions and reads in
chunks, so a large export does not hold one transaction or all rows in memory.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from device_drivers.reading import LOINC
from fleet_server import registry
from fleet_server.models import Reading, Unit
from fleet_server.reference_data import place_sort_key
from fleet_server.registry_models import Encounter

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
READINGS_CHUNK = 2000


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        return "'" + v
    return v


def _lines(header: list[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")

    def line(values: Iterable[Any]) -> str:
        buf.seek(0)
        buf.truncate()
        w.writerow([_cell(v) for v in values])
        return buf.getvalue()

    yield line(header)
    for row in rows:
        yield line(row)


INSTRUMENT_HEADER = [
    "region", "province", "unit", "instrument_id", "serial", "address", "model",
    "manufacturer", "type", "first_seen_at", "last_seen_at", "calibration_last_done",
    "calibration_interval_days", "calibration_due_on", "calibration_status",
    "validation_last_done", "validation_interval_days", "validation_due_on",
    "validation_status", "open_tickets"]


def instruments_lines(session: Session, *, today: date) -> Iterator[str]:
    counts = registry.open_ticket_counts(session)

    def rows() -> Iterator[list[Any]]:
        for i in registry.list_instruments(session):
            u = i.unit
            cal = registry.due(i, "calibration", today)
            val = registry.due(i, "validation", today)
            yield [u.region if u else None, u.province if u else None, u.code if u else None,
                   i.id, i.serial, i.addr, i.model, i.mfr, i.type, i.first_seen_at,
                   i.last_seen_at, cal.last_done, cal.interval_days, cal.due_on, cal.status,
                   val.last_done, val.interval_days, val.due_on, val.status,
                   counts.get(i.id, 0)]
    return _lines(INSTRUMENT_HEADER, rows())


DUE_HEADER = ["region", "province", "unit", "instrument_id", "serial", "model", "type",
              "check", "last_done", "interval_days", "due_on", "status"]


def due_lines(session: Session, *, today: date, within_days: int) -> Iterator[str]:
    """Calibrations and validations due by today + within_days (overdue included)."""
    horizon = today + timedelta(days=within_days)

    def rows() -> Iterator[list[Any]]:
        for i in registry.list_instruments(session):
            u = i.unit
            for kind in registry.CHECK_KINDS:
                d = registry.due(i, kind, today)
                if d.due_on is not None and d.due_on <= horizon:
                    yield [u.region if u else None, u.province if u else None,
                           u.code if u else None, i.id, i.serial or i.key, i.model, i.type,
                           kind, d.last_done, d.interval_days, d.due_on, d.status]
    return _lines(DUE_HEADER, rows())


MAINTENANCE_HEADER = ["region", "province", "unit", "ticket_id", "status", "kind", "title",
                      "instrument_id", "serial", "model", "opened_at", "opened_by",
                      "updated_at", "closed_at", "closed_by", "days_open"]


def maintenance_lines(session: Session, *, now: datetime,
                      status: str | None = None) -> Iterator[str]:
    def rows() -> Iterator[list[Any]]:
        for t in registry.list_tickets(session, status=status):
            u, i = t.unit, t.instrument
            end = t.closed_at or now
            yield [u.region if u else None, u.province if u else None, u.code if u else None,
                   t.id, t.status, t.kind, t.title, t.instrument_id,
                   (i.serial or i.key) if i else None, i.model if i else None, t.opened_at,
                   t.opened_by, t.updated_at, t.closed_at, t.closed_by,
                   (end - t.opened_at).days]
    return _lines(MAINTENANCE_HEADER, rows())


READINGS_HEADER = ["region", "province", "unit", "gateway", "reading_id", "jid", "seq",
                   "received_at", "instrument_time", "type", "instrument_serial",
                   "instrument_address", "instrument_model", "name", "value", "ucum", "loinc",
                   "flags", "encounter_id", "patient_ref"]


def readings_lines(sessions: Callable[[], Session], *, unit: str | None,
                   since: datetime | None, until: datetime | None) -> Iterator[str]:
    """One line per value: unit by unit in region and province order, each
    unit's readings in receive-time order, read in chunks (keyset paging, a
    short session each). Control-solution results are included and flagged;
    only patient readings carry an encounter."""
    with sessions() as session:
        units = [u.code for u in sorted(session.scalars(select(Unit)),
                                        key=lambda u: place_sort_key(u.region, u.province, u.code))
                 if unit is None or u.code == unit]

    def rows() -> Iterator[list[Any]]:
        for code in units:
            after: tuple[datetime, int] | None = None
            while True:
                with sessions() as session:
                    chunk = registry.readings_with_encounters(
                        session, unit=code, since=since, until=until, limit=READINGS_CHUNK,
                        after=after, include_control=True)
                    lines = [_reading_row(r, enc) for r, enc in chunk]
                for rows_of_reading in lines:
                    yield from rows_of_reading
                if len(chunk) < READINGS_CHUNK:
                    break
                last = chunk[-1][0]
                after = (last.received_at, last.id)
    return _lines(READINGS_HEADER, rows())


def _reading_row(r: Reading, enc: Encounter | None) -> list[list[Any]]:
    u = r.unit
    return [[u.region, u.province, u.code, r.gateway.gateway_id, r.id, r.jid, r.seq,
             r.received_at, r.itime, r.type, r.inst_serial, r.inst_addr, r.inst_model, name,
             value, ucum, LOINC.get(name), " ".join(r.flags), enc.id if enc else None,
             enc.patient_ref if enc else None] for name, value, ucum in r.values]
