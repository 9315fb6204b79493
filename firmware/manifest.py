# MicroPython freeze manifest (used with `make BOARD=... FROZEN_MANIFEST=...`
# in a MicroPython port build). The file list comes from firmware/image.py so
# the image, the build and the mpy-cross gate agree.
# `include`, `module` and `package` are provided by MicroPython's manifest
# tooling when it executes this file.
import os
import sys

_repo = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, _repo)
from firmware.image import image_files  # noqa: E402

for _rel in image_files():
    _dir, _name = os.path.split(str(_rel))
    if _dir.startswith("firmware/board"):
        module(_name, base_path=os.path.join(_repo, _dir))  # noqa: F821
    else:
        module(str(_rel), base_path=_repo)  # noqa: F821
