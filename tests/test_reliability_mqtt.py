"""Issue 11 findings 1-3 and 6 against a real Mosquitto: no message kills the daemon, every
command gets exactly one result (even in a flood), ``offline`` on every way out, and broker
problems say what happens next."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from retrotread.backoff import Backoff
from retrotread.config import MqttConfig
from retrotread.mqtt.bridge import MqttBridge
from retrotread.mqtt.client import mqtt_client
from retrotread.mqtt.commands import Command, CommandError, parse_command
from retrotread.mqtt.desk import result_payload
from tests.broker import Broker, free_port
from tests.test_daemon_mqtt import BASE, Phone, daemon_rig, until

# The three payloads that stopped the daemon (issue 11, finding 1), and the one that
# paused the belt and killed the command worker (finding 2).
DEEP = b"[" * 2000 + b"]" * 2000
HUGE_INT = b'{"action": "set", "speed_kmh": ' + b"7" * 400 + b', "id": "big"}'
SURROGATE_DANCE = b'{"action": "dance", "id": "\\ud800"}'
SURROGATE_PAUSE = b'{"action": "pause", "id": "\\ud800"}'


# Hostile payloads, each refused by name: (payload, what the error says, id, action). The
# web page's WebSocket is held to the same list (tests/test_web.py).
HOSTILE: list[tuple[bytes, str, Any, str | None]] = [
    (DEEP, "nests 2000 levels deep (at most 8)", None, None),
    (HUGE_INT, "speed_kmh: 777777777777… has 400 digits (at most 15)", "big", "set"),
    (SURROGATE_DANCE, "id: text holds a lone surrogate (\\ud800)", None, None),
    (SURROGATE_PAUSE, "id: text holds a lone surrogate (\\ud800)", None, "pause"),
    (
        b'{"action": "set", "speed_kmh": NaN, "id": 3}',
        "speed_kmh: NaN is not a number",
        3,
        "set",
    ),
    (
        b'{"action": "set", "incline_pct": -Infinity}',
        "incline_pct: -Infinity is not",
        None,
        "set",
    ),
    (b'{"action": "set", "speed_kmh": 1e999}', "speed_kmh: 1e999 is out of range", None, "set"),
    (b'{"action": "start", "profile": "' + b"p" * 500 + b'"}', "500 characters", None, "start"),
    (b'{"action": "stop", "x": {"\\udc00": 1}}', "a key in x: text holds a lone", None, "stop"),
    (b'{"action": "stop", "id": "' + b"i" * 300 + b'"}', "id: text of 300", None, "stop"),
    (
        b'{"action": "stop", "note": "[[[[[[[[[[[[[[[[[["}',
        "stop does not take 'note'",
        None,
        "stop",
    ),
]


@pytest.mark.parametrize(("payload", "needle", "command_id", "action"), HOSTILE)
def test_refused_by_name(payload: bytes, needle: str, command_id: Any, action: str | None) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(payload)
    assert needle in caught.value.message
    assert caught.value.command_id == command_id
    assert caught.value.action == action


def test_nan_speed_names_nan_not_the_limit() -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(b'{"action": "set", "speed_kmh": NaN}')
    assert caught.value.message == "speed_kmh: NaN is not a number"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    command = parse_command(b'{"action": "start", "profile": "[[[[[[[[[[[[[[[[", "id": 1}')
    assert command.action == "start"
    assert command.id == 1


async def test_the_crashers_are_answered_and_the_daemon_lives(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with daemon_rig(broker, tmp_path) as r, Phone(broker.port) as phone:
        await until(lambda: phone.on("availability") == ["online"])
        assert (await phone.command({"action": "start", "profile": "first-steps"}))["ok"]
        await until(lambda: r.daemon.runner.state_name() == "running")
        for payload in (DEEP, HUGE_INT, SURROGATE_DANCE, SURROGATE_PAUSE):
            before = len(phone.on("cmd/result"))
            await phone.send(payload)
            await until(lambda b=before: len(phone.on("cmd/result")) > b)
            assert phone.on("cmd/result")[-1]["ok"] is False
        results = phone.on("cmd/result")[-4:]
        assert "nests 2000 levels deep" in results[0]["error"]
        assert results[1]["id"] == "big"
        assert "400 digits" in results[1]["error"]
        assert results[2] == {
            "id": None,
            "action": None,
            "ok": False,
            "error": "id: text holds a lone surrogate (\\ud800), which is not valid Unicode",
        }
        assert results[3]["action"] == "pause"
        # The surrogate pause was refused before it was carried out: the belt still runs.
        assert r.daemon.runner.state_name() == "running"
        # The command worker is alive: pause, resume and skip are carried out and answered.
        assert (await phone.command({"action": "pause"}))["ok"] is True
        assert r.daemon.runner.state_name() == "paused"
        assert (await phone.command({"action": "resume"}))["ok"] is True
        assert (await phone.command({"action": "skip"}))["ok"] is True
        assert (await phone.command({"action": "stop"}))["ok"] is True
        assert not any(rec.levelno >= logging.ERROR for rec in caplog.records)
    async with Phone(broker.port) as later:
        await until(lambda: bool(later.on("availability")))
        assert later.on("availability") == ["offline"]


async def test_a_flood_gets_exactly_one_result_per_command(broker: Broker, tmp_path: Path) -> None:
    """2,000 commands in a burst: 2,000 results, one per id; no state or result dropped."""
    async with daemon_rig(broker, tmp_path) as r, Phone(broker.port) as phone:
        await until(lambda: bool(phone.on("state")))
        assert (await phone.command({"action": "start", "profile": "first-steps"}))["ok"]
        assert phone.client is not None
        kinds = [
            {"action": "pause"},
            {"action": "resume"},
            {"action": "set", "speed_kmh": 1.0},
            {"action": "dance"},
            {"action": "skip", "extra": 1},
        ]
        client = phone.client
        await asyncio.gather(  # handed to the client at once: a burst, not a stream
            *(
                client.publish(f"{BASE}/cmd", json.dumps({**kinds[i % len(kinds)], "id": i}))
                for i in range(2000)
            )
        )
        await until(lambda: len(phone.on("cmd/result")) >= 2001, 60)
        await phone.command({"action": "stop"})
        await until(lambda: r.daemon.runner.session is None)
        await asyncio.sleep(0.3)  # anything extra would arrive now
        assert_one_result_per_id(phone.on("cmd/result"), 2000)
        bridge = r.daemon.bridge
        assert bridge.results_sent == bridge.commands_received == 2002
        busy = [x for x in phone.on("cmd/result") if "too many commands" in (x["error"] or "")]
        assert len(busy) == bridge.refused_busy
        # The last retained state is the daemon's own, not one dropped on the way.
        assert phone.on("state")[-1] == r.daemon.runner.state()


def assert_one_result_per_id(results: list[dict[str, Any]], n: int) -> None:
    """Every command of a burst with ids 0..n-1 got exactly one result."""
    per_id = Counter(res["id"] for res in results)
    burst = {i: k for i, k in per_id.items() if isinstance(i, int)}
    assert sorted(burst) == list(range(n))
    assert set(burst.values()) == {1}


class Handler:
    """Stands in for the daemon: its commands fail in ways the daemon's own bugs would."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.state_raises = False

    async def handle(self, command: Command) -> None:
        if command.action == "skip":
            raise RecursionError("maximum recursion depth exceeded")
        if command.action == "finish":
            raise OverflowError("int too large to convert to float")
        if command.action == "set":
            await asyncio.sleep(3600)  # a command that never ends on its own
        self.done.append(command.action)

    def state(self) -> dict[str, Any]:
        if self.state_raises:
            raise RuntimeError("state is broken")
        return {"state": "idle"}

    def profiles(self) -> list[dict[str, Any]]:
        return []

    def device_description(self) -> tuple[str | None, str | None]:
        return (None, None)


