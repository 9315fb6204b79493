# Files on flash, the two rules every store of the gateway follows (journal
# cursor, boot record, config, download cursors, command results):
# - sync(f): flush and fsync where the runtime has it, so a write that
#   returned is on flash before the next step;
# - atomic_write(path, data): write `<path>.tmp`, sync, rename over `path`:
#   a power cut leaves the old file or the new one, never half of one (a
#   rename is atomic on littlefs and POSIX filesystems).
# Portable: `os` only (MicroPython and CPython).
import os


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def sync(f):
    f.flush()
    fsync = getattr(os, "fsync", None)
    if fsync is not None:
        try:
            fsync(f.fileno())
        except (AttributeError, OSError):
            pass  # a file object without a descriptor (a test's stand-in)


def atomic_write(path, data):
    """Replace `path` with `data` (bytes, or str written as text)."""
    tmp = path + ".tmp"
    with open(tmp, "wb" if isinstance(data, (bytes, bytearray)) else "w") as f:
        f.write(data)
        sync(f)
    os.rename(tmp, path)
