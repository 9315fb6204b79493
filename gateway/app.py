# The gateway core: instrument bytes in, journal records out.
#
# An instrument session (BLE indication, serial reply) hands the raw value to
# `on_value`; the drivers decode it, the reading is normalized, stamped with
# the gateway's receive time beside the instrument's own time, written to the
# journal, and the uplink is woken. Serial sessions (gateway/serial_session.py)
# decode and normalize themselves and hand the reading to `on_reading`, which
# shares the same stamping and journaling. Decoding errors are counted per
# instrument and shown on the indicator; they never stop the loop, and the
# readings beside them go on. Adapters (radio, UART, MQTT) are passed in.
from device_drivers import reading
from gateway import protocol
from gateway.journal import KIND_READING, URGENT, JournalFull


class Gateway:
    def __init__(self, journal, uplink, clock, indicator):
        self.journal = journal
        self.uplink = uplink
        self.clock = clock
        self.indicator = indicator
        self.errors = {}  # (instrument addr, reason) -> count
        self.alarms = {}  # name -> True while raised (shared with the health sampler)
        self.readings = 0

    def can_accept(self, nbytes=1024):
        """Whether sessions may download more from instruments now: false when
        the journal could not hold another reading (their own memory keeps
        the records, and their download cursor does not advance)."""
        ok = self.journal.has_room(nbytes)
        if not ok:
            self.alarms["journal_full"] = True
        return ok

    def count_error(self, addr, reason):
        """One more `reason` for instrument `addr` (the heartbeat's per-
        instrument `errors`, diagnostics): every session counts here."""
        key = (addr, reason)
        self.errors[key] = self.errors.get(key, 0) + 1

    def on_value(self, inst, uuid16, data, iseq=None, extra_quirks=None):
        """One characteristic value from an instrument. Returns the journal
        sequence number of the reading, or None when nothing was journaled.

        The instrument's known deviations from the spec (device_drivers.quirks,
        by its Device Information, plus `extra_quirks` from its pairing
        configuration) are corrected around decoding and flagged."""
        rtime = self.clock.now_ms()
        if uuid16 not in reading.MEASUREMENTS:
            self.count_error(inst.get("addr"), "unsupported_characteristic")
            self.indicator.error(inst.get("addr"), "unsupported characteristic 0x%04X" % uuid16)
            return None
        # Loaded on the first BLE value: a gateway with only serial
        # instruments never holds the GATT decoders in its heap.
        from device_drivers import gatt, quirks

        try:
            q = quirks.quirks_for(inst.get("mfr"), inst.get("model"), extra_quirks)
            decoded = gatt.decode(uuid16, quirks.fix_bytes(uuid16, data, q))
            r = reading.normalize(uuid16, quirks.fix_values(uuid16, decoded, q))
            r["flags"] += quirks.flags_of(uuid16, q)
        except ValueError as e:  # a DecodeError, or a bad quirk in the pairing config
            self.count_error(inst.get("addr"), "decode_error")
            self.indicator.error(inst.get("addr"), str(e))
            return None
        return self._journal_reading(inst, r, rtime, iseq)

    def on_reading(self, inst, r, iseq=None):
        """One reading a session has already normalized (serial instruments:
        device_drivers.reading.from_meter_glucose / from_astm_result, an ECG
        strip from device_drivers.ecg.strip_reading), stamped and journaled as
        on_value does. Returns the journal sequence number, or None when
        nothing was journaled (a reading the wire cannot carry: counted as
        `bad_reading`; the journal full: `journal_full`)."""
        rtime = self.clock.now_ms()
        try:
            return self._journal_reading(inst, r, rtime, iseq)
        except ValueError as e:  # e.g. an ECG strip over the protocol's sample limit
            self.count_error(inst.get("addr"), "bad_reading")
            self.indicator.error(inst.get("addr"), str(e))
            return None

    def _journal_reading(self, inst, r, rtime, iseq):
        # Stamp, mark urgent, journal, wake the uplink: shared by on_value and
        # on_reading.
        flags = None if self.clock.synced else ["gateway_clock_unsynced"]
        if iseq is None:
            iseq = r.get("iseq")
        kind = KIND_READING
        if reading.is_urgent(r):
            kind |= URGENT
            r["flags"].append("urgent")
        payload = protocol.reading_payload(r, inst, rtime, iseq=iseq, flags=flags)
        try:
            seq = self.journal.append(payload, kind)
        except JournalFull as e:
            # Never dropped silently: the nurse sees the error, the fleet sees
            # the alarm, and instrument sessions stop downloading (can_accept)
            # so the instruments keep their records in their own memory.
            self.count_error(inst.get("addr"), "journal_full")
            self.alarms["journal_full"] = True
            self.indicator.error("journal", str(e))
            return None
        self.readings += 1
        self.alarms["journal_full"] = False
        self.indicator.captured(seq)
        if not self.uplink.connected:
            self.indicator.buffered(seq)
        self.uplink.notify()
        return seq
