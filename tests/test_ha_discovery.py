"""What Home Assistant shows, from the discovery payload and the daemon's real MQTT output.

The daemon runs against a real Mosquitto and the simulator. Each entity's value template is
rendered with Jinja2 as Home Assistant renders it (``value`` and ``value_json``, a null as
``None``); what HA then does with the text follows its MQTT platforms (2026.2):
``components/mqtt/select.py`` resets the option only on ``none`` (any case) and ignores an
empty payload; ``sensor.py`` reads ``None`` as unknown; ``event.py`` wants a JSON object with
an ``event_type`` from the entity's ``event_types``. A real HA is checked outside the suite
(README, "Home Assistant").
"""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from retrotread.clock import ScaledClock, VirtualClock
from retrotread.config import Config, MqttConfig, SessionsConfig, TreadmillConfig
from retrotread.events import COMMAND_REFUSED, EVENT_TYPES
from retrotread.mqtt.bridge import REFUSAL_EVENTS_PER_S, MqttBridge
from retrotread.mqtt.client import mqtt_client
from retrotread.service.app import Daemon
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import Faults, SimConfig, SimTreadmill
from tests.broker import Broker
from tests.test_daemon_mqtt import BASE, Phone, daemon_rig, until
from tests.test_mqtt_bridge import Handler, Spy, _running, _settings, _stop, _wait_for

ROOT = Path(__file__).resolve().parents[1]
CONFIG_TOPIC = "homeassistant/device/t1/config"
KEEP = object()  # HA ignores the message: the entity keeps what it showed


def _ha_jinja() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment()
    env.filters["to_json"] = json.dumps  # HA's own filter (helpers/template)
    return env


JINJA = _ha_jinja()


def render(template: str, payload: Any) -> str:
    """The template's text for one received payload, as HA's MqttValueTemplate makes it."""
    raw = json.dumps(payload)
    return JINJA.from_string(template).render(value=raw, value_json=json.loads(raw))


def select_shows(component: dict[str, Any], payload: Any) -> object:
    text = render(component["value_template"], payload)
    if not text.strip():
        return KEEP
    if text.lower() == "none":
        return None
    assert text in component["options"], f"HA logs 'Invalid option' for {text!r}"
    return text


def sensor_shows(component: dict[str, Any], payload: Any) -> object:
    text = render(component["value_template"], payload)
    if text == "None":
        return None
    if text == "" and "unit_of_measurement" in component:
        return KEEP
    return text


def event_fires(component: dict[str, Any], payload: Any) -> tuple[str, dict[str, Any]]:
    text = render(component["value_template"], payload)
    attributes = json.loads(text)
    assert isinstance(attributes, dict)
    event_type = str(attributes.pop("event_type"))
    assert event_type in component["event_types"], f"HA refuses event type {event_type!r}"
    return event_type, attributes


def discovery(phone: Phone) -> dict[str, Any]:
    configs = [v for t, v, _ in phone.got if t == CONFIG_TOPIC]
    assert configs, "no discovery message"
    found = configs[-1]
    assert isinstance(found, dict)
    return found


async def test_idle_select_and_phase_read_unknown(broker: Broker, tmp_path: Path) -> None:
    async with daemon_rig(broker, tmp_path) as r, Phone(broker.port) as phone:
        await until(
            lambda: bool(phone.on("state")) and any(t == CONFIG_TOPIC for t, _, _ in phone.got)
        )
        c = discovery(phone)["cmps"]
        select, phase, left = c["profile"], c["phase"], c["phase_remaining"]
        idle = phone.on("state")[-1]
        assert (idle["state"], idle["profile"], idle["phase"]) == ("idle", None, None)
        assert select_shows(select, idle) is None
        assert sensor_shows(phase, idle) is None
        assert sensor_shows(left, idle) is None

        assert (await phone.command({"action": "start", "profile": "first-steps"}))["ok"]
        await until(lambda: phone.on("state")[-1]["phase"] == "warm-up")
        running = phone.on("state")[-1]
        assert select_shows(select, running) == "first-steps"
        assert sensor_shows(phase, running) == "warm-up"
        assert isinstance(sensor_shows(left, running), str)
        assert float(str(sensor_shows(left, running))) > 0

        assert (await phone.command({"action": "stop"}))["ok"]
        await until(lambda: r.daemon.runner.session is None)
        await until(lambda: phone.on("state")[-1]["session_id"] is None)
        after = phone.on("state")[-1]
        # The runner remembers the last profile (a bare "start" runs it again); HA must not
        # keep showing it as if it were running.
        assert after["profile"] == "first-steps"
        assert select_shows(select, after) is None
        assert sensor_shows(phase, after) is None
        # The retained state a restarted HA reads says the same.
        async with Phone(broker.port) as late:
            await until(lambda: bool(late.on("state")))
            assert select_shows(select, late.on("state")[0]) is None
            assert sensor_shows(phase, late.on("state")[0]) is None


