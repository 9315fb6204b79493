# Instrument and unit simulators (CPython only; not in the firmware image).
