# Over-the-air update on the gateway: receive a firmware bundle, check that it
# comes from the fleet and is whole, stage it beside the running app, switch,
# and come back to the previous version by itself when the new one does not
# prove healthy. docs/firmware.md is the user's view; firmware/bundle.py and
# firmware/build.py make and check the same bundles on CPython.
#
# Theory of operation
# - Flash layout under `root` (the filesystem root on a board):
#     app_a/, app_b/          two app slots. A slot is COMPLETE when its
#                             `manifest.json` exists: it is written last, by
#                             rename, after every file was written and read back.
#     ota_state.json          {"active", "pending", "tries", "max_tries",
#                             "deadline", "window_ms", "last"}, replaced
#                             atomically (write `.tmp`, then rename).
#     ota_incoming.bin/.json  a bundle being received, resumable by offset.
# - `active` is the last version known good; `pending` the one on trial. A
#   pending version becomes active only through confirm_healthy(); until then
#   select_slot() (run by boot.py on every boot) counts a try per boot and
#   returns to `active` after `max_tries` boots, past the wall-clock `deadline`,
#   or when the pending slot is not complete. While running, the app calls
#   check_deadline() (or a Trial) so a version that never becomes healthy in
#   `window_ms` of uptime is rolled back even if it never reboots.
# - Nothing is written into the active slot, and the state file changes only
#   by atomic rename, so a power cut at any filesystem step leaves either the
#   old state or the new one, each pointing at complete slots.
# - Bundle (one file, format 1, little-endian):
#     b"UMMCFW\0\1" | u32 manifest length | u32 signature length
#     | manifest.json bytes | manifest.sig bytes | each file's bytes, in the
#     manifest's order, no padding.
#   Uncompressed on purpose: no zlib/deflate on the device, files are streamed
#   to flash in small chunks with only `hashlib.sha256` over them.
# - Origin: the manifest is signed with Ed25519 by the fleet's release key;
#   the gateway holds only public keys (`ummc_keys.TRUSTED` in the image), so
#   a stolen gateway reveals nothing that could sign. The signed message is
#   b"UMMC-FW1" + SHA-256(manifest bytes): one SHA-512 block in the verifier.
#   MicroPython has no Ed25519 and no SHA-512: ota_ed25519.py has both in
#   plain Python, loaded only while a bundle is checked. Each file is then
#   bound to the manifest by its SHA-256.
#
# Portable: runs on MicroPython (littlefs, whose rename replaces the target
# atomically) and CPython; filesystem access goes through an `Fs` object so
# tests can cut the power at any step.
import json
import os
import sys
from binascii import hexlify, unhexlify
from hashlib import sha256

FORMAT = "ummc-fw/1"
MAGIC = b"UMMCFW\x00\x01"
HEADER_LEN = 16
SIG_CONTEXT = b"UMMC-FW1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
STATE = "ota_state.json"
INCOMING = "ota_incoming.bin"
INCOMING_META = "ota_incoming.json"
SLOTS = ("a", "b")
MAX_MANIFEST = 65536
MAX_SIGNATURE = 1024
_CHUNK = 1024


# --- errors ------------------------------------------------------------------

class OtaError(Exception):
    """Root of the OTA errors; `code` goes into the command's result."""

    code = "failed"

    def __init__(self, code, msg):
        super().__init__("%s: %s" % (code, msg))
        self.code = code
        self.detail = msg


class BundleRejected(OtaError):
    """The bundle is wrong: bad_format, bad_path, unknown_key, bad_signature,
    wrong_target, downgrade, truncated, too_long, size_mismatch,
    hash_mismatch, missing_file, unlisted_file. Nothing was switched."""


class UpdateStateError(OtaError):
    """The gateway cannot do this step now: busy, out_of_order, incomplete,
    nothing_staged, flash_error."""


# --- filesystem adapter --------------------------------------------------------

class Fs:
    """The flash filesystem through `os`; tests subclass it to cut the power."""

    def open(self, path, mode="rb"):
        return open(path, mode)

    def rename(self, src, dst):
        os.rename(src, dst)

    def remove(self, path):
        os.remove(path)

    def mkdir(self, path):
        os.mkdir(path)

    def rmdir(self, path):
        os.rmdir(path)

    def listdir(self, path):
        return os.listdir(path)

    def stat(self, path):
        return os.stat(path)


def join(a, b):
    if not a:
        return b
    return a + b if a.endswith("/") else a + "/" + b


