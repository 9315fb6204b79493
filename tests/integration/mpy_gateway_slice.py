# The gateway side of the slice, run under the MicroPython Unix port by
# test_micropython_slice.py: cuff bytes -> drivers -> journal -> the
# project's MQTT client -> real Mosquitto; exits 0 once the fleet server's
# ack has freed every record. Settings come from the environment.
import asyncio
import os
import sys

from device_drivers.gatt import BLOOD_PRESSURE_MEASUREMENT, encode_blood_pressure
from gateway.app import Gateway
from gateway.clock import GatewayClock
from gateway.indicator import RecordingIndicator
from gateway.journal import Journal
from gateway.mqtt import MQTTClient
from gateway.protocol import LAST_WILL, topic
from gateway.uplink import Uplink

UNIT = os.getenv("SLICE_UNIT")
GW = os.getenv("SLICE_GATEWAY")
N = int(os.getenv("SLICE_READINGS") or "3")


async def main():
    journal = Journal(os.getenv("SLICE_JOURNAL"))
    clock = GatewayClock(synced=False)  # like a board just powered on
    indicator = RecordingIndicator()
    client = MQTTClient(GW, "127.0.0.1", int(os.getenv("SLICE_PORT")), username=GW,
                        password=os.getenv("SLICE_PASSWORD"), keepalive=30,
                        clean_session=False, will=(topic(UNIT, GW, "state"), LAST_WILL, 1, True))
    uplink = Uplink(journal, client, UNIT, GW, clock, indicator, backoff_min_ms=200)
    core = Gateway(journal, uplink, clock, indicator)
    task = asyncio.create_task(uplink.run())
    for i in range(N):
        data = encode_blood_pressure(118 + i, 76 + i, 90, timestamp=(2026, 11, 29, 9, 0, i),
                                     pulse_rate=70 + i, status=0)
        core.on_value({"addr": "C4:7C:8D:6A:10:01", "model": "UA-651BLE",
                       "serial": "5140209999"}, BLOOD_PRESSURE_MEASUREMENT, data)
    for _ in range(400):
        if journal.depth == 0:
            break
        await asyncio.sleep_ms(50)
    uplink.stop()
    await task
    import gc
    gc.collect()
    print("depth", journal.depth, "acked", journal.acked, "jid", journal.jid,
          "clock_synced", clock.synced, "heap_free", gc.mem_free())
    print("events", indicator.events)
    sys.exit(0 if journal.depth == 0 else 1)


asyncio.run(main())
