# mpy-portable
# The boot record behind `birth.reset`, `boots`, `resets_unexpected` and
# `crash_free_s` (gateway/bootinfo.py).
from gateway.bootinfo import BootInfo
from tests.portable import rmtree, tmpdir

H = 3600000


def test_first_boot_then_clean_restart_then_unexpected_exit():
    d = tmpdir("b")
    try:
        b = BootInfo(d, now_ms=1000)
        assert (b.boots, b.reason, b.unexpected) == (1, "first_boot", 0)
        b.mark_clean()
        b = BootInfo(d, now_ms=2 * H)
        assert (b.boots, b.reason, b.unexpected) == (2, "clean_restart", 0)
        assert b.crash_free_s(2 * H) == (2 * H - 1000) // 1000
        # killed without mark_clean: the next start is unexpected
        b = BootInfo(d, now_ms=5 * H)
        assert (b.boots, b.reason, b.unexpected) == (3, "unexpected_exit", 1)
        assert b.crash_free_s(6 * H) == 3600
    finally:
        rmtree(d)


def test_board_reset_cause_and_crash_record():
    d = tmpdir("b")
    try:
        BootInfo(d, now_ms=0, reset_cause="power_on")
        b = BootInfo(d, now_ms=H, reset_cause="power_on")  # switched off at night: expected
        assert (b.reason, b.unexpected) == ("power_on", 0)
        b = BootInfo(d, now_ms=2 * H, reset_cause="watchdog")
        assert (b.reason, b.unexpected) == ("watchdog", 1)
        b.record_crash(3 * H, "uplink", "MemoryError: memory allocation failed")
        # the firmware resets itself after a crash (a soft reset): still a crash
        b = BootInfo(d, now_ms=3 * H + 5000, reset_cause="soft_reset")
        assert (b.boots, b.reason, b.unexpected) == (4, "crash", 2)
        assert b.last_crash["where"] == "uplink" and b.last_crash["at"] == 3 * H
        b.mark_clean()
        b = BootInfo(d, now_ms=4 * H)
        assert b.reason == "clean_restart" and b.last_crash["where"] == "uplink"
    finally:
        rmtree(d)


def test_a_torn_or_corrupt_record_counts_as_a_first_boot_not_a_crash_loop():
    d = tmpdir("b")
    try:
        with open(d + "/boot.json", "w") as f:
            f.write('{"boots": 7, "unexp')
        b = BootInfo(d, now_ms=0)
        assert b.reason == "first_boot" and b.boots == 1
    finally:
        rmtree(d)
