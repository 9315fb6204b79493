# boot.py: runs first on every start of the board (MicroPython runs boot.py,
# then main.py). Its only job is the OTA slot choice (docs/firmware.md,
# "Board code hook-up"): put the app slot to run first on sys.path, so the
# slot's modules shadow the base image's. `ota` comes from the base image
# (frozen or /lib), never from a slot, so a bad bundle cannot break the
# choice; select_slot() never raises and counts a try for a version on trial
# (a third boot without confirmation runs the previous version).
#
# The virtual gateway (MicroPython Unix port, docs/virtual_gateway.md) runs
# this same file with the flash directory as its working directory: the
# flash root is then "" (relative paths), on a board "/".
import gc
import sys

import ota

_root = "/" if sys.platform not in ("linux", "darwin") else ""
_path = ota.select_slot(_root)  # the RTC is not trusted at boot: no now_ms
if _path:
    sys.path.insert(0, _path)  # slot modules shadow the frozen ones
del sys.modules["ota"]  # the app imports the slot's ota
del _root, _path
gc.collect()
