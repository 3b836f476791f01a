"""The MQTT bridge against a real Mosquitto: retained topics, results, reconnect, will."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from retrotread.backoff import Backoff
from retrotread.config import MqttConfig
from retrotread.errors import RetrotreadError
from retrotread.mqtt.bridge import MqttBridge
from retrotread.mqtt.client import mqtt_client, paho_of
from retrotread.mqtt.commands import Command
from tests.broker import Broker, free_port, make_tls_files


class Handler:
    """Stands in for the daemon: records commands, refuses 'resume' like an idle runner."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.block = asyncio.Event()
        self.block.set()

    async def handle(self, command: Command) -> None:
        if command.action != "stop":
            await self.block.wait()
        self.commands.append(command)
        if command.action == "resume":
            raise RetrotreadError("not paused: nothing to resume")

    def state(self) -> dict[str, Any]:
        return {"state": "idle", "connected": True, "profile": None}

    def profiles(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "first-steps",
                "title": "First steps",
                "duration_s": 600,
                "max_speed_kmh": 2.0,
                "max_incline_pct": 0.0,
            }
        ]

    def device_description(self) -> tuple[str | None, str | None]:
        return ("RETRO-SIM", "SIM-1")


async def _collect(port: int, topics: list[str], **kw: Any) -> AsyncIterator[aiomqtt.Message]:
    async with mqtt_client("127.0.0.1", port, **kw) as c:
        for t in topics:
            await c.subscribe(t, qos=1)
        async for m in c.messages:
            yield m


async def _wait_for(pred: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.01)


class Spy:
    def __init__(self, port: int, topics: list[str], qos: int = 1, **kw: Any) -> None:
        self.port, self.topics, self.qos, self.kw = port, topics, qos, kw
        self.got: list[tuple[str, bytes, bool]] = []
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def _run(self) -> None:
        async with mqtt_client("127.0.0.1", self.port, **self.kw) as c:
            for t in self.topics:
                await c.subscribe(t, qos=self.qos)
            self.ready.set()
            async for m in c.messages:
                p = m.payload
                self.got.append(
                    (str(m.topic), bytes(p) if isinstance(p, bytes | bytearray) else b"", m.retain)
                )

    async def __aenter__(self) -> Spy:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    def json(self, topic: str) -> list[Any]:
        return [json.loads(p) for t, p, _ in self.got if t == topic and p]


def _settings(port: int, **kw: Any) -> MqttConfig:
    return MqttConfig(host="127.0.0.1", port=port, base_topic="retrotread/t1", device_id="t1", **kw)


async def _running(bridge: MqttBridge) -> asyncio.Task[None]:
    task = asyncio.create_task(bridge.run())
    await _wait_for(lambda: bridge.connected)
    return task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_retained_topics_and_results(broker: Broker) -> None:
    handler = Handler()
    bridge = MqttBridge(_settings(broker.port), handler)
    task = await _running(bridge)
    async with Spy(broker.port, ["retrotread/t1/#", "homeassistant/device/t1/config"]) as spy:
        await _wait_for(lambda: len(spy.json("retrotread/t1/profiles")) == 1)
        retained = {t for t, _, r in spy.got if r}
        assert retained == {
            "retrotread/t1/availability",
            "retrotread/t1/state",
            "retrotread/t1/profiles",
            "homeassistant/device/t1/config",
        }
        assert [p for t, p, _ in spy.got if t == "retrotread/t1/availability"] == [b"online"]
        assert spy.json("retrotread/t1/state") == [handler.state()]
        async with mqtt_client("127.0.0.1", broker.port) as phone:
            await phone.publish("retrotread/t1/cmd", b'{"action": "pause", "id": 1}', qos=1)
            await phone.publish("retrotread/t1/cmd", b'{"action": "resume", "id": 2}', qos=1)
            await phone.publish("retrotread/t1/cmd", b"not json", qos=1)
            await phone.publish("retrotread/t1/cmd", b'{"action": "fly", "id": "x"}', qos=1)
            await phone.publish("retrotread/t1/cmd", b"x" * 5000, qos=1)
        await _wait_for(lambda: len(spy.json("retrotread/t1/cmd/result")) == 5)
        results = spy.json("retrotread/t1/cmd/result")
        by_id = {r["id"]: r for r in results if r["id"] is not None}
        assert by_id[1] == {"id": 1, "action": "pause", "ok": True, "error": None}
        assert by_id[2] == {
            "id": 2,
            "action": "resume",
            "ok": False,
            "error": "not paused: nothing to resume",
        }
        assert by_id["x"]["ok"] is False
        assert "unknown action 'fly'" in by_id["x"]["error"]
        anonymous = [r for r in results if r["id"] is None]
        assert sorted(r["error"].split(" (")[0] for r in anonymous) == [
            "payload is not JSON",
            "payload of 5000 bytes is over the 4096-byte limit",
        ]
        bridge.output("telemetry", {"speed_kmh": 2.5})
        bridge.output("event", {"type": "cue", "message": "hello"})
        await _wait_for(lambda: any(e["type"] == "cue" for e in spy.json("retrotread/t1/event")))
        assert spy.json("retrotread/t1/telemetry") == [{"speed_kmh": 2.5}]
        events = spy.json("retrotread/t1/event")
        # Each refusal is also an event (Home Assistant's event entity shows it), then the cue.
        assert [(e["type"], e.get("id")) for e in events[:-1]] == [
            ("command_refused", r["id"]) for r in results if not r["ok"]
        ]
        assert events[-1] == {"type": "cue", "message": "hello"}
    await bridge.close()
    await _stop(task)
    assert [c.action for c in handler.commands] == ["pause", "resume"]


