# mpy-portable
# The glucose download state machine, fed the bytes a meter sends: a fake
# meter below answers an RACP report with the records it holds (ascending or
# newest first, optionally repeating every notification), and the tests
# check the events, the order, the resumes and the errors.
# isort: off
# The download module first: compiling it from source takes the most heap,
# so it goes while the heap is emptiest (MicroPython runs of this file).
from device_drivers.glucose_download import (
    ABORTED,
    ABORTING,
    DONE,
    ERROR,
    FAILED,
    NEED_DATA,
    REPORTING,
    Aborted,
    Discarded,
    Done,
    DownloadError,
    Failed,
    GlucoseDownload,
    LocalProtocolError,
    Record,
    RemoteProtocolError,
)
from device_drivers.glucose import (
    encode_context,
    encode_measurement,
    encode_racp_count,
    encode_racp_response,
)
# isort: on
from tests.portable import raises

M = 0x2A18
C = 0x2A34
RACP = 0x2A52
T = (2026, 5, 1, 8, 0, 0)
SUCCESS = encode_racp_response(1, 1)
NO_RECORDS = encode_racp_response(1, 6)


def meas(seq, ctx=None, type=1, loc=1):
    # a record of (95 + seq % 100) mg/dL; ctx=None: a context iff seq is even
    if ctx is None:
        ctx = seq % 2 == 0
    return encode_measurement(seq, T, time_offset=seq % 60,
                              concentration=(95 + seq % 100) / 100000, type=type,
                              sample_location=loc, context_follows=ctx)


def ctx(seq):
    return encode_context(seq, meal=seq % 5 + 1)


def meter(records, request, newest_first=False, repeat=False, end=SUCCESS):
    # What a meter notifies for a report request, one (uuid16, bytes) at a
    # time: records is a list of sequence numbers; even ones carry a context.
    if request == b"\x01\x01":
        low = 0
    else:
        assert request[:3] == b"\x01\x03\x01" and len(request) == 5, request
        low = request[3] | request[4] << 8
    chosen = sorted(s for s in records if s >= low)
    if newest_first:
        chosen.reverse()
    n = 2 if repeat else 1
    for s in chosen:
        for _ in range(n):
            yield M, meas(s)
        if s % 2 == 0:
            for _ in range(n):
                yield C, ctx(s)
    yield RACP, end if chosen else NO_RECORDS


def drain(d):
    out = []  # type: list
    while True:
        ev = d.next_event()
        if ev is NEED_DATA:
            return out
        out.append(ev)


def feed(d, items):
    out = []  # type: list
    for uuid16, data in items:
        d.receive(uuid16, data)
        out += drain(d)
    return out


def records(events):
    return [e for e in events if isinstance(e, Record)]


def seqs(events):
    return [e.sequence for e in records(events)]


def download(stored, cursor=None, drop_after=None, window=32, **kw):
    # One connection: (events, cursor after committing every Record); the
    # link drops after `drop_after` notifications.
    d = GlucoseDownload(cursor, window)
    events = []
    sent = 0
    for uuid16, data in meter(stored, d.start(), **kw):
        if sent == drop_after:
            break
        sent += 1
        d.receive(uuid16, data)
        for ev in drain(d):
            events.append(ev)
            if isinstance(ev, Record):
                assert cursor is None or ev.sequence > cursor
                cursor = ev.sequence  # the caller commits, then moves its cursor
    return events, cursor


def test_need_data_is_a_named_sentinel():
    assert repr(NEED_DATA) == "NEED_DATA"
    d = GlucoseDownload()
    d.start()
    assert d.next_event() is NEED_DATA


def test_request_bytes():
    assert GlucoseDownload().start() == b"\x01\x01"
    assert GlucoseDownload(0).start() == b"\x01\x03\x01\x01\x00"
    assert GlucoseDownload(0x0101).start() == b"\x01\x03\x01\x02\x01"
    assert GlucoseDownload(65534).start() == b"\x01\x03\x01\xff\xff"
    assert GlucoseDownload(65535).start() == b"\x01\x03\x01\xff\xff"  # and 65535 is dropped
    for bad in (-1, 65536, "7", 1.0):
        raises(LocalProtocolError, GlucoseDownload, bad)
    raises(LocalProtocolError, GlucoseDownload, None, 1)


def test_ascending_transfer_pairs_contexts_and_hands_out_in_order():
    d = GlucoseDownload()
    assert d.state == "IDLE"
    items = meter([1, 2, 3, 4], d.start())
    events = feed(d, items)
    assert seqs(events) == [1, 2, 3, 4]
    r = records(events)
    assert r[0].context is None and not r[0].context_missing and not r[0].qc
    assert r[1].context["meal"] == 3 and r[1].context["sequence"] == 2
    assert r[1].measurement["concentration"] == 0.00097
    assert r[1].measurement["time_offset"] == 2
    assert isinstance(events[-1], Done) and events[-1] == Done(False, False)
    assert len(events) == 5 and d.state == DONE and d.next_event() is NEED_DATA


