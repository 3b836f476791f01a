"""docs/mqtt.md keeps up with the code: every topic, key, event type and command field.

The static half reads the code's own lists: the event types Home Assistant's event entity
declares (``retrotread.events``), the fields the runner and the engine put on each event,
the pydantic command union and the topic names. The other half runs the daemon on the
simulator against a real Mosquitto, drives a walker's session through every command, and
checks every topic it heard (with its retained flag and QoS) and every key of every
payload against the page's tables. A key, event type or action the code gains without a
row on the page fails here.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from retrotread.clock import ScaledClock
from retrotread.coach.walkers import WalkerConfig
from retrotread.config import Config, MqttConfig, SessionsConfig
from retrotread.events import EVENT_TYPES
from retrotread.mqtt.client import mqtt_client
from retrotread.mqtt.commands import ACTIONS, Command
from retrotread.mqtt.discovery import CAP_STATES, STATES
from retrotread.mqtt.topics import Topics
from retrotread.profiles.hr_governor import CapSettings, CapState, HeartRateGovernor, NoticeKind
from retrotread.service.app import Daemon
from retrotread.service.heart_rate import Source
from retrotread.service.runner import Belt
from retrotread.session.log import OUTCOMES
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import SimConfig, SimTreadmill
from tests.broker import Broker
from tests.test_daemon_mqtt import BASE, Phone, until
from tests.test_hr_governor import device

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "mqtt.md"
PKG = ROOT / "daemon" / "retrotread"
MARKER = "contract-doc/marker"

# ---------------------------------------------------------------------- reading the page


def section(text: str, code: str) -> str:
    """The part of the page under the heading that holds `code`, down to the next heading
    of the same or a higher level."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#") and f"`{code}`" in line:
            level = len(line) - len(line.lstrip("#"))
            end = next(
                (
                    j
                    for j in range(i + 1, len(lines))
                    if lines[j].startswith("#")
                    and len(lines[j]) - len(lines[j].lstrip("#")) <= level
                ),
                len(lines),
            )
            return "\n".join(lines[i:end])
    raise AssertionError(f"docs/mqtt.md has no heading with `{code}`")


def heading(text: str, title: str) -> str:
    """The part under the heading whose words are ``title`` (no code span in it)."""
    match = re.search(rf"^(#+) {re.escape(title)}$", text, re.M)
    assert match, f"docs/mqtt.md has no heading {title!r}"
    level = len(match.group(1))
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return match.group(0) + (rest[: end.start()] if end else rest)


_ROW = re.compile(r"^\| `([^`]+)` \|(.*)$")


