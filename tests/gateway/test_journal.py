# mpy-portable
# The store-and-forward journal: durable append, recovery after a power cut,
# acknowledgement frees records, sequence numbers never repeat.
import os

from gateway.journal import KIND_HEALTH, KIND_READING, Journal, JournalError, JournalFull
from tests.portable import raises, rmtree, tmpdir


def _payload(i):
    return ('{"n":%d,"pad":"%s"}' % (i, "x" * (i % 40))).encode()


def test_append_read_ack_and_reopen():
    d = tmpdir("j")
    try:
        j = Journal(d, segment_bytes=512)
        seqs = [j.append(_payload(i)) for i in range(1, 41)]
        assert seqs == list(range(1, 41))
        assert j.depth == 40
        batch = j.read(0, limit=10)
        assert [r[0] for r in batch] == list(range(1, 11))
        assert batch[0][1] == KIND_READING and batch[0][2] == _payload(1)
        assert [r[0] for r in j.read(35, limit=10)] == [36, 37, 38, 39, 40]
        assert j.ack(25) == 25
        assert j.depth == 15 and j.acked == 25
        assert [r[0] for r in j.read(0, limit=3)] == [26, 27, 28]
        jid = j.jid
        j2 = Journal(d, segment_bytes=512)
        assert j2.jid == jid and j2.acked == 25 and j2.depth == 15
        assert j2.append(_payload(99)) == 41
        assert j2.recovery["torn_bytes"] == 0 and j2.recovery["corrupt_records"] == 0
    finally:
        rmtree(d)


def test_acknowledged_segments_are_removed_and_seq_survives_empty_journal():
    d = tmpdir("j")
    try:
        j = Journal(d, segment_bytes=256)
        for i in range(30):
            j.append(_payload(i))
        before = len([n for n in os.listdir(d) if n.endswith(".j")])
        j.ack(30)
        after = len([n for n in os.listdir(d) if n.endswith(".j")])
        assert before > 1 and after == 0 and j.bytes_used == 0
        j2 = Journal(d, segment_bytes=256)
        assert j2.depth == 0
        assert j2.append(b"{}") == 31  # never reuses a sequence number
    finally:
        rmtree(d)


def test_max_bytes_limits_batch_but_returns_at_least_one():
    d = tmpdir("j")
    try:
        j = Journal(d)
        for _i in range(5):
            j.append(b"{" + b"y" * 100 + b"}")
        assert len(j.read(0, limit=32, max_bytes=250)) == 2
        assert len(j.read(0, limit=32, max_bytes=10)) == 1
    finally:
        rmtree(d)


def test_torn_tail_is_cut_and_counted():
    d = tmpdir("j")
    try:
        j = Journal(d)
        for i in range(3):
            j.append(_payload(i))
        seg = d + "/" + next(n for n in os.listdir(d) if n.endswith(".j"))
        with open(seg, "ab") as f:
            f.write(b"\xa5\x01\x40\x00\x04\x00")  # a header cut by the power
        j2 = Journal(d)
        assert j2.recovery["torn_bytes"] == 6
        assert [r[0] for r in j2.read(0)] == [1, 2, 3]
        assert j2.append(_payload(4)) == 4
        assert [r[0] for r in Journal(d).read(0)] == [1, 2, 3, 4]
    finally:
        rmtree(d)


def test_corrupted_record_is_skipped_and_counted():
    d = tmpdir("j")
    try:
        j = Journal(d)
        for i in range(5):
            j.append(_payload(i))
        seg = d + "/" + next(n for n in os.listdir(d) if n.endswith(".j"))
        with open(seg, "rb") as f:
            buf = bytearray(f.read())
        # flip one byte inside the second record's payload
        first_len = 12 + len(_payload(0))
        buf[first_len + 14] ^= 0xFF
        with open(seg, "wb") as f:
            f.write(buf)
        j2 = Journal(d)
        assert j2.recovery["corrupt_records"] == 1
        assert [r[0] for r in j2.read(0)] == [1, 3, 4, 5]
        assert j2.depth == 4
    finally:
        rmtree(d)


def test_power_cut_at_every_byte_of_an_append():
    # The file as it would be if power failed after k bytes of the last record.
    d = tmpdir("j")
    try:
        j = Journal(d)
        for i in range(3):
            j.append(_payload(i))
        seg = d + "/" + next(n for n in os.listdir(d) if n.endswith(".j"))
        with open(seg, "rb") as f:
            good = f.read()
        from gateway.journal import encode_record
        rec = encode_record(4, KIND_READING, _payload(3))
        for k in range(len(rec)):
            with open(seg, "wb") as f:
                f.write(good + rec[:k])
            j2 = Journal(d)
            assert [r[0] for r in j2.read(0)] == [1, 2, 3]
            assert j2.next_seq == 4
        with open(seg, "wb") as f:
            f.write(good + rec)
        assert [r[0] for r in Journal(d).read(0)] == [1, 2, 3, 4]
    finally:
        rmtree(d)


def test_ack_from_the_future_is_refused():
    d = tmpdir("j")
    try:
        j = Journal(d)
        j.append(b"{}")
        raises(JournalError, j.ack, 5)
        assert j.ack(0) == 0 and j.depth == 1
    finally:
        rmtree(d)


def test_capacity_in_bytes():
    d = tmpdir("j")
    try:
        j = Journal(d, capacity_bytes=200)
        j.append(b"{" + b"z" * 80 + b"}", KIND_HEALTH)
        j.append(b"{" + b"z" * 80 + b"}")
        raises(JournalFull, j.append, b"{" + b"z" * 80 + b"}")
        j.ack(2)
        assert j.append(b"{}") == 3
    finally:
        rmtree(d)


def test_new_journal_gets_a_new_id():
    d1 = tmpdir("j")
    d2 = tmpdir("j")
    try:
        a = Journal(d1)
        b = Journal(d2)
        assert len(a.jid) == 8 and a.jid != b.jid
        assert a.recovery["new_jid"] and not Journal(d1).recovery["new_jid"]
    finally:
        rmtree(d1)
        rmtree(d2)


def test_urgent_records_are_listed_survive_reboot_and_leave_when_acked():
    from gateway.journal import URGENT
    d = tmpdir("j")
    try:
        j = Journal(d, segment_bytes=256)
        for i in range(20):
            j.append(_payload(i), KIND_READING | (URGENT if i in (4, 15) else 0))
        assert j.urgent == [5, 16]
        assert [r[0] for r in j.read_seqs([16, 5])] == [5, 16]
        assert j.read_seqs([16])[0][1] == KIND_READING | URGENT
        j2 = Journal(d, segment_bytes=256)
        assert j2.urgent == [5, 16]
        j2.ack(10)
        assert j2.urgent == [16] and j2.read_seqs([5, 16])[0][0] == 16
    finally:
        rmtree(d)