def test_ascending_hands_out_as_soon_as_complete_holding_at_most_one():
    d = GlucoseDownload()
    d.start()
    assert feed(d, [(M, meas(1))]) == []  # the meter's order is not known yet
    assert d.held == 1
    assert seqs(feed(d, [(M, meas(2))])) == [1]  # ascending: 1 goes, 2 waits
    assert d.held == 1
    assert seqs(feed(d, [(C, ctx(2))])) == [2]
    assert seqs(feed(d, [(M, meas(3))])) == [3]  # no context: out at once
    assert d.held == 0
    for s in range(4, 400):
        feed(d, [(M, meas(s))] + ([(C, ctx(s))] if s % 2 == 0 else []))
        assert d.held <= 1
    assert feed(d, [(RACP, SUCCESS)])[-1] == Done(False, False)


def test_no_records():
    events, cursor = download([], 5)
    assert events == [Done(True, False)] and cursor == 5
    assert type(events[0]) is Done


def test_meter_sending_newest_first_is_handed_out_oldest_first_at_the_end():
    d = GlucoseDownload(2)
    items = list(meter([1, 2, 3, 4, 5, 6], d.start(), newest_first=True))
    events = feed(d, items[:-1])
    assert records(events) == [] and d.held == 4
    events = feed(d, items[-1:])
    assert seqs(events) == [3, 4, 5, 6] and events[-1] == Done(False, False)
    assert records(events)[1].context["sequence"] == 4


def test_newest_first_past_the_window_takes_more_downloads():
    stored = list(range(1, 41))
    events, cursor = download(stored, None, window=8, newest_first=True)
    assert seqs(events) == list(range(1, 9)) and events[-1] == Done(False, True)
    got = seqs(events)
    rounds = 1
    while events[-1].more:
        events, cursor = download(stored, cursor, window=8, newest_first=True)
        got += seqs(events)
        rounds += 1
    assert got == stored and rounds == 5 and cursor == 40


def test_many_newest_first_records_fit_a_small_window():
    # 200 records, newest first, the default window (32 held at most): seven
    # downloads; each record is committed (here: checked against the next
    # number expected) as soon as it is handed out.
    stored = range(100, 300)
    cursor = None
    more = True
    rounds = 0
    while more:
        d = GlucoseDownload(cursor)
        rounds += 1
        for uuid16, data in meter(stored, d.start(), newest_first=True):
            d.receive(uuid16, data)
            assert d.held <= 32
            while True:  # one event at a time, as the firmware does
                ev = d.next_event()
                if ev is NEED_DATA:
                    break
                if isinstance(ev, Record):
                    assert ev.sequence == (99 if cursor is None else cursor) + 1
                    cursor = ev.sequence
                elif isinstance(ev, Done):
                    more = ev.more
    assert cursor == 299 and rounds == 7


def test_a_record_waiting_for_its_context_can_fall_out_of_the_window():
    d = GlucoseDownload(None, 2)
    d.start()
    events = feed(d, [(M, meas(5)), (M, meas(3)), (M, meas(1)), (M, meas(8)), (C, ctx(8)),
                      (RACP, SUCCESS)])
    assert seqs(events) == [1, 3] and events[-1] == Done(False, True)
    assert [(e.sequence, e.reason) for e in events if isinstance(e, Discarded)] == [
        (8, "orphan_context")]


def test_repeated_notifications_count_once():
    for newest_first in (False, True):
        events, cursor = download([1, 2, 3, 4], None, repeat=True, newest_first=newest_first)
        assert seqs(events) == [1, 2, 3, 4] and cursor == 4
        dups = [e for e in events if isinstance(e, Discarded)]
        assert [e.reason for e in dups] == ["duplicate"] * 6
        assert sorted((e.uuid16, e.sequence) for e in dups) == [
            (M, 1), (M, 2), (M, 3), (M, 4), (C, 2), (C, 4)]
        assert records(events)[3].context is not None


def test_a_repeat_of_a_record_already_handed_out_is_dropped():
    d = GlucoseDownload()
    d.start()
    events = feed(d, [(M, meas(1)), (M, meas(3)), (M, meas(5)), (M, meas(3)), (M, meas(5)),
                      (RACP, SUCCESS), (RACP, SUCCESS)])
    assert seqs(events) == [1, 3, 5]
    assert [e.reason for e in events if isinstance(e, Discarded)] == [
        "duplicate", "duplicate", "after_end"]


