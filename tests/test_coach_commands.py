"""The coach's commands on ``<base>/cmd`` (SPEC.md §3): parsed, or refused with a reason."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from retrotread.coach.walkers import WalkerConfig
from retrotread.mqtt.commands import (
    ChooseWalker,
    CommandError,
    Feedback,
    Start,
    parse_command,
)
from retrotread.mqtt.discovery import coach_components
from retrotread.mqtt.topics import Topics


def parse(obj: dict[str, object]) -> object:
    return parse_command(json.dumps(obj).encode())


def refused(obj: dict[str, object]) -> CommandError:
    with pytest.raises(CommandError) as err:
        parse(obj)
    return err.value


def test_start_for_a_walker() -> None:
    cmd = parse({"action": "start", "plan": "retro-start", "walker": "anna", "pain": 3, "id": 7})
    assert isinstance(cmd, Start)
    assert (cmd.plan, cmd.walker, cmd.pain, cmd.id, cmd.for_walker) == (
        "retro-start",
        "anna",
        3,
        7,
        True,
    )
    today = parse({"action": "start", "today": True})
    assert isinstance(today, Start) and today.for_walker and today.plan is None
    # A profile alone is a plain start, as before; with a walker it runs under their limits.
    plain = parse({"action": "start", "profile": "first-steps"})
    assert isinstance(plain, Start) and not plain.for_walker
    theirs = parse({"action": "start", "profile": "first-steps", "walker": "anna"})
    assert isinstance(theirs, Start) and theirs.for_walker
    slider = parse({"action": "start", "walker": "anna", "pain": 3.0})  # what a slider sends
    assert isinstance(slider, Start) and slider.pain == 3


def test_feedback_and_walker() -> None:
    fb = parse({"action": "feedback", "walker": "anna", "rating": "hard", "pain": 0})
    assert isinstance(fb, Feedback)
    assert (fb.walker, fb.rating, fb.pain, fb.when) == ("anna", "hard", 0, None)
    before = parse({"action": "feedback", "when": "before", "pain": 10})
    assert isinstance(before, Feedback) and (before.when, before.pain) == ("before", 10)
    who = parse({"action": "walker", "walker": "ben"})
    assert isinstance(who, ChooseWalker) and who.walker == "ben"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"action": "feedback"}, "feedback needs 'rating' (easy, right, hard), 'pain' (0-10)"),
        ({"action": "feedback", "pain": 11}, "pain: input should be less than or equal to 10"),
        ({"action": "feedback", "pain": -1}, "pain: input should be greater than or equal to 0"),
        ({"action": "feedback", "pain": 2.5}, "pain: input should be a valid integer"),
        ({"action": "feedback", "pain": "3"}, "pain: input should be a valid integer"),
        ({"action": "feedback", "rating": "ok"}, "rating: input should be 'easy', 'right'"),
        ({"action": "feedback", "pain": 1, "when": "during"}, "when: input should be 'before'"),
        ({"action": "feedback", "pain": 1, "mood": "x"}, "feedback does not take 'mood'"),
        ({"action": "start", "profile": "a", "plan": "b"}, "start takes 'profile' or a plan"),
        ({"action": "start", "profile": "a", "today": True}, "start takes 'profile' or a plan"),
        ({"action": "start", "profile": "a", "pain": 2}, "'pain' goes with a plan session"),
        ({"action": "start", "walker": ""}, "walker: string should have at least 1 character"),
        ({"action": "start", "walker": "x" * 40}, "walker: string should have at most 32"),
        ({"action": "start", "today": "yes"}, "today: input should be a valid boolean"),
        ({"action": "walker"}, "walker needs 'walker'"),
    ],
)
def test_bad_coach_commands_are_refused_with_a_reason(
    payload: dict[str, object], message: str
) -> None:
    err = refused({**payload, "id": "x"})
    assert message in err.message
    assert err.command_id == "x"
    assert err.action == payload["action"]


def test_home_assistant_components_for_the_coach() -> None:
    cmps = coach_components(Topics("retrotread/t1"), "t1", ["anna", "ben"])
    select = cmps["walker"]
    assert (select["p"], select["options"]) == ("select", ["anna", "ben"])
    assert select["state_topic"] == "retrotread/t1/walker"
    assert select["command_template"] == '{"action": "walker", "walker": "{{ value }}"}'
    assert json.loads(cmps["start_today"]["payload_press"]) == {"action": "start", "today": True}
    for rating in ("easy", "right", "hard"):
        press = json.loads(cmps[f"felt_{rating}"]["payload_press"])
        assert press == {"action": "feedback", "rating": rating}
    pain = cmps["pain_after"]
    assert (pain["p"], pain["min"], pain["max"], pain["step"]) == ("number", 0, 10, 1)
    rendered = pain["command_template"].replace("{{ value | int }}", "4")
    assert json.loads(rendered) == {"action": "feedback", "when": "after", "pain": 4}
    before = cmps["pain_before"]["command_template"].replace("{{ value | int }}", "6")
    assert json.loads(before) == {"action": "feedback", "when": "before", "pain": 6}
    assert parse(json.loads(before)) is not None  # what HA sends is a valid command
    ids = [c["unique_id"] for c in cmps.values()]
    assert len(ids) == len(set(ids)) and all(i.startswith("retrotread_t1_") for i in ids)
    for key in ("plan_level", "today_backward", "sessions_week", "learned_speed", "coach_says"):
        assert cmps[key]["p"] == "sensor" and cmps[key]["state_topic"] == "retrotread/t1/walker"


def test_home_assistant_shows_the_walker_status(tmp_path: Path) -> None:
    """The coach's templates rendered as HA renders them, on real status payloads."""
    from tests.coachhelpers import T0, Walker, coach
    from tests.test_ha_discovery import render, select_shows, sensor_shows

    c = coach(tmp_path, [WalkerConfig(name="anna"), WalkerConfig(name="ben")])
    Walker(c, "anna").walk("retro-start", T0, pain=3, rating="right")
    anna = {**c.status("anna", T0 + timedelta(hours=3)), "walkers": ["anna", "ben"]}
    anna["today_backward_min"] = anna["today"]["backward_min"]
    ben = {**c.status("ben", T0), "walkers": ["anna", "ben"], "today_backward_min": None}
    cmps = coach_components(Topics("retrotread/t1"), "t1", ["anna", "ben"])
    assert select_shows(cmps["walker"], anna) == "anna"
    assert sensor_shows(cmps["plan_level"], anna) == "retro-start: flat 2/9"
    assert sensor_shows(cmps["today_backward"], anna) == "2.5"
    assert sensor_shows(cmps["sessions_week"], anna) == "1"
    assert sensor_shows(cmps["learned_speed"], anna) == "1.8"
    says = sensor_shows(cmps["coach_says"], anna)
    assert isinstance(says, str) and says.startswith("advance to flat, level 2 of 9")
    assert render(cmps["pain_after"]["value_template"], anna) == "3"
    # ben has walked nothing: his level is the plan's start, pain unknown (0 on the slider).
    assert sensor_shows(cmps["plan_level"], ben) == "retro-start: flat 1/9"
    assert render(cmps["pain_after"]["value_template"], ben) == "0"
    refused = {**ben, "refused": "walker 'ben', plan 'retro-hill': refused by rule 'requires'"}
    assert sensor_shows(cmps["coach_says"], refused) == refused["refused"]
    assert sensor_shows(cmps["today_backward"], refused) is None  # unknown, not 0
