# Store-and-forward journal: every record a gateway keeps goes to flash here
# first, gets a sequence number, and stays until the fleet server has
# durably committed it (docs/protocol.md, "ack").
#
# Theory of operation
# - Records live in append-only segment files `s<first seq>.j`. A record is a
#   12-byte header (magic 0xA5, kind, payload length u16, seq u32, CRC32 u32
#   over kind+length+seq+payload, little-endian) followed by the payload.
# - The acknowledged-up-to cursor is the file `acked`, replaced atomically
#   (write `acked.tmp`, then rename). The journal id (`jid`, random, made once)
#   is in `meta`, written the same way.
# - On open, every segment is scanned: a torn tail (power cut mid-write) is
#   cut off by rewriting the segment's good prefix; a record whose CRC fails is
#   skipped and the scan resynchronises on the next valid header. Both are
#   counted in `recovery` for the next heartbeat.
# - A record whose kind carries the URGENT bit is listed in `urgent` (unacked
#   urgent sequence numbers, rebuilt by the scan) so the uplink can send it
#   ahead of the backlog with read_seqs().
# - Sequence numbers never repeat: the next one is one past the highest seen in
#   any segment or in the cursor.
# - ack(upto) moves the cursor and deletes segments that are wholly covered.
# - Capacity is accounted in bytes of segment files; append raises JournalFull
#   past it. Health samples may fill only `health_share` of it, so telemetry
#   is shed long before clinical readings are refused.
#
# Runs on MicroPython (files on littlefs) and CPython (files standing in for
# flash); only `os`, `binascii`/`zlib` and `struct` are used.
import os
import struct

from gateway.fsutil import atomic_write as _atomic_write
from gateway.fsutil import exists as _exists
from gateway.fsutil import sync as _sync

try:
    from binascii import crc32
except ImportError:  # pragma: no cover - CPython has it in binascii too
    from zlib import crc32

KIND_READING = 1
KIND_EVENT = 2
KIND_HEALTH = 3
KIND_NAMES = {KIND_READING: "reading", KIND_EVENT: "event", KIND_HEALTH: "health"}
URGENT = 0x80  # or-ed into the kind: the uplink sends the record before any backlog

_MAGIC = 0xA5
_HEADER = "<BBHII"
_HEADER_LEN = 12
_MAX_PAYLOAD = 0xFFFF


class JournalError(Exception):
    pass


class JournalFull(JournalError):
    """Appending would exceed the journal's byte capacity."""


def _crc(kind, length, seq, payload):
    c = crc32(struct.pack("<BHI", kind, length, seq))
    return crc32(payload, c) & 0xFFFFFFFF


def encode_record(seq, kind, payload):
    if len(payload) > _MAX_PAYLOAD:
        raise JournalError("record payload of %d bytes over %d" % (len(payload), _MAX_PAYLOAD))
    crc = _crc(kind, len(payload), seq, payload)
    return struct.pack(_HEADER, _MAGIC, kind, len(payload), seq, crc) + payload


def _parse_at(buf, off):
    """(seq, kind, payload start, end) of a valid record at off, or None.
    `buf` is a memoryview: the CRC is computed without copying the payload."""
    if off + _HEADER_LEN > len(buf) or buf[off] != _MAGIC:
        return None
    _, kind, length, seq, crc = struct.unpack_from(_HEADER, buf, off)
    end = off + _HEADER_LEN + length
    if end > len(buf):
        return None
    if _crc(kind, length, seq, buf[off + _HEADER_LEN:end]) != crc:
        return None
    return seq, kind, off + _HEADER_LEN, end


def scan_segment(buf):
    """Valid records of a segment image (a memoryview) as (seq, kind, payload
    start, payload end), the end of the last one, and how many corrupted
    stretches were skipped: (records, good_end, corrupt). Payloads are not
    copied, so a boot scan of a full journal fits a small heap."""
    records = []
    off = 0
    good_end = 0
    corrupt = 0
    n = len(buf)
    while off < n:
        rec = _parse_at(buf, off)
        if rec is not None:
            records.append(rec)
            off = good_end = rec[3]
            continue
        # Not a valid record here: find the next offset where one parses.
        nxt = off + 1
        while nxt < n and _parse_at(buf, nxt) is None:
            nxt += 1
        if nxt >= n:
            break  # nothing valid after: a torn tail, cut at good_end
        corrupt += 1
        off = nxt
    return records, good_end, corrupt


