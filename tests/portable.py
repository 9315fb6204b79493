# mpy-portable support: helpers for tests that run on CPython (pytest) and
# under the MicroPython Unix port (tests/mpy_runner.py). Keep it in the
# MicroPython subset: no pathlib, no tempfile, no shutil.
import os

_counter = [0]


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def rmtree(path):
    """Remove a directory tree (files and subdirectories)."""
    if not _exists(path):
        return
    for name in os.listdir(path):
        full = path + "/" + name
        if os.stat(full)[0] & 0x4000:
            rmtree(full)
        else:
            os.remove(full)
    os.rmdir(path)


def tmpdir(tag="t"):
    """A new empty directory under $UMMC_TMP (or /tmp), unique per call."""
    base = os.getenv("UMMC_TMP") or "/tmp"
    _counter[0] += 1
    stamp = ""
    for b in os.urandom(4):
        stamp += "%02x" % b
    path = "%s/ummc-%s-%s-%d" % (base, tag, stamp, _counter[0])
    os.mkdir(path)
    return path


def raises(exc_type, fn, *args, **kwargs):
    """Assert that fn(*args) raises exc_type; return the exception."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError("%s not raised" % exc_type.__name__)


def repo_path(rel):
    """Absolute path of a file in the repository (works on both runtimes)."""
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    return here + "/../" + rel


def read_golden(name):
    """Bytes of docs/golden/<name>: the payloads both sides' tests share."""
    with open(repo_path("docs/golden/" + name), "rb") as f:
        return f.read().strip()
