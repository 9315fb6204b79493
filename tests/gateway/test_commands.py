# mpy-portable
# Commands from the fleet (docs/protocol.md, `cmd` and `cmd/result`): parse
# errors with the contract's codes, idempotent replay that survives a reboot,
# the 32-result window, ops that fail, and apply_config through a config
# trial that is confirmed, rolled back, or cut by a restart.
import json

from gateway.clock import GatewayClock
from gateway.commands import (
    KEEP,
    MAX_COMMAND_BYTES,
    TRIAL_MS,
    CommandError,
    CommandHandler,
    ConfigTrial,
    apply_config_op,
    conclude_trial,
    parse_command,
    resume_at_boot,
)
from gateway.config import ConfigStore, redacted
from tests.portable import raises, rmtree, tmpdir

NOW = 1795939321000


def _cmd(op, cid="c-1", args=None, **extra):
    d = {"v": 1, "id": cid, "op": op, "ts": NOW - 500}
    if args is not None:
        d["args"] = args
    d.update(extra)
    return json.dumps(d).encode()


# (payload, error code, id in the error, detail starts with)
BAD = (
    (b"not json", "bad_command", None, "not JSON"),
    (b"\xff\xfe{}", "bad_command", None, "not JSON"),
    (b"[1, 2]", "bad_command", None, "not a JSON object"),
    (b'{"v":2,"id":"c-1","op":"sync_now"}', "bad_command", "c-1", "v must be 1"),
    (b'{"v":true,"id":"c-1","op":"sync_now"}', "bad_command", "c-1", "v must be 1"),
    (b'{"id":"c-1","op":"sync_now"}', "bad_command", "c-1", "v must be 1"),
    (b'{"v":1,"op":"sync_now"}', "bad_command", None, "id must be"),
    (b'{"v":1,"id":"c 1","op":"sync_now"}', "bad_command", None, "id must be"),
    (_cmd("sync_now", cid="c" * 65), "bad_command", None, "id must be"),
    (b'{"v":1,"id":"c-1"}', "bad_command", "c-1", "op must be"),
    (b'{"v":1,"id":"c-1","op":7}', "bad_command", "c-1", "op must be"),
    (_cmd("sync_now", ts="yesterday"), "bad_command", "c-1", "ts must be"),
    (_cmd("sync_now", expires=1.5), "bad_command", "c-1", "expires must be"),
    (_cmd("format_flash"), "unknown_op", "c-1", "unknown op format_flash"),
    (_cmd("reboot", expires=NOW - 3600000), "expired", "c-1", "expired 3600000 ms ago"),
    (_cmd("sync_now", args=[]), "bad_args", "c-1", "args: must be an object"),
    (_cmd("sync_now", args={"instruments": "all"}), "bad_args", "c-1", "args.instruments:"),
    (_cmd("sync_now", args={"instruments": [1]}), "bad_args", "c-1", "args.instruments[0]:"),
    (_cmd("apply_config", args={"config": {}}), "bad_args", "c-1", "args.version: required"),
    (_cmd("apply_config", args={"version": 2, "config": []}), "bad_args", "c-1",
     "args.config: must be an object"),
    (_cmd("apply_config", args={"version": 2}), "bad_args", "c-1", "args.config: required"),
    (_cmd("set_time", args={"time": 1795939321000.5}), "bad_args", "c-1", "args.time:"),
    (_cmd("set_time", args={"time": 5}), "bad_args", "c-1", "args.time:"),
    (_cmd("set_time", args={}), "bad_args", "c-1", "args.time: required"),
    (_cmd("reboot", args={"delay_ms": -1}), "bad_args", "c-1", "args.delay_ms:"),
    (_cmd("diagnostics", args={"verbose": True}), "bad_args", "c-1", "args.verbose: unknown"),
)


def test_parse_errors_carry_the_contract_codes():
    for payload, code, cid, detail in BAD:
        e = raises(CommandError, parse_command, payload, NOW)
        assert (e.code, e.id) == (code, cid), (payload[:60], e.code, e.id)
        assert e.detail.startswith(detail), (payload[:60], e.detail)


