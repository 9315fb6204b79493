# Test helpers for the OTA tests, on CPython and under MicroPython (not a
# test module): a gateway with an app installed, the update steps as the app
# will run them, and a filesystem adapter that cuts the power at step k.
import json

from firmware.board.ota import Fs, Ota, join, select_slot, verify_tree
from tests.firmware.bundles import bundle, trusted
from tests.portable import tmpdir

TRUSTED = trusted()
T0 = 1795939321000
CHUNK = 256
_cache = {}  # type: dict


def signed(version):
    if version not in _cache:
        _cache[version] = bundle(version)
    return _cache[version]


def receive(ota, data, upto=None):
    rx = ota.receiver(len(data))
    end = len(data) if upto is None else upto
    while rx.offset < end:
        rx.write(rx.offset, data[rx.offset:min(rx.offset + CHUNK, end)])
    return rx


def update(ota, version, now=T0):
    """Receive, stage, switch; returns the staged slot name."""
    rx = receive(ota, signed(version))
    ota.stage(rx.finish(), TRUSTED)
    ota.clear_incoming()
    return ota.switch(now)


def installed(version="1.0.0"):
    """A gateway with `version` in slot a, as the technician's flash leaves it."""
    root = tmpdir("ota")
    ota = Ota(root)
    rx = receive(ota, signed(version))
    ota.stage(rx.finish(), TRUSTED)
    ota.clear_incoming()
    return root, ota


def version_of(ota, path):
    return verify_tree(ota.fs, path, TRUSTED)["version"]


def state_file(root):
    with open(join(root, "ota_state.json")) as f:
        return json.loads(f.read())


def write_file(root, data):
    path = join(root, "bundle.bin")
    with open(path, "wb") as f:
        f.write(data)
    return path


def file_exists(path):
    try:
        open(path, "rb").close()
        return True
    except OSError:
        return False


class PowerCut(BaseException):
    pass


class _CutFile:
    def __init__(self, fs, f):
        self.fs = fs
        self.f = f

    def write(self, data):
        if self.fs.step():
            self.f.write(data[:len(data) // 2])  # a torn write
            self.f.close()
            raise PowerCut()
        return self.f.write(data)

    def flush(self):
        self.f.flush()

    def fileno(self):
        return self.f.fileno()

    def close(self):
        self.f.close()


class CutFs(Fs):
    """Counts every filesystem change; the power goes at change number cut_at."""

    def __init__(self, cut_at):
        self.n = 0
        self.cut_at = cut_at

    def step(self):
        self.n += 1
        return self.n == self.cut_at

    def _change(self):
        if self.step():
            raise PowerCut()

    def open(self, path, mode="rb"):
        if "w" in mode or "a" in mode:
            self._change()
            return _CutFile(self, Fs.open(self, path, mode))
        return Fs.open(self, path, mode)

    def rename(self, src, dst):
        self._change()
        Fs.rename(self, src, dst)

    def remove(self, path):
        self._change()
        Fs.remove(self, path)

    def mkdir(self, path):
        self._change()
        Fs.mkdir(self, path)

    def rmdir(self, path):
        self._change()
        Fs.rmdir(self, path)


def whole_update(ota, version):
    """What the gateway does for one update, boot of the new version included."""
    update(ota, version, now=T0)
    path = select_slot(ota.root, T0 + 1000, fs=ota.fs)
    ota.confirm_healthy(path)
