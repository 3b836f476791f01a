"""TCP_NODELAY on the MQTT connections the project opens and on the brokers it starts.

Without it a small packet waits for the ACK of the one before, which the peer delays by up
to 40 ms (what the latency benchmark measures); here only the option itself is checked.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiomqtt

from retrotread.config import MqttConfig
from retrotread.mqtt.bridge import MqttBridge
from retrotread.mqtt.client import mqtt_client
from retrotread.mqtt.commands import Command
from tests.broker import Broker


def _nodelay(client: aiomqtt.Client) -> int:
    # aiomqtt keeps its paho client in ``_client``: the one place its socket shows.
    sock = client._client.socket()
    assert isinstance(sock, socket.socket)
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


class _Idle:
    async def handle(self, command: Command) -> None:
        return None

    def state(self) -> dict[str, Any]:
        return {"state": "idle"}

    def profiles(self) -> list[dict[str, Any]]:
        return []

    def device_description(self) -> tuple[str | None, str | None]:
        return (None, None)


async def test_mqtt_client_turns_nagle_off(broker: Broker) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as plain:
        assert _nodelay(plain) == 0  # the library's default, which mqtt_client changes
    async with mqtt_client("127.0.0.1", broker.port, identifier="nodelay") as ours:
        assert _nodelay(ours) == 1
        await ours.publish("t/nodelay", b"x", qos=1)  # and it is a working connection


async def test_bridge_connection_turns_nagle_off(broker: Broker) -> None:
    settings = MqttConfig(host="127.0.0.1", port=broker.port, device_id="nd", discovery=False)
    bridge = MqttBridge(settings, _Idle())
    task = asyncio.create_task(bridge.run())
    try:
        async with asyncio.timeout(10):
            while not bridge.connected:
                await asyncio.sleep(0.01)
        assert bridge._client is not None
        assert _nodelay(bridge._client) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_started_brokers_turn_nagle_off(broker: Broker) -> None:
    # Mosquitto refuses to start on an option it does not know: this one is running.
    conf = (broker.workdir / "mosquitto.conf").read_text().splitlines()
    assert "set_tcp_nodelay true" in conf
    assert broker.server is not None and broker.server.proc is not None
    assert broker.server.proc.poll() is None
