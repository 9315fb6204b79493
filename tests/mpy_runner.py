# Test runner for the MicroPython Unix port (which has no unittest/pytest).
# Usage: micropython -X heapsize=100k tests/mpy_runner.py tests/gateway/test_x.py ...
# with MICROPYPATH set to the repository root. Imports each file as a module,
# calls every function named test_* (async ones through asyncio.run), prints
# one line per failure with its traceback, then "N passed, N failed" and
# exits 1 when anything failed. Memory: after each module it is dropped from
# sys.modules and collected, and the peak heap use seen is reported.
import gc
import sys

# The script's own folder (tests/) is put first on the path; its packages
# (tests/gateway, tests/device_drivers) would shadow the real ones.
sys.path[:] = [p for p in sys.path if not (p == "tests" or p.endswith("/tests"))]

passed = 0
failed = 0
peak = 0


def _module_name(path):
    if path.endswith(".py"):
        path = path[:-3]
    return path.replace("/", ".")


def _run(fn):
    r = fn()
    if r is not None and hasattr(r, "send"):  # a coroutine
        import asyncio
        asyncio.run(r)


def _note_heap():
    global peak
    used = gc.mem_alloc()
    if used > peak:
        peak = used


for path in sys.argv[1:]:
    name = _module_name(path)
    try:
        mod = __import__(name)
        for part in name.split(".")[1:]:
            mod = getattr(mod, part)
    except Exception as e:  # import failure counts as one failed test
        failed += 1
        print("FAIL", name, "(import)")
        sys.print_exception(e)
        continue
    tests = sorted(k for k in dir(mod) if k.startswith("test_"))
    for t in tests:
        try:
            _run(getattr(mod, t))
            passed += 1
        except Exception as e:
            failed += 1
            print("FAIL", name + "." + t)
            sys.print_exception(e)
        _note_heap()
        gc.collect()
    del mod
    for k in list(sys.modules):
        if k.startswith("tests.") and k != "tests.portable":
            del sys.modules[k]
    gc.collect()

print("heap peak %d bytes" % peak)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