def _stat(fs, path):
    try:
        return fs.stat(path)
    except OSError:
        return None


def exists(fs, path):
    return _stat(fs, path) is not None


def _is_dir(fs, path):
    st = _stat(fs, path)
    return st is not None and st[0] & 0x4000 != 0


def _sync(f):
    f.flush()
    fsync = getattr(os, "fsync", None)
    if fsync is not None and hasattr(f, "fileno"):
        fsync(f.fileno())


def _read(fs, path):
    f = fs.open(path, "rb")
    try:
        return f.read()
    finally:
        f.close()


def _write(fs, path, data):
    f = fs.open(path, "wb")
    try:
        f.write(data)
        _sync(f)
    finally:
        f.close()


def atomic_write(fs, path, data):
    tmp = path + ".tmp"
    _write(fs, tmp, data)
    fs.rename(tmp, path)


def _remove(fs, path):
    if exists(fs, path):
        fs.remove(path)


def rmtree(fs, path):
    if not exists(fs, path):
        return
    for name in fs.listdir(path):
        full = join(path, name)
        if _is_dir(fs, full):
            rmtree(fs, full)
        else:
            fs.remove(full)
    fs.rmdir(path)


def _makedirs(fs, path):
    if not path or _is_dir(fs, path):
        return
    parent = path.rsplit("/", 1)[0] if "/" in path.rstrip("/") else ""
    if parent and parent != path:
        _makedirs(fs, parent)
    fs.mkdir(path)


def _walk(fs, top, rel=""):
    """Relative paths of every file under top."""
    out = []
    for name in fs.listdir(join(top, rel) if rel else top):
        r = rel + "/" + name if rel else name
        if _is_dir(fs, join(top, r)):
            out += _walk(fs, top, r)
        else:
            out.append(r)
    return out


# --- bundle: manifest, signature, container ---------------------------------------

def _hex(b):
    return hexlify(b).decode()


def key_id(public):
    """Short id of a public key: first 8 bytes of its SHA-256, in hex."""
    return _hex(sha256(public).digest()[:8])


def signed_message(manifest_bytes):
    return SIG_CONTEXT + sha256(manifest_bytes).digest()


def pack_header(manifest_len, sig_len):
    return MAGIC + manifest_len.to_bytes(4, "little") + sig_len.to_bytes(4, "little")


def parse_version(v):
    """(major, minor, patch) of "1.2.3"; ValueError otherwise."""
    parts = v.split(".")
    if len(parts) != 3:
        raise ValueError("version %r is not MAJOR.MINOR.PATCH" % v)
    out = []
    for p in parts:
        if not p or not p.isdigit():
            raise ValueError("version %r is not MAJOR.MINOR.PATCH" % v)
        out.append(int(p))
    return tuple(out)


def _check_path(path):
    if (not isinstance(path, str) or not path or path.startswith("/") or "\\" in path
            or path in (MANIFEST, SIGNATURE)):
        raise BundleRejected("bad_path", "file path %r not allowed" % (path,))
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise BundleRejected("bad_path", "file path %r not allowed" % (path,))


def parse_manifest(manifest_bytes):
    """The manifest as a dict, its fields checked (not its signature)."""
    try:
        m = json.loads(bytes(manifest_bytes).decode())
    except (ValueError, UnicodeError):
        m = None
    if not isinstance(m, dict):
        raise BundleRejected("bad_format", "manifest is not a JSON object")
    if m.get("format") != FORMAT:
        raise BundleRejected("bad_format", "manifest format %r, expected %r"
                             % (m.get("format"), FORMAT))
    v = m.get("version")
    try:
        parse_version(v if isinstance(v, str) else "")
    except ValueError:
        raise BundleRejected("bad_format", "manifest version %r" % (v,))
    files = m.get("files")
    if not isinstance(files, list) or not files:
        raise BundleRejected("bad_format", "manifest has no files")
    seen = {}
    for e in files:
        if not isinstance(e, dict):
            raise BundleRejected("bad_format", "manifest file entry is not an object")
        _check_path(e.get("path"))
        h, n = e.get("sha256"), e.get("size")
        if not isinstance(h, str) or len(h) != 64 or h.strip("0123456789abcdef"):
            raise BundleRejected("bad_format", "sha256 of %s" % e["path"])
        if not isinstance(n, int) or n < 0:
            raise BundleRejected("bad_format", "size of %s" % e["path"])
        if e["path"] in seen:
            raise BundleRejected("bad_path", "%s listed twice" % e["path"])
        seen[e["path"]] = True
    return m


