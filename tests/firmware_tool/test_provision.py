"""`ummc-gateway provision` and `label` against a virtual gateway directory:
what a technician types, what the gateway then loads, what the fleet's
administrator receives, and the exit code and message of each mistake."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import qrcode
from PIL import Image

from firmware.tool import label
from gateway.config import ConfigStore
from tests.firmware_tool.conftest import Run, run_tool

WIFI = ("--wifi-ssid", "UMMC-Van", "--wifi-password", "van-secret-12")
BROKER = ("--broker", "mqtts://fleet.example.ma:8883")


def provision(vdir: Path, cwd: Path, *extra: str, lang: str | None = None) -> Run:
    return run_tool("provision", "--virtual", str(vdir), *extra, lang=lang, cwd=cwd)


@pytest.fixture
def ca(ca_file: Path) -> tuple[str, str]:
    return ("--ca", str(ca_file))


@pytest.fixture
def vdir(tmp_path: Path) -> Path:
    d = tmp_path / "gw"
    d.mkdir()
    return d


def _qr_matches(png: Path, text: str) -> bool:
    """The PNG's code has exactly the modules of `text`'s QR code (no QR
    decoder here: sample the centre of each module and compare)."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=3)
    qr.add_data(text)
    qr.make(fit=True)
    matrix = qr.get_matrix()  # includes the border
    img = Image.open(png).convert("L")
    size = len(matrix) * 8
    left = (img.width - size) // 2 if img.width > size else 0
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            pixel = img.getpixel((left + x * 8 + 4, y * 8 + 4))
            assert isinstance(pixel, int)
            if (pixel < 128) != dark:
                return False
    return True


def test_provision_writes_a_config_the_gateway_loads_and_a_qr_label(ca: tuple[str, str], vdir: Path,
                                                                     tmp_path: Path) -> None:
    r = provision(vdir, tmp_path, "--unit", "U012", *WIFI, *BROKER, *ca)
    assert r.code == 0, r.err
    assert "Passerelle gw-u012 de l'unité U012 configurée (version 1)" in r.out
    assert (vdir / "ca.pem").read_bytes() == Path(ca[1]).read_bytes()
    cfg = ConfigStore(str(vdir / "data")).load()  # the gateway's own loader
    assert (cfg["unit"], cfg["gateway"], cfg["version"]) == ("U012", "gw-u012", 1)
    assert cfg["network"] == {"mode": "wifi", "wifi_ssid": "UMMC-Van",
                              "wifi_password": "van-secret-12", "apn": None, "apn_user": None,
                              "apn_password": None}
    up = cfg["uplink"]
    assert (up["broker_host"], up["broker_port"], up["tls"], up["username"]) == \
        ("fleet.example.ma", 8883, True, "gw-u012")
    assert len(up["password"]) == 32
    assert not (vdir / "data" / "config.json.tmp").exists()
    # the account for the fleet's administrator: private, in `register`'s shape
    account = tmp_path / "accounts" / "gw-u012.account.json"
    assert stat.S_IMODE(account.stat().st_mode) == 0o600
    assert json.loads(account.read_text()) == {
        "gateways": [{"unit": "U012", "gateway": "gw-u012", "password": up["password"]}]}
    assert f"python -m fleet_server register --accounts {Path('accounts')}" in r.out
    assert up["password"] not in r.out  # never on the screen
    # the QR label: a PNG whose code says unit and gateway, also printed
    png = tmp_path / "labels" / "U012_gw-u012.png"
    assert _qr_matches(png, "UMMC;unit=U012;gateway=gw-u012")
    assert label.ascii_qr("U012", "gw-u012") in r.out


def test_provisioning_again_keeps_password_and_instruments_and_bumps_the_version(
        ca: tuple[str, str], vdir: Path, tmp_path: Path) -> None:
    assert provision(vdir, tmp_path, "--unit", "U012", *WIFI, *BROKER, *ca,
                     "--no-label").code == 0
    store = ConfigStore(str(vdir / "data"))
    first = store.load()
    doc = json.loads((vdir / "data" / "config.json").read_text())
    doc["instruments"] = [{"addr": "C4:7C:8D:6A:00:21", "kind": "ble",
                           "profile": "blood_pressure"}]
    store.save(doc)
    (vdir / "data" / "trial").write_text('{"previous":1,"version":1}')  # a trial cut by a reset

    r = provision(vdir, tmp_path, "--apn", "iam.ma", "--no-label", lang="en_US.UTF-8")
    assert r.code == 0, r.err
    assert "Broker password: unchanged." in r.out
    cfg = store.load()
    assert store.rolled_back_at_boot is None  # the stale trial marker is gone
    assert cfg["version"] == 2
    assert cfg["network"]["mode"] == "ppp" and cfg["network"]["wifi_password"] is None
    assert cfg["uplink"]["password"] == first["uplink"]["password"]
    assert [i["addr"] for i in cfg["instruments"]] == ["C4:7C:8D:6A:00:21"]
    assert json.loads((vdir / "data" / "config.prev").read_text())["version"] == 1

    r = provision(vdir, tmp_path, "--new-password", "--no-label")
    assert r.code == 0
    assert store.load()["uplink"]["password"] != first["uplink"]["password"]