def _settings(port: int, **kw: Any) -> MqttConfig:
    return MqttConfig(host="127.0.0.1", port=port, base_topic="retrotread/t1", device_id="t1", **kw)


async def _retained_availability(port: int) -> str:
    async with mqtt_client("127.0.0.1", port) as c:
        await c.subscribe("retrotread/t1/availability", qos=1)
        async with asyncio.timeout(5):
            async for m in c.messages:
                return bytes(m.payload).decode()  # type: ignore[arg-type]
    raise AssertionError("no availability")


async def _results(port: int, payloads: list[bytes], want: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with mqtt_client("127.0.0.1", port) as c:
        await c.subscribe("retrotread/t1/cmd/result", qos=1)
        for p in payloads:
            await c.publish("retrotread/t1/cmd", p, qos=1)
        async with asyncio.timeout(10):
            async for m in c.messages:
                got.append(json.loads(bytes(m.payload)))  # type: ignore[arg-type]
                if len(got) == want:
                    break
    return got


async def test_worker_survives_a_failing_command_logged_once(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = MqttBridge(_settings(broker.port), Handler())
    task = asyncio.create_task(bridge.run())
    await until(lambda: bridge.connected)
    caplog.set_level(logging.WARNING)
    got = await _results(
        broker.port,
        [b'{"action": "skip", "id": 1}', b'{"action": "pause", "id": 2}'],
        2,
    )
    assert got[0]["id"] == 1
    assert got[0]["ok"] is False
    assert got[0]["error"].startswith("internal error while skip (RecursionError)")
    assert got[1] == {"id": 2, "action": "pause", "ok": True, "error": None}
    errors = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert [rec.getMessage() for rec in errors] == [
        "command skip failed: RecursionError: maximum recursion depth exceeded"
    ]
    assert errors[0].exc_info is None  # no traceback above DEBUG
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="retrotread.mqtt")
    got = await _results(broker.port, [b'{"action": "finish", "id": 3}'], 1)
    assert "(OverflowError)" in got[0]["error"]
    failed = [rec for rec in caplog.records if "command finish failed" in rec.getMessage()]
    assert len(failed) == 1
    assert failed[0].exc_info is not None  # the traceback, once, at DEBUG
    await bridge.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_commands_in_flight_at_shutdown_are_answered(broker: Broker) -> None:
    handler = Handler()
    bridge = MqttBridge(_settings(broker.port), handler)
    task = asyncio.create_task(bridge.run())
    await until(lambda: bridge.connected)
    async with mqtt_client("127.0.0.1", broker.port) as c:
        await c.subscribe("retrotread/t1/cmd/result", qos=1)
        await c.publish("retrotread/t1/cmd", b'{"action": "set", "speed_kmh": 1, "id": 1}', qos=1)
        await c.publish("retrotread/t1/cmd", b'{"action": "pause", "id": 2}', qos=1)
        await until(lambda: bridge.commands_received == 2)
        await bridge.close()
        got = []
        async with asyncio.timeout(5):
            async for m in c.messages:
                got.append(json.loads(bytes(m.payload)))  # type: ignore[arg-type]
                if len(got) == 2:
                    break
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [(x["id"], x["ok"], x["error"]) for x in got] == [
        (1, False, "the daemon is shutting down"),
        (2, False, "the daemon is shutting down"),
    ]
    assert handler.done == []
    assert await _retained_availability(broker.port) == "offline"


async def test_offline_when_the_bridge_dies_of_a_bug(broker: Broker) -> None:
    handler = Handler()
    handler.state_raises = True  # read while announcing: a bug of ours, not the broker's
    bridge = MqttBridge(_settings(broker.port), handler)
    with pytest.raises(RuntimeError, match="state is broken"):
        await asyncio.wait_for(bridge.run(), 10)
    assert await _retained_availability(broker.port) == "offline"


async def test_offline_when_cancelled_without_close(broker: Broker) -> None:
    bridge = MqttBridge(_settings(broker.port), Handler())
    task = asyncio.create_task(bridge.run())
    await until(lambda: bridge.connected)
    assert await _retained_availability(broker.port) == "online"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await _retained_availability(broker.port) == "offline"


async def test_results_are_held_while_the_broker_is_away(broker: Broker) -> None:
    handler = Handler()
    bridge = MqttBridge(_settings(broker.port), handler, backoff=Backoff(0.05, 0.2))
    task = asyncio.create_task(bridge.run())
    await until(lambda: bridge.connected)
    broker.stop()
    await until(lambda: not bridge.connected)
    bridge._reply(result_payload("late", "pause", True, None))  # finished after the drop
    bridge.output("event", {"type": "cue", "message": "while away"})
    bridge.output("state", {"state": "paused"})  # republished fresh on connect instead
    broker.start()
    got: list[tuple[str, Any]] = []
    async with mqtt_client("127.0.0.1", broker.port) as c:
        await c.subscribe("retrotread/t1/#", qos=1)
        await until(lambda: bridge.connected)
        async with asyncio.timeout(5):
            async for m in c.messages:
                got.append((str(m.topic), bytes(m.payload)))  # type: ignore[arg-type]
                if any(t.endswith("/event") for t, _ in got):
                    break
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    topics = [t for t, _ in got]
    assert "retrotread/t1/cmd/result" in topics
    result = json.loads(next(p for t, p in got if t.endswith("cmd/result")))
    assert result == {"id": "late", "action": "pause", "ok": True, "error": None}


async def test_broker_problem_says_what_happens_next(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    b = Broker(free_port(), tmp_path, username="walker", password="s3cret")
    b.start()
    try:
        caplog.set_level(logging.DEBUG, logger="retrotread.mqtt.bridge")
        bridge = MqttBridge(
            _settings(b.port, username="walker", password="wrong"),
            Handler(),
            backoff=Backoff(0.05, 0.1),
        )
        statuses: list[str] = []
        bridge.add_status_listener(statuses.append)
        task = asyncio.create_task(bridge.run())
        await until(lambda: sum("retrying in" in rec.getMessage() for rec in caplog.records) >= 3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        b.stop()
    tries = [rec for rec in caplog.records if "retrying in" in rec.getMessage()]
    assert tries[0].levelno == logging.WARNING
    assert {rec.levelno for rec in tries[1:]} == {logging.DEBUG}
    first = tries[0].getMessage()
    assert first.startswith(f"MQTT broker 127.0.0.1:{b.port}: ")
    assert "not authori" in first.lower() or "bad user name" in first.lower()
    assert first.endswith(" s")
    assert statuses
    assert statuses[0].startswith("retrying in 0.")
    assert "(" in statuses[0]


async def test_a_flood_beyond_the_backlog_is_told_to_slow_down(broker: Broker) -> None:
    handler = Handler()  # "set" never ends: the worker is stuck on the first one
    bridge = MqttBridge(_settings(broker.port), handler, command_backlog=10)
    task = asyncio.create_task(bridge.run())
    await until(lambda: bridge.connected)
    got: list[dict[str, Any]] = []
    async with mqtt_client("127.0.0.1", broker.port) as c:
        await c.subscribe("retrotread/t1/cmd/result", qos=1)
        for i in range(30):
            await c.publish(
                "retrotread/t1/cmd", json.dumps({"action": "set", "speed_kmh": 1, "id": i})
            )
        await until(lambda: bridge.commands_received == 30)
        await bridge.close()  # what waits is answered too
        async with asyncio.timeout(10):
            async for m in c.messages:
                got.append(json.loads(bytes(m.payload)))  # type: ignore[arg-type]
                if len(got) == 30:
                    break
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sorted(r["id"] for r in got) == list(range(30))  # one result each
    busy = [
        r["id"]
        for r in got
        if r["error"] == "too many commands, slow down (10 are already waiting)"
    ]
    assert busy == list(range(11, 30))  # 1 being carried out, 10 waiting, the rest refused
    assert bridge.refused_busy == 19
    assert {r["error"] for r in got if r["id"] <= 10} == {"the daemon is shutting down"}