def test_same_sequence_with_other_bytes_is_a_remote_error():
    for second in ((M, meas(2, type=2)), (M, meas(1, type=2))):
        d = GlucoseDownload()
        d.start()
        feed(d, [(M, meas(1)), (M, meas(2, ctx=False))])
        d.receive(*second)
        e = raises(RemoteProtocolError, d.next_event)
        assert e.sequence == second[1][1] and d.state == ERROR
    d = GlucoseDownload()
    d.start()
    feed(d, [(M, meas(2)), (C, ctx(2)), (M, meas(3))])
    d.receive(C, encode_context(2, meal=1))
    raises(RemoteProtocolError, d.next_event)


def test_link_drop_mid_transfer_resumes_after_the_last_committed_record():
    stored = [1, 2, 3, 4, 5, 6, 7, 8]
    full = len(list(meter(stored, b"\x01\x01")))
    for cut in range(full):
        events, cursor = download(stored, None, drop_after=cut)
        got = seqs(events)
        if cursor is None or cursor < 8:
            events, cursor = download(stored, cursor)
            got += seqs(events)
        assert got == stored, cut  # every record once, in order
        assert cursor == 8


def test_resume_when_the_meter_ignores_the_filter():
    d = GlucoseDownload(3)
    items = meter([1, 2, 3, 4, 5], b"\x01\x01")  # the meter sends everything
    d.start()
    events = feed(d, items)
    assert seqs(events) == [4, 5]
    committed = [e for e in events if isinstance(e, Discarded)]
    assert [(e.uuid16, e.sequence, e.reason) for e in committed] == [
        (M, 1, "committed"), (M, 2, "committed"), (C, 2, "committed"), (M, 3, "committed")]


def test_drop_between_measurement_and_context_keeps_the_pair_together():
    events, cursor = download([1, 2, 3], None, drop_after=2)  # M1 M2 | C2 M3 ...
    assert seqs(events) == [1] and cursor == 1  # 2 was waiting for its context
    events, cursor = download([1, 2, 3], cursor)
    r = records(events)
    assert [x.sequence for x in r] == [2, 3] and r[0].context is not None


def test_context_missing_when_the_next_measurement_comes_first():
    d = GlucoseDownload()
    d.start()
    events = feed(d, [(M, meas(1)), (M, meas(2)), (M, meas(3)), (C, ctx(2)), (RACP, SUCCESS)])
    r = records(events)
    assert [x.sequence for x in r] == [1, 2, 3]
    assert r[1].context is None and r[1].context_missing
    assert [(e.sequence, e.reason) for e in events if isinstance(e, Discarded)] == [
        (2, "orphan_context")]


def test_context_missing_at_the_end_and_on_timeout():
    d = GlucoseDownload()
    d.start()
    events = feed(d, [(M, meas(2)), (RACP, SUCCESS)])
    assert records(events)[0].context_missing
    # timeout while the order is known to be ascending: handed out at once
    d = GlucoseDownload()
    d.start()
    assert seqs(feed(d, [(M, meas(1)), (M, meas(2))])) == [1]
    d.timeout()
    r = records(drain(d))
    assert [x.sequence for x in r] == [2] and r[0].context_missing
    assert feed(d, [(C, ctx(2))])[0].reason == "orphan_context"  # too late
    # timeout with a single record: the order is unknown, it waits for the end
    d = GlucoseDownload()
    d.start()
    feed(d, [(M, meas(2))])
    d.timeout()
    assert drain(d) == [] and d.held == 1
    r = records(feed(d, [(C, ctx(2)), (RACP, SUCCESS)]))
    assert r[0].context is None and r[0].context_missing  # the wait had ended
    assert d.state == DONE


def test_orphan_and_unflagged_contexts_are_discarded():
    d = GlucoseDownload()
    d.start()
    events = feed(d, [(C, ctx(7)), (M, meas(9, ctx=False)), (C, ctx(9)), (RACP, SUCCESS)])
    assert seqs(events) == [9] and records(events)[0].context is None
    assert not records(events)[0].context_missing
    assert [(e.sequence, e.reason) for e in events if isinstance(e, Discarded)] == [
        (7, "orphan_context"), (9, "orphan_context")]


def test_control_solution_records_are_marked_qc():
    d = GlucoseDownload()
    d.start()
    events = feed(d, [(M, meas(1, type=10, loc=4)), (M, meas(3, type=10, loc=15)),
                      (M, meas(5, type=2, loc=4)), (M, meas(7)), (RACP, SUCCESS)])
    assert [e.qc for e in records(events)] == [True, True, True, False]
    assert records(events)[0].measurement["type"] == 10


