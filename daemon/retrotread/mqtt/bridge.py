"""The MQTT adapter on aiomqtt: publishes what the daemon does, takes the phone's commands.

The only module that imports aiomqtt. aiomqtt v2 does not reconnect by itself, so ``run``
loops around ``async with Client`` with capped, jittered backoff and republishes the
retained availability, state, profiles and discovery after every (re)connect. Output
listeners never block: telemetry is dropped while the broker is away or the publisher is
behind (the session log keeps it); results and events are held until a broker takes them;
the latest state is republished on every connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Literal, NamedTuple, Protocol

import aiomqtt
from paho.mqtt.client import MQTT_ERR_NO_CONN, MQTT_ERR_SUCCESS, MQTTMessageInfo
from paho.mqtt.client import Client as PahoClient

from retrotread.backoff import Backoff
from retrotread.clock import Clock, RealClock
from retrotread.config import MqttConfig
from retrotread.mqtt.client import mqtt_client, paho_of
from retrotread.mqtt.commands import Command
from retrotread.mqtt.desk import REFUSAL_EVENTS_PER_S as REFUSAL_EVENTS_PER_S  # its tests' name
from retrotread.mqtt.desk import (
    SHUTTING_DOWN,
    CommandDesk,
    describe,
    encode_json,
    failed,
)
from retrotread.mqtt.discovery import coach_components, discovery_payload, discovery_topic
from retrotread.mqtt.topics import Topics

log = logging.getLogger(__name__)


class CommandHandler(Protocol):
    """What the bridge needs from the daemon (``handle`` through the command desk)."""

    async def handle(self, command: Command) -> None:
        """Carry out a command; raise RetrotreadError with a message for the user."""
        ...

    def state(self) -> dict[str, Any]: ...

    def profiles(self) -> list[dict[str, Any]]: ...

    def device_description(self) -> tuple[str | None, str | None]:
        """(treadmill name, model) for the HA device, when known."""
        ...


Kind = Literal["telemetry", "state", "event", "result"]


class _Out(NamedTuple):
    """One message for the publisher."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: Kind


