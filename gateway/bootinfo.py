# The gateway's boot record: how many times it has started, why it started
# this time, how many of those starts were unexpected, since when it has run
# without a crash, and the last crash. Reported in `birth` (boot count and
# reset reason) and in every heartbeat (unexpected resets, crash-free time).
#
# Kept in `boot.json` in the gateway's state directory, replaced atomically
# (write then rename), so a power cut leaves either the old or the new record.
#
# Why it started:
# - on a board, the firmware maps `machine.reset_cause()` (and its own crash
#   record) to a reason and passes it in: power_on, hard_reset, watchdog,
#   deepsleep, soft_reset, brownout, crash;
# - on a host (CPython) none is given: the record says whether the previous
#   run ended cleanly (`mark_clean()` on an orderly stop or a commanded
#   reboot), so a start after a kill or a power cut is `unexpected_exit`.
# A first boot on a fresh filesystem is `first_boot`.
import json

from gateway.fsutil import atomic_write

UNEXPECTED = ("watchdog", "brownout", "crash", "unexpected_exit")
_FILE = "boot.json"


def _load(path):
    try:
        with open(path) as f:
            d = json.load(f)
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def _atomic_write(path, obj):
    atomic_write(path, json.dumps(obj))


class BootInfo:
    def __init__(self, root, now_ms, reset_cause=None):
        self.path = root + "/" + _FILE
        prev = _load(self.path)
        if prev is None:
            prev = {"boots": 0, "unexpected": 0, "clean": True, "crash_free_since": now_ms,
                    "last_crash": None}
            reason = "first_boot"
        elif reset_cause is not None:
            reason = reset_cause
        elif prev.get("crash_pending"):
            reason = "crash"
        else:
            reason = "clean_restart" if prev.get("clean") else "unexpected_exit"
        if prev.get("crash_pending") and reset_cause not in UNEXPECTED:
            # The firmware saw a crash and reset itself: that start is a crash,
            # whatever the reset register says.
            reason = "crash"
        self.boots = int(prev.get("boots", 0)) + 1
        self.unexpected = int(prev.get("unexpected", 0))
        self.crash_free_since = prev.get("crash_free_since", now_ms)
        self.last_crash = prev.get("last_crash")
        self.reason = reason
        if reason in UNEXPECTED:
            self.unexpected += 1
            self.crash_free_since = now_ms
        self._save(clean=False)

    def _save(self, clean, crash_pending=False):
        _atomic_write(self.path, {"boots": self.boots, "unexpected": self.unexpected,
                                  "clean": clean, "crash_free_since": self.crash_free_since,
                                  "last_crash": self.last_crash,
                                  "crash_pending": crash_pending})

    def mark_clean(self):
        """An orderly stop (shutdown, commanded reboot): the next start is expected."""
        self._save(clean=True)

    def record_crash(self, now_ms, where, detail):
        """The top-level handler caught an exception: keep what and where, so
        the next heartbeat and the technician's `doctor` can show it. `detail`
        must never hold medical values (exception type and message of our code)."""
        self.last_crash = {"at": now_ms, "where": str(where)[:48], "detail": str(detail)[:160]}
        self._save(clean=False, crash_pending=True)

    def crash_free_s(self, now_ms):
        """Seconds of operation since the last unexpected reset (or first boot)."""
        return max(0, (now_ms - self.crash_free_since) // 1000)