class Journal:
    def __init__(self, root, segment_bytes=8192, capacity_bytes=2000000, health_share=0.5):
        self.root = root
        self.segment_bytes = segment_bytes
        self.capacity_bytes = capacity_bytes
        self.health_limit = int(capacity_bytes * health_share)
        self.recovery = {"torn_bytes": 0, "corrupt_records": 0, "new_jid": False}
        # segments: list of [first_seq, last_seq, name, size, records], oldest first
        self._segments = []
        self._depth = 0
        self.urgent = []  # unacknowledged urgent sequence numbers, ascending
        self._buf = bytearray(segment_bytes)  # reused for every segment read
        if not _exists(root):
            os.mkdir(root)
        self.jid = self._load_jid()
        self.acked = self._load_acked()
        self._recover()

    # --- opening -------------------------------------------------------------
    def _path(self, name):
        return self.root + "/" + name

    def _load(self, name):
        """A segment's bytes as a memoryview of the reused buffer (valid until
        the next _load): no new 8 KB block per read on a fragmented heap."""
        path = self._path(name)
        size = os.stat(path)[6]
        if size > len(self._buf):  # a record larger than a segment
            self._buf = bytearray(size)
        with open(path, "rb") as f:
            n = f.readinto(self._buf) if size else 0
        return memoryview(self._buf)[:n or 0]

    def _load_jid(self):
        path = self._path("meta")
        try:
            with open(path, "rb") as f:
                jid = f.read().decode().strip()
            if len(jid) == 8:
                int(jid, 16)
                return jid
        except (OSError, ValueError):
            pass
        jid = "".join("%02x" % b for b in os.urandom(4))
        _atomic_write(path, jid.encode())
        self.recovery["new_jid"] = True
        return jid

    def _load_acked(self):
        try:
            with open(self._path("acked"), "rb") as f:
                return int(f.read().decode().strip() or "0")
        except (OSError, ValueError):
            return 0

    def _recover(self):
        names = sorted(n for n in os.listdir(self.root) if n.startswith("s") and n.endswith(".j"))
        last = self.acked
        for name in names:
            path = self._path(name)
            buf = self._load(name)
            records, good_end, corrupt = scan_segment(buf)
            self.recovery["corrupt_records"] += corrupt
            if good_end < len(buf):
                self.recovery["torn_bytes"] += len(buf) - good_end
                _atomic_write(path, bytes(buf[:good_end]))
            # Records at or below the highest seq already seen are stale copies.
            records = [r for r in records if r[0] > last]
            if not records:
                os.remove(path)
                continue
            first, last = records[0][0], records[-1][0]
            if last <= self.acked:
                os.remove(path)
                continue
            self._segments.append([first, last, name, good_end, len(records)])
            self._depth += sum(1 for r in records if r[0] > self.acked)
            self.urgent += [r[0] for r in records if r[0] > self.acked and r[1] & URGENT]
        self.next_seq = max(last, self.acked) + 1

    # --- state ---------------------------------------------------------------
    @property
    def depth(self):
        """Records written and not yet acknowledged."""
        return self._depth

    @property
    def bytes_used(self):
        return sum(s[3] for s in self._segments)

    def has_room(self, nbytes):
        """Whether a clinical record of nbytes payload would fit now."""
        return self.bytes_used + nbytes + 12 <= self.capacity_bytes

    @property
    def first_unacked(self):
        return self.acked + 1

    # --- writing -------------------------------------------------------------
    def append(self, payload, kind=KIND_READING):
        """Write one record durably; return its sequence number."""
        if isinstance(payload, str):
            payload = payload.encode()
        seq = self.next_seq
        rec = encode_record(seq, kind, payload)
        limit = self.health_limit if kind & 0x7F == KIND_HEALTH else self.capacity_bytes
        if self.bytes_used + len(rec) > limit:
            raise JournalFull("journal full: %d of %d bytes used" % (self.bytes_used, limit))
        seg = self._segments[-1] if self._segments else None
        if seg is None or seg[3] + len(rec) > self.segment_bytes:
            seg = [seq, seq, "s%010d.j" % seq, 0, 0]
            self._segments.append(seg)
        with open(self._path(seg[2]), "ab") as f:
            f.write(rec)
            _sync(f)
        seg[1] = seq
        seg[3] += len(rec)
        seg[4] += 1
        self.next_seq = seq + 1
        self._depth += 1
        if kind & URGENT:
            self.urgent.append(seq)
        return seq

    # --- reading -------------------------------------------------------------
    def read(self, after, limit=32, max_bytes=8192):
        """Up to `limit` unacknowledged records with seq > after, oldest first,
        whose payloads total at most max_bytes (at least one record is always
        returned if any exists): a list of (seq, kind, payload)."""
        after = max(after, self.acked)
        out = []  # type: list[tuple[int, int, bytes]]
        total = 0
        for _first, last, name, _, _ in self._segments:
            if last <= after:
                continue
            buf = self._load(name)
            for seq, kind, start, end in scan_segment(buf)[0]:
                if seq <= after:
                    continue
                if out and (len(out) >= limit or total + end - start > max_bytes):
                    return out
                out.append((seq, kind, bytes(buf[start:end])))
                total += end - start
        return out

    def read_seqs(self, seqs):
        """The unacknowledged records with these sequence numbers, ascending:
        a list of (seq, kind, payload)."""
        wanted = set(s for s in seqs if s > self.acked)
        out = []
        for first, last, name, _, _ in self._segments:
            if not any(first <= s <= last for s in wanted):
                continue
            buf = self._load(name)
            for seq, kind, start, end in scan_segment(buf)[0]:
                if seq in wanted:
                    out.append((seq, kind, bytes(buf[start:end])))
        return out

    # --- acknowledging -------------------------------------------------------
    def ack(self, upto):
        """Free every record with seq <= upto; returns how many were freed.
        An ack beyond the last written sequence is refused (JournalError)."""
        if upto >= self.next_seq:
            raise JournalError("ack %d beyond last written sequence %d" %
                               (upto, self.next_seq - 1))
        if upto <= self.acked:
            return 0
        freed = self._count_between(self.acked, upto)
        _atomic_write(self._path("acked"), str(upto).encode())
        self.acked = upto
        self._depth -= freed
        self.urgent = [s for s in self.urgent if s > upto]
        keep = []
        for seg in self._segments:
            if seg[1] <= upto:
                os.remove(self._path(seg[2]))
            else:
                keep.append(seg)
        self._segments = keep
        return freed

    def _count_between(self, lo, hi):
        """Records with lo < seq <= hi still held in segments."""
        n = 0
        for first, last, name, _, count in self._segments:
            if last <= lo or first > hi:
                continue
            if first > lo and last <= hi:
                n += count
                continue
            for rec in scan_segment(self._load(name))[0]:
                if lo < rec[0] <= hi:
                    n += 1
        return n
