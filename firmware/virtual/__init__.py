"""The virtual gateway: the firmware's own boot.py and main.py under the
MicroPython Unix port, with simulated instruments (firmware/virtual/bench.py)
and, if asked, a fleet to report to. `python -m firmware.virtual` starts it
by hand; hil_tests/ drive it by default. See docs/virtual_gateway.md."""