def test_an_oversized_command_is_refused_before_parsing():
    payload = _cmd("sync_now")
    assert parse_command(payload, NOW, max_bytes=len(payload))["op"] == "sync_now"
    e = raises(CommandError, parse_command, payload, NOW, max_bytes=len(payload) - 1)
    assert e.code == "bad_command" and e.detail == "over %d bytes" % (len(payload) - 1)
    assert MAX_COMMAND_BYTES == 8192


def test_parse_fills_default_args():
    c = parse_command(_cmd("reboot"), NOW)
    assert c["args"] == {"delay_ms": 2000} and c["id"] == "c-1" and c["ts"] == NOW - 500
    assert parse_command(_cmd("sync_now"), NOW)["args"] == {"instruments": None}
    assert parse_command(_cmd("diagnostics", expires=NOW), NOW)["expires"] == NOW  # not yet
    assert parse_command(_cmd("sync_now", cid="a.B_9:z-0"), NOW)["id"] == "a.B_9:z-0"


class Ops:
    """The app's side, recording what ran."""

    def __init__(self):
        self.calls = []

    def sync_now(self, args):
        self.calls.append(("sync_now", args))
        return {"started": ["C4:7C:8D:6A:00:01"], "unknown": []}

    def set_time(self, args):
        self.calls.append(("set_time", args))
        return {"correction_ms": args["time"] - NOW}

    def reboot(self, args):
        self.calls.append(("reboot", args))
        return {}

    def diagnostics(self, args):
        self.calls.append(("diagnostics", args))
        raise RuntimeError("probe failed")


def _handler(d, ops=None):
    return CommandHandler(d, ops if ops is not None else Ops(), GatewayClock(lambda: NOW))


def _result(payload):
    return json.loads(payload)


def test_a_command_runs_once_and_its_result_is_correlated():
    d = tmpdir("cmd")
    try:
        h = _handler(d)
        r = _result(h.handle(_cmd("sync_now"), NOW))
        assert r == {"v": 1, "id": "c-1", "op": "sync_now", "ok": True, "ts": NOW,
                     "result": {"started": ["C4:7C:8D:6A:00:01"], "unknown": []}}
        again = _result(h.handle(_cmd("sync_now"), NOW + 5000))
        assert again.pop("replay") is True and again == r
        assert len(h.ops.calls) == 1
        assert h.stats["received"] == 2 and h.stats["executed"] == 1 and h.stats["replays"] == 1
    finally:
        rmtree(d)


def test_replay_survives_a_reboot_and_an_expiry():
    d = tmpdir("cmd")
    try:
        h = _handler(d)
        first = _result(h.handle(_cmd("set_time", args={"time": NOW + 1000},
                                      expires=NOW + 60000), NOW))
        assert first["ok"] and first["result"] == {"correction_ms": 1000}
        h2 = _handler(d)  # a new handler on the same flash: the gateway rebooted
        again = _result(h2.handle(_cmd("set_time", args={"time": NOW + 1000},
                                       expires=NOW + 60000), NOW + 3600000))
        assert again.pop("replay") is True and again == first  # not `expired`, not run
        assert h2.ops.calls == []
    finally:
        rmtree(d)


def test_the_33rd_id_evicts_the_oldest():
    d = tmpdir("cmd")
    try:
        h = _handler(d)
        for i in range(KEEP + 1):
            h.handle(_cmd("sync_now", cid="c-%d" % i), NOW)
        assert len(h.ops.calls) == KEEP + 1
        with open(d + "/cmd_results.json", "rb") as f:
            assert len([ln for ln in f if ln.strip()]) == KEEP
        h2 = _handler(d)
        assert "replay" in _result(h2.handle(_cmd("sync_now", cid="c-1"), NOW))
        assert h2.ops.calls == []
        assert "replay" not in _result(h2.handle(_cmd("sync_now", cid="c-0"), NOW))
        assert len(h2.ops.calls) == 1  # forgotten, so run again
    finally:
        rmtree(d)


