# mpy-portable
# How the uplink applies the server's end-to-end acks (no network needed:
# apply_ack is the whole decision; the MQTT session is tested with a real
# broker in tests/integration).
import json

from gateway.clock import GatewayClock
from gateway.indicator import RecordingIndicator
from gateway.journal import Journal
from gateway.uplink import Uplink
from tests.portable import rmtree, tmpdir


def _setup(n=5, synced=True):
    d = tmpdir("u")
    j = Journal(d)
    for i in range(n):
        j.append(b'{"n":%d}' % i)
    clock = GatewayClock(source=lambda: 1000000, synced=synced)
    ind = RecordingIndicator()
    return d, j, clock, ind, Uplink(j, None, "U001", "gw-u001", clock, ind)


def _ack(jid, upto, rejected=None, server_time=None):
    d = {"v": 1, "jid": jid, "upto": upto}
    if rejected is not None:
        d["rejected"] = rejected
    if server_time is not None:
        d["server_time"] = server_time
    return json.dumps(d).encode()


def test_ack_frees_and_tells_the_nurse():
    d, j, _, ind, up = _setup()
    try:
        assert up.apply_ack(_ack(j.jid, 3, [2])) == 3
        assert j.depth == 2 and j.acked == 3
        assert ("delivered", 3, [2]) in ind.events
        assert up.apply_ack(_ack(j.jid, 3)) == 0  # a duplicate ack changes nothing
        assert up.stats["acks"] == 2
    finally:
        rmtree(d)


def test_ack_for_another_journal_is_ignored():
    d, j, _, _, up = _setup()
    try:
        assert up.apply_ack(_ack("deadbeef" if j.jid != "deadbeef" else "00000000", 5)) == 0
        assert j.depth == 5 and up.stats["acks_ignored"] == 1
    finally:
        rmtree(d)


def test_ack_from_the_future_is_ignored():
    d, j, _, _, up = _setup()
    try:
        assert up.apply_ack(_ack(j.jid, 99)) == 0
        assert j.depth == 5 and up.stats["acks_ignored"] == 1
    finally:
        rmtree(d)


def test_malformed_ack_is_counted_not_fatal():
    d, j, _, ind, up = _setup()
    try:
        assert up.apply_ack(b"garbage") == 0
        assert up.stats["acks_bad"] == 1 and ind.events[0][0] == "error"
        assert up.apply_ack(_ack(j.jid, 1)) == 1
    finally:
        rmtree(d)


def test_server_time_sets_an_unsynced_clock_and_corrects_large_drift_only():
    d, j, clock, _, up = _setup(synced=False)
    try:
        up.apply_ack(_ack(j.jid, 1, server_time=5000000))
        assert clock.synced and clock.now_ms() == 5000000
        up.apply_ack(_ack(j.jid, 2, server_time=5001000))  # within slew: kept
        assert clock.now_ms() == 5000000
        up.apply_ack(_ack(j.jid, 3, server_time=5100000))  # 100 s off: corrected
        assert clock.now_ms() == 5100000
    finally:
        rmtree(d)