class MqttBridge:
    """Publishes the daemon's outputs and answers every command on ``<base>/cmd``.

    Output rules: results, states and events are never dropped (held while the broker is
    away, sent again when a publish fails); telemetry is dropped first, whenever more than
    ``telemetry_backlog`` samples wait. Commands go to the command ``desk`` (the daemon's
    one, shared with the web page; else one of its own on ``handler`` with at most
    ``command_backlog`` waiting), which answers each exactly once on ``cmd/result``.
    Every way out of a live connection other than losing it says ``offline`` first.
    """

    def __init__(
        self,
        settings: MqttConfig,
        handler: CommandHandler,
        *,
        backoff: Backoff | None = None,
        telemetry_backlog: int = 100,
        command_backlog: int = 64,
        clock: Clock | None = None,
        desk: CommandDesk | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or RealClock()
        self.handler = handler
        self.topics = Topics(settings.effective_base_topic)
        self.backoff = backoff or Backoff(1.0, 30.0)
        self.telemetry_backlog = telemetry_backlog
        self.desk = desk or CommandDesk(
            handler,
            max_payload_bytes=settings.max_payload_bytes,
            backlog=command_backlog,
            clock=self.clock,
        )
        self.desk.add_listener(self.output)  # refusals, whoever sent them, as events
        self.connected = False
        self.status = "connecting"
        """What the link to the broker is doing, for people (systemd STATUS)."""
        self._closing = False
        self.connections = 0
        self._client: aiomqtt.Client | None = None
        self._offline_said = False
        self._out: asyncio.Queue[_Out] = asyncio.Queue()  # unbounded: see the class doc
        self._sender: _Sender | None = None  # the live connection's
        self._queued_telemetry = 0
        self._held: deque[_Out] = deque()  # results and events waiting for a broker
        self._tasks: set[asyncio.Task[None]] = set()
        self._connection_listeners: list[Callable[[bool], None]] = []
        self._birth_listeners: list[Callable[[], None]] = []
        self._status_listeners: list[Callable[[str], None]] = []
        self._last_problem: str | None = None
        self.commands_received = 0
        self.results_sent = 0
        self.dropped_telemetry = 0
        self._described: tuple[str | None, str | None] | None = None

    @property
    def command_backlog(self) -> int:
        return self.desk.backlog

    @property
    def refused_busy(self) -> int:
        return self.desk.refused_busy

    # ------------------------------------------------------------------ outputs

    def add_connection_listener(self, listener: Callable[[bool], None]) -> None:
        self._connection_listeners.append(listener)

    def add_birth_listener(self, listener: Callable[[], None]) -> None:
        """Called when Home Assistant says it (re)started: it has no telemetry yet."""
        self._birth_listeners.append(listener)

    def add_status_listener(self, listener: Callable[[str], None]) -> None:
        """Called with ``status`` whenever it changes (e.g. "retrying in 8 s (...)")."""
        self._status_listeners.append(listener)

    def output(self, kind: str, payload: dict[str, Any]) -> None:
        """Runner listener: hand one output to the publisher without blocking."""
        if kind == "telemetry":
            self._enqueue(_Out(self.topics.telemetry, encode_json(payload), 0, False, "telemetry"))
        elif kind == "event":
            self._enqueue(_Out(self.topics.event, encode_json(payload), 1, False, "event"))
        elif kind == "state":
            self._follow_device()
            self._enqueue(_Out(self.topics.state, encode_json(payload), 1, True, "state"))
        elif kind in ("walker", "walker_current"):
            # Retained like state, and like state republished from the handler on connect.
            self._enqueue(
                _Out(self._walker_topic(kind, payload), encode_json(payload), 1, True, "state")
            )

    def _walker_topic(self, kind: str, payload: dict[str, Any]) -> str:
        if kind == "walker_current":
            return self.topics.walker_current
        return self.topics.walker(str(payload.get("walker")))

    def _follow_device(self) -> None:
        """Discovery again when the device's name or model changed since it was announced.

        The broker often answers before the treadmill does: the device is first announced
        under a placeholder, and gets the treadmill's own name when the link comes up.
        """
        if not (self.connected and self.settings.discovery):
            return
        if self.handler.device_description() != self._described:
            self._enqueue(self._discovery_item())

    def _enqueue(self, item: _Out) -> None:
        if not self.connected:
            if item.kind == "telemetry":
                self.dropped_telemetry += 1  # the session log keeps it
            elif item.kind != "state":  # state is republished from the handler on connect
                self._held.append(item)
            return
        if item.kind == "telemetry":
            if self._queued_telemetry >= self.telemetry_backlog:
                self.dropped_telemetry += 1
                return
            self._queued_telemetry += 1
        self._out.put_nowait(item)
        if self._sender is not None:
            self._sender.pump()

    def _took(self, item: _Out) -> None:
        """``item`` left the queue for the wire."""
        if item.kind == "telemetry":
            self._queued_telemetry = max(0, self._queued_telemetry - 1)

    def _reply(self, payload: dict[str, Any]) -> None:
        """The desk's answer to a command that came on ``cmd``."""
        self.results_sent += 1
        self._enqueue(_Out(self.topics.cmd_result, encode_json(payload), 1, False, "result"))

    # ------------------------------------------------------------------ lifecycle

    def _client_for(self) -> aiomqtt.Client:
        s = self.settings
        tls_context: ssl.SSLContext | None = None
        if s.tls:
            tls_context = ssl.create_default_context(cafile=s.ca_file)
            if s.cert_file:
                tls_context.load_cert_chain(s.cert_file, s.key_file)
        return mqtt_client(
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
        failures = 0
        try:
            while not self._closing:
                problem: str | None = None
                try:
                    client = self._client_for()
                    async with client:
                        failures = 0
                        await self._serve_and_say_offline(client)
                except aiomqtt.MqttError as exc:
                    if self._closing or _cancelling():
                        # aiomqtt can turn our cancellation into an MqttError; going on would
                        # reconnect and leave a stale retained "online" behind.
                        return
                    problem = describe(exc)
                except (ssl.SSLError, OSError, ValueError) as exc:
                    # TLS files that cannot be used, a name that does not resolve, ...
                    problem = (
                        f"TLS: {describe(exc)}"
                        if isinstance(exc, ssl.SSLError)
                        else (describe(exc))
                    )
                finally:
                    self._connection_ended()
                if self._closing:
                    return
                failures += 1
                delay = self.backoff.delay(failures)
                self._report_retry(problem or "connection closed", delay, failures)
                await asyncio.sleep(delay)
        finally:
            await self.desk.close(SHUTTING_DOWN)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve_and_say_offline(self, client: aiomqtt.Client) -> None:
        """Serve one connection; leaving it for any reason but its loss says ``offline``.

        The daemon's own bug, a cancellation and close() all end here; only a lost
        connection does not (the broker publishes the last will for that one).
        """
        try:
            await self._serve(client)
        except aiomqtt.MqttError:
            if self._closing or _cancelling():
                await self._say_offline(client)
            raise
        except BaseException:
            await self._say_offline(client)
            raise

    def _report_retry(self, problem: str, delay: float, failures: int) -> None:
        s = self.settings
        when = _seconds(delay)
        # The first failure, or a different one, is news; the same one again is not.
        news = failures == 1 or problem != self._last_problem
        self._last_problem = problem
        log.log(
            logging.WARNING if news else logging.DEBUG,
            "MQTT broker %s:%s: %s; retrying in %s",
            s.host,
            s.port,
            problem,
            when,
        )
        self._set_status(f"retrying in {when} ({problem})")

    def _set_status(self, status: str) -> None:
        if status == self.status:
            return
        self.status = status
        for listener in list(self._status_listeners):
            try:
                listener(status)
            except Exception as exc:
                _failed("an MQTT status listener", exc)

    def _set_connected(self, value: bool, client: aiomqtt.Client | None) -> None:
        self._client = client
        if value == self.connected:
            return
        self.connected = value
        for listener in list(self._connection_listeners):
            try:
                listener(value)
            except Exception as exc:
                _failed("an MQTT connection listener", exc)

    def _connection_ended(self) -> None:
        """Keep what did not go out: results and events wait for the next connection."""
        self._set_connected(False, None)
        left = []
        while not self._out.empty():
            item = self._out.get_nowait()
            if item.kind in ("result", "event"):
                left.append(item)
        self._queued_telemetry = 0
        self._held.extend(left)  # after those whose publish was cut off: they are older
        if self.status == "connected":
            self._set_status("disconnected")

    async def _serve(self, client: aiomqtt.Client) -> None:
        self.connections += 1
        self._client = client  # from now on close() can say "offline" on this connection
        self._offline_said = False
        await client.subscribe(self.topics.cmd, qos=1)
        await client.subscribe(f"{self.settings.discovery_prefix}/status", qos=1)
        await self._announce(client)
        self._set_connected(True, client)
        while self._held:
            self._out.put_nowait(self._held.popleft())
        if self._last_problem is not None:
            log.warning("connected to MQTT broker %s:%s", self.settings.host, self.settings.port)
        else:
            log.info("connected to MQTT broker %s:%s", self.settings.host, self.settings.port)
        self._last_problem = None
        self._set_status("connected")
        sender = self._sender = _Sender(self, client)
        sender.pump()
        try:
            async for message in client.messages:
                try:
                    self._on_message(message)
                except Exception as exc:  # one message never ends the connection
                    _failed("handling an MQTT message", exc)
        finally:
            self._sender = None
            await sender.close()

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Retained availability, state, profiles and discovery (after every connect)."""
        t = self.topics
        await client.publish(t.availability, b"online", qos=1, retain=True)
        await client.publish(t.state, encode_json(self.handler.state()), qos=1, retain=True)
        await client.publish(t.profiles, encode_json(self.handler.profiles()), qos=1, retain=True)
        walkers = getattr(self.handler, "walkers", None)  # the coach (docs/plans.md §7)
        for kind, payload in walkers() if callable(walkers) else ():
            topic = self._walker_topic(kind, payload)
            await client.publish(topic, encode_json(payload), qos=1, retain=True)
        await self._publish_discovery(client)

    async def _publish_discovery(self, client: aiomqtt.Client) -> None:
        item = self._discovery_item()
        await client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)

    def _discovery_item(self) -> _Out:
        """Retained like state: not held while the broker is away, announced on connect."""
        s = self.settings
        topic = discovery_topic(s.discovery_prefix, s.device_id)
        description = self.handler.device_description()
        self._described = description
        if not s.discovery:
            # An empty retained payload removes the device from Home Assistant.
            return _Out(topic, b"", 1, True, "state")
        names = [p["name"] for p in self.handler.profiles()]
        payload = discovery_payload(self.topics, s.device_id, names, *description)
        walkers = getattr(self.handler, "walker_names", None)  # the coach (docs/plans.md §7)
        if callable(walkers):
            payload["cmps"].update(coach_components(self.topics, s.device_id, walkers()))
        return _Out(topic, encode_json(payload), 1, True, "state")

    async def close(self, timeout_s: float = 3.0) -> None:
        """Answer what is pending, then publish ``offline`` ourselves.

        A clean disconnect does not fire the last will, so the daemon says it.
        """
        self._closing = True
        await self.desk.close(SHUTTING_DOWN)
        client = self._client
        if client is None or not self.connected:
            return
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not self._out.empty():
                    item = self._out.get_nowait()
                    if item.kind != "telemetry":
                        await client.publish(
                            item.topic, item.payload, qos=item.qos, retain=item.retain
                        )
        await self._say_offline(client, timeout_s)

    async def _say_offline(self, client: aiomqtt.Client, timeout_s: float = 2.0) -> None:
        if self._offline_said:
            return
        self._offline_said = True
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError, OSError):
            async with asyncio.timeout(timeout_s):
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
            for listener in list(self._birth_listeners):
                try:
                    listener()
                except Exception as exc:
                    _failed("an MQTT birth listener", exc)

    def _on_command(self, data: bytes) -> None:
        """Every payload on ``cmd`` leads to exactly one result, now or when it is done."""
        self.commands_received += 1
        self.desk.submit(data, self._reply)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, aiomqtt.MqttError):
                _failed(task.get_name(), exc)  # type: ignore[arg-type]


class _Sender:
    """Hands the bridge's queued outputs to one connection's client, in queue order.

    Runs on every enqueue and every acknowledgement, in the caller's step: a message goes
    out in the step that produced it, with no task between the runner and the socket.
    Every message goes to paho-mqtt directly and is written at once (``_publish_now``), so
    the order on the wire is the queue's. A QoS 1 message (results, events, state) then
    waits for its PUBACK, at most ``window`` outstanding (awaiting each before the next
    would cap throughput at one broker round trip per message). One still waiting when
    the connection ends counts as failed: a result or an event waits for the next
    connection. A PUBACK later than the client's timeout is only worth a warning: on a
    connection that lives on, the message is on its way (TCP loses nothing, paho sends
    nothing twice), so it keeps its place in the window; taken as failed, it went out
    again on the next connection, a duplicate, hours late perhaps, and paho, still
    counting it in flight, held later QoS 1 messages back past its 20 while QoS 0 ones
    overtook them. A dead connection is ended by the keepalive (within two of its
    periods). Telemetry paho holds unsent counts against ``telemetry_backlog`` too.

    Should a release of aiomqtt move its paho client out of reach (``paho_of``), every
    message becomes a task around ``client.publish``, started in queue order.
    """

    def __init__(self, bridge: MqttBridge, client: aiomqtt.Client, window: int = 8) -> None:
        self.bridge = bridge
        self.client = client
        self.paho = paho_of(client)
        self.window = window
        self.timeout_s = float(client.timeout or 10.0)
        self.awaiting: dict[int, tuple[_Out, asyncio.TimerHandle]] = {}  # QoS 1, by mid
        self.inflight: dict[asyncio.Task[None], _Out] = {}  # without paho: client.publish
        self.unwritten: deque[MQTTMessageInfo] = deque()  # telemetry paho has not sent yet
        self.closed = False
        self._confirm: Callable[..., None] | None = None  # aiomqtt's on_publish
        if self.paho is not None:
            self._confirm = self.paho.on_publish
            self.paho.on_publish = self._acked

    def pump(self) -> None:
        out = self.bridge._out
        loop = asyncio.get_running_loop()
        while (
            not self.closed
            and not out.empty()
            and len(self.awaiting) + len(self.inflight) < self.window
        ):
            item = out.get_nowait()
            self.bridge._took(item)
            if self.paho is None:
                task = loop.create_task(self._publish(item), name=f"mqtt-publish-{item.topic}")
                self.inflight[task] = item
                task.add_done_callback(self._done)
                continue
            if item.kind == "telemetry" and self._behind():
                self.bridge.dropped_telemetry += 1  # a broker that stopped reading
                continue
            rc: int
            try:
                info = self._publish_now(self.paho, item)
                rc = info.rc
            except (ValueError, OSError) as exc:  # paho's checks of topic and payload
                _failed(f"publishing on {item.topic}", exc)
                rc = -1
            if rc == MQTT_ERR_NO_CONN:
                # paho has closed the socket: the connection is going. What waits for a
                # PUBACK came before this one, and goes to the held queue first; the rest
                # of the queue stays for the bridge to take back when the connection ends.
                self._abandon()
                self._lost(item)
            elif rc != MQTT_ERR_SUCCESS:
                self._lost(item)
            elif item.qos == 0:
                if item.kind == "telemetry":
                    self.unwritten.append(info)
            else:
                overdue = loop.call_later(self.timeout_s, self._overdue, info.mid)
                self.awaiting[info.mid] = (item, overdue)

    def _behind(self) -> bool:
        """``telemetry_backlog`` samples handed to paho and not yet on the socket.

        paho takes a message at once and keeps it until the socket does; a broker that
        stops reading (hung, or a path that drops packets) would let samples pile up there
        until the keepalive gives up. Counted like those waiting in the bridge's queue.
        """
        unwritten = self.unwritten
        while unwritten and unwritten[0].is_published():
            unwritten.popleft()
        return len(unwritten) >= self.bridge.telemetry_backlog

    def _publish_now(self, paho: PahoClient, item: _Out) -> MQTTMessageInfo:
        """Hand ``item`` to paho and, when nothing waits before it, write it in this step.

        Handed a message with nothing pending, paho asks aiomqtt for a writer callback,
        which aiomqtt registers with ``call_soon_threadsafe``: a wake-up through the event
        loop's self-pipe, a loop turn, a writer registered and removed again, per message.
        Instead, paho's request is taken here and the message written at once; only what
        the socket does not take (a full send buffer) is left to aiomqtt's writer, asked
        for as paho would have. When something is pending already (a write the socket
        refused), paho does not ask, nothing is written here, and aiomqtt's writer sends
        this message after the earlier ones, in order.

        Without our on_publish meanwhile: for every QoS 0 message it writes, paho builds a
        reason code and a properties object for that callback (9 % of a sample's CPU),
        which has nothing to do for one (only PUBACKs are awaited, and those are read,
        never written). A message still counts as written (``is_published``) without it.
        """
        register, confirm = paho.on_socket_register_write, paho.on_publish
        asked = False

        def ask(client: PahoClient, userdata: Any, sock: Any) -> None:
            nonlocal asked
            asked = True

        paho.on_socket_register_write = ask
        paho.on_publish = None
        try:
            info = paho.publish(item.topic, item.payload, item.qos, item.retain)
            if asked:
                try:
                    paho.loop_write()  # a broken socket paho reports to aiomqtt itself
                except Exception as exc:  # aiomqtt's writer meets it again, and disconnects
                    _failed(f"writing on {item.topic}", exc)
        finally:
            paho.on_socket_register_write = register
            paho.on_publish = confirm
        sock = paho.socket()
        if asked and register is not None and sock is not None and paho.want_write():
            register(paho, paho.user_data_get(), sock)
        return info

    def _acked(self, client: PahoClient, userdata: Any, mid: int, *rest: Any) -> None:
        """paho's on_publish: a PUBACK (or a QoS 0 message aiomqtt's writer sent)."""
        entry = self.awaiting.pop(mid, None)
        if entry is None:
            if self._confirm is not None:  # one of aiomqtt's own publishes (announce, close)
                self._confirm(client, userdata, mid, *rest)
            return
        entry[1].cancel()
        # Inside paho's reading, under its callback lock: the window refills a turn later.
        asyncio.get_running_loop().call_soon(self.pump)

    def _overdue(self, mid: int) -> None:
        entry = self.awaiting.get(mid)
        if entry is not None:
            log.warning(
                "MQTT broker has not confirmed %s within %.0f s; still waiting for it",
                entry[0].topic,
                self.timeout_s,
            )

    def _lost(self, item: _Out) -> None:
        if item.kind == "telemetry":
            self.bridge.dropped_telemetry += 1  # the session log has it
        elif item.kind in ("result", "event"):
            self.bridge._held.append(item)  # state and discovery are announced on connect

    async def _publish(self, item: _Out) -> None:
        await self.client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)

    def _done(self, task: asyncio.Task[None]) -> None:
        item = self.inflight.pop(task)
        if task.cancelled() or task.exception() is not None:
            self._lost(item)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None and not isinstance(exc, aiomqtt.MqttError):
                _failed("publishing an MQTT message", exc)
        self.pump()

    def _abandon(self) -> None:
        """Publish no more; what waits for a PUBACK counts as failed, in the order sent."""
        self.closed = True
        for item, overdue in self.awaiting.values():
            overdue.cancel()
            self._lost(item)
        self.awaiting.clear()

    async def close(self) -> None:
        self._abandon()
        if self.paho is not None and self.paho.on_publish == self._acked:
            self.paho.on_publish = self._confirm
        tasks = list(self.inflight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _cancelling() -> bool:
    me = asyncio.current_task()
    return me is not None and me.cancelling() > 0


def _seconds(delay: float) -> str:
    return f"{delay:.0f} s" if delay >= 2 else f"{delay:.1f} s"


def _failed(what: str, exc: BaseException) -> None:
    failed(what, exc, log)