async def test_idle_telemetry_reads_idle_after_a_session(broker: Broker, tmp_path: Path) -> None:
    async with daemon_rig(broker, tmp_path) as r, Phone(broker.port) as phone:
        await until(lambda: any(t == CONFIG_TOPIC for t, _, _ in phone.got))
        c = discovery(phone)["cmps"]
        assert (await phone.command({"action": "start", "profile": "first-steps"}))["ok"]
        await until(lambda: r.sim.speed_kmh > 0.5, 20)
        await until(lambda: sensor_shows(c["elapsed"], phone.on("telemetry")[-1]) is not None)
        assert (await phone.command({"action": "stop"}))["ok"]
        await until(lambda: r.daemon.runner.session is None)
        # However seldom idle telemetry is sent, the first sample after the session is sent
        # and tells HA the session's values are gone.
        await until(lambda: phone.on("telemetry")[-1]["session_id"] is None)
        last = phone.on("telemetry")[-1]
        assert sensor_shows(c["elapsed"], last) is None
        await until(lambda: r.sim.speed_kmh == 0.0)
        await until(lambda: phone.on("telemetry")[-1]["speed_kmh"] == 0.0)
        assert sensor_shows(c["speed"], phone.on("telemetry")[-1]) == "0.0"


async def test_refusals_and_events_reach_the_event_entity(broker: Broker, tmp_path: Path) -> None:
    async with daemon_rig(broker, tmp_path) as r, Phone(broker.port) as phone:
        await until(lambda: any(t == CONFIG_TOPIC for t, _, _ in phone.got))
        ev = discovery(phone)["cmps"]["events"]
        assert (ev["p"], ev["state_topic"]) == ("event", f"{BASE}/event")
        assert ev["event_types"] == list(EVENT_TYPES)
        assert ev["default_entity_id"] == "event.t1_events"

        res = await phone.command({"action": "pause"})
        assert res["ok"] is False
        await until(lambda: any(e["type"] == COMMAND_REFUSED for e in phone.on("event")))
        refusal = next(e for e in phone.on("event") if e["type"] == COMMAND_REFUSED)
        kind, attrs = event_fires(ev, refusal)
        assert kind == COMMAND_REFUSED
        assert attrs["message"] == f"Pause refused: {res['error']}"
        assert (attrs["action"], attrs["id"], attrs["error"]) == ("pause", res["id"], res["error"])

        await phone.send(b"{not json")
        await until(lambda: sum(e["type"] == COMMAND_REFUSED for e in phone.on("event")) == 2)
        garbled = [e for e in phone.on("event") if e["type"] == COMMAND_REFUSED][-1]
        kind, attrs = event_fires(ev, garbled)
        assert attrs["message"].startswith("Command refused: payload is not JSON")
        assert attrs["action"] is None

        assert (await phone.command({"action": "start", "profile": "first-steps"}))["ok"]
        res = await phone.command({"action": "start", "profile": "build-up"})
        assert "already running (first-steps)" in res["error"]
        await until(lambda: sum(e["type"] == COMMAND_REFUSED for e in phone.on("event")) == 3)
        busy = [e for e in phone.on("event") if e["type"] == COMMAND_REFUSED][-1]
        kind, attrs = event_fires(ev, busy)
        assert attrs["message"] == f"Start refused: {res['error']}"
        # Accepted commands are not echoed as events: their own events tell the story.
        assert [e["type"] for e in phone.on("event")].count(COMMAND_REFUSED) == 3

        await until(lambda: r.sim.speed_kmh > 0, 20)
        # The first phase runs once the daemon has seen the belt start, a moment after the
        # simulator's belt moves: a skip before that skips a phase never announced.
        await until(lambda: any(e["type"] == "phase_started" for e in phone.on("event")), 20)
        assert (await phone.command({"action": "skip"}))["ok"]  # to the backward phase
        await until(lambda: any(e["type"] == "turn_required" for e in phone.on("event")), 20)
        assert (await phone.command({"action": "stop"}))["ok"]
        await until(lambda: any(e["type"] == "session_finished" for e in phone.on("event")))
        seen = {}
        for e in phone.on("event"):
            kind, attrs = event_fires(ev, e)
            seen[kind] = attrs
        assert {"session_started", "phase_started", "turn_required", "session_finished"} <= set(
            seen
        )
        turn = seen["turn_required"]
        # "The belt pauses." or, if a stall on a loaded machine paused it first (a 10x clock
        # makes the silence watchdog half a real second), "The belt is paused.": either way
        # the cue the walker hears is the turn.
        assert "Hold the rails, turn around to face the rear" in turn["message"]
        assert (turn["direction"], turn["phase"]) == ("backward", "backward")
        assert r.daemon.runner.last_outcome == "stopped"


