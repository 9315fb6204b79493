"""MicroPython snippets the tool runs on a board with `mpremote exec`.

Each snippet prints one line `UMMC>` + JSON, which target.BoardTarget
parses; nothing else it prints matters. They use only what a MicroPython
1.28 board has (os, json, binascii, hashlib, struct, time, gc) and also run
unchanged under CPython and under the MicroPython Unix port, which is how
tests/firmware_tool/ runs them (a MicroPython process on a pseudo-terminal,
driven by the real mpremote).

`survey` gathers in one round trip what `doctor` needs: the config, boot
and OTA records, slot versions, a read-only walk of the journal (record
headers, and of each reading only its instrument address and receive time,
never its values), clock, free flash and heap."""

from __future__ import annotations

MARK = "UMMC>"
MAINTENANCE = "nowdt"  # marker file: the firmware starts no watchdog (firmware/board/hw.py)

_PRELUDE = """
import os, json
try:
    from binascii import hexlify
except ImportError:
    from ubinascii import hexlify
def _j(a, b):
    return a + b if a.endswith('/') else a + '/' + b
def _isdir(p):
    try:
        return os.stat(p)[0] & 0x4000 != 0
    except OSError:
        return False
def _read(p):
    try:
        with open(p, 'rb') as f:
            return f.read()
    except OSError:
        return None
def _out(o):
    print('UMMC>' + json.dumps(o))
"""


def _script(body: str, **params: object) -> str:
    assigns = "".join(f"{k} = {v!r}\n" for k, v in params.items())
    return _PRELUDE + assigns + body


def ping() -> str:
    return _script("_out('ready')\n")


def read(path: str) -> str:
    return _script("d = _read(P)\n_out(None if d is None else hexlify(d).decode())\n", P=path)


def rename(src: str, dst: str) -> str:
    return _script("os.rename(S, D)\n_out(True)\n", S=src, D=dst)


def remove(path: str) -> str:
    return _script("try:\n    os.remove(P)\nexcept OSError:\n    pass\n_out(True)\n", P=path)


def makedirs(paths: list[str]) -> str:
    """Create each directory (parents first) unless it exists."""
    return _script("""
for p in PS:
    cur = ''
    for part in p.split('/'):
        if not part:
            cur = '/'
            continue
        cur = _j(cur, part) if cur else part
        if not _isdir(cur):
            os.mkdir(cur)
_out(True)
""", PS=paths)


def rmtree(path: str) -> str:
    return _script("""
def _rm(p):
    if _isdir(p):
        for n in os.listdir(p):
            _rm(_j(p, n))
        os.rmdir(p)
    else:
        os.remove(p)
try:
    os.stat(P)
    _rm(P)
except OSError:
    pass
_out(True)
""", P=path)


def hashes(top: str) -> str:
    """{relative path: sha256 hex} of every file under top ({} if missing)."""
    return _script("""
from hashlib import sha256
def _walk(rel, out):
    for n in os.listdir(_j(T, rel) if rel else T):
        r = rel + '/' + n if rel else n
        p = _j(T, r)
        if _isdir(p):
            _walk(r, out)
        else:
            h = sha256()
            with open(p, 'rb') as f:
                while True:
                    b = f.read(1024)
                    if not b:
                        break
                    h.update(b)
            out[r] = hexlify(h.digest()).decode()
res = {}
if _isdir(T):
    _walk('', res)
_out(res)
""", T=top)


def hold(marker: str) -> str:
    """Write the maintenance marker, then reset: the board comes back with
    no watchdog, so mpremote can stop the app (Ctrl-C) and work at the REPL."""
    return _script("""
with open(M, 'w') as f:
    f.write('1')
import machine
machine.reset()
""", M=marker)


def release(marker: str) -> str:
    """Remove the maintenance marker and reset: the gateway starts normally."""
    return _script("""
try:
    os.remove(M)
except OSError:
    pass
import machine
machine.reset()
""", M=marker)


def survey(root: str, state: str, root_files: tuple[str, ...],
           state_files: tuple[str, ...]) -> str:
    """Flash root R (slots, OTA state, TLS files), state directory S (config,
    boot record, journal)."""
    return _script(_SURVEY, R=root, S=state, RF=root_files, SF=state_files)


