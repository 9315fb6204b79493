# Test helpers that run on CPython and under MicroPython (not a test module):
# an Ed25519 signer in plain Python over firmware/board/ota.py's curve code,
# and bundles in ota.py's container format built from (path, bytes) pairs.
# The fleet's real signer is firmware/bundle.py (the `cryptography` package);
# tests/firmware/test_bundle.py checks that both agree.
import json
from binascii import hexlify
from hashlib import sha256

from firmware.board.ota import FORMAT, key_id, pack_header, signed_message
from firmware.board.ota_ed25519 import BASE, encode_point, mul2, sha512

ORDER = 2 ** 252 + 27742317777372353535851937790883648493
FLEET_SEED = b"\x11" * 32
OTHER_SEED = b"\x22" * 32


def _secret(seed):
    h = sha512(seed)
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def public_key(seed):
    a, _ = _secret(seed)
    return encode_point(mul2(a, BASE, 0, BASE))


def sign(seed, msg):
    """RFC 8032 Ed25519 signature of msg by the key made from a 32-byte seed."""
    a, prefix = _secret(seed)
    pub = encode_point(mul2(a, BASE, 0, BASE))
    r = int.from_bytes(sha512(prefix + msg), "little") % ORDER
    big_r = encode_point(mul2(r, BASE, 0, BASE))
    k = int.from_bytes(sha512(big_r + pub + msg), "little") % ORDER
    return big_r + ((r + k * a) % ORDER).to_bytes(32, "little")


def trusted(seed=FLEET_SEED):
    pub = public_key(seed)
    return {key_id(pub): pub}


def signature_record(seed, manifest_bytes, kid=None):
    sig = sign(seed, signed_message(manifest_bytes))
    return json.dumps({"alg": "ed25519", "key": kid or key_id(public_key(seed)),
                       "sig": hexlify(sig).decode()}).encode()


def manifest_bytes(version, files, mpy=None):
    entries = []
    for path, data in files:
        entries.append({"path": path, "sha256": hexlify(sha256(data).digest()).decode(),
                        "size": len(data)})
    m = {"format": FORMAT, "version": version, "target_micropython": "1.28.0",
         "files": entries, "created": 0}
    if mpy:
        m["mpy_version"] = mpy
    return json.dumps(m).encode()


def container(mbytes, sig, datas):
    return pack_header(len(mbytes), len(sig)) + mbytes + sig + b"".join(datas)


def app_files(version):
    """A small app: a few modules, one in a package folder."""
    return [
        ("ummc_version.py", ('VERSION = "%s"\n' % version).encode()),
        ("gateway/app.py", b"# app\n" + version.encode() * 40),
        ("gateway/mqtt/codec.py", b"# codec\n" + b"x" * 300),
        ("ota.py", b"# ota\n" + b"y" * 120),
    ]


def bundle(version, seed=FLEET_SEED, files=None):
    """A signed bundle (container bytes) of app_files(version) or files."""
    files = files or app_files(version)
    m = manifest_bytes(version, files)
    return container(m, signature_record(seed, m), [d for _, d in files])