def _emitted_literals(path: Path, methods: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in methods
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def test_every_event_type_the_code_emits_is_declared() -> None:
    pkg = ROOT / "daemon" / "retrotread"
    runner = _emitted_literals(pkg / "service" / "runner.py", {"event"})
    engine = _emitted_literals(pkg / "profiles" / "engine.py", {"_emit"})
    assert "turn_required" in engine  # the scan sees what it should
    assert "session_finished" in runner
    # "completed" is the engine telling the runner; the runner says session_finished.
    assert (runner | engine) - {"completed"} <= set(EVENT_TYPES)


async def test_discovery_payload_for_home_assistant(broker: Broker, tmp_path: Path) -> None:
    async with daemon_rig(broker, tmp_path), Phone(broker.port) as phone:
        await until(lambda: any(t == CONFIG_TOPIC for t, _, _ in phone.got))
        cfg = discovery(phone)
        c = cfg["cmps"]
        energy = c["energy"]
        assert (energy["device_class"], energy["unit_of_measurement"], energy["state_class"]) == (
            "energy",
            "kcal",
            "total_increasing",
        )
        ids = [x["default_entity_id"] for x in c.values()]
        assert len(set(ids)) == len(ids)
        for key, x in c.items():
            assert x["default_entity_id"] == f"{x['p']}.t1_{key}"
        assert c["profile"]["value_template"].count("build-up") == 1  # the options, once
        assert select_shows(c["profile"], {"session_id": "s", "profile": "plan-of-the-day"}) is None


async def test_device_gets_the_treadmill_name_when_the_link_comes_up_after_the_broker(
    broker: Broker, tmp_path: Path
) -> None:
    config = Config(
        treadmill=TreadmillConfig(reconnect_max_backoff_s=1.0),
        mqtt=MqttConfig(host="127.0.0.1", port=broker.port, device_id="t1"),
        sessions=SessionsConfig(dir=tmp_path / "sessions"),
    )
    sim = SimTreadmill(SimConfig(pre_workout_s=1.0), Faults(refuse_connect="powered off"))
    daemon = Daemon(config, InProcessTransport(sim), ScaledClock(10.0), sim=sim)
    daemon.bridge.backoff.initial_s = 0.1
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        async with Phone(broker.port) as phone:
            await until(lambda: daemon.bridge.connected and bool(phone.on("state")))
            await until(lambda: any(t == CONFIG_TOPIC for t, _, _ in phone.got))
            assert not daemon.treadmill.is_connected
            assert discovery(phone)["dev"]["name"] == "Treadmill t1"
            n = sum(1 for t, _, _ in phone.got if t == CONFIG_TOPIC)
            sim.faults.refuse_connect = None  # switched on
            await until(lambda: daemon.treadmill.is_connected)
            await until(lambda: discovery(phone)["dev"]["name"] == "RETRO-SIM")
            assert sum(1 for t, _, _ in phone.got if t == CONFIG_TOPIC) == n + 1
            # Only a change of name or model re-announces: state every few seconds does not.
            await until(lambda: phone.on("state")[-1]["connected"] is True)
            assert (await phone.command({"action": "start", "profile": "first-steps"}))["ok"]
            await until(lambda: phone.on("state")[-1]["phase"] == "warm-up")
            assert (await phone.command({"action": "stop"}))["ok"]
            assert sum(1 for t, _, _ in phone.got if t == CONFIG_TOPIC) == n + 1
        async with Phone(broker.port) as late:  # what a restarted HA is given
            await until(lambda: any(t == CONFIG_TOPIC for t, _, _ in late.got))
            assert discovery(late)["dev"]["name"] == "RETRO-SIM"
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def test_a_flood_of_busy_refusals_is_told_once_per_burst(broker: Broker) -> None:
    handler = Handler()
    handler.block.clear()  # the daemon is stuck on the first command: the queue fills
    bridge = MqttBridge(_settings(broker.port), handler, command_backlog=8)
    task = await _running(bridge)
    try:
        async with (
            Spy(broker.port, ["retrotread/t1/cmd/result", "retrotread/t1/event"]) as spy,
            mqtt_client("127.0.0.1", broker.port) as phone,
        ):
            for burst in range(2):
                for i in range(20):
                    cmd = {"action": "set", "speed_kmh": 2.0, "id": f"{burst}-{i}"}
                    await phone.publish("retrotread/t1/cmd", json.dumps(cmd), qos=1)
                await _wait_for(lambda b=burst: bridge.refused_busy == 11 * (b + 1))
                handler.block.set()  # it catches up: the next burst is news again
                await _wait_for(
                    lambda b=burst: len(spy.json("retrotread/t1/cmd/result")) == 20 * (b + 1)
                )
                handler.block.clear()
            told = [e for e in spy.json("retrotread/t1/event") if e["type"] == COMMAND_REFUSED]
            assert [(e["id"], e["message"]) for e in told] == [
                (f"{b}-9", "Set refused: too many commands, slow down (8 are already waiting)")
                for b in range(2)
            ]
    finally:
        handler.block.set()
        await bridge.close()
        await _stop(task)


async def test_a_flood_of_bad_commands_is_not_told_as_a_flood_of_events(broker: Broker) -> None:
    clock = VirtualClock()  # stands still unless told: the cap's second is exact
    bridge = MqttBridge(_settings(broker.port), Handler(), clock=clock)
    task = await _running(bridge)
    try:
        async with (
            Spy(broker.port, ["retrotread/t1/cmd/result", "retrotread/t1/event"]) as spy,
            mqtt_client("127.0.0.1", broker.port) as phone,
        ):

            async def bad(command_id: object) -> None:
                cmd = {"action": "fly", "id": command_id}
                await phone.publish("retrotread/t1/cmd", json.dumps(cmd), qos=1)

            def results() -> list[object]:
                return [r["id"] for r in spy.json("retrotread/t1/cmd/result")]

            for i in range(300):
                await bad(i)
            await _wait_for(lambda: len(results()) == 300, 30)
            await clock.advance(0.5)
            await bad("half a second later")
            await _wait_for(lambda: "half a second later" in results())
            await clock.advance(0.5)
            await bad("a second later")

            def told() -> list[dict[str, Any]]:
                return [e for e in spy.json("retrotread/t1/event") if e["type"] == COMMAND_REFUSED]

            # Events go out in order: once this one is there, every earlier one is too.
            await _wait_for(lambda: any(e["id"] == "a second later" for e in told()))
            # Every command has its result; events: the first few of each second.
            assert results() == [*range(300), "half a second later", "a second later"]
            assert [e["id"] for e in told()] == [*range(REFUSAL_EVENTS_PER_S), "a second later"]
            assert told()[0]["message"].startswith(
                "Command refused: unknown action 'fly'; expected one of start, stop"
            )
    finally:
        await bridge.close()
        await _stop(task)


async def test_a_restarted_home_assistant_gets_idle_telemetry_at_once(
    broker: Broker, tmp_path: Path
) -> None:
    config = Config(
        # A heartbeat far away: only the birth message can bring a sample while idle.
        mqtt=MqttConfig(host="127.0.0.1", port=broker.port, device_id="t1", idle_telemetry_s=3600),
        sessions=SessionsConfig(dir=tmp_path / "sessions"),
    )
    sim = SimTreadmill(SimConfig(heart_rate=False))  # nothing at rest changes by itself
    daemon = Daemon(config, InProcessTransport(sim), ScaledClock(10.0), sim=sim)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        async with Phone(broker.port) as phone:
            quiet = daemon.quiet
            assert quiet is not None
            await until(lambda: bool(phone.on("telemetry")) and bool(phone.on("state")))
            held = quiet.held
            n = len(phone.on("telemetry"))
            await until(lambda: quiet.held >= held + 8)  # idle samples held back
            assert len(phone.on("telemetry")) == n
            assert phone.client is not None
            await phone.client.publish("homeassistant/status", b"online")
            await until(lambda: len(phone.on("telemetry")) > n)
            c = discovery(phone)["cmps"]
            last = phone.on("telemetry")[-1]
            assert last["session_id"] is None
            assert sensor_shows(c["speed"], last) == "0.0"
            assert sensor_shows(c["elapsed"], last) is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
