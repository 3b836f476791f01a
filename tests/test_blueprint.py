"""The spoken-cues blueprint against what discovery's Events entity really carries.

Home Assistant itself validates the blueprint outside the suite (README, "Home Assistant");
here it is read as YAML and its templates are rendered with Jinja2 on the attributes the
Events entity gets from real event payloads, so the blueprint and discovery cannot drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from retrotread.events import EVENT_TYPES, SPOKEN_BY_DEFAULT
from retrotread.mqtt.discovery import discovery_payload
from retrotread.mqtt.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINT = ROOT / "homeassistant" / "blueprints" / "automation" / "retrotread" / "spoken_cues.yaml"


class _Input(str):
    """``!input name``: a reference to the blueprint input ``name``."""


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!input", lambda loader, node: _Input(loader.construct_scalar(node)))


def load() -> dict[str, Any]:
    data = yaml.load(BLUEPRINT.read_text(), Loader=_Loader)
    assert isinstance(data, dict)
    return data


def event_attributes(payload: dict[str, Any]) -> dict[str, Any]:
    """The Events entity's attributes for one ``<base>/event`` payload, as HA makes them."""
    env = ImmutableSandboxedEnvironment()
    env.filters["to_json"] = json.dumps
    c = discovery_payload(Topics("retrotread/t1"), "t1", ["first-steps"])["cmps"]["events"]
    text = env.from_string(c["value_template"]).render(value_json=payload)
    attributes = json.loads(text)
    assert attributes["event_type"] in c["event_types"]
    return dict(attributes)


def fires(bp: dict[str, Any], attributes: dict[str, Any], spoken: list[str]) -> str | None:
    """The message the automation would speak for this event, or None if it stays quiet."""
    env = ImmutableSandboxedEnvironment()
    trigger = {"to_state": {"state": "2026-12-01T10:00:00+00:00", "attributes": attributes}}
    variables: dict[str, Any] = {"trigger": trigger}
    for name, value in bp["variables"].items():
        if isinstance(value, _Input):
            variables[name] = spoken
        else:
            variables[name] = env.from_string(value).render(**variables)
    (condition,) = bp["conditions"]
    if env.from_string(condition["value_template"]).render(**variables) != "True":
        return None
    (action,) = bp["actions"]
    return env.from_string(action["data"]["message"]).render(**variables)


def test_the_blueprint_declares_its_inputs() -> None:
    bp = load()
    meta = bp["blueprint"]
    assert meta["domain"] == "automation"
    inputs = meta["input"]
    assert set(inputs) == {"events_entity", "tts_entity", "speaker", "spoken"}
    assert inputs["events_entity"]["selector"]["entity"]["filter"] == [
        {"domain": "event", "integration": "mqtt"}
    ]
    assert inputs["tts_entity"]["selector"]["entity"]["filter"] == [{"domain": "tts"}]
    assert inputs["speaker"]["selector"]["entity"]["filter"] == [{"domain": "media_player"}]
    offered = [o["value"] for o in inputs["spoken"]["selector"]["select"]["options"]]
    assert sorted(offered) == sorted(EVENT_TYPES)  # every event type can be chosen, once
    assert inputs["spoken"]["default"] == list(SPOKEN_BY_DEFAULT)  # as the daemon's [cues]
    assert bp["mode"] == "queued"
    (trigger,) = bp["triggers"]
    assert (trigger["trigger"], trigger["entity_id"]) == ("state", "events_entity")
    assert isinstance(trigger["entity_id"], _Input)
    assert trigger["not_from"] == ["unavailable"]
    (action,) = bp["actions"]
    assert action["action"] == "tts.speak"
    assert (action["target"]["entity_id"], action["data"]["media_player_entity_id"]) == (
        "tts_entity",
        "speaker",
    )


def test_it_speaks_the_chosen_events_message_and_nothing_else() -> None:
    bp = load()
    turn = event_attributes(
        {
            "ts": 1.0,
            "type": "turn_required",
            "message": "The belt pauses. Hold the rails, turn around to face the rear.",
            "direction": "backward",
            "phase": "backward",
        }
    )
    refused = event_attributes(
        {"ts": 2.0, "type": "command_refused", "message": "Start refused: busy", "action": "start"}
    )
    default = list(SPOKEN_BY_DEFAULT)
    assert fires(bp, turn, default) == turn["message"]
    assert fires(bp, refused, default) is None
    assert fires(bp, refused, [*default, "command_refused"]) == "Start refused: busy"
    assert fires(bp, {**turn, "message": ""}, default) is None
    assert fires(bp, {}, default) is None  # an entity without an event yet
