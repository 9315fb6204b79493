# mpy-portable
# ASTM E1381 frames and handshake, E1394 records to readings.
from device_drivers import DecodeError
from device_drivers import astm as a
from tests.portable import raises

# A Bayer Contour's header frame (glucometerutils' tests): CR ETB ends it,
# the meter sends all its records as one message.
CONTOUR_H = (b"\x021H|\\^&||7w3LBL|Bayer7390^01.24\\01.04\\09.02.20^7390-2336773^7403-|"
             b"A=1^C=63^G=1^I=0200^R=0^S=1^U=0^V=10600^X=070070070070180130150250^"
             b"Y=360126090050099050300089^Z=1|1714||||||1|201909221304\r\x17D7\r\n")
BAYER_R = "R|8|^^^Glucose|133|mg/dL^P||B/X||201202052034"
L1 = b"\x021L|1|N\r\x0304\r\n"


def test_checksum_vectors():
    # python-astm's vector and the Contour capture: FN through ETX/ETB
    assert a.decode_frame(b"\x021A|B|C|D\r\x03BF\r\n") == (1, b"A|B|C|D\r", True)
    fn, text, final = a.decode_frame(CONTOUR_H)
    assert fn == 1 and not final and a.encode_frame(1, text, False) == CONTOUR_H
    assert a.decode_frame(b"\x021A|B|C|D\r\x03bf\r\n")[0] == 1
    assert a.encode_frame(1, b"L|1|N\r") == L1


def test_decode_frame_errors():
    for frame, field in ((L1[:-3] + b"0\r\n", "checksum"), (b"\x028" + L1[2:], "frame_number"),
                         (L1[:-1], "end"), (L1[:-4] + b"X0\r\n", "checksum"),
                         (b"1A\r\x03", "frame"), (b"\x021\x05\x0339\r\n", "text")):
        assert raises(DecodeError, a.decode_frame, frame).field == field
    raises(DecodeError, a.decode_frame, "x")
    for fn, text in ((8, b"x"), (1, b"x" * 241), (1, b"a\nb")):
        raises(ValueError, a.encode_frame, fn, text)


def test_long_record_is_cut_into_240_character_frames():
    msg = a.encode_message(["C|1|I|" + "x" * 500 + "|G", "L|1|N"])
    frames, nxt = a.message_frames(msg, 6)
    dec = [a.decode_frame(f) for f in frames]
    assert nxt == 2 and [d[0] for d in dec] == [6, 7, 0, 1]
    assert [d[2] for d in dec] == [False, False, False, True]
    assert [len(d[1]) for d in dec] == [240, 240, 29, 6]
    assert b"".join([d[1] for d in dec]) == msg and len(frames[0]) == 247


def _session(rx, frames):
    events = rx.feed(b"\x05")
    replies = rx.data_to_send()
    for f in frames:
        events += rx.feed(f)
        replies += rx.data_to_send()
    return events, replies


def test_receiver_accepts_a_transmission():
    rx = a.Receiver()
    assert rx.timer is None
    msgs = [a.encode_message(["H|\\^&", BAYER_R]), b"L|1|N\r"]
    events, replies = _session(rx, a.encode_transmission(msgs))
    assert replies == b"\x06" * 4 and rx.timer == a.RECEIVER_TIMEOUT
    assert events == [(a.LINK_UP, None), (a.RECORD, b"H|\\^&"), (a.RECORD, BAYER_R.encode()),
                      (a.MESSAGE_END, None), (a.RECORD, b"L|1|N"), (a.MESSAGE_END, None)]
    assert rx.feed(b"\x04") == [(a.LINK_DOWN, None)] and rx.state == "idle"
    assert rx.feed(b"junk\x02\x04") == [] and rx.data_to_send() == b""


