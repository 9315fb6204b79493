# mpy-portable
# OTA bundles on the gateway (firmware/board/ota.py): a bundle is refused,
# with a specific code and before anything changes, unless the fleet signed
# it and every file is whole; a download resumes where it stopped.
from firmware.board.ota import (
    MANIFEST,
    BundleRejected,
    Ota,
    UpdateStateError,
    join,
    select_slot,
    verify_tree,
)
from firmware.board.ota_ed25519 import sha512, verify
from tests.firmware.bundles import (
    FLEET_SEED,
    OTHER_SEED,
    app_files,
    bundle,
    container,
    manifest_bytes,
    public_key,
    sign,
    signature_record,
)
from tests.firmware.otakit import (
    CHUNK,
    TRUSTED,
    file_exists,
    installed,
    receive,
    signed,
    version_of,
)
from tests.portable import raises, rmtree


def test_sha512_known_answers():
    assert sha512(b"abc")[:8] == b"\xdd\xaf\x35\xa1\x93\x61\x7a\xba"
    assert sha512(b"")[-4:] == b"\xf9\x27\xda\x3e"
    assert len(sha512(b"x" * 300)) == 64


def test_ed25519_rfc8032_vector_1():
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    pub = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    assert public_key(seed) == pub
    assert sign(seed, b"") == sig
    assert verify(pub, b"", sig)
    assert not verify(pub, b"x", sig)
    bad = bytearray(sig)
    bad[40] ^= 1
    assert not verify(pub, b"", bytes(bad))
    assert not verify(public_key(OTHER_SEED), b"", sig)


# --- refusals: nothing is touched ----------------------------------------------

def _refused(data, code, **kw):
    root, ota = installed()
    try:
        before = ota.state()
        path = join(root, "in.bin")
        with open(path, "wb") as f:
            f.write(data)
        e = raises(BundleRejected, ota.stage, path, kw.get("trusted", TRUSTED),
                   kw.get("allow_downgrade", False))
        assert e.code == code, e
        assert ota.state() == before
        assert not ota.complete("b")
        assert select_slot(root).endswith("app_a")
        assert version_of(ota, ota.slot_path("a")) == "1.0.0"
        return e
    finally:
        rmtree(root)


def test_tampered_file_is_refused():
    data = bytearray(signed("1.1.0"))
    data[-10] ^= 0xFF  # a byte of the last file
    e = _refused(bytes(data), "hash_mismatch")
    assert "ota.py" in str(e)


def test_tampered_manifest_is_refused():
    files = app_files("1.1.0")
    m = manifest_bytes("1.1.0", files)
    sig = signature_record(FLEET_SEED, m)
    forged = m.replace(b'"1.1.0"', b'"9.9.9"')
    _refused(container(forged, sig, [d for _, d in files]), "bad_signature")


def test_other_key_is_refused():
    _refused(bundle("1.1.0", seed=OTHER_SEED), "unknown_key")


def test_other_key_claiming_the_fleet_key_id_is_refused():
    files = app_files("1.1.0")
    m = manifest_bytes("1.1.0", files)
    kid = next(iter(TRUSTED))
    sig = signature_record(OTHER_SEED, m, kid=kid)
    _refused(container(m, sig, [d for _, d in files]), "bad_signature")


def test_truncated_and_overlong_bundles_are_refused():
    data = signed("1.1.0")
    _refused(data[:-1], "truncated")
    _refused(data + b"\x00", "too_long")
    _refused(b"PK\x03\x04" + data[4:], "bad_format")


def test_path_escaping_the_slot_is_refused_even_when_signed():
    files = [("../boot.py", b"evil")]
    m = manifest_bytes("1.1.0", files)
    _refused(container(m, signature_record(FLEET_SEED, m), [b"evil"]), "bad_path")


def test_older_version_is_refused_unless_allowed():
    _refused(signed("0.9.0"), "downgrade")
    root, ota = installed()
    try:
        path = join(root, "in.bin")
        with open(path, "wb") as f:
            f.write(signed("0.9.0"))
        assert ota.stage(path, TRUSTED, allow_downgrade=True)["version"] == "0.9.0"
    finally:
        rmtree(root)


def test_wrong_mpy_target_is_refused():
    files = app_files("1.1.0")
    m = manifest_bytes("1.1.0", files, mpy="5.0")
    data = container(m, signature_record(FLEET_SEED, m), [d for _, d in files])
    root, ota = installed()
    try:
        path = join(root, "in.bin")
        with open(path, "wb") as f:
            f.write(data)
        e = raises(BundleRejected, ota.stage, path, TRUSTED, False, None, "6.3")
        assert e.code == "wrong_target"
    finally:
        rmtree(root)


# --- receiving -------------------------------------------------------------------

def test_receive_is_resumable_and_refuses_out_of_order_chunks():
    root, ota = installed()
    try:
        data = signed("1.1.0")
        receive(ota, data, upto=3 * CHUNK)
        rx = Ota(root).receiver(len(data))  # after a reboot
        assert rx.offset == 3 * CHUNK
        e = raises(UpdateStateError, rx.write, 0, data[:CHUNK])
        assert e.code == "out_of_order" and str(3 * CHUNK) in e.detail
        raises(UpdateStateError, rx.finish)
        receive(Ota(root), data)
        other = Ota(root).receiver(len(data) + 1)  # another bundle: starts over
        assert other.offset == 0
    finally:
        rmtree(root)


def test_transport_hash_mismatch_discards_the_download():
    root, ota = installed()
    try:
        data = signed("1.1.0")
        rx = ota.receiver(len(data), "0" * 64)
        rx.write(0, data)
        assert raises(BundleRejected, rx.finish).code == "hash_mismatch"
        assert ota.receiver(len(data), "0" * 64).offset == 0
    finally:
        rmtree(root)


def test_slot_with_an_unlisted_module_is_not_verified():
    root, ota = installed()
    try:
        with open(join(ota.slot_path("a"), "gateway/evil.py"), "w") as f:
            f.write("x = 1\n")
        assert raises(BundleRejected, verify_tree, ota.fs, ota.slot_path("a"),
                      TRUSTED).code == "unlisted_file"
        assert file_exists(join(ota.slot_path("a"), MANIFEST))
    finally:
        rmtree(root)
