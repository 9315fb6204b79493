# mpy-portable
# The health heartbeat a gateway sends (docs/protocol.md, `health`).
import json

from gateway.clock import GatewayClock
from gateway.health import HealthSampler
from gateway.journal import Journal
from tests.portable import rmtree, tmpdir


class _Uplink:
    stats = {"reconnects": 3}


def test_heartbeat_reports_journal_link_heap_and_instruments():
    d = tmpdir("h")
    try:
        now = [1000000]
        clock = GatewayClock(source=lambda: now[0], synced=True)
        j = Journal(d)
        j.append(b'{"a":1}')
        s = HealthSampler(j, _Uplink(), clock, boot_count=4, resets_unexpected=1,
                          link_probe=lambda: ("cellular", -93), supply_probe=lambda: 4950)
        now[0] += 61000
        s.instrument_seen("C4:7C:8D:6A:11:02", battery=80)
        h = json.loads(s.payload())
        assert h["v"] == 1 and h["ts"] == 1061000 and h["uptime"] == 61
        assert h["boots"] == 4 and h["resets_unexpected"] == 1 and h["reconnects"] == 3
        assert h["journal_depth"] == 1 and h["journal_bytes"] > 0
        assert h["link"] == "cellular" and h["rssi"] == -93 and h["supply_mv"] == 4950
        assert h["instruments"] == [{"addr": "C4:7C:8D:6A:11:02", "last_seen": 1061000,
                                     "battery": 80}]
        assert h["flash_free"] is None or h["flash_free"] > 0
        assert h["journal_oldest_age_s"] is None  # that record has no rtime
        assert h["crash_free_s"] is None  # no boot record given
        if h["heap_free"] is not None:  # MicroPython: gc.mem_free exists
            assert h["heap_min"] <= h["heap_free"]
    finally:
        rmtree(d)


def test_offline_health_record_has_the_golden_shape():
    from tests.portable import read_golden
    golden = json.loads(read_golden("data_health.json"))["records"][0]
    d = tmpdir("h")
    try:
        clock = GatewayClock(source=lambda: 1795939320000, synced=True)
        s = HealthSampler(Journal(d), _Uplink(), clock, link_probe=lambda: ("wifi", -93),
                          supply_probe=lambda: 4950, alarms={"journal_full": True})
        rec = json.loads(s.record_payload())
        assert sorted(rec) == sorted(k for k in golden if k != "seq")
        assert rec["kind"] == "health" and rec["flags"] == ["journal_full"]
        units = {v[0]: v[2] for v in golden["values"]}
        for name, value, unit in rec["values"]:
            assert units[name] == unit and isinstance(value, int)
    finally:
        rmtree(d)


def test_heartbeat_reports_oldest_unacked_age_drift_and_crash_free_time():
    from gateway.bootinfo import BootInfo
    d = tmpdir("h")
    try:
        now = [5000000]
        clock = GatewayClock(source=lambda: now[0], synced=True)
        j = Journal(d + "/j")
        boot = BootInfo(d, now_ms=now[0])
        errors = {("C4:7C:8D:6A:11:02", "decode_error"): 2, ("AA:BB:CC:DD:EE:FF", "bad_record"): 1}
        s = HealthSampler(j, _Uplink(), clock, bootinfo=boot, errors=errors)
        assert json.loads(s.payload())["journal_oldest_age_s"] == 0  # empty journal
        j.append(b'{"kind":"reading","rtime":5000000}')
        j.append(b'{"kind":"reading","rtime":5600000}')
        now[0] += 900000
        s.instrument_seen("C4:7C:8D:6A:11:02", battery=55, drift_ms=-31536000000)
        h = json.loads(s.payload())
        assert h["journal_oldest_age_s"] == 900
        assert h["crash_free_s"] == 900 and h["boots"] == 1
        assert h["instruments"][0]["drift_ms"] == -31536000000
        assert h["instruments"][0]["errors"] == {"decode_error": 2}
        # an instrument with errors but never reached still shows them
        assert h["instruments"][1] == {"addr": "AA:BB:CC:DD:EE:FF", "errors": {"bad_record": 1}}
        j.ack(1)
        assert json.loads(s.payload())["journal_oldest_age_s"] == 300
    finally:
        rmtree(d)
