"""A simulated BLE glucose meter with a record memory and a Record Access
Control Point, as a bumble GATT server (issue 4, item 10).

  Glucose 0x1808:  0x2A18 Measurement (notify), 0x2A34 Measurement Context
                   (notify), 0x2A51 Feature (read), 0x2A52 RACP (write, indicate)
  plus Device Information, Battery, Current Time and pairing (ble_common.py)

The meter keeps `records` (StoredRecord: its own sequence number and the time
of its own clock when the reading was taken, which may be off) and answers
RACP requests as the Glucose Service specifies:

  01 report stored records   operators all, <=, >=, within range, first, last
                             (filter: sequence number only); each record is
                             notified on 0x2A18 (then 0x2A34 when it has a
                             context), then 06 00 01 01 (success) or 06 00 01 06
                             (no records found) is indicated
  02 delete stored records   same operators; success or no records found
  03 abort                   stops a report in progress; 06 00 03 01
  04 report number of records  05 00 <count LE16>
  other op codes, operators, filters and operands: the response codes 2
  (op code not supported), 3 (invalid operator), 4 (operator not supported),
  5 (invalid operand), 9 (operand not supported). A request while a report
  runs is refused with ATT error 0x80 (procedure already in progress), one
  from a central without RACP indications enabled with 0x81 (CCCD improperly
  configured).

Misbehaviour switches a test turns on: `newest_first` (send highest sequence
first), `repeat` (every notification twice), `drop_after` (drop the link after
k records of the next report: a central walking away), `stall_after` (go
silent after the k-th measurement of the next report, before its context,
link up), `pace_s` (a slow meter), `grow_during_report` (n new readings are
taken while the next report runs), and `add_raw()` (a record whose stored
bytes are malformed). The switches marked one-shot apply to the next report
only. Bytes come from the device_drivers encoders. CPython only, not in the
firmware image.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

from bumble import att, gatt
from bumble.device import Connection, Device

from device_drivers.glucose import (
    OP_ALL,
    OP_FIRST,
    OP_GREATER_OR_EQUAL,
    OP_LAST,
    OP_LESS_OR_EQUAL,
    OP_NULL,
    OP_WITHIN_RANGE,
    RACP_ABORT,
    RACP_DELETE,
    RACP_REPORT,
    RACP_REPORT_COUNT,
    RC_NO_RECORDS,
    RC_SUCCESS,
    encode_context,
    encode_feature,
    encode_measurement,
    encode_racp_count,
    encode_racp_response,
)
from gateway.sim.ble_common import SimError, SimInstrument, stamp_of, uuid16

log = logging.getLogger(__name__)

GLUCOSE_SERVICE = 0x1808
GLUCOSE_MEASUREMENT = 0x2A18
GLUCOSE_CONTEXT = 0x2A34
GLUCOSE_FEATURE = 0x2A51
RACP = 0x2A52

FILTER_SEQUENCE = 1
RC_OP_CODE_NOT_SUPPORTED = 2
RC_INVALID_OPERATOR = 3
RC_OPERATOR_NOT_SUPPORTED = 4
RC_INVALID_OPERAND = 5
RC_OPERAND_NOT_SUPPORTED = 9

# Glucose Service application errors (ATT error codes)
ATT_PROCEDURE_ALREADY_IN_PROGRESS = 0x80
ATT_CCCD_IMPROPERLY_CONFIGURED = 0x81

DEFAULT_FEATURES = ["low_battery_detection", "strip_insertion_error_detection",
                    "sample_size", "time_fault", "multiple_bond"]


@dataclass
class StoredRecord:
    """One reading in the meter's memory, as the meter would send it."""

    sequence: int
    base_time: tuple[int, int, int, int, int, int]  # the meter's clock, then
    mg_dl: float
    time_offset: int | None = None  # minutes
    type: int = 1  # capillary whole blood (10: control solution)
    sample_location: int = 1  # finger
    status: int | None = None
    context: dict[str, Any] | None = None  # encode_context keyword arguments
    raw: bytes | None = None  # stored bytes that override the encoding (malformed records)

    def measurement(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return encode_measurement(
            self.sequence, self.base_time, time_offset=self.time_offset,
            concentration=self.mg_dl / 100000, concentration_unit="kg/L", type=self.type,
            sample_location=self.sample_location, status=self.status,
            context_follows=self.context is not None)

    def context_bytes(self) -> bytes | None:
        if self.context is None or self.raw is not None:
            return None
        return encode_context(self.sequence, **self.context)


class BleGlucometer(SimInstrument):
    """The GATT server of one simulated glucose meter on a bumble Device."""

    SERVICE = GLUCOSE_SERVICE

    def __init__(self, device: Device, *, model: str = "Contour Next One",
                 serial: str = "7100012345", manufacturer: str = "Ascensia",
                 firmware: str = "3.1.0", battery: int = 70, passkey: int | None = None,
                 clock_offset_s: float = 0.0, clock_writable: bool = True,
                 first_sequence: int = 1, features: object = None,
                 rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.records: list[StoredRecord] = []
        self.next_sequence = first_sequence
        self.newest_first = False
        self.repeat = False
        self.drop_after: int | None = None  # one-shot: drop the link after k records
        self.grow_during_report = 0  # one-shot: readings taken while a report runs
        self.stall_after: int | None = None  # one-shot: go silent after k records
        self.pace_s = 0.0  # pause between records (a slow meter)
        self.reports = 0  # report requests answered
        self.records_sent = 0
        self.aborts = 0
        self._task: asyncio.Task[None] | None = None
        self._aborter: asyncio.Task[None] | None = None
        self._abort = False
        self._busy = False

        self.measurement_char = self.measurement_characteristic(GLUCOSE_MEASUREMENT,
                                                                notify=True)
        self.context_char = self.measurement_characteristic(GLUCOSE_CONTEXT, notify=True)
        feature_char: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuid16(GLUCOSE_FEATURE), gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE | gatt.Characteristic.READ_REQUIRES_ENCRYPTION,
            encode_feature(DEFAULT_FEATURES if features is None else features))
        self.racp: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuid16(RACP),
            gatt.Characteristic.Properties.WRITE | gatt.Characteristic.Properties.INDICATE,
            gatt.Characteristic.WRITEABLE | gatt.Characteristic.WRITE_REQUIRES_ENCRYPTION,
            gatt.CharacteristicValue(write=self._on_racp_write))
        self.secure_cccd(self.racp)
        super().__init__(
            device, [gatt.Service(uuid16(GLUCOSE_SERVICE), [
                self.measurement_char, self.context_char, feature_char, self.racp])],
            model=model, serial=serial, manufacturer=manufacturer, firmware=firmware,
            battery=battery, passkey=passkey, clock_writable=clock_writable,
            clock_offset_s=clock_offset_s)

    # -- the memory ---------------------------------------------------------

    def add_record(self, mg_dl: float | None = None, *, taken_at: float | None = None,
                   context: dict[str, Any] | None = None, control: bool = False,
                   status: int | None = None) -> StoredRecord:
        """Take a reading (at true time `taken_at`, stamped by the meter's own
        clock); plausible values when mg_dl is None."""
        if mg_dl is None:
            mg_dl = float(max(40, min(450, round(self.rng.gauss(120, 35)))))
        rec = StoredRecord(self._take_sequence(), stamp_of(self.instrument_time(taken_at)),
                           mg_dl, type=10 if control else 1,
                           sample_location=4 if control else 1, status=status,
                           context=context)
        self.records.append(rec)
        return rec

    def add_records(self, n: int, *, start: float | None = None,
                    interval_s: float = 3600.0, context_every: int = 0) -> list[StoredRecord]:
        """n readings taken interval_s apart, the last one at `start` + (n-1)
        intervals (default: ending now); every context_every-th has a meal context."""
        import time

        first = (time.time() - (n - 1) * interval_s) if start is None else start
        out = []
        for i in range(n):
            ctx = None
            if context_every and self.next_sequence % context_every == 0:
                ctx = {"meal": 1 + self.next_sequence % 5}
            out.append(self.add_record(taken_at=first + i * interval_s, context=ctx))
        return out

    def add_raw(self, data: bytes) -> StoredRecord:
        """A record stored as these bytes (the meter's firmware wrote them
        wrong); it still uses up a sequence number."""
        rec = StoredRecord(self._take_sequence(), (0, 0, 0, 0, 0, 0), 0.0, raw=data)
        self.records.append(rec)
        return rec

    def _take_sequence(self) -> int:
        seq = self.next_sequence
        self.next_sequence = (seq + 1) & 0xFFFF
        return seq

    # -- RACP ---------------------------------------------------------------

    @property
    def reporting(self) -> bool:
        """A procedure is running (its final response not yet sent)."""
        return self._busy

    def _on_racp_write(self, connection: Connection, value: bytes) -> None:
        if connection not in self.subscribers(self.racp, indicate=True):
            raise att.ATT_Error(ATT_CCCD_IMPROPERLY_CONFIGURED)
        if len(value) < 2:
            raise att.ATT_Error(att.ErrorCode.INVALID_ATTRIBUTE_LENGTH)
        opcode, operator = value[0], value[1]
        if opcode == RACP_ABORT:
            self._start(connection, self._abort_report(connection, operator))
            return
        if self._busy:
            raise att.ATT_Error(ATT_PROCEDURE_ALREADY_IN_PROGRESS)
        self._busy = True
        self._start(connection, self._serve(connection, opcode, operator, bytes(value[2:])))

    def _start(self, connection: Connection, work: Any) -> None:
        # Answer after the write response has gone out, as a meter does.
        task = asyncio.ensure_future(work)
        if self._task is None or self._task.done():
            self._task = task
        else:
            self._aborter = task  # keep a reference while it runs

    async def _final(self, connection: Connection, data: bytes) -> None:
        """The response that ends a procedure: a new request may follow it at once."""
        self._busy = False
        await self._respond(connection, data)

    async def _respond(self, connection: Connection, data: bytes) -> None:
        if connection not in self.subscribers(self.racp, indicate=True):
            log.info("glucometer %s: RACP indications are off; no response", self.serial)
            return
        try:
            await self.indicate_to(connection, self.racp, data)
        except SimError as e:
            log.info("glucometer %s: RACP response not delivered: %s", self.serial, e)

    def _select(self, operator: int, operand: bytes) -> list[StoredRecord] | int:
        """The records a request's operator and operand pick, or a response code."""
        recs = sorted(self.records, key=lambda r: r.sequence)
        if operator == OP_NULL:
            return RC_INVALID_OPERATOR
        if operator > OP_LAST:
            return RC_OPERATOR_NOT_SUPPORTED
        if operator in (OP_ALL, OP_FIRST, OP_LAST):
            if operand:
                return RC_INVALID_OPERAND
            if operator == OP_ALL:
                return recs
            if not recs:
                return recs
            return [recs[0]] if operator == OP_FIRST else [recs[-1]]
        if not operand:
            return RC_INVALID_OPERAND
        if operand[0] != FILTER_SEQUENCE:
            return RC_OPERAND_NOT_SUPPORTED
        values = operand[1:]
        want = 4 if operator == OP_WITHIN_RANGE else 2
        if len(values) != want:
            return RC_INVALID_OPERAND
        a = values[0] | values[1] << 8
        if operator == OP_LESS_OR_EQUAL:
            return [r for r in recs if r.sequence <= a]
        if operator == OP_GREATER_OR_EQUAL:
            return [r for r in recs if r.sequence >= a]
        b = values[2] | values[3] << 8
        if a > b:
            return RC_INVALID_OPERAND
        return [r for r in recs if a <= r.sequence <= b]

    async def _serve(self, connection: Connection, opcode: int, operator: int,
                     operand: bytes) -> None:
        try:
            await self._procedure(connection, opcode, operator, operand)
        finally:
            self._busy = False

    async def _procedure(self, connection: Connection, opcode: int, operator: int,
                         operand: bytes) -> None:
        if opcode not in (RACP_REPORT, RACP_DELETE, RACP_REPORT_COUNT):
            await self._final(connection, encode_racp_response(opcode, RC_OP_CODE_NOT_SUPPORTED))
            return
        chosen = self._select(operator, operand)
        if isinstance(chosen, int):
            await self._final(connection, encode_racp_response(opcode, chosen))
            return
        if opcode == RACP_REPORT_COUNT:
            await self._final(connection, encode_racp_count(len(chosen)))
            return
        if opcode == RACP_DELETE:
            gone = {id(r) for r in chosen}
            self.records = [r for r in self.records if id(r) not in gone]
            await self._final(connection, encode_racp_response(
                opcode, RC_SUCCESS if chosen else RC_NO_RECORDS))
            return
        await self._report(connection, chosen)

    async def _report(self, connection: Connection, chosen: list[StoredRecord]) -> None:
        self.reports += 1
        self._abort = False
        if not chosen:
            await self._final(connection, encode_racp_response(RACP_REPORT, RC_NO_RECORDS))
            return
        if self.newest_first:
            chosen = chosen[::-1]
        drop_after, self.drop_after = self.drop_after, None
        stall_after, self.stall_after = self.stall_after, None
        grow, self.grow_during_report = self.grow_during_report, 0
        copies = 2 if self.repeat else 1
        try:
            for i, rec in enumerate(chosen):
                if self._abort:
                    return  # aborted (its response says so), or the link went
                if drop_after is not None and i == drop_after:
                    log.info("glucometer %s: dropping the link after %d records",
                             self.serial, i)
                    await connection.disconnect()
                    return
                for _ in range(copies):
                    await self.device.notify_subscriber(connection, self.measurement_char,
                                                        rec.measurement())
                if stall_after is not None and i + 1 == stall_after:
                    # silent right after the k-th measurement (its context too)
                    log.info("glucometer %s: silent after %d records", self.serial, i + 1)
                    while not self._abort:  # until aborted or the link goes
                        await asyncio.sleep(0.01)
                    return
                context = rec.context_bytes()
                if context is not None:
                    for _ in range(copies):
                        await self.device.notify_subscriber(connection, self.context_char,
                                                            context)
                self.records_sent += 1
                if i == 0 and grow:
                    for _ in range(grow):
                        self.add_record()
                await asyncio.sleep(self.pace_s)  # let an abort (or the link going) in
        except Exception as e:  # the link went while sending
            log.info("glucometer %s: report stopped: %r", self.serial, e)
            return
        if self._abort:
            return
        await self._final(connection, encode_racp_response(RACP_REPORT, RC_SUCCESS))

    async def _abort_report(self, connection: Connection, operator: int) -> None:
        if operator != OP_NULL:
            await self._respond(connection, encode_racp_response(RACP_ABORT, RC_INVALID_OPERATOR))
            return
        self._abort = True
        self.aborts += 1
        if self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)
        await self._respond(connection, encode_racp_response(RACP_ABORT, RC_SUCCESS))

    def on_link_down(self, connection: Connection) -> None:
        self._abort = True  # a report in progress ends with the link

    async def stop(self) -> None:
        self._abort = True
        await super().stop()
        for task in (self._task, self._aborter):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
