"""A phone for the coach demo: sends commands on ``<base>/cmd`` and keeps the answers and
the walker topics it hears, for a driver that polls it between steps of simulated time."""

from __future__ import annotations

import asyncio
import itertools
import json
from types import TracebackType
from typing import Any

import aiomqtt

from retrotread.config import MqttConfig
from retrotread.errors import BrokerError
from retrotread.mqtt.client import mqtt_client


class CoachPhone:
    """Connected in ``async with``; ``send`` returns an id whose result ``result`` gives."""

    def __init__(self, mqtt: MqttConfig) -> None:
        self.mqtt = mqtt
        self.base = mqtt.effective_base_topic
        self.results: dict[str, dict[str, Any]] = {}
        self.walkers: dict[str, dict[str, Any]] = {}
        self.walker_updates: dict[str, int] = {}  # statuses heard per walker
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._ready = asyncio.Event()

    async def __aenter__(self) -> CoachPhone:
        self._task = asyncio.create_task(self._listen(), name="coach-phone")
        waiter = asyncio.create_task(self._ready.wait())
        await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not self._ready.is_set():
            waiter.cancel()
            self._task.result()  # raises what went wrong
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _listen(self) -> None:
        m = self.mqtt
        try:
            async with mqtt_client(m.host, m.port, identifier="retrotread-coach-phone") as c:
                self._client = c
                await c.subscribe(f"{self.base}/cmd/result", qos=1)
                await c.subscribe(f"{self.base}/walker/#", qos=1)
                self._ready.set()
                async for message in c.messages:
                    raw = message.payload
                    if not isinstance(raw, bytes | bytearray) or not raw:
                        continue
                    payload = json.loads(raw)
                    topic = str(message.topic)
                    if topic.endswith("/cmd/result") and isinstance(payload.get("id"), str):
                        self.results[payload["id"]] = payload
                    elif topic.startswith(f"{self.base}/walker/"):
                        name = topic.rsplit("/", 1)[1]
                        self.walkers[name] = payload
                        self.walker_updates[name] = self.walker_updates.get(name, 0) + 1
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"MQTT broker {m.host}:{m.port}: {exc}") from None

    async def send(self, payload: dict[str, Any]) -> str:
        """Publish a command with a fresh id; the answer appears in ``results[id]``."""
        if self._client is None:
            raise BrokerError("the phone is not connected")
        cid = f"coach-demo-{next(self._ids)}"
        await self._client.publish(f"{self.base}/cmd", json.dumps({**payload, "id": cid}), qos=1)
        return cid
