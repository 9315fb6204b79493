"""Fixtures for the technician tool's tests: the tool run in-process with
string streams, a signed firmware bundle, and a "board on a serial port":
the MicroPython Unix port behind a pseudo-terminal, driven by the real
mpremote exactly as a USB board would be.

The pty board: MicroPython runs on one pty; the tool's side is another pty
whose slave path (/dev/pts/N) is the `--port`; a thread copies bytes both
ways, as a USB-serial chip does. A `machine` module on the board's path
turns `machine.reset()` into the process ending, and the thread starts a
new MicroPython on the same line, as a board reboots. Its filesystem root
is a directory of the test (`--board-root`), since this "board" shares the
host's filesystem."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import threading
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware import bundle
from firmware.tool import cli

MACHINE_PY = "def reset():\n    raise SystemExit(0)\n"


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_tool(*argv: str, lang: str | None = None, stdin: str = "", cwd: Path | None = None,
             **kw: object) -> Run:
    """`ummc-gateway ARGV` in this process; LANG unset unless `lang`."""
    out, err = io.StringIO(), io.StringIO()
    env = {"LANG": lang} if lang else {}
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        code = cli.main(list(argv), env=env, out=out, err=err, inp=io.StringIO(stdin),
                        **kw)  # type: ignore[arg-type]
    finally:
        os.chdir(old)
    return Run(code, out.getvalue(), err.getvalue())


@dataclass
class SignedBundle:
    tree: Path
    container: Path
    pub: Path  # the fleet's public key file (hex)
    version: str
    files: dict[str, bytes]


def make_bundle(out: Path, version: str, key: Ed25519PrivateKey,
                files: dict[str, bytes] | None = None) -> SignedBundle:
    files = files or {
        "ummc_version.mpy": b"M\x06" + version.encode() * 8,
        "gateway/app.mpy": b"M\x06app" + bytes(range(256)) * 3,
        "gateway/mqtt/client.mpy": b"M\x06mqtt" + b"\x00\xff" * 500,
        "device_drivers/gatt.mpy": b"M\x06gatt" * 90,
        "ota.mpy": b"M\x06ota" * 40,
    }
    entries = [bundle.FileEntry.of(p, d) for p, d in files.items()]
    manifest = bundle.manifest_bytes(version=version, files=entries, created_ms=0,
                                     commit="test", target_micropython="1.28.0",
                                     mpy_version="6.3")
    tree = out / f"ummc-{version}"
    bundle.write_tree(tree, manifest, bundle.signature_record(key, manifest), files)
    container = out / f"ummc-{version}.ummc"
    bundle.pack(tree, container)
    pub = out / "fleet-fw.pub"
    pub.write_text(bundle.public_bytes(key).hex() + "\n")
    return SignedBundle(tree, container, pub, version, files)


def ca_pem() -> bytes:
    """A self-signed CA certificate, as the fleet's broker CA would be."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "UMMC fleet test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "fleet-ca.pem"
    path.write_bytes(ca_pem())
    return path


@pytest.fixture(scope="session")
def fleet_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def signed(tmp_path: Path, fleet_key: Ed25519PrivateKey) -> SignedBundle:
    return make_bundle(tmp_path / "build", "1.2.3", fleet_key)


class PtyBoard:
    """MicroPython on a pseudo-terminal, rebooting when it calls machine.reset()."""

    def __init__(self, micropython: str, root: Path, libdir: Path) -> None:
        self.micropython = micropython
        self.root = root
        self.env = dict(os.environ, MICROPYPATH=f"{libdir}:.frozen")
        self.board_m, self.board_s = pty.openpty()
        self.tool_m, self.tool_s = pty.openpty()
        tty.setraw(self.board_s)
        tty.setraw(self.tool_s)
        self.port = os.ttyname(self.tool_s)
        self.boots = 0
        self.proc = self._spawn()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.boots += 1
        return subprocess.Popen([self.micropython], stdin=self.board_s, stdout=self.board_s,
                                stderr=self.board_s, cwd=self.root, env=self.env)

    def _pump(self) -> None:
        while not self._stop.is_set():
            if self.proc.poll() is not None:
                self.proc = self._spawn()
            ready, _, _ = select.select([self.board_m, self.tool_m], [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return
                os.write(self.tool_m if fd == self.board_m else self.board_m, data)

    def wait_boots(self, n: int, timeout: float = 10.0) -> int:
        """Boot count once it reaches n (a reset sent with `exec --no-follow`
        lands after the tool has returned), or the count at the deadline."""
        deadline = time.monotonic() + timeout
        while self.boots < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.boots

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.proc.kill()
        self.proc.wait(timeout=5)
        for fd in (self.board_m, self.board_s, self.tool_m, self.tool_s):
            os.close(fd)


@pytest.fixture
def pty_board(tmp_path: Path, micropython_bin: str) -> Iterator[PtyBoard]:
    lib = tmp_path / "board-lib"
    lib.mkdir()
    (lib / "machine.py").write_text(MACHINE_PY)
    root = tmp_path / "board"
    root.mkdir()
    board = PtyBoard(micropython_bin, root, lib)
    yield board
    board.close()
