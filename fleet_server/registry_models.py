"""Registry tables (issue 5): reference places, instrument passports,
maintenance, encounters. Same `Base` as fleet_server.models, which imports
this module so that `Base.metadata` holds every table; the Alembic revision
is migrations/versions/0003_registry.py.

- `regions` / `provinces`: Morocco's 2015 division, seeded by the migration
  from fleet_server/data/morocco_admin.json, editable by an admin. Units keep
  their place as names in `units.region` / `units.province` (models.py);
  fleet_server/reference_data.py validates those names.
- `instruments`: one row per instrument key (= `readings.inst_key`: the serial
  when known, else the address), filled from readings by
  registry.observe_instrument; `instrument_assignments` is its unit history;
  `instrument_checks` its calibrations and validations.
- `maintenance_tickets` + `maintenance_notes`.
- `encounters`: a pseudonymous patient reference on a unit for a time
  window; readings attach to it by query (registry.encounter_readings), not
  by a stored link. At most one open encounter per unit (partial unique index).
- `unit_staff`: which unit a user works at (reception may only act there).
- `registry_sync`: how far the instrument back-fill has read `readings`.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fleet_server.models import Base as Base
from fleet_server.models import BigId, Unit, UTCDateTime


class Region(Base):
    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)  # ISO 3166-2:MA, e.g. MA-08
    name: Mapped[str] = mapped_column(String(64), unique=True)  # official French name
    name_ar: Mapped[str | None] = mapped_column(String(128))

    provinces: Mapped[list[Province]] = relationship(back_populates="region",
                                                     order_by="Province.name")


class Province(Base):
    """A province or a prefecture (same level of the division)."""

    __tablename__ = "provinces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)  # ISO 3166-2:MA, e.g. MA-ZAG
    name: Mapped[str] = mapped_column(String(64), unique=True)
    name_ar: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # province | prefecture
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), index=True)

    region: Mapped[Region] = relationship(back_populates="provinces")


class Instrument(Base):
    __tablename__ = "instruments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # readings.inst_key: the serial when known, else the address
    key: Mapped[str] = mapped_column(String(64), unique=True)
    serial: Mapped[str | None] = mapped_column(String(64), index=True)
    addr: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(64))
    mfr: Mapped[str | None] = mapped_column(String(64))
    type: Mapped[str | None] = mapped_column(String(32))  # reading type it sends
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), index=True)
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    calibration_interval_days: Mapped[int | None] = mapped_column(Integer)
    calibration_last_done: Mapped[date | None] = mapped_column(Date)
    validation_interval_days: Mapped[int | None] = mapped_column(Integer)
    validation_last_done: Mapped[date | None] = mapped_column(Date)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    unit: Mapped[Unit | None] = relationship()


class InstrumentAssignment(Base):
    """The instrument was at `unit` from `from_at` until `to_at` (NULL: still)."""

    __tablename__ = "instrument_assignments"
    __table_args__ = (Index("ix_instrument_assignments_inst_from", "instrument_id", "from_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instrument_id: Mapped[int] = mapped_column(
        ForeignKey("instruments.id", ondelete="CASCADE"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    from_at: Mapped[datetime] = mapped_column(UTCDateTime)
    to_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))  # readings | manual
    by: Mapped[str | None] = mapped_column(String(64))

    unit: Mapped[Unit] = relationship()


class InstrumentCheck(Base):
    """A calibration or validation done on an instrument."""

    __tablename__ = "instrument_checks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instrument_id: Mapped[int] = mapped_column(
        ForeignKey("instruments.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # calibration | validation
    done_on: Mapped[date] = mapped_column(Date)
    passed: Mapped[bool | None] = mapped_column(Boolean)
    by: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MaintenanceTicket(Base):
    __tablename__ = "maintenance_tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instrument_id: Mapped[int | None] = mapped_column(ForeignKey("instruments.id"),
                                                      index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # repair | calibration | battery | ...
    status: Mapped[str] = mapped_column(String(16), index=True)  # open | in_progress | closed
    title: Mapped[str] = mapped_column(String(200))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    opened_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(64))

    instrument: Mapped[Instrument | None] = relationship()
    unit: Mapped[Unit | None] = relationship()
    notes: Mapped[list[MaintenanceNote]] = relationship(
        back_populates="ticket", order_by="MaintenanceNote.id", cascade="all, delete-orphan")


class MaintenanceNote(Base):
    __tablename__ = "maintenance_notes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("maintenance_tickets.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    by: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(String(16))  # the status it set, if any

    ticket: Mapped[MaintenanceTicket] = relationship(back_populates="notes")


class Encounter(Base):
    __tablename__ = "encounters"
    __table_args__ = (
        # one open encounter per unit at a time
        Index("uq_encounters_open_unit", "unit_id", unique=True,
              sqlite_where="ended_at IS NULL", postgresql_where="ended_at IS NULL"),
        Index("ix_encounters_unit_started", "unit_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    patient_ref: Mapped[str] = mapped_column(String(40), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_by: Mapped[str] = mapped_column(String(64))
    closed_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    unit: Mapped[Unit] = relationship()


class UnitStaff(Base):
    """The unit a user works at (reception may open encounters there only)."""

    __tablename__ = "unit_staff"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)

    unit: Mapped[Unit] = relationship()


class RegistrySync(Base):
    """A cursor over `readings` (e.g. 'instruments': last reading id observed)."""

    __tablename__ = "registry_sync"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_reading_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