def test_refusals_are_answered_counted_and_not_stored():
    d = tmpdir("cmd")
    try:
        h = _handler(d)
        r = _result(h.handle(_cmd("reboot", expires=NOW - 1000), NOW))
        assert r == {"v": 1, "id": "c-1", "op": "reboot", "ok": False, "error": "expired",
                     "detail": "expired 1000 ms ago", "ts": NOW}
        assert h.reboot_in_ms is None and h.ops.calls == []
        r = _result(h.handle(b"\x00garbage", NOW))
        assert r["error"] == "bad_command" and "id" not in r and "op" not in r
        r = _result(h.handle(_cmd("format_flash", cid="c-2"), NOW))
        assert r["error"] == "unknown_op" and r["op"] == "format_flash"
        # a protocol op this gateway's app does not provide
        r = _result(h.handle(_cmd("apply_config", cid="c-3", args={"version": 2, "config": {}}),
                             NOW))
        assert r["error"] == "unknown_op"
        assert h.stats["rejected"] == {"expired": 1, "bad_command": 1, "unknown_op": 2}
        assert h.stats["executed"] == 0
        # nothing stored: the same id, now valid, runs
        assert _result(h.handle(_cmd("reboot"), NOW))["ok"] is True
    finally:
        rmtree(d)


def test_an_op_that_raises_fails_the_command_not_the_loop():
    d = tmpdir("cmd")
    try:
        h = _handler(d)
        r = _result(h.handle(_cmd("diagnostics"), NOW))
        assert r["ok"] is False and r["error"] == "failed"
        assert r["detail"] == "RuntimeError: probe failed"
        assert "replay" in _result(h.handle(_cmd("diagnostics"), NOW))  # stored, not rerun
        assert len(h.ops.calls) == 1 and h.stats["rejected"] == {"failed": 1}
        ops = {"sync_now": lambda args: "started",
               "set_time": lambda args: {"t": {1, 2}, "o": object()}}
        h2 = _handler(d, ops)
        assert _result(h2.handle(_cmd("sync_now", cid="c-2"), NOW))["error"] == "failed"
        r = _result(h2.handle(_cmd("set_time", cid="c-3", args={"time": NOW}), NOW))
        assert r["error"] == "failed" and r["detail"] == "op result is not JSON"
        assert _result(h2.handle(_cmd("sync_now", cid="c-2"), NOW))["replay"] is True
    finally:
        rmtree(d)


def test_reboot_is_left_to_the_app_and_never_repeated_by_a_replay():
    d = tmpdir("cmd")
    try:
        h = _handler(d)
        r = _result(h.handle(_cmd("reboot", args={"delay_ms": 500}), NOW))
        assert r["result"] == {"in_ms": 500} and h.reboot_in_ms == 500
        # the gateway reboots; the server re-sends the same command
        h2 = _handler(d)
        assert _result(h2.handle(_cmd("reboot", args={"delay_ms": 500}), NOW))["replay"]
        assert h2.reboot_in_ms is None and h2.ops.calls == []
        h2.handle(_cmd("reboot", cid="c-2"), NOW)
        assert h2.reboot_in_ms == 2000
        h2.handle(_cmd("sync_now", cid="c-3"), NOW)
        assert h2.reboot_in_ms is None
    finally:
        rmtree(d)


class PowerCut(BaseException):
    """Not an Exception: the handler cannot catch it, as it cannot catch a power cut."""


def test_an_op_cut_by_a_restart_is_reported_interrupted_not_run_twice():
    d = tmpdir("cmd")
    try:
        def cut(args):
            raise PowerCut()

        h = _handler(d, {"sync_now": cut})
        try:
            h.handle(_cmd("sync_now"), NOW)
            raise AssertionError("no power cut")
        except PowerCut:
            pass
        ops = Ops()
        h2 = _handler(d, ops)
        assert h2.stats["interrupted"] == 1
        r = _result(h2.handle(_cmd("sync_now"), NOW))
        assert r["replay"] is True and r["error"] == "failed" and "interrupted" in r["detail"]
        assert ops.calls == []
    finally:
        rmtree(d)