def _ed25519():
    """The plain-Python verifier, imported only when a bundle is checked: a
    top-level module on a board, firmware.board.ota_ed25519 elsewhere."""
    try:
        mod = __import__("ota_ed25519")
    except ImportError:
        mod = __import__("firmware.board.ota_ed25519", None, None, ["verify"])
    return mod.verify


def check_signature(manifest_bytes, sig_bytes, trusted, verify=None):
    """Key id that signed the manifest; BundleRejected unless it is one of
    `trusted` ({key id: public key, bytes or hex}) and the signature holds."""
    try:
        s = json.loads(bytes(sig_bytes).decode())
        alg, kid, sig = s["alg"], s["key"], unhexlify(s["sig"])
    except (ValueError, UnicodeError, KeyError, TypeError):
        raise BundleRejected("bad_format", "manifest.sig is not a signature record")
    if alg != "ed25519":
        raise BundleRejected("bad_signature", "algorithm %r" % (alg,))
    pub = trusted.get(kid)
    if pub is None:
        raise BundleRejected("unknown_key", "signed by key %s, not trusted here" % kid)
    if isinstance(pub, str):
        pub = unhexlify(pub)
    if not (verify or _ed25519())(pub, signed_message(manifest_bytes), sig):
        raise BundleRejected("bad_signature", "signature by key %s does not match" % kid)
    return kid


def runtime_mpy():
    """The .mpy version this MicroPython loads ("6.3"), None on CPython."""
    v = getattr(sys.implementation, "_mpy", None)
    if v is None:
        return None
    return "%d.%d" % (v & 0xFF, (v >> 8) & 3)


def check_target(manifest, mpy=None):
    """Refuse .mpy files this runtime cannot load."""
    want = manifest.get("mpy_version")
    have = mpy or runtime_mpy()
    if want and have and want != have:
        raise BundleRejected("wrong_target", "bundle is mpy %s, this firmware loads %s"
                             % (want, have))


def read_head(f):
    """(manifest bytes, signature bytes, data offset) of an open bundle file."""
    head = f.read(HEADER_LEN)
    if len(head) < HEADER_LEN or head[:8] != MAGIC:
        raise BundleRejected("bad_format", "not a UMMC firmware bundle (magic)")
    mlen = int.from_bytes(head[8:12], "little")
    slen = int.from_bytes(head[12:16], "little")
    if mlen > MAX_MANIFEST or slen > MAX_SIGNATURE:
        raise BundleRejected("bad_format", "manifest %d / signature %d bytes" % (mlen, slen))
    manifest = f.read(mlen)
    sig = f.read(slen)
    if len(manifest) != mlen or len(sig) != slen:
        raise BundleRejected("truncated", "bundle ends inside its header")
    return manifest, sig, HEADER_LEN + mlen + slen


def _copy(src, n, dst, path):
    """Copy n bytes from src to dst (None: only hash); their SHA-256 hex."""
    h = sha256()
    left = n
    while left:
        chunk = src.read(_CHUNK if left > _CHUNK else left)
        if not chunk:
            raise BundleRejected("truncated", "bundle ends inside %s" % path)
        h.update(chunk)
        if dst is not None:
            dst.write(chunk)
        left -= len(chunk)
    return _hex(h.digest())


def _file_hash(fs, path):
    f = fs.open(path, "rb")
    try:
        h = sha256()
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
        return _hex(h.digest())
    finally:
        f.close()


def check_tree(fs, top, manifest):
    """Every listed file under `top` has its size and hash; nothing else is there."""
    listed = {}
    for e in manifest["files"]:
        listed[e["path"]] = True
        path = join(top, e["path"])
        st = _stat(fs, path)
        if st is None:
            raise BundleRejected("missing_file", e["path"])
        if st[6] != e["size"]:
            raise BundleRejected("size_mismatch", "%s is %d bytes, manifest says %d"
                                 % (e["path"], st[6], e["size"]))
        if _file_hash(fs, path) != e["sha256"]:
            raise BundleRejected("hash_mismatch", e["path"])
    for rel in _walk(fs, top):
        if rel not in listed and rel not in (MANIFEST, SIGNATURE, MANIFEST + ".tmp"):
            raise BundleRejected("unlisted_file", rel)


