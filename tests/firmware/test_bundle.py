"""Bundles on CPython (firmware/bundle.py): the fleet's signatures (OpenSSL
through `cryptography`) and the gateway's plain-Python verifier agree, and a
bundle is checked the way a gateway checks it, with the same refusal codes."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware import bundle
from firmware.board.ota_ed25519 import sha512
from firmware.board.ota_ed25519 import verify as gateway_verify
from tests.firmware import bundles as portable

FILES = {
    "gateway/app.mpy": b"M\x06app" + bytes(range(256)) * 3,
    "gateway/mqtt/codec.mpy": b"M\x06codec" * 50,
    "ota.mpy": b"M\x06ota",
    "ummc_version.mpy": b"M\x06v",
}


def _tree(tmp: Path, key: Ed25519PrivateKey, version: str = "1.2.3",
          files: dict[str, bytes] | None = None) -> Path:
    files = files or FILES
    m = bundle.manifest_bytes(version=version,
                              files=[bundle.FileEntry.of(p, d) for p, d in files.items()],
                              created_ms=1795939321000, commit="abc", target_micropython="1.28.0",
                              mpy_version="6.3")
    out = tmp / f"tree-{version}"
    bundle.write_tree(out, m, bundle.signature_record(key, m), files)
    return out


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def trusted(key: Ed25519PrivateKey) -> dict[str, bytes]:
    return bundle.trust_map([bundle.public_bytes(key)])


def _code(path: Path, trusted: dict[str, bytes]) -> str:
    with pytest.raises(bundle.BundleRejected) as e:
        bundle.verify(path, trusted)
    return e.value.code


def test_gateway_sha512_matches_hashlib() -> None:
    for n in [*range(0, 260, 7), 111, 112, 127, 128, 129, 1000]:
        data = os.urandom(n)
        assert sha512(data) == hashlib.sha512(data).digest(), n


def test_gateway_verifier_agrees_with_openssl() -> None:
    for _ in range(20):
        key = Ed25519PrivateKey.generate()
        pub = bundle.public_bytes(key)
        msg = os.urandom(40)
        sig = key.sign(msg)
        assert gateway_verify(pub, msg, sig) and bundle.openssl_verify(pub, msg, sig)
        for i in (0, 31, 32, 63):
            bad = bytearray(sig)
            bad[i] ^= 0x04
            assert gateway_verify(pub, msg, bytes(bad)) == bundle.openssl_verify(pub, msg,
                                                                                 bytes(bad))
            assert not gateway_verify(pub, msg, bytes(bad))
        assert not gateway_verify(pub, msg + b"x", sig)


def test_portable_test_signer_is_rfc8032_ed25519() -> None:
    seed = os.urandom(32)
    key = Ed25519PrivateKey.from_private_bytes(seed)
    assert portable.public_key(seed) == bundle.public_bytes(key)
    assert portable.sign(seed, b"manifest") == key.sign(b"manifest")


def test_tree_and_container_verify_with_both_verifiers(tmp_path: Path, key: Ed25519PrivateKey,
                                                      trusted: dict[str, bytes]) -> None:
    tree = _tree(tmp_path, key)
    container = tmp_path / "b.ummc"
    bundle.pack(tree, container)
    for path in (tree, container):
        assert bundle.verify(path, trusted)["version"] == "1.2.3"
        assert bundle.verify(path, trusted, verifier=gateway_verify)["version"] == "1.2.3"
    m = json.loads((tree / "manifest.json").read_bytes())
    assert m["format"] == "ummc-fw/1" and m["target_micropython"] == "1.28.0"
    assert [e["path"] for e in m["files"]] == sorted(FILES)
    assert container.stat().st_size == (16 + len((tree / "manifest.json").read_bytes())
                                        + len((tree / "manifest.sig").read_bytes())
                                        + sum(len(d) for d in FILES.values()))


def test_tampered_file_is_refused(tmp_path: Path, key: Ed25519PrivateKey,
                                  trusted: dict[str, bytes]) -> None:
    tree = _tree(tmp_path, key)
    container = tmp_path / "b.ummc"
    bundle.pack(tree, container)
    data = bytearray(container.read_bytes())
    data[-3] ^= 1
    container.write_bytes(bytes(data))
    assert _code(container, trusted) == "hash_mismatch"
    (tree / "gateway/app.mpy").write_bytes(FILES["gateway/app.mpy"][:-1] + b"X")
    assert _code(tree, trusted) == "hash_mismatch"
    (tree / "gateway/app.mpy").write_bytes(b"short")
    assert _code(tree, trusted) == "size_mismatch"
    (tree / "gateway/app.mpy").unlink()
    assert _code(tree, trusted) == "missing_file"


def test_tampered_manifest_is_refused(tmp_path: Path, key: Ed25519PrivateKey,
                                      trusted: dict[str, bytes]) -> None:
    tree = _tree(tmp_path, key)
    path = tree / "manifest.json"
    path.write_bytes(path.read_bytes().replace(b'"1.2.3"', b'"1.2.9"'))
    assert _code(tree, trusted) == "bad_signature"
    path.write_bytes(b"{not json")
    assert _code(tree, trusted) == "bad_format"


def test_signature_from_another_key_is_refused(tmp_path: Path,
                                               trusted: dict[str, bytes]) -> None:
    tree = _tree(tmp_path, Ed25519PrivateKey.generate())
    assert _code(tree, trusted) == "unknown_key"
    # Another key that claims a trusted key's id.
    rec = json.loads((tree / "manifest.sig").read_bytes())
    rec["key"] = next(iter(trusted))
    (tree / "manifest.sig").write_bytes(json.dumps(rec).encode())
    assert _code(tree, trusted) == "bad_signature"


def test_unlisted_module_in_a_tree_is_refused(tmp_path: Path, key: Ed25519PrivateKey,
                                              trusted: dict[str, bytes]) -> None:
    tree = _tree(tmp_path, key)
    (tree / "gateway" / "uplink.py").write_text("shadow = True\n")
    assert _code(tree, trusted) == "unlisted_file"


def test_not_a_bundle_is_refused(tmp_path: Path, trusted: dict[str, bytes]) -> None:
    junk = tmp_path / "x.ummc"
    junk.write_bytes(b"PK\x03\x04" + os.urandom(100))
    assert _code(junk, trusted) == "bad_format"
    assert _code(tmp_path / "absent.ummc", trusted) == "missing_file"


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    path = tmp_path / "fleet.pem"
    pub = bundle.generate_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bundle.public_bytes(bundle.load_private_key(path)) == pub
    with pytest.raises(FileExistsError):
        bundle.generate_key(path)
    # Every way of naming a trusted key gives the same key.
    pub_pem = tmp_path / "pub.pem"
    pub_pem.write_bytes(bundle.load_private_key(path).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for spec in (pub.hex(), str(path), f"{path}.pub", str(pub_pem)):
        assert bundle.load_public_key(spec) == pub, spec
    with pytest.raises(bundle.KeyFileError):
        bundle.load_public_key("not-a-key")
    with pytest.raises(bundle.KeyFileError):
        bundle.load_private_key(Path(f"{path}.pub"))
