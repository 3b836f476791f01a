"""A phone on the broker, for the demo: starts a profile over MQTT and says ``resume``
after each turn-around, as the walker would, handing what it sees to a listener."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiomqtt

from retrotread.config import MqttConfig
from retrotread.errors import BrokerError
from retrotread.mqtt.client import mqtt_client

Listener = Callable[[str, dict[str, Any]], None]
"""Called with ("telemetry" | "event" | "state", payload)."""


async def walk_profile(
    mqtt: MqttConfig,
    profile: str,
    listener: Listener,
    say: Callable[[str], None] = print,
    resume_after_s: float = 0.5,
) -> dict[str, Any]:
    """Start ``profile`` once the daemon is connected and idle; resume after each turn.

    Returns the ``session_finished`` event, or ``{"error": ...}`` when the start was
    refused. BrokerError when the broker cannot be reached or drops the phone.
    """
    base = mqtt.effective_base_topic
    try:
        async with mqtt_client(mqtt.host, mqtt.port, identifier="retrotread-demo-phone") as phone:
            await phone.subscribe(f"{base}/#", qos=1)
            started = False
            async for message in phone.messages:
                raw = message.payload
                if not isinstance(raw, bytes | bytearray):
                    continue
                kind = str(message.topic).removeprefix(base + "/")
                if kind not in ("telemetry", "event", "state", "cmd/result"):
                    continue  # availability, profiles
                payload = json.loads(raw)
                if kind == "state" and not started:
                    if payload.get("connected") and payload.get("state") == "idle":
                        started = True
                        cmd = {"action": "start", "profile": profile, "id": "demo-start"}
                        say(f"phone → {base}/cmd {json.dumps(cmd)}")
                        await phone.publish(f"{base}/cmd", json.dumps(cmd), qos=1)
                    continue
                if kind == "cmd/result":
                    if not payload.get("ok"):
                        return {"error": payload.get("error")}
                    continue
                listener(kind, payload)
                if kind == "event" and payload.get("type") == "turn_required":
                    await asyncio.sleep(resume_after_s)
                    say(f'phone → {base}/cmd {{"action": "resume"}}  (turned around)')
                    await phone.publish(f"{base}/cmd", b'{"action": "resume"}', qos=1)
                if kind == "event" and payload.get("type") == "session_finished":
                    return dict(payload)
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"MQTT broker {mqtt.host}:{mqtt.port}: {exc}") from None
    raise BrokerError(f"MQTT broker {mqtt.host}:{mqtt.port} ended the phone's subscription")