def test_a_big_result_is_published_whole_and_replayed_truncated():
    d = tmpdir("cmd")
    try:
        big = {"counters": {"c%d" % i: i for i in range(60)}}
        h = _handler(d, {"diagnostics": lambda args: big})
        assert _result(h.handle(_cmd("diagnostics"), NOW))["result"] == big
        r = _result(h.handle(_cmd("diagnostics"), NOW))
        assert r["replay"] is True and r["ok"] is True and r["result"] == {"truncated": True}
    finally:
        rmtree(d)


def test_a_corrupt_results_line_is_skipped_and_counted():
    d = tmpdir("cmd")
    try:
        h = _handler(d)
        h.handle(_cmd("sync_now", cid="c-1"), NOW)
        h.handle(_cmd("sync_now", cid="c-2"), NOW)
        with open(d + "/cmd_results.json", "rb") as f:
            lines = f.read().split(b"\n")
        with open(d + "/cmd_results.json", "wb") as f:
            f.write(lines[0][:20] + b"\n" + lines[1] + b"\n")
        h2 = _handler(d)
        assert h2.stats["corrupt_results"] == 1
        assert "replay" in _result(h2.handle(_cmd("sync_now", cid="c-2"), NOW))
    finally:
        rmtree(d)


# --- apply_config through a trial ----------------------------------------------
BASE = {"version": 1, "unit": "U042", "gateway": "gw-u042",
        "uplink": {"broker_host": "mqtt.example.org", "password": "s3cret!"},
        "network": {"mode": "host"}}


class App:
    """The app's apply_config op as docs/gateway.md describes it."""

    def __init__(self, d):
        self.store = ConfigStore(d)
        self.store.load()
        self.trial = ConfigTrial(0)  # replaced by apply_config

    def apply_config(self, args):
        apply_config_op(self.store, args)
        self.trial = ConfigTrial(NOW + TRIAL_MS)
        return "pending"

    def sync_now(self, args):
        return {"started": [], "unknown": []}

    def diagnostics(self, args):
        return {"config": redacted(self.store.cfg), "version": self.store.cfg["version"]}


def _provisioned():
    d = tmpdir("cmd")
    ConfigStore(d).save(BASE)
    return d


def _apply(cid="c-1", version=2, config=None):
    return _cmd("apply_config", cid=cid, args={"version": version,
                                               "config": config or {"uplink": {"window": 8}}})


def test_apply_config_confirmed_once_the_uplink_is_up():
    d = _provisioned()
    try:
        app = App(d)
        h = _handler(d, app)
        assert h.handle(_apply(), NOW) is None  # the result comes with the trial's outcome
        assert app.store.cfg["uplink"]["window"] == 8 and app.store.trial is not None
        assert h.handle(_apply(), NOW) is None  # re-delivered while pending: nothing yet
        busy = _result(h.handle(_apply("c-2", 3), NOW))
        assert busy["error"] == "busy" and "c-1" in busy["detail"]
        assert _result(h.handle(_cmd("sync_now", cid="c-3"), NOW))["ok"] is True
        assert app.trial.poll(NOW + 1000, False) is None
        outcome = app.trial.poll(NOW + 2000, True)
        assert outcome == "confirmed"
        r = _result(conclude_trial(h, app.store, outcome))
        assert r["ok"] is True and r["id"] == "c-1" and r["op"] == "apply_config"
        assert r["result"] == {"version": 2, "previous": 1}
        again = _result(h.handle(_apply(), NOW))
        assert again.pop("replay") is True and again == r
        boot = ConfigStore(d)
        assert boot.load()["uplink"]["window"] == 8 and boot.rolled_back_at_boot is None
        # the busy id was not stored: sent again now, it runs
        assert h.handle(_apply("c-2", 3), NOW) is None and app.store.cfg["version"] == 3
    finally:
        rmtree(d)


