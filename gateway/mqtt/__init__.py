# gateway.mqtt: the gateway's own MQTT 3.1.1 client, portable between
# MicroPython and CPython.
#   codec.py   packets <-> bytes and events, no I/O (h11 style)
#   client.py  MQTTClient: one asyncio connection and its session
# The client module is loaded on first use (module __getattr__): code that
# needs only the codec does not pay for compiling client.py on a small heap.
from .codec import (
    DEFAULT_MAX_PACKET,
    NEED_DATA,
    SUBACK_FAILURE,
    ConnAck,
    LocalProtocolError,
    MQTTError,
    PingResp,
    PubAck,
    Publish,
    Reader,
    RemoteProtocolError,
    SubAck,
    UnsubAck,
    connack_reason,
)

TYPE_CHECKING = False  # mypy takes it as True
if TYPE_CHECKING:
    from typing import Any  # noqa: F401

    from .client import ConnectionLost, ConnectRefused, MQTTClient, SubscribeRefused

__all__ = [
    "DEFAULT_MAX_PACKET",
    "NEED_DATA",
    "SUBACK_FAILURE",
    "ConnAck",
    "ConnectRefused",
    "ConnectionLost",
    "LocalProtocolError",
    "MQTTClient",
    "MQTTError",
    "PingResp",
    "PubAck",
    "Publish",
    "Reader",
    "RemoteProtocolError",
    "SubAck",
    "SubscribeRefused",
    "UnsubAck",
    "connack_reason",
]


def __getattr__(name):  # type: (str) -> Any
    # (`from . import client` here would ask this very function for "client"
    # on MicroPython.)
    if name in ("MQTTClient", "ConnectionLost", "ConnectRefused", "SubscribeRefused"):
        from .client import ConnectionLost, ConnectRefused, MQTTClient, SubscribeRefused

        return {"MQTTClient": MQTTClient, "ConnectionLost": ConnectionLost,
                "ConnectRefused": ConnectRefused, "SubscribeRefused": SubscribeRefused}[name]
    raise AttributeError(name)
