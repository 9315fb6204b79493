# The gateway's MQTT client under the MicroPython Unix port (100 KB heap),
# run by test_mqtt_client.py against a real Mosquitto (port in MQTT_SMOKE_PORT).
# Subscribes to smoke/in, publishes one QoS 1 message to smoke/out (the test's
# paho subscriber checks it), prints "published", then waits for the message
# the test publishes with paho on smoke/in and prints it. Exits 0 on success.
import asyncio
import gc
import os

from gateway.mqtt import MQTTClient


async def main():
    c = MQTTClient("mpy-smoke", "127.0.0.1", int(os.getenv("MQTT_SMOKE_PORT") or "1883"),
                   keepalive=10, clean_session=True)
    await c.connect()
    granted = await c.subscribe("smoke/in", 1)
    await c.publish("smoke/out", b"hello from micropython", qos=1)
    print("published granted=%d inflight=%d" % (granted, c.inflight))
    msg = await c.next_message(timeout=10)
    print("received %s %s qos=%d" % (msg.topic, msg.payload.decode(), msg.qos))
    await c.disconnect()
    gc.collect()
    print("heap used %d free %d" % (gc.mem_alloc(), gc.mem_free()))  # type: ignore[attr-defined]


asyncio.run(main())
