# mpy-portable
# The OTA state machine on the gateway (firmware/board/ota.py): a new version
# is staged beside the old one, switched atomically, confirmed when healthy,
# and rolled back by itself after failed boots or a missed deadline. A power
# cut at every filesystem step of an update leaves a gateway that boots a
# complete, verified app.
from firmware.board.ota import Fs, Ota, Trial, UpdateStateError, atomic_write, join, select_slot
from tests.firmware.otakit import (
    T0,
    TRUSTED,
    CutFs,
    PowerCut,
    file_exists,
    installed,
    signed,
    state_file,
    update,
    version_of,
    whole_update,
    write_file,
)
from tests.portable import raises, rmtree, tmpdir


def test_first_boot_after_flash_selects_slot_a_and_writes_state():
    root, _ = installed()
    try:
        assert select_slot(root).endswith("/app_a")
        st = state_file(root)
        assert st["active"] == "a" and st["pending"] is None
    finally:
        rmtree(root)


def test_nothing_installed_boots_the_base_image():
    root = tmpdir("ota")
    try:
        assert select_slot(root) is None
    finally:
        rmtree(root)


def test_update_switch_boot_confirm():
    root, ota = installed()
    try:
        select_slot(root)
        assert update(ota, "1.1.0") == "b"
        assert ota.state()["pending"] == "b"
        assert not ota.confirm_healthy(ota.slot_path("a"))  # old app before the reset
        assert not ota.confirm_healthy(ota.slot_path("b"))  # not booted yet
        path = select_slot(root, T0 + 1000)
        assert path.endswith("/app_b") and version_of(ota, path) == "1.1.0"
        assert ota.state()["tries"] == 1
        assert raises(UpdateStateError, ota.stage, "x", TRUSTED).code == "busy"
        assert ota.confirm_healthy(path)
        st = ota.state()
        assert st["active"] == "b" and st["pending"] is None
        assert st["last"] == {"event": "confirmed", "version": "1.1.0"}
        for _ in range(5):
            assert select_slot(root, T0 + 10 ** 9).endswith("/app_b")
        # The next update goes into slot a; 1.1.0 stays to fall back on.
        assert update(ota, "1.2.0") == "a"
        assert ota.status()["pending_version"] == "1.2.0"
    finally:
        rmtree(root)


def test_rollback_after_max_failed_boots():
    root, ota = installed()
    try:
        update(ota, "1.1.0")
        assert select_slot(root).endswith("/app_b")  # try 1: crashes
        assert select_slot(root).endswith("/app_b")  # try 2: crashes
        assert select_slot(root).endswith("/app_a")  # back by itself
        st = ota.state()
        assert st["active"] == "a" and st["pending"] is None
        assert st["last"] == {"event": "rolled_back", "reason": "tries", "version": "1.1.0"}
        assert not ota.confirm_healthy(ota.slot_path("b"))
        assert select_slot(root).endswith("/app_a")
        assert ota.switch(T0) == "b"  # the server may try the staged version again
    finally:
        rmtree(root)


def test_rollback_at_boot_past_the_deadline():
    root, ota = installed()
    try:
        update(ota, "1.1.0", now=T0)
        assert select_slot(root, T0 + 1000).endswith("/app_b")
        assert select_slot(root, T0 + ota.deadline_ms).endswith("/app_a")
        assert ota.state()["last"]["reason"] == "deadline"
    finally:
        rmtree(root)


def test_running_version_rolls_back_when_not_healthy_in_time():
    root, ota = installed()
    try:
        update(ota, "1.1.0", now=T0)
        path = select_slot(root, T0 + 1000)
        assert not ota.check_deadline(path, T0 + 2000, uptime_ms=1000)
        assert not ota.check_deadline(ota.slot_path("a"), T0 + 10 ** 9, uptime_ms=10 ** 9)
        assert ota.check_deadline(path, None, uptime_ms=ota.window_ms)
        assert ota.state()["last"]["reason"] == "window"
        assert select_slot(root).endswith("/app_a")
        # Wall-clock deadline while running (clock synced by the uplink).
        ota.switch(T0)
        path = select_slot(root, T0 + 1000)
        assert ota.check_deadline(path, T0 + ota.deadline_ms, uptime_ms=5000)
        assert ota.state()["last"]["reason"] == "deadline"
    finally:
        rmtree(root)