def test_receiver_naks_bad_frames():
    f1, f2 = a.encode_transmission([b"H|\\^&\rL|1|N\r"])
    ev, rep = _session(a.Receiver(), [f1[:-4] + b"00\r\n", f1, f1, f2[:5] + b"\x00" + f2[6:], f2])
    assert rep == b"\x06\x15\x06\x06\x15\x06"  # the repeat of frame 1 is ACKed, dropped
    assert ev == [(a.LINK_UP, None), (a.REJECTED, "checksum"), (a.RECORD, b"H|\\^&"),
                  (a.REJECTED, "checksum"), (a.RECORD, b"L|1|N"), (a.MESSAGE_END, None)]
    ev, rep = _session(a.Receiver(), [a.encode_frame(2, b"x\r")])
    assert rep == b"\x06\x15" and ev[1] == (a.REJECTED, "frame number 2, expected 1")
    rx = a.Receiver()
    ev, rep = _session(rx, [L1[:-3] + b"0\r\n"] * 6)
    assert rep == b"\x06" + b"\x15" * 6 and rx.state == "idle"
    assert ev[-1] == (a.ABORTED, "frame rejected 6 times")
    assert rx.feed(b"\x04" + L1) == [] and rx.data_to_send() == b""


def test_receiver_drops_partial_messages():
    f1, f2 = a.encode_transmission([b"H|\\^&\rL|1|N\r"])
    rx = a.Receiver()
    _session(rx, [f1, f2[:5]])
    assert rx.feed(b"\x04") == [(a.ABORTED, "EOT inside a message")]
    _session(rx, [f1])
    assert rx.timeout() == [(a.ABORTED, "timeout")] and rx.timeout() == []
    _session(rx, [f1])
    assert rx.feed(b"\x05" + f1) == [(a.ABORTED, "new ENQ inside a message"), (a.LINK_UP, None),
                                      (a.RECORD, b"H|\\^&")]


def test_receiver_resynchronises_on_noise():
    rx = a.Receiver()
    ev = rx.feed(b"\x00\xff\x05")
    for b in b"noise\x02\x02\x01" + L1:  # byte by byte, after a cut frame
        ev += rx.feed(bytes((b,)))
    assert ev == [(a.LINK_UP, None), (a.RECORD, b"L|1|N"), (a.MESSAGE_END, None)]
    assert rx.data_to_send() == b"\x06\x06"
    ev, rep = _session(a.Receiver(max_text=4), [a.encode_frame(1, b"x" * 5), L1[:-2] + b"\r\r"])
    assert rep == b"\x06\x15\x15" and ev[1] == (a.REJECTED, "frame text over 4 characters")
    ev, rep = _session(a.Receiver(max_record=8), a.encode_transmission([b"0123\r012345678\r"]))
    assert rep == b"\x06\x06\x15" and ev[-1][1] == "record over 8 bytes"
    ev, _ = _session(a.Receiver(), [a.encode_frame(1, b"H|\\^&\rL|1")])  # no final CR
    assert ev[1:] == [(a.RECORD, b"H|\\^&"), (a.RECORD, b"L|1"), (a.MESSAGE_END, None)]


def _pump(tx, rx, corrupt):
    """Run a Sender against a Receiver; corrupt(n, data) may damage data."""
    events = []
    n = 0
    while True:
        out = tx.data_to_send()
        if out:
            n += 1
            events += rx.feed(corrupt(n, out))
        back = rx.data_to_send()
        if back:
            events += tx.feed(back)
        if not out and not back:
            return events


def test_sender_and_receiver_with_retransmissions():
    msg = a.encode_message([a.header_record(["Sim"]), a.terminator_record()])
    tx = a.Sender([msg])
    tx.start()
    raises(ValueError, tx.start)
    ev = _pump(tx, a.Receiver(), lambda n, d: d[:-3] + b"\r\n" if n in (2, 3) else d)
    assert [e[0] for e in ev].count(a.REJECTED) == 4  # two NAKs seen by each side
    assert [p for k, p in ev if k == a.RECORD] == [b"H|\\^&|||Sim|||||||P|1", b"L|1|N"]
    assert (a.MESSAGE_END, None) in ev and (a.DELIVERED, 0) in ev
    assert ev[-1] == (a.LINK_DOWN, None) and tx.state == "done"
    tx = a.Sender([msg])
    tx.start()
    ev = _pump(tx, a.Receiver(), lambda n, d: d[:-3] + b"\r\n" if n > 1 else d)
    assert (a.ABORTED, "frame rejected 6 times") in ev and tx.state == "done"