def rows(part: str) -> dict[str, str]:
    """Table rows whose first cell is one code span: that name -> the rest of the row."""
    found = {}
    for line in part.splitlines():
        m = _ROW.match(line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


# ---------------------------------------------------------------------- what the code says


def _event_fields(path: Path, method: str) -> dict[str, set[str]]:
    """Event type -> the field names passed where ``path`` calls ``<x>.<method>(TYPE, ...)``:
    keywords, and the keys of a ``**{k: ... for k in ("a", "b")}``."""
    out: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == method
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            continue
        fields = out.setdefault(node.args[0].value, set())
        for kw in node.keywords:
            if kw.arg is not None:
                fields.add(kw.arg)
            elif isinstance(kw.value, ast.DictComp):
                for gen in kw.value.generators:
                    if isinstance(gen.iter, ast.Tuple | ast.List):
                        fields |= {
                            e.value
                            for e in gen.iter.elts
                            if isinstance(e, ast.Constant) and isinstance(e.value, str)
                        }
    return out


def _hr_cap_fields() -> set[str]:
    """The fields of an ``hr_cap`` event: what the governor says when the cap starts holding."""
    governor = HeartRateGovernor(device(), CapSettings(120))
    notices = governor.update(
        0.0,
        150,
        current={"speed": 3.0, "incline": 6.0},
        free=("speed", "incline"),
        moving=True,
        wanted={"speed": 3.0, "incline": 6.0},
        heading={"speed": 3.0, "incline": 6.0},
    )
    assert [n.kind for n in notices] == ["holding"]
    return set(notices[0].data)


def _commands() -> dict[str, set[str]]:
    """Action -> its own fields (not ``action``, not ``id``), from the pydantic union."""
    union = typing.get_args(Command)[0]
    out: dict[str, set[str]] = {}
    for model in typing.get_args(union):
        (action,) = typing.get_args(model.model_fields["action"].annotation)
        out[action] = set(model.model_fields) - {"action", "id"}
    return out


def _literals(annotation: Any) -> set[str]:
    """The string values of every Literal inside ``annotation`` (through unions)."""
    if typing.get_origin(annotation) is typing.Literal:
        return {a for a in typing.get_args(annotation) if isinstance(a, str)}
    found: set[str] = set()
    for arg in typing.get_args(annotation):
        found |= _literals(arg)
    return found


# ---------------------------------------------------------------------- static checks


def test_every_topic_name_is_in_the_topic_table(doc: str) -> None:
    table = rows(heading(doc, "Topics"))
    t = Topics("<base>")
    names = [getattr(t, n) for n, v in vars(Topics).items() if isinstance(v, property)]
    names.append(t.walker("<name>"))
    assert len(names) >= 9  # availability ... walker: the scan sees the properties
    missing = [n for n in names if n not in table]
    assert not missing, f"topics missing from docs/mqtt.md's topic table: {missing}"


def test_every_event_type_has_a_row_and_no_row_is_stale(doc: str) -> None:
    table = rows(heading(doc, "Event types"))
    assert set(table) - set(EVENT_TYPES) == set(), "rows for event types the code lacks"
    missing = [t for t in EVENT_TYPES if t not in table]
    assert not missing, f"event types missing from docs/mqtt.md: {missing}"


def test_every_field_the_code_puts_on_an_event_is_in_its_row(doc: str) -> None:
    table = rows(heading(doc, "Event types"))
    fields = _event_fields(PKG / "service" / "runner.py", "event")
    for kind, more in _event_fields(PKG / "profiles" / "engine.py", "_emit").items():
        fields.setdefault(kind, set()).update(more)
    fields.pop("completed", None)  # the engine telling the runner; it says session_finished
    fields.setdefault("hr_cap", set()).update(_hr_cap_fields())
    # The scan sees what it should.
    assert {"from", "to", "lost"} <= fields["recording_gap"]
    assert {"quantity", "value", "reason"} <= fields["override"]
    assert {"phase", "direction", "speed_kmh"} <= fields["phase_started"]
    assert "above_s" in fields["hr_cap"]
    missing = {
        kind: sorted(f for f in names if f"`{f}`" not in table.get(kind, ""))
        for kind, names in fields.items()
    }
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, f"event fields missing from their rows in docs/mqtt.md: {missing}"


def test_every_action_and_field_of_the_command_union_is_documented(doc: str) -> None:
    part = section(doc, "<base>/cmd")
    table = rows(heading(doc, "Commands: `<base>/cmd`"))
    commands = _commands()
    assert set(ACTIONS) == set(commands), "the parser's ACTIONS and the union disagree"
    assert set(table) == set(commands), "action rows and the command union differ"
    missing = {
        action: sorted(f for f in names if f"`{f}`" not in table[action])
        for action, names in commands.items()
    }
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, f"command fields missing from docs/mqtt.md: {missing}"
    assert "`id`" in part


def test_every_value_of_an_enumerated_field_is_listed(doc: str) -> None:
    state = rows(section(doc, "<base>/state"))
    telemetry = rows(section(doc, "<base>/telemetry"))
    events = rows(heading(doc, "Event types"))
    commands = rows(heading(doc, "Commands: `<base>/cmd`"))
    expected: list[tuple[str, str, set[str]]] = [
        ("state.state", state.get("state", ""), set(STATES)),
        ("state.belt", state.get("belt", ""), {b.value for b in Belt}),
        ("state.heart_rate.cap_state", state.get("heart_rate.cap_state", ""), set(CAP_STATES)),
        ("state.heart_rate.cap_state", state.get("heart_rate.cap_state", ""), _literals(CapState)),
        ("state.heart_rate.source", state.get("heart_rate.source", ""), _literals(Source)),
        ("telemetry.heart_rate_source", telemetry.get("heart_rate_source", ""), _literals(Source)),
        ("event hr_cap", events.get("hr_cap", ""), _literals(NoticeKind)),
        ("event session_finished", events.get("session_finished", ""), set(OUTCOMES)),
    ]
    union = typing.get_args(typing.get_args(Command)[0])
    for model in union:
        (action,) = typing.get_args(model.model_fields["action"].annotation)
        for name, info in model.model_fields.items():
            if name != "action":
                expected.append(
                    (f"cmd {action}.{name}", commands.get(action, ""), _literals(info.annotation))
                )
    missing = {
        where: sorted(v for v in values if f"`{v}`" not in row) for where, row, values in expected
    }
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, f"values missing from docs/mqtt.md: {missing}"


# ---------------------------------------------------------------------- the daemon on the wire


@dataclass(frozen=True)
class Heard:
    topic: str
    payload: Any
    retain: bool
    qos: int


class Ear(Phone):
    """The phone of the daemon tests, also keeping the retain flag and QoS of each message."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.heard: list[Heard] = []

    async def __aenter__(self) -> Ear:
        await super().__aenter__()
        return self

    async def _run(self) -> None:
        async with mqtt_client("127.0.0.1", self.port) as c:
            self.client = c
            for topic in (f"{BASE}/#", "homeassistant/device/#", MARKER):
                await c.subscribe(topic, qos=2)  # delivered with the QoS it was published at
            self._ready.set()
            async for m in c.messages:
                raw = bytes(m.payload) if isinstance(m.payload, bytes | bytearray) else b""
                try:
                    value: Any = json.loads(raw) if raw else None
                except ValueError:
                    value = raw.decode()  # availability
                self.got.append((str(m.topic), value, bool(m.retain)))
                self.heard.append(Heard(str(m.topic), value, bool(m.retain), m.qos))

    async def everything_retained(self) -> None:
        """Wait until the retained messages sent on subscribing are all in: the broker sends
        them before it takes our next publish, so a marker after them arrives last."""
        assert self.client is not None
        await self.client.publish(MARKER, b"{}", qos=1)
        await wait(lambda: any(h.topic == MARKER for h in self.heard))


def wait(pred: Any) -> Any:
    """``until`` with room for a busy machine (the session runs at 20x)."""
    return until(pred, 30.0)


@asynccontextmanager
async def walker_daemon(broker: Broker, tmp_path: Path) -> AsyncIterator[Daemon]:
    """The daemon on the in-process simulator with one walker on a plan, on ``broker``."""
    config = Config(
        mqtt=MqttConfig(host="127.0.0.1", port=broker.port, device_id="t1"),
        sessions=SessionsConfig(dir=tmp_path / "sessions"),
        walker=[WalkerConfig(name="anna", plan="retro-start")],
    )
    sim = SimTreadmill(SimConfig(pre_workout_s=1.0))
    daemon = Daemon(config, InProcessTransport(sim), ScaledClock(20.0), sim=sim)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        await wait(lambda: daemon.treadmill.is_connected and daemon.bridge.connected)
        yield daemon
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def _generic(topic: str) -> str:
    """A heard topic as the page names it."""
    topic = re.sub(
        r"^homeassistant/device/[^/]+/config$", "<prefix>/device/<device_id>/config", topic
    )
    topic = topic.replace(BASE, "<base>", 1)
    return re.sub(r"^<base>/walker/[^/]+$", "<base>/walker/<name>", topic)


def _keys(payload: dict[str, Any]) -> set[str]:
    """Its keys, and ``key.sub`` for the keys of an object inside it."""
    out = set()
    for key, value in payload.items():
        out.add(key)
        if isinstance(value, dict):
            out |= {f"{key}.{sub}" for sub in value}
    return out


async def _walk_a_session(ear: Ear, daemon: Daemon) -> set[str]:
    """Every action once, in a walker's plan session; the actions answered ok."""
    ok: set[str] = set()

    async def send(payload: dict[str, Any]) -> None:
        result = await ear.command(payload)
        assert result["ok"], (payload, result)
        ok.add(str(result["action"]))

    def state() -> dict[str, Any]:
        s: dict[str, Any] = ear.on("state")[-1]
        return s

    def event(kind: str, **match: Any) -> bool:
        return any(
            e["type"] == kind and all(e.get(k) == v for k, v in match.items())
            for e in ear.on("event")
        )

    await wait(lambda: bool(ear.on("walker/anna")) and bool(ear.on("walker")))
    await send({"action": "walker", "walker": "anna"})
    refused = await ear.command({"action": "dance"})
    assert (refused["ok"], refused["action"]) == (False, None)
    await send({"action": "start", "today": True, "pain": 2})
    await wait(
        lambda: any(t["session_id"] and (t["speed_kmh"] or 0) > 0 for t in ear.on("telemetry"))
    )
    await send({"action": "set", "speed_kmh": 2.0})
    await send({"action": "skip"})  # warm-up -> the first backward bout: a turn-around
    await wait(lambda: event("turn_required", direction="backward"))
    await send({"action": "resume"})
    await wait(lambda: event("phase_started", direction="backward"))
    await wait(lambda: state()["belt"] == "running")
    await send({"action": "pause"})
    await wait(lambda: state()["state"] == "paused")
    await send({"action": "resume"})
    await wait(lambda: state()["belt"] == "running")
    await send({"action": "finish"})
    await wait(lambda: event("turn_required", direction="forward"))
    await send({"action": "stop"})
    await wait(lambda: event("session_finished"))
    await wait(lambda: daemon.runner.session is None)
    heard = len(ear.on("walker/anna"))
    await send({"action": "feedback", "rating": "right", "pain": 2})
    await wait(
        lambda: len(ear.on("walker/anna")) > heard and ear.on("walker/anna")[-1]["last_rating"]
    )
    return ok


async def test_what_the_daemon_publishes_is_what_the_page_lists(
    broker: Broker, tmp_path: Path, doc: str
) -> None:
    async with walker_daemon(broker, tmp_path) as daemon, Ear(broker.port) as ear:
        answered = await _walk_a_session(ear, daemon)
        async with Ear(broker.port) as late:
            await late.everything_retained()
    # The run was what it should be: every action answered ok, the payloads complete.
    assert answered == set(_commands())
    assert any(s["session_id"] and "cap_state" in s["heart_rate"] for s in ear.on("state"))
    assert any(w.get("today") for w in ear.on("walker/anna"))

    topics = rows(heading(doc, "Topics"))
    problems: list[str] = []
    retained = {_generic(h.topic) for h in late.heard if h.retain}
    assert {"<base>/state", "<base>/availability", "<base>/walker/<name>"} <= retained
    for h in ear.heard:
        if h.topic == MARKER:
            continue
        name = _generic(h.topic)
        if name not in topics:
            problems.append(f"topic {name} is not in the topic table")
            continue
        direction, keep, qos = cells(topics[name])[:3]
        if direction != "out":
            continue
        if keep != ("yes" if name in retained else "no"):
            problems.append(f"{name}: retained is {keep!r} on the page")
        if qos != str(h.qos):
            problems.append(f"{name}: QoS {qos} on the page, {h.qos} on the wire")

    tables = {
        "state": rows(section(doc, "<base>/state")),
        "telemetry": rows(section(doc, "<base>/telemetry")),
        "profiles": rows(section(doc, "<base>/profiles")),
        "cmd/result": rows(section(doc, "<base>/cmd/result")),
        "walker": rows(section(doc, "<base>/walker/<name>")),
    }
    payloads: list[tuple[str, dict[str, Any]]] = []
    for kind in ("state", "telemetry", "cmd/result", "walker"):
        payloads += [(kind, p) for p in ear.on(kind)]
    payloads += [("walker", p) for p in ear.on("walker/anna")]
    payloads += [("profiles", p) for listing in ear.on("profiles") for p in listing]
    for kind, payload in payloads:
        for key in sorted(_keys(payload) - set(tables[kind])):
            problems.append(f"{kind} key {key!r} has no row")

    everyone = rows(heading(doc, "Fields of every event"))
    types = rows(heading(doc, "Event types"))
    nested = rows(section(doc, "<base>/event"))
    for e in ear.on("event"):
        row = types.get(e["type"], "")
        if not row:
            problems.append(f"event type {e['type']!r} has no row")
        for key in _keys(e) - set(everyone):
            if "." in key:
                if key not in nested:
                    problems.append(f"event {e['type']} key {key!r} has no row")
            elif f"`{key}`" not in row:
                problems.append(f"event {e['type']} field {key!r} is not in its row")
    problems = sorted(set(problems))
    assert not problems, "docs/mqtt.md is behind the daemon:\n" + "\n".join(problems)