_SURVEY = """
import sys, time, gc, struct
res = {}
res['platform'] = sys.platform
impl = sys.implementation
res['micropython'] = '.'.join([str(x) for x in impl.version[:3]]) \\
    if impl.name == 'micropython' else None
shift = 946684800000 if time.gmtime(0)[0] == 2000 else 0
ns = getattr(time, 'time_ns', None)
res['now_ms'] = (ns() // 1000000 if ns else int(time.time()) * 1000) + shift
files = {}
for n in RF + SF:
    d = _read(_j(S if n in SF else R, n))
    files[n] = None if d is None else d.decode()
res['files'] = files
res['trial'] = _read(_j(S, 'trial')) is not None
slots = {}
for s in ('a', 'b'):
    d = _read(_j(_j(R, 'app_' + s), 'manifest.json'))
    v = None
    if d is not None:
        try:
            v = json.loads(d).get('version') or '?'
        except ValueError:
            v = '?'
    slots[s] = v
res['slots'] = slots
J = _j(S, 'journal')
jr = None
if _isdir(J):
    d = _read(_j(J, 'acked'))
    try:
        acked = int(d.decode().strip() or '0') if d else 0
    except ValueError:
        acked = 0
    m = _read(_j(J, 'meta'))
    jr = {'acked': acked, 'jid': m.decode().strip() if m else None, 'depth': 0,
          'bytes': 0, 'oldest_rtime': None, 'instruments': {}, 'damaged': 0}
    names = [n for n in os.listdir(J) if n.startswith('s') and n.endswith('.j')]
    names.sort()
    for n in names:
        b = _read(_j(J, n)) or b''
        jr['bytes'] += len(b)
        off = 0
        while off + 12 <= len(b):
            if b[off] != 0xA5:
                jr['damaged'] += 1
                break
            kind = b[off + 1]
            ln = struct.unpack_from('<H', b, off + 2)[0]
            seq = struct.unpack_from('<I', b, off + 4)[0]
            end = off + 12 + ln
            if end > len(b):
                jr['damaged'] += 1
                break
            if seq > acked:
                jr['depth'] += 1
                if kind & 0x7F == 1 and ln <= 4096:
                    try:
                        p = json.loads(b[off + 12:end])
                        rt = p.get('rtime')
                        addr = (p.get('inst') or {}).get('addr') or '?'
                    except (ValueError, AttributeError):
                        rt = None
                        addr = '?'
                    if isinstance(rt, int):
                        if jr['oldest_rtime'] is None or rt < jr['oldest_rtime']:
                            jr['oldest_rtime'] = rt
                    e = jr['instruments'].get(addr)
                    if e is None:
                        e = jr['instruments'][addr] = {'pending': 0, 'last_rtime': None}
                    e['pending'] += 1
                    if isinstance(rt, int) and (e['last_rtime'] is None or rt > e['last_rtime']):
                        e['last_rtime'] = rt
            off = end
        if off < len(b) and off + 12 > len(b):
            jr['damaged'] += 1
        b = None
res['journal'] = jr
try:
    st = os.statvfs(R)
    res['flash_free'] = st[0] * st[3]
except (OSError, AttributeError):
    res['flash_free'] = None
gc.collect()
res['mem_free'] = gc.mem_free() if hasattr(gc, 'mem_free') else None
_out(res)
"""


def ble_scan(seconds: float) -> str:
    """Health instruments advertising nearby, seen by the board's radio
    (aioble, from the image): [{addr, name, profile, rssi}]. Not run in the
    tests here (no radio): the bench suite runs it on a board."""
    return _script("""
import asyncio, bluetooth
import aioble
PROFILES = ((0x1810, 'blood_pressure'), (0x1808, 'glucose'), (0x1809, 'thermometer'),
            (0x1822, 'pulse_oximeter'), (0x181D, 'weight_scale'))
async def main():
    found = {}
    async with aioble.scan(MS, interval_us=30000, window_us=30000, active=True) as scanner:
        async for r in scanner:
            if not r.connectable:
                continue
            svcs = list(r.services())
            prof = None
            for sid, p in PROFILES:
                if bluetooth.UUID(sid) in svcs:
                    prof = p
                    break
            if prof is None:
                continue
            a = r.device.addr_hex().upper()
            found[a] = {'addr': a, 'name': r.name() or '', 'profile': prof, 'rssi': r.rssi}
    _out(list(found.values()))
asyncio.run(main())
""", MS=int(seconds * 1000))
