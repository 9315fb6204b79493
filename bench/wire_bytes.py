"""Bytes on the wire per blood-pressure reading: one `data` message per
reading against batches of 8 and 32 (docs/protocol.md limits), counting the
MQTT PUBLISH packet (fixed header, topic, packet id) and the JSON payload.

    .venv/bin/python -m bench.wire_bytes
"""

from __future__ import annotations

import random

from device_drivers.gatt import decode
from device_drivers.reading import from_blood_pressure
from gateway import protocol
from gateway.sim.cuff import SimulatedCuff

TOPIC = protocol.topic("U042", "gw-u042", "data")


def publish_packet_bytes(payload_len: int) -> int:
    body = 2 + len(TOPIC.encode()) + 2 + payload_len  # topic, packet id, payload
    varint = 1 if body < 128 else 2 if body < 16384 else 3
    return 1 + varint + body + 4  # + PUBACK (4 bytes) coming back


def main() -> None:
    cuff = SimulatedCuff(addr="C4:7C:8D:6A:00:2A", serial="5140200042", rng=random.Random(7))
    payloads = []
    t0 = 1795935781000
    for i in range(320):
        r = from_blood_pressure(decode(0x2A35, cuff.measure(t0 / 1000 + i * 600)))
        payloads.append(protocol.reading_payload(r, cuff.identity, t0 + i * 600_000))
    print(f"journal payload per reading: {sum(map(len, payloads)) / len(payloads):.0f} bytes")
    print("| records per message | payload bytes per reading | wire bytes per reading |")
    print("|---|---|---|")
    for size in (1, 8, 32):
        wire = payload = 0
        for start in range(0, len(payloads), size):
            chunk = [(start + k + 1, 1, p) for k, p in enumerate(payloads[start:start + size])]
            msg = protocol.data_message("3f9a1c02", 1, t0, chunk)
            payload += len(msg)
            wire += publish_packet_bytes(len(msg))
        n = len(payloads)
        print(f"| {size} | {payload / n:.0f} | {wire / n:.0f} |")


if __name__ == "__main__":
    main()
