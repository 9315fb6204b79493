# mpy-portable
# Flash full: health telemetry is shed first, clinical readings are never
# dropped silently (refused with an alarm while instruments keep them), and
# the alarm clears once the fleet's acks free space.
import json

from device_drivers.blood_pressure import encode_measurement
from gateway.app import Gateway
from gateway.clock import GatewayClock
from gateway.health import HealthSampler
from gateway.indicator import RecordingIndicator
from gateway.journal import KIND_HEALTH, Journal
from tests.portable import rmtree, tmpdir

_INST = {"addr": "C4:7C:8D:6A:11:02", "model": "UA-651BLE", "serial": "1"}


class _LinkDown:
    # what the core asks of its uplink; here the link is down
    connected = False
    stats = {"reconnects": 0}

    def notify(self):
        pass


def _setup(capacity):
    d = tmpdir("f")
    j = Journal(d, capacity_bytes=capacity, health_share=0.5)
    clock = GatewayClock(source=lambda: 1795935781000, synced=True)
    ind = RecordingIndicator()
    core = Gateway(j, _LinkDown(), clock, ind)
    sampler = HealthSampler(j, core.uplink, clock, alarms=core.alarms)
    return d, j, core, ind, sampler


def test_health_is_shed_before_clinical_readings_are_refused():
    d, j, core, ind, sampler = _setup(4000)
    try:
        for _ in range(40):  # a long outage: a health sample per interval
            sampler.journal_sample()
        assert sampler.shed > 0 and sampler.journaled > 0
        assert j.bytes_used <= 2000  # health stayed within its share
        seqs = []
        while True:
            s = core.on_value(_INST, 0x2A35, encode_measurement(120, 80, 93, status=None))
            if s is None:
                break
            seqs.append(s)
        assert len(seqs) > 3  # clinical readings used the other half
        assert core.alarms["journal_full"] and not core.can_accept(300)
        assert core.errors[(_INST["addr"], "journal_full")] == 1
        assert ind.events[-1][0] == "error"
        assert "journal_full" in json.loads(sampler.payload())["alarms"]
        j.ack(j.next_seq - 1)  # the fleet acknowledged everything
        assert core.can_accept(300)
        assert core.on_value(_INST, 0x2A35, encode_measurement(121, 81, 94)) is not None
        assert not core.alarms["journal_full"]
    finally:
        rmtree(d)


def test_offline_health_record_is_a_valid_journal_record():
    d, j, _, _, sampler = _setup(100000)
    try:
        sampler.journal_sample()
        _, kind, payload = j.read(0)[0]
        rec = json.loads(payload)
        assert kind == KIND_HEALTH and rec["kind"] == "health"
        names = [v[0] for v in rec["values"]]
        assert "journal_depth" in names and "uptime" in names
        assert all(len(v) == 3 and isinstance(v[1], int) for v in rec["values"])
    finally:
        rmtree(d)
