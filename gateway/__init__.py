# gateway: what a gateway does, portable between MicroPython and CPython.
#
# journal (store-and-forward on flash), records (the wire shape of a journal
# record), uplink (batches, end-to-end acks, reconnects), the app that wires
# instruments to the journal, and a small MQTT client (gateway/mqtt). Hardware
# and network objects are passed in, never created at import. CPython-only
# adapters live in gateway/host/, instrument simulators in gateway/sim/;
# neither goes into the firmware image.
