# Download cursors: for each instrument that numbers its records (a glucose
# meter over RACP), the highest instrument sequence number whose record is
# safe in the journal. The BLE session (gateway/ble_session.py) asks the
# meter only for records after it, and moves it only after the journal has
# committed the record (docs/instrument_sessions.md, "the cursor rule").
#
# Stored as one small JSON object {addr: seq} in `<root>/cursors.json`,
# replaced atomically on every change: write `cursors.json.tmp`, flush and
# fsync, then rename over the old file (the same dance as the journal's
# `acked`). A power cut at any point leaves either the old file or the new
# one; a half-written `.tmp` is ignored and removed on the next open. Should
# the file itself be unreadable (flash corruption), the cursors start empty
# and `recovered` says so: the meters are then read from the start again, and
# the fleet server drops what it already has by (instrument, iseq).
#
# File access goes through `fs` (default: the `os` module and `open`) so a
# test can cut the power at any byte. Portable: MicroPython and CPython.
import json
import os

from gateway.fsutil import exists as _exists
from gateway.fsutil import sync as _sync


class CursorError(ValueError):
    pass


class _OsFS:
    # The real filesystem (littlefs on a board, files on a host).
    def open(self, path, mode):
        return open(path, mode)

    def rename(self, src, dst):
        os.rename(src, dst)

    def remove(self, path):
        os.remove(path)


class Cursors:
    """Per-instrument download cursors, persisted atomically."""

    def __init__(self, root, name="cursors", fs=None):
        self.path = root + "/" + name + ".json"
        self.fs = fs if fs is not None else _OsFS()
        self.recovered = None  # None, "stale_tmp" or "corrupt": what the open found
        if not _exists(root):
            os.mkdir(root)
        self._c = self._load()

    def _load(self):
        tmp = self.path + ".tmp"
        if _exists(tmp):  # a save cut short by the power: the old file stands
            self.recovered = "stale_tmp"
            try:
                self.fs.remove(tmp)
            except OSError:
                pass
        try:
            with self.fs.open(self.path, "rb") as f:
                raw = f.read()
        except OSError:
            return {}
        try:
            d = json.loads(raw)
            if not isinstance(d, dict):
                raise ValueError("not an object")
            for v in d.values():
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 0xFFFF:
                    raise ValueError("bad cursor")
        except ValueError:
            self.recovered = "corrupt"
            return {}
        return d

    def get(self, addr):
        """The last committed instrument sequence number, None if never read."""
        return self._c.get(addr)

    def set(self, addr, seq):
        """Persist `seq` as the instrument's cursor. It returns after the file
        has been replaced; memory changes only then."""
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= 0xFFFF:
            raise CursorError("cursor must be an int 0..65535")
        if self._c.get(addr) == seq:
            return
        new = dict(self._c)
        new[addr] = seq
        self._save(new)
        self._c = new

    def clear(self, addr):
        """Forget an instrument's cursor (meter replaced, or its memory cleared):
        its next download starts from its first record."""
        if addr in self._c:
            new = dict(self._c)
            del new[addr]
            self._save(new)
            self._c = new

    def items(self):
        return list(self._c.items())

    def _save(self, d):
        tmp = self.path + ".tmp"
        data = json.dumps(d).encode()
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
            _sync(f)
        self.fs.rename(tmp, self.path)