def test_sender_establishment_and_timers():
    tx = a.Sender([b"L|1|N\r"])
    tx.start()
    assert tx.data_to_send() == b"\x05" and tx.timer == a.SENDER_TIMEOUT
    assert tx.feed(b"\x15") == [] and tx.timer == a.BUSY_DELAY
    assert tx.timeout() == [] and tx.data_to_send() == b"\x05"
    assert tx.feed(b"\x05") == [] and tx.timer == a.CONTENTION_DELAY  # priority
    tx.timeout()
    assert tx.feed(b"\x06") == [(a.LINK_UP, None)] and tx.data_to_send() == b"\x05" + L1
    assert tx.feed(b"\x04") == [(a.INTERRUPT, None), (a.DELIVERED, 0), (a.DONE, None)]
    assert tx.data_to_send() == b"\x04" and tx.timer is None
    tx = a.Sender([])
    tx.start()
    for _ in range(5):
        tx.feed(b"\x15")
        tx.timeout()
    assert tx.feed(b"\x15") == [(a.ABORTED, "receiver busy")]
    tx = a.Sender([], priority=False)
    tx.start()
    assert tx.feed(b"\x05")[0][0] == a.ABORTED
    tx = a.Sender([])
    tx.start()
    assert tx.timeout()[0][0] == a.ABORTED and tx.data_to_send() == b"\x05\x04"
    tx = a.Sender([])
    tx.start()
    assert tx.feed(b"\x06") == [(a.LINK_UP, None), (a.DONE, None)]


def test_bayer_records():
    r = a.decode_record(BAYER_R)
    assert r["sequence"] == 8 and r["analyte"] == "Glucose" and r["value"] == 133
    assert r["unit"] == "mg/dL" and r["unit_components"] == ["mg/dL", "P"]
    assert r["abnormal_flags"] == ["B", "X"] and r["flags"] == [] and r["status"] is None
    assert r["timestamp"] == (2012, 2, 5, 20, 34, 0)
    assert a.decode_record("R|9|^^^Glucose|601|mg/dL^P||>/M0/T1||201202052034")["flags"] == ["hi"]
    h = a.decode_record(a.text_of(a.decode_frame(CONTOUR_H)[1])[:-1])
    assert h["delimiters"] == "|\\^&" and h["version"] == "1"
    assert h["timestamp"] == (2019, 9, 22, 13, 4, 0) and a.field_text(h, 7) == "1714"
    assert a.repeats(h, 5)[1:] == [["01.04"], ["09.02.20", "7390-2336773", "7403-"]]


def test_standard_result_fields():
    rec = a.result_record(3, "HbA1c", 6.5, "%", (4.0, 5.6), ["H"], "F",
                          (2026, 11, 29, 9, 4, 30), instrument="A1C-1")
    assert rec == "R|3|^^^HbA1c|6.5|%|4 to 5.6|H||F||||20261129090430|A1C-1"
    r = a.decode_record(rec)
    assert r["value"] == 6.5 and r["reference_range"] == (4, 5.6) and r["status"] == "F"
    assert r["flags"] == ["above_normal"] and r["timestamp"] == (2026, 11, 29, 9, 4, 30)
    r = a.decode_record("R|1|2345-7^Glucose^LN|5.4|mmol/L|3.9-6.1|LL\\<||||op|202611290900")
    assert r["analyte"] == "Glucose" and r["reference_range"] == (3.9, 6.1)
    assert r["timestamp"] == (2026, 11, 29, 9, 0, 0) and r["operator"] == "op"
    assert r["flags"] == ["critical_low", "lo"]


