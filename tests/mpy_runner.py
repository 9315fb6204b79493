# Test runner for the MicroPython Unix port (which has no unittest/pytest).
# Usage: micropython -X heapsize=100k tests/mpy_runner.py tests/gateway/test_x.py ...
# with MICROPYPATH=<mpy-cross output of the image>:<repository root>:.frozen
# (tests/conftest.py:mpy_env; `.frozen` holds the port's asyncio). Imports each file as a module,
# calls every function named test_* (async ones through asyncio.run), prints
# one line per failure with its traceback, then "N passed, N failed" and
# exits 1 when anything failed. Memory: after each test the heap is collected
# and the largest live heap seen is reported ("heap live max"); the -X
# heapsize cap is what enforces the budget (MemoryError past it).
import gc
import sys

# The script's own folder (tests/) is put first on the path; its packages
# (tests/gateway, tests/device_drivers) would shadow the real ones.
sys.path[:] = [p for p in sys.path if not (p == "tests" or p.endswith("/tests"))]

passed = 0
failed = 0
live_max = 0


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
    global live_max
    gc.collect()
    used = gc.mem_alloc()
    if used > live_max:
        live_max = used


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
    del mod
    for k in list(sys.modules):
        if k.startswith("tests.") and k != "tests.portable":
            del sys.modules[k]
    gc.collect()

print("heap live max %d bytes" % live_max)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
