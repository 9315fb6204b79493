# Safe mode: the gateway's answer to a crash loop. A start that follows a
# crash (the top-level handler wrote a crash record and reset) or a watchdog
# reset counts as a failed boot; a boot becomes good once the gateway has
# been healthy (uplink connected and a heartbeat sent) for `good_boot_ms`
# (3 minutes on a board), which clears the count. After SAFE_AFTER (3)
# failed boots in a row the next boot is in SAFE MODE: ummc_main runs only
# the uplink (journal drain, heartbeats, commands) and the update path, no
# instrument session, so a fleet can still see the gateway, read its crash
# record and send it a fixed version. Safe mode reboots into normal mode
# after `safe_hold_ms` of health (a transient fault gets another chance);
# a crash there starts the count again.
#
# A power cut or a reset by hand is neither good nor failed: it leaves the
# count as it was (a unit switched off in the middle of its first minutes
# must not end in safe mode). On the Unix port a killed process reads as
# `unexpected_exit`, the same as a power cut.
#
# Kept in `bootguard.json` in the state directory, replaced atomically.
# Portable (MicroPython and CPython).
import json

from gateway.fsutil import atomic_write

FILE = "bootguard.json"
FAILED = ("crash", "watchdog")  # BootInfo reasons of a failed boot
SAFE_AFTER = 3


def _load(path):
    try:
        with open(path) as f:
            d = json.loads(f.read())
        n = d.get("failed", 0) if isinstance(d, dict) else 0
        return n if isinstance(n, int) and n >= 0 else 0
    except (OSError, ValueError):
        return 0


class BootGuard:
    def __init__(self, state_dir, reason, safe_after=SAFE_AFTER):
        self.path = state_dir + "/" + FILE
        self.failed = _load(self.path)
        if reason in FAILED:
            self.failed += 1
            self._save()
        self.safe = self.failed >= safe_after
        self.good = False

    def _save(self):
        atomic_write(self.path, json.dumps({"failed": self.failed}))

    def mark_good(self):
        """This boot proved healthy: the failed-boot count starts again."""
        if self.good:
            return
        self.good = True
        if self.failed:
            self.failed = 0
            self._save()


class Health:
    """Tracks how long the uplink has been healthy in a row (connected, and at
    least one heartbeat sent since it connected)."""

    def __init__(self):
        self.since = None
        self._beats = 0

    def tick(self, uplink, now_ms):
        """Milliseconds healthy in a row (0 when not)."""
        beats = uplink.stats["heartbeats"]
        if not uplink.connected:
            self.since = None
            self._beats = beats
            return 0
        if self.since is None:
            if beats == self._beats:
                return 0  # connected, no heartbeat yet on this link
            self.since = now_ms
        return now_ms - self.since