def test_values_and_ranges():
    for text, value in (("<20", None), ("POS", None), ("-1.5", -1.5), ("5.60", 5.6), (" 7 ", 7),
                        ("", None), ("1e3", None), ("1" * 16, None), (".5", 0.5)):
        assert a.decode_record("R|1|^^^X|%s" % text)["value"] == value, text
    assert a.decode_record("R|1|^^^X|<20")["flags"] == ["lo"]
    for text, rng in (("3.5 to 4.5", (3.5, 4.5)), ("-5-5", (-5, 5)), ("normal", None)):
        assert a.decode_record("R|1|^^^X|1|u|" + text)["reference_range"] == rng


def test_escapes_and_custom_delimiters():
    text = "a|b^c\\d&e"
    rec = a.comment_record(1, text)
    assert rec == "C|1|I|a&F&b&S&c&R&d&E&e|G" and a.decode_record(rec)["text"] == [text]
    assert a.decode_record("C|1|I|x&X0D0A&y&H&z&N&&Q&&")["text"] == ["x\r\nyz&Q&&"]
    d = "#~$%"
    msg = a.encode_message([a.header_record(delimiters=d), a.comment_record(1, text, delimiters=d)])
    recs = a.decode_message(msg)
    assert recs[0]["fields"][:2] == ["H", "~$%"] and recs[1]["text"] == [text]


def test_record_errors_name_field_and_offset():
    for text, field, offset in (
            ("1|x", "record_type", 0), ("R|x|^^^G", "sequence", 2),
            ("R|1||5", "universal_test_id", 4), ("R|1|^^^G|5||||||||2026", "started", 18),
            ("R|1|^^^G|5|||||||||202613010000", "completed", 19), ("H|||&", "delimiters", 1),
            ("L|a", "sequence", 2), ("R|1|^^^G|1|||||12345", "timestamp", 15)):
        e = raises(DecodeError, a.decode_record, text)
        assert (e.field, e.offset) == (field, offset), text
    assert a.parse_timestamp("2026112909") == (2026, 11, 29, 9, 0, 0)
    assert a.decode_record("M|1|x")["sequence"] == 1 and a.decode_record(b"X|y")["type"] == "X"


def test_collector_follows_patients_across_messages():
    msgs = [a.encode_message([r]) for r in (
        a.header_record(["POC"], (2026, 11, 29, 9, 5, 0)), a.patient_record(1, "MA-001"),
        a.order_record(1, "S-1", ["", "", "", "Glucose"]),
        a.result_record(1, "Glucose", 99, "mg/dL", timestamp=(2026, 11, 29, 9, 0, 0)),
        a.patient_record(2, "", "LAB-7", ["Alaoui", "Zoé"]),
        a.result_record(1, "K", 3.2, "mmol/L", (3.5, 5.1), ["L"]), a.terminator_record())]
    c = a.ResultCollector()
    readings = []
    for kind, payload in _session(a.Receiver(), a.encode_transmission(msgs))[0]:
        if kind == a.RECORD:
            readings += c.add_message(payload)
    assert c.terminated and c.header is not None and c.header["sender"] == ["POC"]
    assert [(r["analyte"], r["value"], r["unit"], r["patient_id"], r["specimen_id"], r["flags"])
            for r in readings] == [("Glucose", 99, "mg/dL", "MA-001", "S-1", []),
                                   ("K", 3.2, "mmol/L", "LAB-7", None, ["below_normal"])]
    recs = a.decode_message(b"".join(msgs))
    assert recs[4]["name"] == ["Alaoui", "Zoé"] and a.bytes_of("Zoé") == b"Zo\xe9"
    assert a.results_to_readings(recs) == readings
    raises(ValueError, a.bytes_of, "\u20ac")