def test_every_error_response_is_named_and_drops_what_is_held():
    names = {2: "op_code_not_supported", 3: "invalid_operator", 4: "operator_not_supported",
             5: "invalid_operand", 7: "abort_unsuccessful", 8: "procedure_not_completed",
             9: "operand_not_supported", 0: "reserved", 200: "reserved"}
    for code in names:
        d = GlucoseDownload()
        d.start()
        events = feed(d, [(M, meas(2)), (RACP, encode_racp_response(1, code))])
        assert events == [Failed(1, code, names[code])], code
        assert d.state == FAILED and d.held == 0
        assert feed(d, [(M, meas(4))]) == [Discarded(M, 4, "after_end")]


def test_abort():
    d = GlucoseDownload()
    d.start()
    events = feed(d, [(M, meas(1)), (M, meas(2))])
    assert seqs(events) == [1]
    assert d.abort() == b"\x03\x00" and d.state == ABORTING and d.held == 0
    events = feed(d, [(C, ctx(2)), (M, meas(3)), (RACP, encode_racp_response(1, 8)),
                      (RACP, encode_racp_response(3, 1))])
    assert [e.reason for e in events[:3]] == ["after_abort"] * 3
    assert events[3] == Aborted() and d.state == ABORTED
    assert feed(d, [(M, meas(4))])[0].reason == "after_end"
    raises(LocalProtocolError, d.abort)
    d.timeout()  # harmless once finished
    # the meter cannot abort
    d = GlucoseDownload()
    d.start()
    d.abort()
    assert feed(d, [(RACP, encode_racp_response(3, 7))]) == [
        Failed(3, 7, "abort_unsuccessful")]
    assert d.state == FAILED


def test_local_misuse():
    d = GlucoseDownload()
    raises(LocalProtocolError, d.receive, M, meas(1))  # nothing requested yet
    raises(LocalProtocolError, d.abort)
    raises(LocalProtocolError, d.timeout)
    d.start()
    assert d.state == REPORTING
    raises(LocalProtocolError, d.start)
    raises(LocalProtocolError, d.receive, 0x2A35, b"\x00")
    raises(LocalProtocolError, d.receive, M, "text")
    e = raises(DownloadError, d.start)
    assert isinstance(e, LocalProtocolError)


def test_remote_violations_move_to_error_for_good():
    cases = (
        [(M, meas(1)), (M, meas(3)), (M, meas(2))],  # backwards after 3 was handed out
        [(RACP, encode_racp_count(5))],  # a count never asked for
        [(RACP, encode_racp_response(3, 1))],  # an abort response without abort
        [(RACP, encode_racp_response(2, 1))],  # a response to a delete never sent
        [(RACP, b"\x06\x00\x01")],  # truncated
        [(M, b"\x00\x07\x00\xea\x07\x0d\x01\x00\x00\x00")],  # month 13
        [(C, b"\x01\x08\x00\x01")],  # carbohydrate truncated
    )
    for items in cases:
        d = GlucoseDownload()
        d.start()
        for uuid16, data in items[:-1]:
            d.receive(uuid16, data)
            drain(d)
        d.receive(*items[-1])
        e = raises(RemoteProtocolError, d.next_event)
        assert d.state == ERROR
        again = raises(RemoteProtocolError, d.next_event)
        assert again.sequence == e.sequence and issubclass(type(e), DownloadError)
        raises(RemoteProtocolError, d.receive, M, meas(9))
        raises(RemoteProtocolError, d.timeout)
        raises(RemoteProtocolError, d.abort)
    d = GlucoseDownload()
    d.start()
    d.receive(M, b"\x02\x07\x00\xea\x07\x0d\x01\x00\x00\x00\x5f\xb0\x11")
    e = raises(RemoteProtocolError, d.next_event)
    assert e.sequence == 7 and e.cause.field == "base_time" and e.cause.offset == 3


def test_events_already_handed_out_survive_a_later_error():
    d = GlucoseDownload()
    d.start()
    for item in ((M, meas(1)), (M, meas(3)), (M, b"\x00")):
        d.receive(*item)
    assert seqs([d.next_event(), d.next_event()]) == [1, 3]
    raises(RemoteProtocolError, d.next_event)


def test_sequence_65535_edge():
    events, cursor = download([65534, 65535], 65534)
    assert seqs(events) == [65535] and cursor == 65535
    events, _ = download([65534, 65535], 65535)
    assert seqs(events) == [] and events[0] == Discarded(M, 65535, "committed")


def test_done_then_late_notifications_are_discarded():
    events, _ = download([1])
    d = GlucoseDownload()
    items = list(meter([1], d.start()))
    feed(d, items)
    events = feed(d, items)
    assert [e.reason for e in events] == ["after_end"] * 2
    assert d.state == DONE
