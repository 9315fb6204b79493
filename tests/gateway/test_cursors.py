# mpy-portable
# Download cursors: persisted atomically, so a power cut at any byte of a
# save, or between the write and the rename, leaves the old cursor or the new
# one, never anything else, and the gateway never skips a meter record.
import os

from gateway.cursors import CursorError, Cursors
from tests.portable import raises, rmtree, tmpdir

A = "C4:7C:8D:6A:00:41"
B = "C4:7C:8D:6A:00:42"


class PowerCut(Exception):
    pass


class _CutFile:
    # A file that takes only `budget[0]` more bytes, then the power goes.
    def __init__(self, f, budget):
        self.f = f
        self.budget = budget

    def write(self, data):
        n = min(len(data), self.budget[0])
        self.f.write(data[:n])
        self.budget[0] -= n
        if n < len(data):
            self.f.flush()
            raise PowerCut()
        return n

    def flush(self):
        self.f.flush()

    def fileno(self):
        return self.f.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False


class CutFS:
    # Cuts the power after `k` bytes written, or (k=None) just before the rename.
    def __init__(self, k):
        self.budget = [k if k is not None else 1 << 30]
        self.cut_rename = k is None

    def open(self, path, mode):
        f = open(path, mode)
        return _CutFile(f, self.budget) if "w" in mode else f

    def rename(self, src, dst):
        if self.cut_rename:
            raise PowerCut()
        os.rename(src, dst)

    def remove(self, path):
        os.remove(path)


def test_new_instrument_has_no_cursor_and_cursors_persist():
    d = tmpdir("c")
    try:
        c = Cursors(d)
        assert c.get(A) is None and c.items() == []
        c.set(A, 100)
        c.set(B, 7)
        c.set(A, 105)
        c2 = Cursors(d)
        assert c2.get(A) == 105 and c2.get(B) == 7 and c2.recovered is None
        c2.clear(B)
        assert Cursors(d).get(B) is None and Cursors(d).get(A) == 105
    finally:
        rmtree(d)


def test_bad_cursor_values_are_refused():
    d = tmpdir("c")
    try:
        c = Cursors(d)
        for bad in (-1, 65536, "5", None, True, 1.5):
            raises(CursorError, c.set, A, bad)
        assert c.get(A) is None and Cursors(d).get(A) is None
    finally:
        rmtree(d)


def test_power_cut_at_every_step_of_a_save_keeps_old_or_new():
    d = tmpdir("c")
    try:
        Cursors(d).set(A, 41)
        with open(d + "/cursors.json", "rb") as f:
            size = len(f.read())
        # every byte offset of the tmp file, then just before the rename
        steps = list(range(size))  # type: list
        steps.append(None)
        for k in steps:
            c = Cursors(d, fs=CutFS(k))
            assert c.get(A) == 41
            try:
                c.set(A, 42)
                cut = False
            except PowerCut:
                cut = True
            assert cut  # the new content is the same size: the cut always hits
            assert c.get(A) == 41  # memory follows the file, not the attempt
            after = Cursors(d)  # reboot
            assert after.get(A) == 41, (k, after.get(A))
            assert after.recovered == "stale_tmp"
            assert "cursors.json.tmp" not in os.listdir(d)
        # and once the rename is done, the new cursor stands
        c = Cursors(d)
        c.set(A, 42)
        assert Cursors(d).get(A) == 42
    finally:
        rmtree(d)


def test_unreadable_file_starts_empty_and_says_so():
    d = tmpdir("c")
    try:
        Cursors(d).set(A, 9)
        for junk in (b"{\"C4", b"[1,2]", b"{\"x\": -3}", b"\xff\xfe"):
            with open(d + "/cursors.json", "wb") as f:
                f.write(junk)
            c = Cursors(d)
            assert c.get(A) is None and c.recovered == "corrupt"
        c.set(A, 10)  # and it works again
        assert Cursors(d).get(A) == 10
    finally:
        rmtree(d)
