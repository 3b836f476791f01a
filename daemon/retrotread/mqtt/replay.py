"""Publishing a replayed session to the broker (``retrotread replay LOG --mqtt``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import aiomqtt

from retrotread.config import MqttConfig
from retrotread.errors import BrokerError
from retrotread.mqtt.client import mqtt_client


async def publish_replay(
    mqtt: MqttConfig,
    base: str,
    messages: Sequence[tuple[float, str, dict[str, Any]]],
    rate: float,
) -> int:
    """Publish (t, kind, payload) on ``<base>/<kind>``, at ``rate`` times the recorded pace
    (0: at once), never retained; return how many were sent. BrokerError if the broker
    cannot be reached or drops us."""
    sent = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        async with mqtt_client(
            mqtt.host, mqtt.port, username=mqtt.username, password=mqtt.password
        ) as client:
            for t, kind, payload in messages:
                if rate > 0:
                    delay = start + t / rate - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                qos = 0 if kind == "telemetry" else 1
                await client.publish(f"{base}/{kind}", json.dumps(payload), qos=qos, retain=False)
                sent += 1
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"MQTT broker {mqtt.host}:{mqtt.port}: {exc}") from None
    return sent