BAD_URL = {"fr": "Adresse du broker invalide", "ar": "عنوان الوسيط غير صالح",
           "en": "Bad broker address"}
BAD_FIELD = {"fr": "Configuration refusée : champ unit", "ar": "الإعدادات مرفوضة: الحقل unit",
             "en": "Configuration refused: field unit"}
NO_CA = {"fr": "il faut le certificat CA du broker", "ar": "يلزم شهادة CA لوسيط الأسطول",
         "en": "the fleet broker's CA certificate is needed"}
NO_DIR = {"fr": "Pas de passerelle virtuelle", "ar": "لا توجد بوابة افتراضية",
          "en": "No virtual gateway"}
USAGE = {"fr": "Commande incorrecte", "ar": "أمر غير صحيح", "en": "Bad command"}
EXIT = {"fr": "(code de sortie {})", "ar": "(رمز الخروج {})", "en": "(exit code {})"}


@pytest.mark.parametrize("lang", ["fr", "ar", "en"])
def test_bad_input_gives_its_exit_code_and_a_message_in_each_language(ca: tuple[str, str],
        lang: str, vdir: Path, tmp_path: Path) -> None:
    def tool(*argv: str) -> Run:
        return run_tool("--lang", lang, *argv, cwd=tmp_path)

    cases = [
        (tool("provision", "--virtual", str(vdir), "--unit", "U1", *WIFI, "--broker",
              "http://fleet"), 6, BAD_URL),
        (tool("provision", "--virtual", str(vdir), "--unit", "U 12", *WIFI, *BROKER, *ca), 6,
         BAD_FIELD),
        (tool("provision", "--virtual", str(vdir), "--unit", "U12", *WIFI, *BROKER), 6,
         NO_CA),
        (tool("provision", "--virtual", str(tmp_path / "nowhere"), "--unit", "U1"), 3, NO_DIR),
        (tool("provision", "--virtual", str(vdir), "--unit"), 2, USAGE),
        (tool("provision", "--virtual", str(vdir), "--wifi-ssid", "a", "--apn", "b"), 2, None),
    ]
    for r, code, text in cases:
        assert r.code == code, (r.out, r.err)
        if text is not None:
            assert text[lang] in r.err
        assert EXIT[lang].format(code) in r.err
    assert not (vdir / "data" / "config.json").exists()  # nothing written by any of them


def test_wifi_password_too_short_is_refused_before_anything_is_written(ca: tuple[str, str],
        vdir: Path, tmp_path: Path) -> None:
    r = provision(vdir, tmp_path, "--unit", "U012", "--wifi-ssid", "x", "--wifi-password",
                  "short", *BROKER, *ca)
    assert r.code == 6
    assert "network.wifi_password" in r.err
    assert list(vdir.iterdir()) == []


def test_label_again_from_the_gateway_config(ca: tuple[str, str], vdir: Path,
                                             tmp_path: Path) -> None:
    assert provision(vdir, tmp_path, "--unit", "U007", *WIFI, *BROKER, *ca,
                     "--no-label").code == 0
    r = run_tool("label", "--virtual", str(vdir), "--label-dir", str(tmp_path / "out"))
    assert r.code == 0, r.err
    assert _qr_matches(tmp_path / "out" / "U007_gw-u007.png", "UMMC;unit=U007;gateway=gw-u007")
    r = run_tool("label", "--virtual", str(tmp_path / "empty"))
    assert r.code == 3


def test_tls_files_client_certificate_and_their_mistakes(ca: tuple[str, str], vdir: Path,
                                                         tmp_path: Path) -> None:
    cert, key = tmp_path / "gw.pem", tmp_path / "gw.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    r = provision(vdir, tmp_path, "--lang", "en", "--unit", "U012", *WIFI, *BROKER, *ca,
                  "--client-cert", str(cert))
    assert r.code == 2 and "--client-cert and --client-key go together." in r.err
    r = provision(vdir, tmp_path, "--unit", "U012", *WIFI, *BROKER, "--ca", str(key.parent))
    assert r.code == 2
    r = provision(vdir, tmp_path, "--unit", "U012", *WIFI, *BROKER, "--ca", str(tmp_path))
    assert r.code == 2
    notpem = tmp_path / "ca.txt"
    notpem.write_text("hello")
    r = provision(vdir, tmp_path, "--unit", "U012", *WIFI, *BROKER, "--ca", str(notpem))
    assert r.code == 6 and "n'est pas un fichier PEM" in r.err
    assert list(vdir.iterdir()) == []
    r = provision(vdir, tmp_path, "--unit", "U012", *WIFI, *BROKER, *ca, "--client-cert",
                  str(cert), "--client-key", str(key), "--no-label")
    assert r.code == 0, r.err
    assert (vdir / "client.pem").read_bytes() == cert.read_bytes()
    assert (vdir / "client.key").read_bytes() == key.read_bytes()
    # the CA stays for a re-provisioning that does not give it again
    assert provision(vdir, tmp_path, "--apn", "iam.ma", "--no-label").code == 0
