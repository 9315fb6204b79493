"""Firmware bundles on CPython: the fleet's signing key, writing a built app
as a bundle, and verifying a bundle exactly as a gateway will.

The format and every check live in `firmware/board/ota.py`, the module the
gateway runs; this module calls the same functions, with the signature
checked by the `cryptography` package (OpenSSL) instead of the gateway's
plain-Python Ed25519 (tests/firmware/test_bundle.py shows both agree). The
build (`firmware/build.py`), the fleet server (before it offers a bundle to
gateways) and the technician's tool (before it flashes one) use it.

Why Ed25519 and not HMAC: threat model and key handling are in
docs/firmware.md ("Signing keys"). In short, a gateway holds only public
keys, so a gateway stolen from a unit gives nothing that can sign a bundle;
an HMAC fleet key on every gateway would.

A bundle exists in two equivalent forms:
- a tree: `manifest.json`, `manifest.sig` and the files, laid out exactly as
  in an app slot on the gateway (`/app_a/`); the technician's tool copies it;
- a container (`.ummc`): one file, header + manifest + signature + files
  (layout in ota.py's header), what OTA sends.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from firmware.board import ota

KEY_ENV = "UMMC_FIRMWARE_KEY"  # path of the release signing key (PEM)
TRUST_ENV = "UMMC_FIRMWARE_TRUST"  # comma-separated trusted public keys (hex or files)
BundleRejected = ota.BundleRejected
Verifier = Callable[[bytes, bytes, bytes], bool]


class KeyFileError(Exception):
    """A key file or trusted key cannot be used."""


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str
    size: int

    @classmethod
    def of(cls, path: str, data: bytes) -> FileEntry:
        return cls(path, hashlib.sha256(data).hexdigest(), len(data))


# --- keys -------------------------------------------------------------------------

def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_key(path: Path) -> bytes:
    """Write a new Ed25519 signing key (PEM, mode 0600) and `<path>.pub` (its
    public key in hex); returns the public key. Refuses to overwrite."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = public_bytes(key)
    Path(str(path) + ".pub").write_text(pub.hex() + "\n")
    return pub


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise KeyFileError(f"signing key {path}: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"signing key {path} is not an Ed25519 key")
    return key


def load_public_key(spec: str) -> bytes:
    """A trusted public key from 64 hex digits, a `.pub` file (hex), or a PEM
    file (public or private key)."""
    text = spec.strip()
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    path = Path(text)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"trusted key {spec!r}: not 64 hex digits and not a readable file") \
            from e
    if b"-----BEGIN" in data:
        try:
            if b"PRIVATE KEY" in data:
                return public_bytes(load_private_key(path))
            pub = serialization.load_pem_public_key(data)
        except ValueError as e:
            raise KeyFileError(f"trusted key {path}: {e}") from e
        if not isinstance(pub, Ed25519PublicKey):
            raise KeyFileError(f"trusted key {path} is not an Ed25519 key")
        return public_bytes(pub)
    return load_public_key(data.decode(errors="replace").strip())


def trust_map(public_keys: Iterable[bytes]) -> dict[str, bytes]:
    """{key id: public key}, as `ummc_keys.TRUSTED` holds it on the gateway."""
    return {ota.key_id(p): p for p in public_keys}


def trust_from_env() -> list[bytes]:
    return [load_public_key(s) for s in os.environ.get(TRUST_ENV, "").split(",") if s.strip()]


# --- signing and verifying ----------------------------------------------------------

def signature_record(key: Ed25519PrivateKey, manifest: bytes) -> bytes:
    """`manifest.sig`: Ed25519 over b"UMMC-FW1" + SHA-256(manifest bytes)."""
    sig = key.sign(ota.signed_message(manifest))
    return json.dumps({"alg": "ed25519", "key": ota.key_id(public_bytes(key)),
                       "sig": sig.hex()}, sort_keys=True).encode()


def openssl_verify(public: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(sig, msg)
    except (InvalidSignature, ValueError):
        return False
    return True


def manifest_bytes(*, version: str, files: list[FileEntry], created_ms: int, commit: str,
                   target_micropython: str, mpy_version: str) -> bytes:
    """Canonical manifest JSON (sorted keys, no spaces); files sorted by path."""
    m = {
        "format": ota.FORMAT,
        "version": version,
        "target_micropython": target_micropython,
        "mpy_version": mpy_version,
        "commit": commit,
        "created": created_ms,
        "files": [{"path": f.path, "sha256": f.sha256, "size": f.size}
                  for f in sorted(files, key=lambda f: f.path)],
    }
    return json.dumps(m, sort_keys=True, separators=(",", ":")).encode()


def write_tree(out: Path, manifest: bytes, sig: bytes, files: dict[str, bytes]) -> None:
    """The tree form: files, then manifest.sig, then manifest.json (last, as on
    the gateway, where manifest.json marks a complete slot)."""
    for rel, data in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (out / ota.SIGNATURE).write_bytes(sig)
    (out / ota.MANIFEST).write_bytes(manifest)


def pack(tree: Path, out_file: Path) -> None:
    """The container form of a tree (files in the manifest's order)."""
    manifest = (tree / ota.MANIFEST).read_bytes()
    sig = (tree / ota.SIGNATURE).read_bytes()
    m = ota.parse_manifest(manifest)
    with out_file.open("wb") as f:
        f.write(ota.pack_header(len(manifest), len(sig)) + manifest + sig)
        for e in m["files"]:
            f.write((tree / e["path"]).read_bytes())


def verify(path: Path, trusted: dict[str, bytes], *, mpy: str | None = None,
           verifier: Verifier = openssl_verify) -> dict[str, Any]:
    """Check a bundle (tree or container) as a gateway does: signature by a
    trusted key, target, every file's size and SHA-256, nothing unlisted.
    Returns the manifest; raises BundleRejected with the gateway's code."""
    fs = ota.Fs()
    if path.is_dir():
        return ota.verify_tree(fs, str(path), trusted, verifier, mpy)
    if not path.exists():
        raise BundleRejected("missing_file", str(path))
    return ota.verify_container(fs, str(path), trusted, verifier, mpy)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            h.update(chunk)
    return h.hexdigest()
