# Health heartbeat: what the gateway tells the fleet about itself every
# `interval` seconds (docs/protocol.md, `health`). The sampler is given the
# parts it reads (journal, uplink stats, clock) and optional probes for what
# only a board knows (supply voltage, link type and signal); it never touches
# hardware itself. Heap figures come from `gc` where the runtime has them
# (MicroPython), and the low-water mark is tracked across samples.
import gc
import json
import os

from gateway import protocol
from gateway.journal import KIND_HEALTH, JournalFull


def _heap_free():
    """Free heap after a collection, on runtimes that report it (MicroPython).
    CPython has no such figure, and a full collection there costs ~10 ms."""
    fn = getattr(gc, "mem_free", None)
    if fn is None:
        return None
    gc.collect()
    return fn()


def _flash_free(path):
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):
        return None
    return st[0] * st[3]  # f_bsize * f_bavail


# health fields journaled while offline, with their UCUM units
_RECORDED = (("uptime", "s"), ("heap_free", "By"), ("heap_min", "By"), ("flash_free", "By"),
             ("journal_depth", "1"), ("journal_bytes", "By"), ("journal_oldest_age_s", "s"),
             ("reconnects", "1"),
             ("rssi", "dB[mW]"), ("supply_mv", "mV"))


class HealthSampler:
    def __init__(self, journal, uplink, clock, boot_count=1, resets_unexpected=0,
                 link_probe=None, supply_probe=None, alarms=None, bootinfo=None,
                 errors=None):
        self.journal = journal
        self.uplink = uplink
        self.clock = clock
        self.bootinfo = bootinfo  # gateway.bootinfo.BootInfo, when the runtime keeps one
        self.boot_count = bootinfo.boots if bootinfo else boot_count
        self.resets_unexpected = bootinfo.unexpected if bootinfo else resets_unexpected
        self.link_probe = link_probe  # () -> (link type, signal dBm or None)
        self.supply_probe = supply_probe  # () -> millivolts or None
        self.started_ms = clock.now_ms()
        self.heap_min = None
        self.last_error = None
        self.alarms = alarms if alarms is not None else {}  # name -> True while raised
        self.journaled = 0  # health samples kept in the journal while offline
        self.shed = 0  # ... and dropped because the journal's health share was full
        self.instruments = {}  # addr -> {"last_seen": ms, "battery": %}
        # (instrument addr, reason) -> count: the gateway core's error counters
        # (Gateway.errors), reported per instrument so the fleet can alert on
        # repeated instrument errors
        self.errors = errors if errors is not None else {}

    def instrument_seen(self, addr, battery=None, drift_ms=None, identity=None,
                        clock_set=None, **_ignored):
        """An instrument session reached the instrument. `drift_ms` is its
        clock minus the gateway's, measured at this sync; `clock_set` whether
        the session then set the instrument's clock; `identity` its Device
        Information (serial, model): instrument sessions call this as their
        `on_seen` hook."""
        entry = self.instruments.setdefault(addr, {})
        entry["last_seen"] = self.clock.now_ms()
        if battery is not None:
            entry["battery"] = battery
        if drift_ms is not None:
            entry["drift_ms"] = drift_ms
        if clock_set is not None:
            entry["clock_set"] = bool(clock_set)
        if identity:
            for key in ("serial", "model"):
                if identity.get(key):
                    entry[key] = identity[key]

    def _oldest_unacked_age_s(self, now):
        """Age of the oldest record still waiting for the server's ack."""
        j = self.journal
        if not j.depth:
            return 0
        recs = j.read(j.acked, 1, 1 << 16)
        if not recs:
            return None
        try:
            rtime = json.loads(recs[0][2]).get("rtime")
        except (ValueError, AttributeError):
            return None
        if not isinstance(rtime, int):
            return None
        return max(0, (now - rtime) // 1000)

    def sample(self):
        """The heartbeat as a dict (every field but v and ts may be None)."""
        now = self.clock.now_ms()
        free = _heap_free()
        if free is not None and (self.heap_min is None or free < self.heap_min):
            self.heap_min = free
        link, rssi = self.link_probe() if self.link_probe else (None, None)
        j = self.journal
        return {
            "v": protocol.VERSION,
            "ts": now,
            "uptime": (now - self.started_ms) // 1000,
            "boots": self.boot_count,
            "resets_unexpected": self.resets_unexpected,
            "crash_free_s": self.bootinfo.crash_free_s(now) if self.bootinfo else None,
            "heap_free": free,
            "heap_min": self.heap_min,
            "flash_free": _flash_free(j.root),
            "journal_depth": j.depth,
            "journal_bytes": j.bytes_used,
            "journal_oldest_age_s": self._oldest_unacked_age_s(now),
            "journal_corrupt_records": j.recovery["corrupt_records"],
            "link": link,
            "rssi": rssi,
            "reconnects": self.uplink.stats["reconnects"],
            "supply_mv": self.supply_probe() if self.supply_probe else None,
            "last_error": self.last_error,
            "health_shed": self.shed,
            "alarms": sorted(k for k, v in self.alarms.items() if v),
            "instruments": self._instruments(),
        }

    def _instruments(self):
        # a list in first-seen order (MicroPython's dicts keep no order)
        out = []  # type: list
        index = {}  # type: dict
        for a, v in self.instruments.items():
            index[a] = len(out)
            out.append(dict(addr=a, **v))
        for (a, reason), n in sorted(self.errors.items(), key=lambda kv: str(kv[0])):
            if a is None:
                continue
            i = index.get(a)
            if i is None:
                i = index[a] = len(out)
                out.append({"addr": a})
            out[i].setdefault("errors", {})[reason] = n
        return out

    def payload(self):
        return json.dumps(self.sample(), separators=(",", ":")).encode()

    def record_payload(self):
        """A health sample as a journal record (kind `health`), kept while the
        link is down so the fleet later sees how the gateway fared offline."""
        s = self.sample()
        values = [[name, s[name], unit] for name, unit in _RECORDED if s.get(name) is not None]
        return json.dumps({"kind": "health", "rtime": s["ts"], "values": values,
                           "flags": list(s["alarms"])}, separators=(",", ":")).encode()

    def journal_sample(self):
        """Keep a health sample in the journal (the link is down). Past the
        health share of the journal it is shed, never a clinical reading."""
        try:
            self.journal.append(self.record_payload(), KIND_HEALTH)
            self.journaled += 1
        except JournalFull:
            self.shed += 1