def verify_container(fs, path, trusted, verify=None, mpy=None):
    """Check a bundle file completely (signature, target, every file's hash,
    exact length) without writing anything; its manifest as a dict."""
    f = fs.open(path, "rb")
    try:
        mbytes, sig, _ = read_head(f)
        m = parse_manifest(mbytes)
        check_signature(mbytes, sig, trusted, verify)
        check_target(m, mpy)
        for e in m["files"]:
            if _copy(f, e["size"], None, e["path"]) != e["sha256"]:
                raise BundleRejected("hash_mismatch", e["path"])
        if f.read(1):
            raise BundleRejected("too_long", "bytes after the last file")
    finally:
        f.close()
    return m


def verify_tree(fs, top, trusted, verify=None, mpy=None):
    """Check an unpacked bundle or an app slot: signature, target, hashes."""
    if not exists(fs, join(top, MANIFEST)):
        raise BundleRejected("missing_file", MANIFEST)
    mbytes = _read(fs, join(top, MANIFEST))
    m = parse_manifest(mbytes)
    if not exists(fs, join(top, SIGNATURE)):
        raise BundleRejected("missing_file", SIGNATURE)
    check_signature(mbytes, _read(fs, join(top, SIGNATURE)), trusted, verify)
    check_target(m, mpy)
    check_tree(fs, top, m)
    return m


# --- receiving a bundle ----------------------------------------------------------

class Receiver:
    """Writes a bundle arriving in chunks to flash. Resumable: after a reboot a
    Receiver for the same (size, sha256) continues at `offset`."""

    def __init__(self, ota, size, digest=None):
        self.ota = ota
        self.size = size
        self.digest = digest
        self.path = ota.incoming
        fs = ota.fs
        meta = {"size": size, "sha256": digest}
        old = None
        if exists(fs, ota.incoming_meta):
            try:
                old = json.loads(_read(fs, ota.incoming_meta))
            except ValueError:
                old = None
        st = _stat(fs, self.path)
        if old == meta and st is not None and st[6] <= size:
            self.offset = st[6]
        else:
            _remove(fs, self.path)
            atomic_write(fs, ota.incoming_meta, json.dumps(meta).encode())
            self.offset = 0

    @property
    def complete(self):
        return self.offset == self.size

    def write(self, offset, data):
        """Append a chunk that starts at `offset`; out_of_order otherwise
        (the error's detail names the offset expected)."""
        if offset != self.offset:
            raise UpdateStateError("out_of_order", "expected offset %d" % self.offset)
        if offset + len(data) > self.size:
            raise BundleRejected("too_long", "chunk ends at %d, bundle is %d bytes"
                                 % (offset + len(data), self.size))
        f = self.ota.fs.open(self.path, "ab")
        try:
            f.write(data)
            _sync(f)
        finally:
            f.close()
        self.offset += len(data)

    def finish(self):
        """Path of the whole bundle, its transport hash checked when given."""
        if not self.complete:
            raise UpdateStateError("incomplete", "%d of %d bytes" % (self.offset, self.size))
        if self.digest and _file_hash(self.ota.fs, self.path) != self.digest:
            self.ota.clear_incoming()
            raise BundleRejected("hash_mismatch", "bundle transport hash")
        return self.path


# --- the A/B state machine ---------------------------------------------------------

def _other(slot):
    return "b" if slot == "a" else "a"