def test_trial_confirms_after_healthy_hold_and_resets_the_hold_on_a_drop():
    root, ota = installed()
    try:
        update(ota, "1.1.0")
        path = select_slot(root)
        trial = Trial(ota, path, hold_ms=180000)
        assert trial.tick(True, 10000) is None
        assert trial.tick(False, 100000) is None  # uplink dropped: hold starts over
        assert trial.tick(True, 120000) is None
        assert trial.tick(True, 290000) is None
        assert trial.tick(True, 300000) == "confirmed"
        assert trial.tick(True, 400000) is None
        assert ota.state()["active"] == "b"
        assert Trial(ota, ota.slot_path("b")).tick(True, 10 ** 9) is None  # not on trial
    finally:
        rmtree(root)


def test_trial_rolls_back_a_version_that_never_gets_healthy():
    root, ota = installed()
    try:
        update(ota, "1.1.0")
        trial = Trial(ota, select_slot(root))
        assert trial.tick(False, 60000) is None
        assert trial.tick(False, ota.window_ms) == "rollback"
        assert select_slot(root).endswith("/app_a")
    finally:
        rmtree(root)


def test_corrupt_state_file_falls_back_to_a_complete_slot():
    root, ota = installed()
    try:
        select_slot(root)
        with open(join(root, "ota_state.json"), "w") as f:
            f.write('{"active": "a", "tries": "x"')
        assert select_slot(root).endswith("/app_a")
        atomic_write(Fs(), join(root, "ota_state.json"), b'{"active":"b","pending":null}')
        assert select_slot(root).endswith("/app_a")  # b is not complete: recovered
        assert ota.state()["active"] == "a"
    finally:
        rmtree(root)


def test_power_cut_at_every_step_of_an_update_leaves_a_bootable_gateway():
    k = 0
    cuts = 0
    while True:
        k += 1
        root, _ = installed("1.0.0")
        try:
            # Slot b holds an older build, as after earlier updates.
            Ota(root).stage(write_file(root, signed("0.9.0")), TRUSTED, allow_downgrade=True)
            atomic_write(Fs(), join(root, "ota_state.json"),
                         b'{"active":"a","pending":null,"tries":0}')
            fs = CutFs(k)
            try:
                whole_update(Ota(root, fs), "1.1.0")
            except PowerCut:
                cuts += 1
            else:
                break  # k is past the last step: every step has been cut
            # Reboot: the chosen slot is complete and verified.
            ota = Ota(root)
            path = select_slot(root, T0 + 2000)
            assert path is not None, k
            booted = version_of(ota, path)
            assert booted in ("1.0.0", "1.1.0"), (k, booted)
            # The update then completes: resumed or redone.
            if booted == "1.1.0":
                ota.confirm_healthy(path)
            else:
                whole_update(ota, "1.1.0")
            path = select_slot(root, T0 + 3000)
            assert version_of(ota, path) == "1.1.0", k
            st = ota.state()
            assert st["pending"] is None and path.endswith("app_" + st["active"]), k
            assert not file_exists(join(root, "ota_incoming.bin"))
        finally:
            rmtree(root)
    assert cuts >= 50, cuts  # receive, stage, switch, boot and confirm all cut


def test_power_cut_while_booting_a_pending_version_counts_at_most_one_try():
    root, ota = installed()
    try:
        update(ota, "1.1.0")
        for k in range(1, 4):
            try:
                select_slot(root, fs=CutFs(k))
            except PowerCut:
                pass
            assert ota.state()["tries"] <= 1 and ota.state()["pending"] == "b"
    finally:
        rmtree(root)