def test_apply_config_rolled_back_when_the_uplink_stays_down():
    d = _provisioned()
    try:
        app = App(d)
        h = _handler(d, app)
        h.handle(_apply(config={"uplink": {"broker_host": "wrong.example.org"}}), NOW)
        assert app.trial.poll(NOW + TRIAL_MS - 1, False) is None
        outcome = app.trial.poll(NOW + TRIAL_MS, False)
        assert outcome == "rolled_back" and app.trial.poll(NOW + TRIAL_MS + 1, True) is None
        r = _result(conclude_trial(h, app.store, outcome))
        assert r["ok"] is False and r["error"] == "rolled_back"
        assert app.store.cfg["version"] == 1
        assert app.store.cfg["uplink"]["broker_host"] == "mqtt.example.org"
        assert ConfigStore(d).load()["version"] == 1
        assert _result(h.handle(_apply(), NOW))["error"] == "rolled_back"  # replayed
    finally:
        rmtree(d)


def test_bad_config_is_refused_with_the_path_and_nothing_changes():
    d = _provisioned()
    try:
        app = App(d)
        h = _handler(d, app)
        cases = (
            (_apply("c-1", 2, {"uplink": {"heartbeat_s": 5}}), "args.config.uplink.heartbeat_s"),
            (_apply("c-2", 2, {"uplnk": {}}), "args.config.uplnk"),
            (_apply("c-3", 2, {"network": {"mode": "wifi", "wifi_password": "hunter2!"}}),
             "args.config.network.wifi_ssid"),
            (_apply("c-4", 1), "args.version"),
            (_apply("c-5", 2, {"version": 2}), "args.config.version"),
        )
        for payload, path in cases:
            r = _result(h.handle(payload, NOW))
            assert r["error"] == "bad_args" and r["detail"].startswith(path + ":"), r
            assert "hunter2" not in r["detail"]
        assert app.store.trial is None and app.store.cfg["version"] == 1
        assert h.pending_apply() is None
    finally:
        rmtree(d)


def test_a_restart_during_the_trial_rolls_back_and_answers_at_boot():
    d = _provisioned()
    try:
        app = App(d)
        h = _handler(d, app)
        h.handle(_apply(), NOW)
        # power cut: the new config never got confirmed
        app2 = App(d)
        assert app2.store.cfg["version"] == 1
        assert app2.store.rolled_back_at_boot == {"previous": 1, "version": 2}
        h2 = _handler(d, app2)
        assert h2.pending_apply() == ("c-1", 2)
        r = _result(resume_at_boot(h2, app2.store))
        assert r["ok"] is False and r["error"] == "rolled_back" and r["id"] == "c-1"
        assert resume_at_boot(h2, app2.store) is None
        assert _result(h2.handle(_apply(), NOW))["error"] == "rolled_back"
    finally:
        rmtree(d)


def test_a_restart_right_after_confirmation_answers_ok_at_boot():
    d = _provisioned()
    try:
        app = App(d)
        h = _handler(d, app)
        h.handle(_apply(), NOW)
        app.store.confirm()  # power cut before the command was finished
        app2 = App(d)
        h2 = _handler(d, app2)
        r = _result(resume_at_boot(h2, app2.store))
        assert r["ok"] is True and r["result"] == {"version": 2, "previous": 1}
        assert app2.store.cfg["uplink"]["window"] == 8
    finally:
        rmtree(d)


def test_diagnostics_never_carry_secrets():
    d = _provisioned()
    try:
        app = App(d)
        h = _handler(d, app)
        payload = h.handle(_cmd("diagnostics"), NOW)
        assert b"s3cret" not in payload and _result(payload)["result"]["version"] == 1
    finally:
        rmtree(d)


def test_config_trial_needs_the_uplink_to_settle():
    t = ConfigTrial(10000, settle_ms=3000)
    assert t.poll(0, True) is None
    assert t.poll(2000, False) is None  # dropped: the settle time starts again
    assert t.poll(4000, True) is None
    assert t.poll(6999, True) is None
    assert t.poll(7000, True) == "confirmed" and t.outcome == "confirmed"
    assert t.poll(7001, True) is None  # answered once
    late = ConfigTrial(10000, settle_ms=3000)
    late.poll(9000, True)
    assert late.poll(10000, True) == "rolled_back"
