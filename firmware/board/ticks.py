# MicroPython's time and traceback calls the board code uses, in one place:
# ticks_ms / ticks_diff (a monotonic millisecond counter that wraps),
# sleep_ms, print_exception. On MicroPython they are the built-ins; the
# CPython fallbacks only let the board modules be imported and type-checked
# on a host (they never run on a board). Looked up with getattr so that both
# type checkers (CPython's typeshed, the MicroPython ESP32 stubs) accept it.
# Portable.
import sys
import time

ticks_ms = getattr(time, "ticks_ms", None) or (
    lambda: int(getattr(time, "monotonic")() * 1000))  # noqa: B009
ticks_diff = getattr(time, "ticks_diff", None) or (lambda a, b: a - b)
sleep_ms = getattr(time, "sleep_ms", None) or (lambda ms: time.sleep(ms / 1000))


def print_exception(e, out=None):
    fn = getattr(sys, "print_exception", None)
    if fn is not None:  # MicroPython
        if out is None:
            fn(e)
        else:
            fn(e, out)
        return
    __import__("traceback").print_exception(e, file=out)