async def _no_writer_left(bridge: MqttBridge) -> None:
    """All written, no writer callback stays registered on the client's socket: one that
    did would run on every turn of the event loop (a busy loop), and outlive the socket."""
    paho = paho_of(bridge._client)  # type: ignore[arg-type]
    assert paho is not None
    assert paho.on_publish is not None  # aiomqtt's, back after every write of ours
    await _wait_for(lambda: not paho.want_write())
    await asyncio.sleep(0.05)
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    key = selector.get_map().get(paho.socket().fileno())
    assert key is not None and key.events == selectors.EVENT_READ


async def test_outputs_keep_their_order_across_qos(broker: Broker) -> None:
    """Telemetry (QoS 0, straight to paho) never overtakes an earlier event (QoS 1, a
    task), and a burst beyond the acknowledgement window keeps order (no telemetry is
    dropped here: the backlog allowed is larger than the burst)."""
    bridge = MqttBridge(_settings(broker.port), Handler(), telemetry_backlog=1000)
    task = await _running(bridge)
    # Subscribed at QoS 0, the broker passes both on in the order they came: at QoS 1 a
    # subscriber's full in-flight window lets QoS 0 messages overtake queued QoS 1 ones.
    topics = ["retrotread/t1/telemetry", "retrotread/t1/event"]
    async with Spy(broker.port, topics, qos=0) as spy:
        sent = []
        for i in range(300):
            # Runs of each kind, so that QoS 0 follows QoS 1 still being handed over.
            kind = "event" if (i // 3) % 2 else "telemetry"
            bridge.output(kind, {"type": "cue", "n": i} if kind == "event" else {"n": i})
            sent.append((kind, i))
        await _wait_for(lambda: len(spy.got) >= len(sent))
        got = [(t.rsplit("/", 1)[1], json.loads(p)["n"]) for t, p, _ in spy.got]
        assert got == sent
        await _no_writer_left(bridge)
    await bridge.close()
    await _stop(task)


async def test_telemetry_goes_to_paho_without_a_task(broker: Broker) -> None:
    """The fast path is taken: aiomqtt still keeps its paho client where we look for it
    (a release that moves it would make telemetry take the slower task path), and a
    sample is written in the step that produced it."""
    async with mqtt_client("127.0.0.1", broker.port) as client:
        assert paho_of(client) is not None
    bridge = MqttBridge(_settings(broker.port), Handler())
    task = await _running(bridge)
    paho = paho_of(bridge._client)  # type: ignore[arg-type]
    assert paho is not None
    async with Spy(broker.port, ["retrotread/t1/telemetry"]) as spy:
        before = {t.get_name() for t in asyncio.all_tasks()}
        for i in range(20):
            bridge.output("telemetry", {"n": i})
            # On the socket within the call: no writer callback, no loop turn first.
            assert not paho.want_write()
        made = {t.get_name() for t in asyncio.all_tasks()} - before
        assert not any(name.startswith("mqtt-publish") for name in made)
        await _wait_for(lambda: len(spy.got) == 20)
        assert [json.loads(p)["n"] for _, p, _ in spy.got] == list(range(20))
        await _no_writer_left(bridge)
    await bridge.close()
    await _stop(task)


async def test_telemetry_backlog_holds_when_the_broker_stops_reading(broker: Broker) -> None:
    """Telemetry is dropped whenever more than ``telemetry_backlog`` wait, also in paho's
    own buffer: a broker that stops reading (hung, or a path that drops packets) must not
    let samples pile up there until the keepalive gives up (found in review)."""
    backlog = 10
    bridge = MqttBridge(_settings(broker.port), Handler(), telemetry_backlog=backlog)
    task = await _running(bridge)
    paho = paho_of(bridge._client)  # type: ignore[arg-type]
    assert paho is not None and broker.server is not None and broker.server.proc is not None
    pid = broker.server.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        pad = "x" * 20_000
        for i in range(1500):  # 30 MB: more than the kernel buffers on both sides
            bridge.output("telemetry", {"n": i, "pad": pad})
            if i % 50 == 0:
                await asyncio.sleep(0.01)  # let the writer run
        await asyncio.sleep(0.2)
        waiting = len(paho._out_packet)  # type: ignore[attr-defined]
        print(f"waiting in paho {waiting}, dropped {bridge.dropped_telemetry}")
        assert waiting <= backlog + 8
        assert bridge.dropped_telemetry > 0
    finally:
        os.kill(pid, signal.SIGCONT)
        await bridge.close()
        await _stop(task)


async def test_events_are_written_in_the_step_and_wait_for_their_puback(broker: Broker) -> None:
    """A QoS 1 output is on the socket when ``output`` returns (no task, no loop turn),
    and at most ``window`` wait for their PUBACK: with the broker stopped, 8 are out and
    the rest wait in the queue; resumed, all arrive in order, the window refilled by the
    acknowledgements."""
    bridge = MqttBridge(_settings(broker.port), Handler())
    task = await _running(bridge)
    paho = paho_of(bridge._client)  # type: ignore[arg-type]
    assert paho is not None and bridge._sender is not None
    assert broker.server is not None and broker.server.proc is not None
    pid = broker.server.proc.pid
    async with Spy(broker.port, ["retrotread/t1/event"]) as spy:
        before = {t.get_name() for t in asyncio.all_tasks()}
        bridge.output("event", {"n": -1})
        assert not paho.want_write()
        assert {t.get_name() for t in asyncio.all_tasks()} == before
        await _wait_for(lambda: len(spy.got) == 1 and not bridge._sender.awaiting)  # type: ignore[union-attr]
        os.kill(pid, signal.SIGSTOP)
        try:
            for i in range(20):
                bridge.output("event", {"n": i})
            assert len(bridge._sender.awaiting) == 8
            assert bridge._out.qsize() == 12
            await asyncio.sleep(0.2)
            assert len(bridge._sender.awaiting) == 8  # no PUBACK, no more sent
        finally:
            os.kill(pid, signal.SIGCONT)
        await _wait_for(lambda: len(spy.got) == 21)
        assert [json.loads(p)["n"] for _, p, _ in spy.got] == list(range(-1, 20))
        await _wait_for(lambda: not bridge._sender.awaiting)  # type: ignore[union-attr]
        assert bridge._out.empty() and not bridge._held
        await _no_writer_left(bridge)
    await bridge.close()
    await _stop(task)


async def test_a_late_puback_is_waited_for_and_nothing_is_sent_twice(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """No PUBACK within the client's timeout, on a connection that lives on: a warning,
    and the messages keep waiting in the window. The broker has them (found in review:
    the event was taken back into the held queue and published a second time on the next
    connection, whenever that came)."""
    bridge = MqttBridge(
        _settings(broker.port, client_id="bridge"), Handler(), backoff=Backoff(0.1, 0.2)
    )
    task = await _running(bridge)
    sender = bridge._sender
    assert sender is not None and broker.server is not None and broker.server.proc is not None
    sender.timeout_s = 0.3
    pid = broker.server.proc.pid
    async with Spy(broker.port, ["retrotread/t1/event", "retrotread/t1/state"]) as spy:
        os.kill(pid, signal.SIGSTOP)
        try:
            bridge.output("event", {"n": 1})
            bridge.output("state", {"n": 2})
            await _wait_for(lambda: len(_unconfirmed(caplog)) == 2)
            assert _unconfirmed(caplog) == ["retrotread/t1/event", "retrotread/t1/state"]
            assert len(sender.awaiting) == 2 and not bridge._held
        finally:
            os.kill(pid, signal.SIGCONT)
        await _wait_for(lambda: not sender.awaiting)
        assert not bridge._held
        # A new connection (another client takes the bridge's client id for a moment).
        async with mqtt_client("127.0.0.1", broker.port, identifier="bridge"):
            await _wait_for(lambda: not bridge.connected)
        await _wait_for(lambda: bridge.connected and bridge.connections == 2)
        bridge.output("event", {"n": 3})  # after anything the new connection sent again
        await _wait_for(lambda: 3 in [e["n"] for e in spy.json("retrotread/t1/event")])
        assert [e["n"] for e in spy.json("retrotread/t1/event")] == [1, 3]
    await bridge.close()
    await _stop(task)


def _unconfirmed(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        str(r.args[0])  # type: ignore[index]
        for r in caplog.records
        if r.name == "retrotread.mqtt.bridge" and "not confirm" in str(r.msg)
    ]


async def test_a_long_stall_keeps_the_order_across_qos(broker: Broker) -> None:
    """Through a broker stall of many timeouts, QoS 0 telemetry never overtakes an earlier
    event (found in review: each timeout let 8 more events out while paho still counted
    the earlier ones in flight; past its 20 it kept the next events back, unsent, and the
    telemetry after them went out first)."""
    bridge = MqttBridge(_settings(broker.port), Handler(), telemetry_backlog=1000)
    task = await _running(bridge)
    sender = bridge._sender
    assert sender is not None and broker.server is not None and broker.server.proc is not None
    sender.timeout_s = 0.1
    pid = broker.server.proc.pid
    topics = ["retrotread/t1/telemetry", "retrotread/t1/event"]
    async with Spy(broker.port, topics, qos=0) as spy:
        sent = []
        os.kill(pid, signal.SIGSTOP)
        try:
            for i in range(60):
                kind = "event" if i % 2 else "telemetry"
                bridge.output(kind, {"n": i})
                sent.append((kind, i))
            await asyncio.sleep(1.0)  # ten timeouts
        finally:
            os.kill(pid, signal.SIGCONT)
        await _wait_for(lambda: len(spy.got) >= len(sent))
        got = [(t.rsplit("/", 1)[1], json.loads(p)["n"]) for t, p, _ in spy.got]
        assert got == sent
        await _wait_for(lambda: not sender.awaiting)
        assert not bridge._held
        await _no_writer_left(bridge)
    await bridge.close()
    await _stop(task)


async def test_an_event_awaiting_its_puback_when_the_connection_dies_is_sent_again(
    broker: Broker,
) -> None:
    """A broker that stops answering: the keepalive ends the connection, the event that
    was waiting for its PUBACK goes out again on the next one (at least once: the old
    connection may have delivered it too)."""
    bridge = MqttBridge(_settings(broker.port, keepalive_s=5), Handler(), backoff=Backoff(0.1, 0.2))
    task = await _running(bridge)
    assert broker.server is not None and broker.server.proc is not None
    pid = broker.server.proc.pid
    async with Spy(broker.port, ["retrotread/t1/event"]) as spy:  # its keepalive is 60 s
        os.kill(pid, signal.SIGSTOP)
        try:
            bridge.output("event", {"n": 1})
            assert bridge._sender is not None and len(bridge._sender.awaiting) == 1
            await _wait_for(lambda: not bridge.connected, timeout=30)
            assert [json.loads(item.payload)["n"] for item in bridge._held] == [1]
        finally:
            os.kill(pid, signal.SIGCONT)
        await _wait_for(lambda: bridge.connected, timeout=30)
        bridge.output("event", {"n": 2})
        await _wait_for(lambda: 2 in [e["n"] for e in spy.json("retrotread/t1/event")])
        assert [e["n"] for e in spy.json("retrotread/t1/event")][-2:] == [1, 2]
    assert not bridge._held
    await bridge.close()
    await _stop(task)


async def test_events_keep_their_order_when_the_connection_breaks_under_them(
    broker: Broker,
) -> None:
    """The connection breaks while events are written: those handed to paho before the
    break (waiting for their PUBACK) and those after it (paho has no socket any more) go
    out again on the next connection in the order they came (found in review: the ones
    after the break were held at once, ahead of the older ones still waiting)."""
    bridge = MqttBridge(_settings(broker.port), Handler(), backoff=Backoff(0.1, 0.2))
    task = await _running(bridge)
    assert broker.server is not None and broker.server.proc is not None
    proc = broker.server.proc
    proc.kill()
    proc.wait()  # without a turn of the event loop: the bridge has not read the end yet
    bridge.output("event", {"n": 1})  # written; the dead peer answers with a reset
    time.sleep(0.1)  # noqa: ASYNC251 (the reset arrives; the event loop must not turn)
    bridge.output("event", {"n": 2})  # its write meets the reset: paho closes the socket
    bridge.output("event", {"n": 3})  # no socket
    bridge._reply({"n": 4})  # a command's result
    await _wait_for(lambda: not bridge.connected)
    assert [json.loads(item.payload)["n"] for item in bridge._held] == [1, 2, 3, 4]
    broker.stop()
    broker.start()
    await _wait_for(lambda: bridge.connected)
    sender = bridge._sender
    assert sender is not None
    await _wait_for(lambda: not bridge._held and bridge._out.empty() and not sender.awaiting)
    await bridge.close()
    await _stop(task)


async def test_stop_is_not_queued_behind_other_commands(broker: Broker) -> None:
    handler = Handler()
    handler.block.clear()  # every non-stop command hangs, like a slow ramp write
    bridge = MqttBridge(_settings(broker.port), handler)
    task = await _running(bridge)
    async with mqtt_client("127.0.0.1", broker.port) as phone:
        for i in range(200):
            await phone.publish(
                "retrotread/t1/cmd", json.dumps({"action": "set", "speed_kmh": 2, "id": i}), qos=0
            )
        await phone.publish("retrotread/t1/cmd", b'{"action": "stop", "id": "S"}', qos=1)
    await _wait_for(lambda: any(c.action == "stop" for c in handler.commands))
    assert [c.action for c in handler.commands] == ["stop"]
    handler.block.set()
    await _stop(task)


async def test_reconnects_and_republishes_after_broker_restart(broker: Broker) -> None:
    handler = Handler()
    bridge = MqttBridge(_settings(broker.port), handler, backoff=Backoff(0.1, 0.5))
    changes: list[bool] = []
    bridge.add_connection_listener(changes.append)
    task = await _running(bridge)
    broker.stop()
    await _wait_for(lambda: not bridge.connected)
    bridge.output("telemetry", {"speed_kmh": 1.0})  # dropped: the broker is away
    bridge.output("event", {"type": "cue", "message": "while away"})  # buffered
    broker.start()
    await _wait_for(lambda: bridge.connected and bridge.connections == 2)
    async with Spy(broker.port, ["retrotread/t1/#"]) as spy:
        await _wait_for(
            lambda: spy.json("retrotread/t1/state") and spy.json("retrotread/t1/profiles")
        )
        assert spy.json("retrotread/t1/state") == [handler.state()]
    assert bridge.dropped_telemetry == 1
    assert changes == [True, False, True]
    await _stop(task)


async def test_offline_published_on_clean_close(broker: Broker) -> None:
    handler = Handler()
    bridge = MqttBridge(_settings(broker.port), handler)
    task = await _running(bridge)
    await bridge.close()
    async with Spy(broker.port, ["retrotread/t1/availability"]) as spy:
        await _wait_for(lambda: spy.got)
        assert spy.got[-1][1] == b"offline"
    await _stop(task)


async def test_username_password_and_refusal(tmp_path: Path) -> None:
    b = Broker(free_port(), tmp_path, username="walker", password="s3cret")
    b.start()
    try:
        good = MqttBridge(_settings(b.port, username="walker", password="s3cret"), Handler())
        task = await _running(good)
        assert good.connected
        await _stop(task)
        bad = MqttBridge(
            _settings(b.port, username="walker", password="wrong"),
            Handler(),
            backoff=Backoff(0.05, 0.1),
        )
        task = asyncio.create_task(bad.run())
        await asyncio.sleep(0.5)
        assert not bad.connected
        await _stop(task)
    finally:
        b.stop()


async def test_tls_with_client_certificate(tmp_path: Path) -> None:
    ca = make_tls_files(tmp_path)
    b = Broker(free_port(), tmp_path, tls=True)
    b.start()
    try:
        bridge = MqttBridge(
            _settings(
                b.port,
                tls=True,
                ca_file=str(ca),
                cert_file=str(tmp_path / "client.crt"),
                key_file=str(tmp_path / "client.key"),
            ),
            Handler(),
        )
        task = await _running(bridge)
        assert bridge.connections == 1
        await _stop(task)
    finally:
        b.stop()


async def test_discovery_removed_when_disabled(broker: Broker) -> None:
    on = MqttBridge(_settings(broker.port), Handler())
    task = await _running(on)
    await _stop(task)
    off = MqttBridge(_settings(broker.port, discovery=False), Handler())
    task = await _running(off)
    async with Spy(broker.port, ["homeassistant/device/t1/config"]) as spy:
        await asyncio.sleep(0.3)
        assert spy.got == []  # the empty retained payload cleared the retained config
    await _stop(task)