def slot_name(path):
    """"a" or "b" from a slot path (or a slot name)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name[-1] if name in ("app_a", "app_b", "a", "b") else None


class Ota:
    def __init__(self, root="/", fs=None, max_tries=2, window_ms=900000,
                 deadline_ms=3600000):
        self.root = root
        self.fs = fs or Fs()
        self.max_tries = max_tries
        self.window_ms = window_ms
        self.deadline_ms = deadline_ms
        self.state_path = join(root, STATE)
        self.incoming = join(root, INCOMING)
        self.incoming_meta = join(root, INCOMING_META)
        self.recovered = False  # the last state() did not come from the state file

    def slot_path(self, slot):
        return join(self.root, "app_" + slot)

    def complete(self, slot):
        return exists(self.fs, join(self.slot_path(slot), MANIFEST))

    def slot_manifest(self, slot):
        """Manifest dict of a complete slot, or None."""
        try:
            return parse_manifest(_read(self.fs, join(self.slot_path(slot), MANIFEST)))
        except (OSError, OtaError):
            return None

    def slot_version(self, slot):
        m = self.slot_manifest(slot)
        return m["version"] if m else None

    # state file
    def _parse_state(self, path):
        try:
            st = json.loads(_read(self.fs, path))
        except (OSError, ValueError):
            return None
        if not isinstance(st, dict) or st.get("active") not in SLOTS:
            return None
        for k in ("tries", "max_tries", "window_ms"):
            if not isinstance(st.get(k, 0), int):
                return None
        if not isinstance(st.get("deadline", 0), (int, type(None))):
            return None
        if st.get("pending") not in (None, "a", "b") or st.get("pending") == st["active"]:
            return None
        return st

    def state(self):
        """The state, recovered if the file is missing or unreadable (from a
        complete `.tmp`, else from the slots: `a` first)."""
        st = self._parse_state(self.state_path)
        self.recovered = st is None
        if st is None:
            st = self._parse_state(self.state_path + ".tmp")
        if st is None:
            for s in SLOTS:
                if self.complete(s):
                    st = {"active": s, "pending": None, "last": {"event": "recovered"}}
                    break
        if st is None:
            return None
        st.setdefault("pending", None)
        st.setdefault("tries", 0)
        st.setdefault("max_tries", self.max_tries)
        st.setdefault("deadline", None)
        st.setdefault("window_ms", self.window_ms)
        st.setdefault("last", None)
        return st

    def _save(self, st):
        atomic_write(self.fs, self.state_path, json.dumps(st).encode())

    def status(self):
        """What the birth message and the OTA command result report."""
        st = self.state() or {"active": None, "pending": None, "tries": 0, "last": None}
        return {
            "active": st["active"],
            "active_version": self.slot_version(st["active"]) if st["active"] else None,
            "pending": st["pending"],
            "pending_version": self.slot_version(st["pending"]) if st["pending"] else None,
            "tries": st["tries"],
            "last": st["last"],
        }

    # boot
    def select_slot(self, now_ms=None):
        """Path of the app slot to boot (None: no complete slot at all, boot the
        base image's own app). Counts a try for a pending version and rolls it
        back after max_tries boots, past its deadline, or if it is incomplete."""
        st = self.state()
        if st is None:
            return None
        pending = st["pending"]
        if pending:
            reason = None
            if not self.complete(pending):
                reason = "incomplete"
            elif st["tries"] >= st["max_tries"]:
                reason = "tries"
            elif _past(st, now_ms):
                reason = "deadline"
            if reason is None:
                st["tries"] += 1
                self._save(st)
                return self.slot_path(pending)
            self._rollback(st, reason)
        active = st["active"]
        if not self.complete(active):
            if not self.complete(_other(active)):
                return None
            st["active"] = _other(active)
            st["last"] = {"event": "recovered", "reason": "active slot incomplete"}
            self._save(st)
        elif self.recovered:
            self._save(st)
        return self.slot_path(st["active"])

    def _rollback(self, st, reason):
        failed = st["pending"]
        st["pending"] = None
        st["tries"] = 0
        st["deadline"] = None
        st["last"] = {"event": "rolled_back", "reason": reason,
                      "version": self.slot_version(failed)}
        self._save(st)

    # health
    def confirm_healthy(self, running):
        """Make the running version the known-good one; True if it was on trial.
        Only the pending version, booted at least once, can be confirmed."""
        st = self.state()
        if st is None or not st["pending"] or slot_name(running) != st["pending"]:
            return False
        if st["tries"] < 1:
            return False
        st["active"] = st["pending"]
        st["pending"] = None
        st["tries"] = 0
        st["deadline"] = None
        st["last"] = {"event": "confirmed", "version": self.slot_version(st["active"])}
        self._save(st)
        return True

    def check_deadline(self, running, now_ms=None, uptime_ms=None):
        """Roll back a version on trial that has not been confirmed within
        `window_ms` of uptime or by its wall-clock deadline; True when it did
        (the caller resets the board)."""
        st = self.state()
        if st is None or not st["pending"] or slot_name(running) != st["pending"]:
            return False
        if uptime_ms is not None and uptime_ms >= st["window_ms"]:
            self._rollback(st, "window")
            return True
        if _past(st, now_ms):
            self._rollback(st, "deadline")
            return True
        return False

    # update
    def receiver(self, size, digest=None):
        return Receiver(self, size, digest)

    def clear_incoming(self):
        _remove(self.fs, self.incoming)
        _remove(self.fs, self.incoming_meta)

    def stage(self, bundle_path, trusted, allow_downgrade=False, verify=None, mpy=None):
        """Check the bundle completely, then unpack it into the inactive slot and
        read it back. The active slot and the state are not touched. Returns
        the manifest."""
        st = self.state()
        if st is not None and st["pending"]:
            raise UpdateStateError("busy", "version in slot %s is on trial" % st["pending"])
        m = verify_container(self.fs, bundle_path, trusted, verify, mpy)
        active = st["active"] if st else None
        current = self.slot_version(active) if active else None
        newer = current is None or parse_version(m["version"]) > parse_version(current)
        if not newer and not allow_downgrade:
            raise BundleRejected("downgrade", "bundle %s is not newer than running %s"
                                 % (m["version"], current))
        target = _other(active) if active else "a"
        top = self.slot_path(target)
        fs = self.fs
        _remove(fs, join(top, MANIFEST))  # the slot is incomplete from here on
        rmtree(fs, top)
        fs.mkdir(top)
        f = fs.open(bundle_path, "rb")
        try:
            mbytes, sig, _ = read_head(f)
            for e in m["files"]:
                path = join(top, e["path"])
                if "/" in e["path"]:
                    _makedirs(fs, path.rsplit("/", 1)[0])
                out = fs.open(path, "wb")
                try:
                    digest = _copy(f, e["size"], out, e["path"])
                    _sync(out)
                finally:
                    out.close()
                if digest != e["sha256"]:  # the file changed since verify_container
                    raise BundleRejected("hash_mismatch", e["path"])
        finally:
            f.close()
        _write(fs, join(top, SIGNATURE), sig)
        check_tree(fs, top, m)  # read back from flash
        atomic_write(fs, join(top, MANIFEST), mbytes)
        return m

    def switch(self, now_ms=None):
        """Make the staged slot pending: the next boot runs it. Returns its name."""
        st = self.state()
        if st is None:
            raise UpdateStateError("nothing_staged", "no app installed")
        if st["pending"]:
            raise UpdateStateError("busy", "version in slot %s is on trial" % st["pending"])
        target = _other(st["active"])
        m = self.slot_manifest(target)
        if m is None:
            raise UpdateStateError("nothing_staged", "slot %s is not complete" % target)
        check_tree(self.fs, self.slot_path(target), m)
        st["pending"] = target
        st["tries"] = 0
        st["max_tries"] = self.max_tries
        st["window_ms"] = self.window_ms
        st["deadline"] = now_ms + self.deadline_ms if now_ms else None
        st["last"] = {"event": "switched", "version": m["version"]}
        self._save(st)
        return target


def _past(st, now_ms):
    return now_ms is not None and st.get("deadline") is not None and now_ms >= st["deadline"]


class Trial:
    """Decides when a version on trial has proven healthy: the app calls tick()
    from its supervisor loop with healthy = uplink connected and a heartbeat
    sent. Healthy for `hold_ms` of uptime in a row -> confirmed; not confirmed
    within the window or deadline -> rolled back (the caller resets)."""

    def __init__(self, ota, running, hold_ms=180000):
        self.ota = ota
        self.running = running
        self.hold_ms = hold_ms
        self.since = None
        st = ota.state()
        self.on_trial = bool(st and st["pending"] and slot_name(running) == st["pending"])

    def tick(self, healthy, uptime_ms, now_ms=None):
        """None, "confirmed" or "rollback"."""
        if not self.on_trial:
            return None
        if healthy:
            if self.since is None:
                self.since = uptime_ms
            if uptime_ms - self.since >= self.hold_ms and self.ota.confirm_healthy(self.running):
                self.on_trial = False
                return "confirmed"
        else:
            self.since = None
        if self.ota.check_deadline(self.running, now_ms, uptime_ms):
            self.on_trial = False
            return "rollback"
        return None


def select_slot(state_dir="/", now_ms=None, fs=None):
    """boot.py's entry: the app slot path to put first on sys.path, or None
    (no complete slot: boot the base image's own app). Never raises: if the
    state cannot be read or written, the first complete slot is returned."""
    ota = Ota(state_dir, fs)
    try:
        return ota.select_slot(now_ms)
    except Exception:
        try:
            st = ota.state()
            if st and ota.complete(st["active"]):
                return ota.slot_path(st["active"])
        except Exception:
            pass
        for s in SLOTS:
            if ota.complete(s):
                return ota.slot_path(s)
        return None


def confirm_healthy(state_dir, running, fs=None):
    return Ota(state_dir, fs).confirm_healthy(running)
