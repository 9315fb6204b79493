"""Store operations of the registry (issue 5): instrument passports,
maintenance tickets, encounters. Keyword-only functions over a session, in
the style of crud.py: they flush, never commit, never raise HTTP errors
(`RegistryError` carries the field and the HTTP-like kind; routes map it).

Instruments are learnt from readings. `observe_instrument` is called by
ingest for each stored reading (one line in ingest.py) and by
`sync_instruments`, which back-fills from the `readings` table past a cursor
(`registry_sync`), so the passports are right whether or not the ingest
hook runs; observing the same reading twice changes nothing.
- identity: `readings.inst_key` (serial, else address); an instrument first
  seen by address only takes its serial when a reading carries both;
- assignment history: a reading from another unit than the current
  assignment, received after that assignment began, closes it and opens a
  new one at the reading's receive time (older readings arriving late do not
  rewrite history); technicians can also assign by hand;
- QC: a reading flagged `control_solution` (device_drivers/reading.py) is a
  passed validation on its receive date;
- due dates: last done + interval; never done counts from first seen (the
  factory calibration).

Encounters bind readings to a pseudonymous patient reference BY QUERY: a
reading of kind `reading` belongs to the encounter of its unit whose window
[started_at, ended_at) holds its gateway receive time, control-solution
readings excepted. Windows of one unit never overlap (open refuses while
another is open or when it would start inside a closed one), so a reading has
at most one encounter; the rest are listed as unassigned.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Text, and_, cast, exists, func, not_, or_, select
from sqlalchemy.orm import Session, aliased, joinedload

from fleet_server.models import DeadLetter, Gateway, Reading, Unit, User
from fleet_server.reference_data import place_sort_key
from fleet_server.registry_models import (
    Encounter,
    Instrument,
    InstrumentAssignment,
    InstrumentCheck,
    MaintenanceNote,
    MaintenanceTicket,
    RegistrySync,
    UnitStaff,
)

CONTROL_SOLUTION = "control_solution"
# Calibration once a year for every instrument; glucose meters are also
# validated with control solution every 30 days. Editable per instrument.
DEFAULT_CALIBRATION_DAYS = 365
DEFAULT_VALIDATION_DAYS = {"glucose": 30}
DUE_SOON_DAYS = 30

TICKET_STATUSES = ("open", "in_progress", "closed")
TICKET_KINDS = ("repair", "calibration", "validation", "battery", "replacement", "other")
CHECK_KINDS = ("calibration", "validation")
SYNC_CHUNK = 2000


class RegistryError(Exception):
    """kind: 'not_found' (404), 'conflict' (409) or 'invalid' (422, `field`)."""

    def __init__(self, kind: Literal["not_found", "conflict", "invalid"], msg: str,
                 field: str | None = None) -> None:
        super().__init__(msg)
        self.kind = kind
        self.field = field


def _json_has(column: Any, flag: str) -> ColumnElement[bool]:
    """A JSON list of strings contains `flag` (SQLite text and PostgreSQL JSONB)."""
    return cast(column, Text).like(f'%"{flag}"%')


def is_control(reading: Reading) -> bool:
    return CONTROL_SOLUTION in (reading.flags or ())


# --- instruments --------------------------------------------------------------------------


def _get(reading: Any, name: str) -> Any:
    if isinstance(reading, Mapping):
        return reading.get(name)
    return getattr(reading, name, None)


def observe_instrument(session: Session, reading: Reading | Mapping[str, Any],
                       unit: Unit | int, now: datetime) -> Instrument | None:
    """Create or update the instrument a stored reading came from. `reading`
    is a Reading row or a mapping with its fields (inst_addr, inst_serial,
    inst_model, inst_mfr, type, kind, flags, received_at); `unit` the unit
    (or its id) the reading was received on. None when it names no instrument."""
    serial, addr = _get(reading, "inst_serial"), _get(reading, "inst_addr")
    key = serial or addr
    if not key:
        return None
    at: datetime = _get(reading, "received_at") or now
    unit_id = unit if isinstance(unit, int) else unit.id
    inst = session.scalar(select(Instrument).where(Instrument.key == key))
    # An address is only unique on one unit (a serial port name is not
    # unique at all): it matches across serial and address on the same unit.
    if inst is None and serial and addr:  # known by address until now: takes its serial
        inst = session.scalar(select(Instrument).where(
            Instrument.key == addr, Instrument.serial.is_(None), Instrument.unit_id == unit_id))
        if inst is not None:
            inst.key = serial
    elif inst is None and addr:  # an address-only record of an instrument known by serial
        inst = session.scalar(select(Instrument).where(
            Instrument.addr == addr, Instrument.unit_id == unit_id)
            .order_by(Instrument.last_seen_at.desc()).limit(1))
    if inst is None:
        rtype = _get(reading, "type") if _get(reading, "kind") == "reading" else None
        inst = Instrument(key=key, created_at=now, type=rtype,
                          calibration_interval_days=DEFAULT_CALIBRATION_DAYS,
                          validation_interval_days=DEFAULT_VALIDATION_DAYS.get(rtype or ""))
        session.add(inst)
    for attr, name in (("serial", "inst_serial"), ("addr", "inst_addr"),
                       ("model", "inst_model"), ("mfr", "inst_mfr")):
        value = _get(reading, name)
        if value:
            setattr(inst, attr, value)
    if _get(reading, "kind") == "reading" and _get(reading, "type") and inst.type is None:
        inst.type = _get(reading, "type")
        inst.validation_interval_days = inst.validation_interval_days or \
            DEFAULT_VALIDATION_DAYS.get(inst.type)
    if inst.first_seen_at is None or at < inst.first_seen_at:
        inst.first_seen_at = at
    newest = inst.last_seen_at is None or at >= inst.last_seen_at
    if newest:
        inst.last_seen_at = at
    session.flush()
    _follow_unit(session, inst, unit_id, at)
    if CONTROL_SOLUTION in (_get(reading, "flags") or ()):
        day = at.astimezone(UTC).date()
        if inst.validation_last_done is None or day > inst.validation_last_done:
            inst.validation_last_done = day
    session.flush()
    return inst


def _open_assignment(session: Session, inst: Instrument) -> InstrumentAssignment | None:
    return session.scalar(select(InstrumentAssignment).where(
        InstrumentAssignment.instrument_id == inst.id, InstrumentAssignment.to_at.is_(None)))


def _follow_unit(session: Session, inst: Instrument, unit_id: int, at: datetime) -> None:
    current = _open_assignment(session, inst)
    if current is not None and (current.unit_id == unit_id or at < current.from_at):
        return
    if current is None and inst.unit_id is None:
        # First sight, or unassigned by hand: only readings newer than the
        # last period's end start a new one.
        last_end = session.scalar(select(func.max(InstrumentAssignment.to_at)).where(
            InstrumentAssignment.instrument_id == inst.id))
        if last_end is not None and at < last_end:
            return
    if current is not None:
        current.to_at = at
    session.add(InstrumentAssignment(instrument_id=inst.id, unit_id=unit_id, from_at=at,
                                     source="readings"))
    inst.unit_id = unit_id


def sync_instruments(session: Session, *, now: datetime, limit: int | None = None) -> int:
    """Observe every reading past the cursor (in id order). Returns how many."""
    cursor = session.get(RegistrySync, "instruments", with_for_update=True,
                         populate_existing=True)
    if cursor is None:
        cursor = RegistrySync(name="instruments", last_reading_id=0, updated_at=now)
        session.add(cursor)
        session.flush()
    done = 0
    while limit is None or done < limit:
        chunk = SYNC_CHUNK if limit is None else min(SYNC_CHUNK, limit - done)
        rows = session.execute(
            select(Reading.id, Reading.unit_pk, Reading.inst_addr, Reading.inst_serial,
                   Reading.inst_model, Reading.inst_mfr, Reading.type, Reading.kind,
                   Reading.flags, Reading.received_at)
            .where(Reading.id > cursor.last_reading_id).order_by(Reading.id).limit(chunk)
        ).mappings().all()
        if not rows:
            break
        for row in rows:
            observe_instrument(session, dict(row), row["unit_pk"], now)
        cursor.last_reading_id = rows[-1]["id"]
        cursor.updated_at = now
        done += len(rows)
    session.flush()
    return done


def needs_sync(session: Session) -> bool:
    """Readings past the back-fill cursor exist."""
    last = session.scalar(select(RegistrySync.last_reading_id)
                          .where(RegistrySync.name == "instruments")) or 0
    return (session.scalar(select(func.max(Reading.id))) or 0) > last


@dataclass(frozen=True)
class Due:
    last_done: date | None
    interval_days: int | None
    due_on: date | None
    status: str  # ok | due_soon | overdue | not_required


def due(inst: Instrument, kind: str, today: date) -> Due:
    last = inst.calibration_last_done if kind == "calibration" else inst.validation_last_done
    interval = (inst.calibration_interval_days if kind == "calibration"
                else inst.validation_interval_days)
    if not interval:
        return Due(last, interval, None, "not_required")
    start = last or (inst.first_seen_at or inst.created_at).astimezone(UTC).date()
    due_on = start + timedelta(days=interval)
    status = "overdue" if due_on <= today else (
        "due_soon" if due_on <= today + timedelta(days=DUE_SOON_DAYS) else "ok")
    return Due(last, interval, due_on, status)


def get_instrument(session: Session, instrument_id: int) -> Instrument:
    inst = session.scalar(select(Instrument).options(joinedload(Instrument.unit))
                          .where(Instrument.id == instrument_id))
    if inst is None:
        raise RegistryError("not_found", f"no instrument {instrument_id}")
    return inst


def list_instruments(session: Session, *, unit: str | None = None, region: str | None = None,
                     province: str | None = None, type: str | None = None,
                     serial: str | None = None) -> list[Instrument]:
    """Sorted by region, province, unit, key (instruments of no unit last)."""
    q = select(Instrument).outerjoin(Instrument.unit).options(joinedload(Instrument.unit))
    if unit is not None:
        q = q.where(Unit.code == unit)
    if region is not None:
        q = q.where(Unit.region == region)
    if province is not None:
        q = q.where(Unit.province == province)
    if type is not None:
        q = q.where(Instrument.type == type)
    if serial is not None:
        q = q.where(Instrument.serial == serial)
    rows = list(session.scalars(q))

    def key(i: Instrument) -> tuple[Any, ...]:
        u = i.unit
        if u is None:
            return (True, *place_sort_key(None, None, "", i.key))
        return (False, *place_sort_key(u.region, u.province, u.code, i.key))
    return sorted(rows, key=key)


def assignments(session: Session, inst: Instrument) -> Sequence[InstrumentAssignment]:
    return session.scalars(select(InstrumentAssignment)
                           .options(joinedload(InstrumentAssignment.unit))
                           .where(InstrumentAssignment.instrument_id == inst.id)
                           .order_by(InstrumentAssignment.from_at,
                                     InstrumentAssignment.id)).all()


def assign_instrument(session: Session, inst: Instrument, *, unit: Unit | None, by: str,
                      now: datetime) -> None:
    """Assign by hand (None: taken out of service / in the workshop)."""
    current = _open_assignment(session, inst)
    if current is not None:
        if unit is not None and current.unit_id == unit.id:
            return
        current.to_at = now
    if unit is not None:
        session.add(InstrumentAssignment(instrument_id=inst.id, unit_id=unit.id, from_at=now,
                                         source="manual", by=by))
    inst.unit_id = unit.id if unit is not None else None
    session.flush()


def record_check(session: Session, inst: Instrument, *, kind: str, done_on: date,
                 passed: bool | None, by: str, note: str | None,
                 now: datetime) -> InstrumentCheck:
    """A calibration or validation; a failed one does not move the due date."""
    if done_on > now.astimezone(UTC).date():
        raise RegistryError("invalid", "is in the future", "done_on")
    check = InstrumentCheck(instrument_id=inst.id, kind=kind, done_on=done_on, passed=passed,
                            by=by, note=note, recorded_at=now)
    session.add(check)
    if passed is not False:
        attr = f"{kind}_last_done"
        if getattr(inst, attr) is None or done_on > getattr(inst, attr):
            setattr(inst, attr, done_on)
    session.flush()
    return check


def checks(session: Session, inst: Instrument) -> Sequence[InstrumentCheck]:
    return session.scalars(select(InstrumentCheck).where(InstrumentCheck.instrument_id == inst.id)
                           .order_by(InstrumentCheck.done_on.desc(),
                                     InstrumentCheck.id.desc())).all()


def qc_readings(session: Session, inst: Instrument, *, limit: int = 100) -> Sequence[Reading]:
    """Control-solution results of the instrument, newest first."""
    return session.scalars(
        select(Reading).options(joinedload(Reading.unit), joinedload(Reading.gateway))
        .where(Reading.inst_key == inst.key, _json_has(Reading.flags, CONTROL_SOLUTION))
        .order_by(Reading.received_at.desc(), Reading.id.desc()).limit(limit)).all()


@dataclass(frozen=True)
class InstrumentError:
    at: datetime
    source: str  # event | rejected_record
    gateway: str | None
    code: str  # the event's type / the rejection reason
    detail: str
    flags: list[str]


def error_history(session: Session, inst: Instrument, *, limit: int = 100,
                  scan: int = 2000) -> list[InstrumentError]:
    """What the data says went wrong with this instrument, newest first:
    `event` records it sent (instrument errors journaled by the gateway), and
    records the server rejected that name it (dead letters of the gateways of
    the units it was assigned to, the last `scan` of them)."""
    out: list[InstrumentError] = []
    events = session.scalars(
        select(Reading).options(joinedload(Reading.gateway))
        .where(Reading.inst_key == inst.key, Reading.kind == "event")
        .order_by(Reading.received_at.desc()).limit(limit)).all()
    out += [InstrumentError(r.received_at, "event", r.gateway.gateway_id, r.type or "event",
                            "", list(r.flags)) for r in events]
    unit_ids = {a.unit_id for a in assignments(session, inst)}
    gateways = list(session.scalars(select(Gateway.gateway_id)
                                    .where(Gateway.unit_id.in_(unit_ids)))) if unit_ids else []
    if gateways:
        dead = session.scalars(
            select(DeadLetter).where(DeadLetter.gateway.in_(gateways),
                                     DeadLetter.seq.is_not(None))
            .order_by(DeadLetter.id.desc()).limit(scan)).all()
        for d in dead:
            try:
                raw = json.loads(d.raw)
            except ValueError:
                continue
            named = raw.get("inst") if isinstance(raw, dict) else None
            if isinstance(named, dict) and inst.key in (named.get("serial"), named.get("addr")):
                out.append(InstrumentError(d.received_at, "rejected_record", d.gateway,
                                           d.reason, d.detail, []))
    out.sort(key=lambda e: e.at, reverse=True)
    return out[:limit]


def update_instrument(session: Session, inst: Instrument, changes: Mapping[str, Any]) -> None:
    allowed = {"model", "mfr", "type", "notes", "calibration_interval_days",
               "validation_interval_days", "calibration_last_done", "validation_last_done"}
    for name, value in changes.items():
        if name not in allowed:
            raise RegistryError("invalid", "cannot be changed", name)
        setattr(inst, name, value)
    session.flush()


# --- maintenance ------------------------------------------------------------------------


def open_ticket(session: Session, *, instrument: Instrument | None, unit: Unit | None,
                kind: str, title: str, note: str | None, by: str,
                now: datetime) -> MaintenanceTicket:
    if instrument is None and unit is None:
        raise RegistryError("invalid", "give an instrument_id or a unit", "instrument_id")
    unit_id = unit.id if unit is not None else (instrument.unit_id if instrument else None)
    t = MaintenanceTicket(instrument_id=instrument.id if instrument else None, unit_id=unit_id,
                          kind=kind, status="open", title=title, opened_at=now, opened_by=by,
                          updated_at=now)
    session.add(t)
    session.flush()
    session.add(MaintenanceNote(ticket_id=t.id, at=now, by=by, text=note or title,
                                status="open"))
    session.flush()
    return t


def get_ticket(session: Session, ticket_id: int) -> MaintenanceTicket:
    t = session.scalar(select(MaintenanceTicket).options(
        joinedload(MaintenanceTicket.unit), joinedload(MaintenanceTicket.instrument),
        joinedload(MaintenanceTicket.notes)).where(MaintenanceTicket.id == ticket_id))
    if t is None:
        raise RegistryError("not_found", f"no maintenance ticket {ticket_id}")
    return t


def update_ticket(session: Session, ticket: MaintenanceTicket, *, status: str | None,
                  note: str | None, by: str, now: datetime) -> None:
    """Any status may follow any other (a closed ticket can be reopened);
    every change is a note with who and when."""
    changed = status is not None and status != ticket.status
    if not changed and not note:
        raise RegistryError("invalid", "give a new status or a note", "status")
    if changed:
        assert status is not None
        ticket.status = status
        ticket.closed_at = now if status == "closed" else None
        ticket.closed_by = by if status == "closed" else None
    ticket.updated_at = now
    ticket.notes.append(MaintenanceNote(at=now, by=by, text=note or f"status {status}",
                                        status=status if changed else None))
    session.flush()


def list_tickets(session: Session, *, status: str | None = None, unit: str | None = None,
                 instrument_id: int | None = None, region: str | None = None,
                 province: str | None = None) -> list[MaintenanceTicket]:
    """By region, province, unit, then newest first."""
    q = (select(MaintenanceTicket).outerjoin(MaintenanceTicket.unit)
         .options(joinedload(MaintenanceTicket.unit), joinedload(MaintenanceTicket.instrument)))
    if status is not None:
        q = q.where(MaintenanceTicket.status == status)
    if unit is not None:
        q = q.where(Unit.code == unit)
    if instrument_id is not None:
        q = q.where(MaintenanceTicket.instrument_id == instrument_id)
    if region is not None:
        q = q.where(Unit.region == region)
    if province is not None:
        q = q.where(Unit.province == province)
    def key(t: MaintenanceTicket) -> tuple[Any, ...]:
        u = t.unit
        if u is None:
            return (True, *place_sort_key(None, None, "", -t.id))
        return (False, *place_sort_key(u.region, u.province, u.code, -t.id))
    return sorted(session.scalars(q), key=key)


def open_ticket_counts(session: Session) -> dict[int, int]:
    """Instrument id -> tickets not closed."""
    rows = session.execute(select(MaintenanceTicket.instrument_id, func.count())
                           .where(MaintenanceTicket.status != "closed",
                                  MaintenanceTicket.instrument_id.is_not(None))
                           .group_by(MaintenanceTicket.instrument_id))
    return {int(i): int(n) for i, n in rows if i is not None}


# --- patient references -------------------------------------------------------------------

# Crockford base32 (no I, L, O, U: no confusion with 1 and 0, and few words).
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PATIENT_REF_RE = re.compile(r"^[Pp]-([0-9A-Za-z]{8,32})$")
# A Moroccan national id card (CIN) number: one or two letters then digits.
_CIN_RE = re.compile(r"^[A-Za-z]{1,2}[0-9]{3,8}$")
PATIENT_REF_RULE = (
    "'P-' then 8 to 32 Crockford base32 characters (0-9, A-Z without I, L, O, U) with at "
    "least 2 digits and 2 letters, the last one a check character (Luhn mod 32); a CIN "
    "number or a name is refused")


def _check_char(body: str) -> str:
    """Luhn mod N over the alphabet: the character that makes `body + it` valid."""
    n = len(ALPHABET)
    total, factor = 0, 2
    for ch in reversed(body):
        addend = factor * ALPHABET.index(ch)
        factor = 1 if factor == 2 else 2
        total += addend // n + addend % n
    return ALPHABET[(n - total % n) % n]


def new_patient_ref(length: int = 12) -> str:
    """A fresh random reference (length characters after 'P-', check included)."""
    while True:
        body = "".join(secrets.choice(ALPHABET) for _ in range(length - 1))
        ref = body + _check_char(body)
        if sum(c.isdigit() for c in ref) >= 2 and sum(c.isalpha() for c in ref) >= 2:
            return "P-" + ref


def validate_patient_ref(value: str) -> str:
    """The reference in canonical form (upper case), or ValueError saying why.
    Only opaque tokens pass: a name (no digits, or letters I/L/O/U, or a wrong
    check character) or a CIN number is refused."""
    m = PATIENT_REF_RE.match(value.strip())
    if not m:
        if _CIN_RE.match(value.strip()):
            raise ValueError("looks like a national id (CIN) number; use the patient's "
                             "pseudonymous reference " + PATIENT_REF_RULE)
        raise ValueError("must be " + PATIENT_REF_RULE)
    body = m.group(1).upper()
    if _CIN_RE.match(body):
        raise ValueError("looks like a national id (CIN) number, not a pseudonymous reference")
    if any(c not in ALPHABET for c in body):
        raise ValueError("may not contain I, L, O or U (Crockford base32): a name is not a "
                         "reference")
    if sum(c.isdigit() for c in body) < 2 or sum(c.isalpha() for c in body) < 2:
        raise ValueError("needs at least 2 digits and 2 letters (an opaque token)")
    if _check_char(body[:-1]) != body[-1]:
        raise ValueError("check character does not match (mistyped, or not a reference)")
    return "P-" + body


# --- encounters -----------------------------------------------------------------------------


def unit_by_code(session: Session, code: str, *, field: str = "unit") -> Unit:
    unit = session.scalar(select(Unit).where(Unit.code == code))
    if unit is None:
        raise RegistryError("invalid", f"unknown unit {code!r}", field)
    return unit


def staff_unit(session: Session, user: User) -> Unit | None:
    row = session.scalar(select(UnitStaff).options(joinedload(UnitStaff.unit))
                         .where(UnitStaff.user_id == user.id))
    return row.unit if row is not None else None


def set_staff_unit(session: Session, user: User, unit: Unit | None, now: datetime) -> None:
    row = session.get(UnitStaff, user.id)
    if unit is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(UnitStaff(user_id=user.id, unit_id=unit.id, assigned_at=now))
    else:
        row.unit_id, row.assigned_at = unit.id, now
    session.flush()


def list_staff(session: Session) -> Sequence[tuple[User, Unit]]:
    rows = session.execute(select(User, Unit).join(UnitStaff, UnitStaff.user_id == User.id)
                           .join(Unit, Unit.id == UnitStaff.unit_id).order_by(User.username))
    return [(u, unit) for u, unit in rows]


def get_encounter(session: Session, encounter_id: int) -> Encounter:
    enc = session.scalar(select(Encounter).options(joinedload(Encounter.unit))
                         .where(Encounter.id == encounter_id))
    if enc is None:
        raise RegistryError("not_found", f"no encounter {encounter_id}")
    return enc


def open_encounter(session: Session, *, unit: Unit, patient_ref: str,
                   started_at: datetime | None, by: str, now: datetime) -> Encounter:
    """Open an encounter on the unit. Refused (conflict) while another is open
    on that unit, or when it would start inside a closed one."""
    start = started_at or now
    if start > now + timedelta(minutes=5):
        raise RegistryError("invalid", "is in the future", "started_at")
    # Serialize openings per unit (PostgreSQL; SQLite's BEGIN IMMEDIATE already does).
    session.scalar(select(Unit.id).where(Unit.id == unit.id).with_for_update())
    other = session.scalar(select(Encounter).where(Encounter.unit_id == unit.id, or_(
        Encounter.ended_at.is_(None), Encounter.ended_at > start)).order_by(Encounter.id))
    if other is not None:
        if other.ended_at is None:
            raise RegistryError("conflict", f"encounter {other.id} is still open on {unit.code}: "
                                            "close it first")
        raise RegistryError("conflict", f"started_at falls inside encounter {other.id} on "
                                        f"{unit.code}, which ended later")
    enc = Encounter(unit_id=unit.id, unit=unit, patient_ref=patient_ref, started_at=start,
                    opened_by=by, created_at=now)
    session.add(enc)
    session.flush()
    return enc


def close_encounter(session: Session, enc: Encounter, *, ended_at: datetime | None, by: str,
                    now: datetime) -> None:
    if enc.ended_at is not None:
        raise RegistryError("conflict", f"encounter {enc.id} is already closed")
    end = ended_at or now
    if end < enc.started_at:
        raise RegistryError("invalid", "is before the encounter's start", "ended_at")
    if end > now + timedelta(minutes=5):
        raise RegistryError("invalid", "is in the future", "ended_at")
    enc.ended_at, enc.closed_by = end, by
    session.flush()


def list_encounters(session: Session, *, unit: str | None = None,
                    status: Literal["open", "closed"] | None = None,
                    since: datetime | None = None, until: datetime | None = None,
                    limit: int = 100) -> Sequence[Encounter]:
    q = select(Encounter).join(Encounter.unit).options(joinedload(Encounter.unit))
    if unit is not None:
        q = q.where(Unit.code == unit)
    if status == "open":
        q = q.where(Encounter.ended_at.is_(None))
    elif status == "closed":
        q = q.where(Encounter.ended_at.is_not(None))
    if since is not None:
        q = q.where(or_(Encounter.ended_at.is_(None), Encounter.ended_at > since))
    if until is not None:
        q = q.where(Encounter.started_at < until)
    return session.scalars(q.order_by(Encounter.started_at.desc(), Encounter.id.desc())
                           .limit(limit)).all()


def _covers(enc: Any, reading: Any = Reading) -> ColumnElement[bool]:
    return and_(enc.unit_id == reading.unit_pk, enc.started_at <= reading.received_at,
                or_(enc.ended_at.is_(None), enc.ended_at > reading.received_at))


def _patient_readings() -> ColumnElement[bool]:
    return and_(Reading.kind == "reading", not_(_json_has(Reading.flags, CONTROL_SOLUTION)))


def encounter_readings(session: Session, enc: Encounter,
                       limit: int = 1000) -> Sequence[Reading]:
    q = (select(Reading).options(joinedload(Reading.unit), joinedload(Reading.gateway))
         .where(Reading.unit_pk == enc.unit_id, Reading.received_at >= enc.started_at,
                _patient_readings()))
    if enc.ended_at is not None:
        q = q.where(Reading.received_at < enc.ended_at)
    return session.scalars(q.order_by(Reading.received_at, Reading.id).limit(limit)).all()


def _window(q: Any, unit: str | None, since: datetime | None, until: datetime | None) -> Any:
    if unit is not None:
        q = q.where(Unit.code == unit)
    if since is not None:
        q = q.where(Reading.received_at >= since)
    if until is not None:
        q = q.where(Reading.received_at < until)
    return q


def unassigned_readings(session: Session, *, unit: str | None, since: datetime | None,
                        until: datetime | None, limit: int = 100) -> Sequence[Reading]:
    """Patient readings in no encounter, newest first."""
    enc = aliased(Encounter)
    q = (select(Reading).join(Reading.unit)
         .options(joinedload(Reading.unit), joinedload(Reading.gateway))
         .where(_patient_readings(), ~exists().where(_covers(enc))))
    q = _window(q, unit, since, until)
    return session.scalars(q.order_by(Reading.received_at.desc(), Reading.id.desc())
                           .limit(limit)).all()


def readings_with_encounters(session: Session, *, unit: str | None, since: datetime | None,
                             until: datetime | None, limit: int, offset: int = 0,
                             after: tuple[datetime, int] | None = None,
                             include_control: bool = False,
                             ) -> Sequence[tuple[Reading, Encounter | None]]:
    """Readings (kind `reading`) in (receive time, id) order, each with the
    encounter it belongs to, if any (exports). `after`: keyset paging, only
    readings past that (received_at, id)."""
    enc = aliased(Encounter)
    cond = Reading.kind == "reading" if include_control else _patient_readings()
    q = (select(Reading, enc).join(Reading.unit)
         .outerjoin(enc, and_(_covers(enc), not_(_json_has(Reading.flags, CONTROL_SOLUTION))))
         .options(joinedload(Reading.unit), joinedload(Reading.gateway)).where(cond))
    q = _window(q, unit, since, until)
    if after is not None:
        q = q.where(or_(Reading.received_at > after[0],
                        and_(Reading.received_at == after[0], Reading.id > after[1])))
    q = q.order_by(Reading.received_at, Reading.id).offset(offset).limit(limit)
    return [(r, e) for r, e in session.execute(q)]


def count_patient_readings(session: Session, *, unit: str | None, since: datetime | None,
                           until: datetime | None) -> int:
    q = select(func.count()).select_from(Reading).join(Reading.unit).where(_patient_readings())
    return int(session.scalar(_window(q, unit, since, until)) or 0)

