"""The MQTT adapter on aiomqtt: publishes what the daemon does, takes the phone's commands.

The only module that imports aiomqtt. aiomqtt v2 does not reconnect by itself, so ``run``
loops around ``async with Client`` with capped, jittered backoff and republishes the
retained availability, state, profiles and discovery after every (re)connect. Output
listeners never block: telemetry is dropped while the broker is away (the session log
keeps it), events are buffered (bounded), the latest state is kept for republishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import aiomqtt

from retrotread.backoff import Backoff
from retrotread.config import MqttConfig
from retrotread.errors import RetrotreadError
from retrotread.mqtt.commands import Command, CommandError, Stop, parse_command
from retrotread.mqtt.discovery import discovery_payload, discovery_topic
from retrotread.mqtt.topics import Topics

log = logging.getLogger(__name__)


class CommandHandler(Protocol):
    """What the bridge needs from the daemon."""

    async def handle(self, command: Command) -> None:
        """Carry out a command; raise RetrotreadError with a message for the user."""
        ...

    def state(self) -> dict[str, Any]: ...

    def profiles(self) -> list[dict[str, Any]]: ...

    def device_description(self) -> tuple[str | None, str | None]:
        """(treadmill name, model) for the HA device, when known."""
        ...


Item = tuple[str, bytes, int, bool]


class MqttBridge:
    def __init__(
        self,
        settings: MqttConfig,
        handler: CommandHandler,
        *,
        backoff: Backoff | None = None,
        event_buffer: int = 200,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.topics = Topics(settings.effective_base_topic)
        self.backoff = backoff or Backoff(1.0, 30.0)
        self.connected = False
        self._closing = False
        self.connections = 0
        self._client: aiomqtt.Client | None = None
        self._out: asyncio.Queue[Item] = asyncio.Queue(maxsize=1000)
        self._events: deque[Item] = deque(maxlen=event_buffer)
        self._commands: asyncio.Queue[Command] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connection_listeners: list[Callable[[bool], None]] = []
        self.results_sent = 0
        self.dropped_telemetry = 0

    # ------------------------------------------------------------------ outputs

    def add_connection_listener(self, listener: Callable[[bool], None]) -> None:
        self._connection_listeners.append(listener)

    def output(self, kind: str, payload: dict[str, Any]) -> None:
        """Runner listener: hand one output to the publisher without blocking."""
        if kind == "telemetry":
            self._enqueue((self.topics.telemetry, _json(payload), 0, False), droppable=True)
        elif kind == "event":
            self._enqueue((self.topics.event, _json(payload), 1, False))
        elif kind == "state":
            self._enqueue((self.topics.state, _json(payload), 1, True))

    def _enqueue(self, item: Item, droppable: bool = False) -> None:
        if not self.connected:
            if droppable:
                self.dropped_telemetry += 1
            elif item[0] == self.topics.event:
                self._events.append(item)
            return  # state is republished from the handler on reconnect
        try:
            self._out.put_nowait(item)
        except asyncio.QueueFull:
            if droppable:
                self.dropped_telemetry += 1
            else:
                log.warning("MQTT output queue full; dropped a message on %s", item[0])

    def _result(self, command_id: Any, action: str | None, ok: bool, error: str | None) -> None:
        payload = {"id": command_id, "action": action, "ok": ok, "error": error}
        self.results_sent += 1
        self._enqueue((self.topics.cmd_result, _json(payload), 1, False))

    # ------------------------------------------------------------------ lifecycle

    def _client_for(self) -> aiomqtt.Client:
        s = self.settings
        tls_context: ssl.SSLContext | None = None
        if s.tls:
            tls_context = ssl.create_default_context(cafile=s.ca_file)
            if s.cert_file:
                tls_context.load_cert_chain(s.cert_file, s.key_file)
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            identifier=s.client_id,
            keepalive=s.keepalive_s,
            tls_context=tls_context,
            will=aiomqtt.Will(self.topics.availability, b"offline", qos=1, retain=True),
            timeout=10,
        )

    async def run(self) -> None:
        """Stay connected until cancelled; reconnect with backoff (aiomqtt v2 does not)."""
        worker = asyncio.create_task(self._command_worker(), name="mqtt-commands")
        failures = 0
        try:
            while True:
                try:
                    client = self._client_for()
                    async with client:
                        failures = 0
                        await self._serve(client)
                except aiomqtt.MqttError as exc:
                    me = asyncio.current_task()
                    if self._closing or (me is not None and me.cancelling()):
                        # aiomqtt can turn our cancellation into an MqttError; going on would
                        # reconnect and leave a stale retained "online" behind.
                        return
                    failures += 1
                    level = logging.WARNING if failures == 1 else logging.DEBUG
                    log.log(
                        level, "MQTT broker %s:%s: %s", self.settings.host, self.settings.port, exc
                    )
                except ssl.SSLError as exc:
                    failures += 1
                    log.error("MQTT TLS problem: %s", exc)
                finally:
                    self._set_connected(False, None)
                if self._closing:
                    return
                await asyncio.sleep(self.backoff.delay(max(failures, 1)))
        finally:
            worker.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(worker, *self._tasks, return_exceptions=True)

    def _set_connected(self, value: bool, client: aiomqtt.Client | None) -> None:
        self._client = client
        if value == self.connected:
            return
        self.connected = value
        for listener in list(self._connection_listeners):
            try:
                listener(value)
            except Exception:
                log.exception("connection listener failed")

    async def _serve(self, client: aiomqtt.Client) -> None:
        self.connections += 1
        self._client = client  # from now on close() can say "offline" on this connection
        # Drop whatever queued for a previous connection: state is republished fresh.
        while not self._out.empty():
            self._out.get_nowait()
        await client.subscribe(self.topics.cmd, qos=1)
        await client.subscribe(f"{self.settings.discovery_prefix}/status", qos=1)
        await self._announce(client)
        self._set_connected(True, client)
        while self._events:
            self._out.put_nowait(self._events.popleft())
        log.info("connected to MQTT broker %s:%s", self.settings.host, self.settings.port)
        publisher = asyncio.create_task(self._publisher(client), name="mqtt-publisher")
        try:
            async for message in client.messages:
                self._on_message(message)
        finally:
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Retained availability, state, profiles and discovery (after every connect)."""
        t = self.topics
        await client.publish(t.availability, b"online", qos=1, retain=True)
        await client.publish(t.state, _json(self.handler.state()), qos=1, retain=True)
        await client.publish(t.profiles, _json(self.handler.profiles()), qos=1, retain=True)
        await self._publish_discovery(client)

    async def _publish_discovery(self, client: aiomqtt.Client) -> None:
        s = self.settings
        topic = discovery_topic(s.discovery_prefix, s.device_id)
        if not s.discovery:
            # An empty retained payload removes the device from Home Assistant.
            await client.publish(topic, b"", qos=1, retain=True)
            return
        name, model = self.handler.device_description()
        names = [p["name"] for p in self.handler.profiles()]
        payload = discovery_payload(self.topics, s.device_id, names, name, model)
        await client.publish(topic, _json(payload), qos=1, retain=True)

    async def _publisher(self, client: aiomqtt.Client, window: int = 8) -> None:
        """Publish in order, with up to ``window`` QoS 1 acknowledgements outstanding.

        Awaiting each PUBACK before the next publish caps throughput at one broker round
        trip per message, which a busy event loop stretches to milliseconds; the order on
        the wire is still the queue's, because each task hands its message to the client
        in the order the tasks were created.
        """
        slots = asyncio.Semaphore(window)
        inflight: set[asyncio.Task[None]] = set()

        async def one(item: Item) -> None:
            try:
                topic, payload, qos, retain = item
                await client.publish(topic, payload, qos=qos, retain=retain)
            finally:
                slots.release()

        try:
            while True:
                item = await self._out.get()
                await slots.acquire()
                task = asyncio.create_task(one(item), name=f"mqtt-publish-{item[0]}")
                inflight.add(task)
                task.add_done_callback(inflight.discard)
        finally:
            for task in list(inflight):
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)

    async def close(self, timeout_s: float = 3.0) -> None:
        """Publish ``offline`` ourselves: a clean disconnect does not fire the last will."""
        self._closing = True
        client = self._client
        if client is None:
            return
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not self._out.empty():
                    topic, payload, qos, retain = self._out.get_nowait()
                    await client.publish(topic, payload, qos=qos, retain=retain)
                await client.publish(self.topics.availability, b"offline", qos=1, retain=True)

    # ------------------------------------------------------------------ inbound

    def _on_message(self, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        raw = message.payload
        if isinstance(raw, bytes | bytearray):
            data = bytes(raw)
        elif raw is None:
            data = b""
        else:
            data = str(raw).encode()
        if topic == self.topics.cmd:
            self._on_command(data)
        elif (
            topic == f"{self.settings.discovery_prefix}/status"
            and data.strip() == b"online"
            and self._client is not None
        ):
            # Home Assistant restarted: it needs discovery and retained state again.
            self._spawn(self._announce(self._client), "mqtt-announce")

    def _on_command(self, data: bytes) -> None:
        try:
            command = parse_command(data, self.settings.max_payload_bytes)
        except CommandError as exc:
            self._result(exc.command_id, exc.action, False, exc.message)
            return
        if isinstance(command, Stop):
            # Stop is never delayed by other work: it does not queue behind commands.
            self._spawn(self._execute(command), "mqtt-stop")
        else:
            self._commands.put_nowait(command)

    async def _command_worker(self) -> None:
        while True:
            command = await self._commands.get()
            await self._execute(command)

    async def _execute(self, command: Command) -> None:
        try:
            await self.handler.handle(command)
        except RetrotreadError as exc:
            message = exc.message if isinstance(exc, CommandError) else str(exc)
            self._result(command.id, command.action, False, message)
        except Exception as exc:
            log.exception("command %s failed", command.action)
            self._result(command.id, command.action, False, f"internal error: {exc}")
        else:
            self._result(command.id, command.action, True, None)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
