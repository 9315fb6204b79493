# main.py: what the board runs after boot.py, and what the virtual gateway
# runs under the MicroPython Unix port (docs/virtual_gateway.md). Kept tiny
# on purpose: the board runs /main.py from the base image, so everything that
# an update may change lives in `ummc_main`, imported from sys.path (the
# running app slot first, see boot.py).
#
# The handler here is the last resort: if even importing the app fails (a
# slot whose files are fine but whose code is not), it writes a crash record
# (gateway/bootinfo.py) when it can and resets the board; boot.py then counts
# the failed try and returns to the previous version after two of them.
import sys

try:
    import ummc_main

    ummc_main.run()
except KeyboardInterrupt:  # a technician's Ctrl-C (mpremote): stop, no reset
    raise
except Exception as e:
    sys.print_exception(e)  # type: ignore[attr-defined]
    try:
        import ummc_main

        ummc_main.last_resort(e)
    except Exception:
        pass
    try:
        import machine

        machine.reset()
    except (ImportError, AttributeError):
        sys.exit(75)  # the Unix port: the launcher starts us again
