"""Every MQTT connection the project opens: an aiomqtt client with TCP_NODELAY.

MQTT messages are small and each one matters on its own. With Nagle's algorithm on (the
socket default, and paho-mqtt's), a small packet written while an earlier one is still
unacknowledged waits for that ACK, and the peer delays its ACKs by up to 40 ms: telemetry
reached subscribers up to ~40 ms late and a command's result ~85 ms after the command.
The broker's side of each connection needs the same (Mosquitto: ``set_tcp_nodelay true``).
"""

from __future__ import annotations

import socket
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.types import SocketOption

NODELAY: tuple[SocketOption, ...] = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
"""Socket options that send each MQTT packet at once."""


def mqtt_client(hostname: str, port: int = 1883, **kwargs: Any) -> aiomqtt.Client:
    """``aiomqtt.Client(hostname, port, **kwargs)`` that never holds a packet back."""
    return aiomqtt.Client(hostname, port, socket_options=NODELAY, **kwargs)


def paho_of(client: aiomqtt.Client) -> paho.Client | None:
    """The paho-mqtt client inside ``client``, for publishing QoS 0 without a task.

    aiomqtt keeps it private (``_client``); None if a release renames it, and the caller
    falls back to ``client.publish`` (``tests/test_mqtt_bridge.py`` notices that).
    """
    inner = getattr(client, "_client", None)
    return inner if isinstance(inner, paho.Client) else None
