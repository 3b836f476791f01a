"""Profiles (SPEC.md §4): the model, the check before the belt moves, the loader, the built-ins."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from retrotread.config import SafetyConfig
from retrotread.errors import ProfileError
from retrotread.profiles.loader import ENV_BUILTIN, builtin_dir, load_profile_file, load_profiles
from retrotread.profiles.model import (
    Profile,
    ProfileRefused,
    check_profile,
    find_problems,
    problems,
    profile_duration_s,
    ramp_origins,
    steps_needed,
)

ROOT = Path(__file__).resolve().parents[1]
LIMITS = SafetyConfig()


@dataclass(frozen=True)
class Range:
    minimum: float
    maximum: float
    increment: float


def ph(
    name: str, speed: float, duration: float = 60, ramp: float = 30, **kw: Any
) -> dict[str, Any]:
    return {"name": name, "speed_kmh": speed, "duration_s": duration, "ramp_s": ramp, **kw}


def prof(*phases: dict[str, Any], name: str = "test") -> Profile:
    return Profile.model_validate({"name": name, "phase": list(phases)})


# ---------------------------------------------------------------------- the model


def test_a_profile_reads_as_in_the_spec() -> None:
    text = """
name = "hill-intro"
title = "Backward hill introduction"
description = "..."

[[phase]]
name = "warm-up"
direction = "forward"
duration_s = 180
speed_kmh = 3.0
incline_pct = 0.0
ramp_s = 30
cue = "Walk forward at an easy pace."

[[phase]]
name = "hill"
direction = "backward"
duration_s = 240
speed_kmh = 2.2
incline_pct = 5.0
ramp_s = 90
cue = "Face the rear, hold the rails, land toe first."
"""
    p = Profile.model_validate(tomllib.loads(text))
    assert [(x.name, x.direction, x.speed_kmh, x.incline_pct) for x in p.phases] == [
        ("warm-up", "forward", 3.0, 0.0),
        ("hill", "backward", 2.2, 5.0),
    ]
    assert profile_duration_s(p) == p.duration_s == 420
    assert p.backward_s == 240
    assert p.summary() == {
        "name": "hill-intro",
        "title": "Backward hill introduction",
        "duration_s": 420,
        "max_speed_kmh": 3.0,
        "max_incline_pct": 5.0,
    }


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"colour": "red"}, "Extra inputs are not permitted"),
        ({"name": "Hill Intro"}, "String should match pattern"),
        ({"phase": []}, "at least 1 item"),
        ({"phase": [ph("a", 2.0, direction="sideways")]}, "'forward' or 'backward'"),
        ({"phase": [ph("a", 2.0, duration=0)]}, "greater than 0"),
        ({"phase": [ph("a", 0.0)]}, "greater than 0"),
        ({"phase": [ph("a", 2.0, ramp=-1)]}, "greater than or equal to 0"),
        ({"phase": [ph("a", 2.0, duration=30, ramp=40)]}, "longer than the phase itself"),
        ({"phase": [ph("a", 2.0, incline_pct=-2.0)]}, "greater than or equal to 0"),
        ({"phase": [{**ph("a", 2.0), "speed": 2.0}]}, "Extra inputs are not permitted"),
        ({"phase": [{"name": "a", "speed_kmh": 2.0}]}, "Field required"),
    ],
)
def test_malformed_profiles_are_refused(change: dict[str, Any], needle: str) -> None:
    data = {"name": "ok", "phase": [ph("a", 2.0)], **change}
    with pytest.raises(ValidationError, match=needle):
        Profile.model_validate(data)


# ---------------------------------------------------------------------- the check


def test_ramp_origins_restart_speed_after_a_turn_and_carry_incline() -> None:
    p = prof(
        ph("a", 2.0, incline_pct=1.0),
        ph("b", 2.5, incline_pct=2.0),
        ph("c", 1.5, direction="backward"),
    )
    assert ramp_origins(p) == [(0.0, 0.0), (2.0, 1.0), (0.0, 2.0)]


@pytest.mark.parametrize(
    ("delta", "step", "n"),
    [(2.0, 0.1, 20), (0.3, 0.1, 3), (0.25, 0.1, 3), (0.0, 0.1, 0), (5.0, 0.5, 10), (0.7, 0.25, 3)],
)
def test_steps_needed_is_exact_for_decimal_values(delta: float, step: float, n: int) -> None:
    assert steps_needed(delta, step) == n


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        (
            [ph("run", 6.0, ramp=60)],
            [
                "profile 'test', phase 1 'run': speed_kmh 6 is above the safety limit "
                "max_speed_kmh = 5"
            ],
        ),
        (
            [ph("flat", 2.0), ph("steep", 2.0, ramp=60, incline_pct=12.0)],
            [
                "profile 'test', phase 2 'steep': incline_pct 12 is above the safety limit "
                "max_incline_pct = 10"
            ],
        ),
        # From a standstill: 2.0 km/h is 20 steps, 20 s at one per second.
        ([ph("quick", 2.0, ramp=20)], []),
        (
            [ph("quick", 2.0, ramp=19)],
            [
                "profile 'test', phase 1 'quick': ramp_s 19 is too short to take speed_kmh "
                "from 0 to 2 in steps of 0.1 km/h every 1 s (needs 20 s)"
            ],
        ),
        # After a turn the belt starts from 0 again, so 15 steps are needed, not 5.
        (
            [ph("fwd", 2.0), ph("back", 1.5, ramp=10, direction="backward")],
            [
                "profile 'test', phase 2 'back': ramp_s 10 is too short to take speed_kmh "
                "from 0 to 1.5 in steps of 0.1 km/h every 1 s (needs 15 s)"
            ],
        ),
        ([ph("fwd", 2.0), ph("fwd2", 1.5, ramp=5)], []),  # same direction: from 2.0
        (
            [ph("flat", 2.0), ph("hill", 2.0, ramp=9, incline_pct=5.0)],
            [
                "profile 'test', phase 2 'hill': ramp_s 9 is too short to take incline_pct "
                "from 0 to 5 in steps of 0.5 % every 1 s (needs 10 s)"
            ],
        ),
        (
            [ph("fast", 5.5, ramp=10)],
            [
                "profile 'test', phase 1 'fast': speed_kmh 5.5 is above the safety limit "
                "max_speed_kmh = 5",
                "profile 'test', phase 1 'fast': ramp_s 10 is too short to take speed_kmh "
                "from 0 to 5.5 in steps of 0.1 km/h every 1 s (needs 55 s)",
            ],
        ),
    ],
)
def test_check_names_profile_phase_field_and_value(
    phases: list[dict[str, Any]], expected: list[str]
) -> None:
    p = prof(*phases)
    assert problems(p, LIMITS) == expected
    if expected:
        with pytest.raises(ProfileRefused) as err:
            check_profile(p, LIMITS)
        assert isinstance(err.value, ProfileError)
        assert str(err.value) == "; ".join(expected)
    else:
        check_profile(p, LIMITS)


def test_nothing_is_silently_clamped() -> None:
    p = prof(ph("run", 6.0, ramp=60))
    assert p.phases[0].speed_kmh == 6.0  # the model keeps what the file says
    (problem,) = find_problems(p, LIMITS)
    assert (problem.profile, problem.phase_number, problem.phase) == ("test", 1, "run")
    assert (problem.field, problem.value) == ("speed_kmh", 6.0)


def test_limits_come_from_the_config() -> None:
    p = prof(ph("run", 6.0, ramp=60))
    assert problems(p, SafetyConfig(max_speed_kmh=6.5)) == []
    assert problems(p, SafetyConfig(max_speed_kmh=6.5, step_interval_s=2.0)) == [
        "profile 'test', phase 1 'run': ramp_s 60 is too short to take speed_kmh from 0 to 6 "
        "in steps of 0.1 km/h every 2 s (needs 120 s)"
    ]


@pytest.mark.parametrize(
    ("speed_range", "incline_range", "phases", "needle"),
    [
        (Range(1.0, 8.0, 0.1), None, [ph("slow", 0.8)], "below the treadmill's minimum of 1"),
        (Range(0.5, 4.0, 0.1), None, [ph("a", 4.5, ramp=50)], "above the treadmill's maximum"),
        (
            Range(1.0, 6.0, 0.5),
            None,
            [ph("a", 2.0)],
            "safety.speed_step_kmh 0.1 cannot be kept: the treadmill moves in increments of 0.5",
        ),
        (
            Range(0.5, 8.0, 0.1),
            Range(0.0, 6.0, 0.5),
            [ph("a", 2.0), ph("hill", 2.0, incline_pct=8.0, ramp=30)],
            "incline_pct 8 is above the treadmill's maximum of 6 %",
        ),
        # A 0.5 km/h step limit on a belt with 0.3 increments moves 0.3 per step: counted
        # in the belt's steps, 2.0 km/h needs 7 of them, not 4.
        (
            Range(0.5, 8.0, 0.3),
            None,
            [ph("a", 2.0, ramp=5)],
            "ramp_s 5 is too short to take speed_kmh from 0 to 2 in steps of 0.3 km/h",
        ),
    ],
)
def test_check_against_the_treadmill_ranges(
    speed_range: Range, incline_range: Range | None, phases: list[dict[str, Any]], needle: str
) -> None:
    limits = SafetyConfig(speed_step_kmh=0.5) if speed_range.increment == 0.3 else LIMITS
    p = prof(*phases)
    found = problems(p, limits, speed_range, incline_range)
    assert any(needle in line for line in found), found
    with pytest.raises(ProfileError, match="profile 'test'"):
        check_profile(p, limits, speed_range, incline_range)


# ---------------------------------------------------------------------- loading


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GOOD = (
    'name = "{name}"\ntitle = "T"\n'
    '[[phase]]\nname = "a"\nduration_s = 60\nspeed_kmh = 2.0\nramp_s = 30\n'
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = [\n", "not valid TOML: "),
        (
            'name = "x"\n[[phase]]\nname = "a"\nduration_s = 60\nspeed_kmh = -1\n',
            "profile 'x', phase 1 'a', speed_kmh = -1: Input should be greater than 0",
        ),
        (
            'name = "x"\nauthor = "me"\n[[phase]]\nname = "a"\nduration_s = 60\nspeed_kmh = 2\n',
            "unknown key 'author' in profile 'x'",
        ),
        (
            'name = "x"\n[[phase]]\nname = "a"\nduration_s = 60\nspeed_kmh = 2\nsped = 1\n',
            "unknown key 'sped' in profile 'x', phase 1 'a'",
        ),
        ('name = "x"\n[[phase]]\nname = "a"\nspeed_kmh = 2\n', "phase 1 'a', duration_s: required"),
    ],
)
def test_a_broken_file_is_named_with_what_is_wrong(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path / "broken.toml", text)
    with pytest.raises(ProfileError) as err:
        load_profile_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_a_broken_user_file_does_not_hide_the_others(tmp_path: Path) -> None:
    user = tmp_path / "user"
    write(user / "a.toml", GOOD.format(name="mine"))
    write(user / "b.toml", "name = [\n")
    write(user / "c.toml", GOOD.format(name="first-steps"))  # replaces the built-in
    result = load_profiles([user, tmp_path / "missing"])
    assert {"mine", "first-steps", "build-up", "hill-intro", "knee-gentle"} <= set(result.profiles)
    assert result.sources["first-steps"] == user / "c.toml"
    assert result.profiles["first-steps"].title == "T"
    assert len(result.errors) == 2
    assert result.errors[0].startswith(f"{user / 'b.toml'}: not valid TOML")
    assert result.errors[1] == f"{tmp_path / 'missing'}: profile directory does not exist"


def test_two_user_files_with_one_name_are_reported(tmp_path: Path) -> None:
    write(tmp_path / "one" / "x.toml", GOOD.format(name="same"))
    write(tmp_path / "two" / "y.toml", GOOD.format(name="same"))
    result = load_profiles([tmp_path / "one", tmp_path / "two"], include_builtin=False)
    assert result.sources["same"] == tmp_path / "two" / "y.toml"
    assert result.errors == [
        f"{tmp_path / 'two' / 'y.toml'}: profile name 'same' is also used by "
        f"{tmp_path / 'one' / 'x.toml'}; this file wins"
    ]


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ProfileError, match="unknown profile 'moonwalk'; known profiles: build-up"):
        load_profiles().get("moonwalk")


def test_builtin_dir_from_the_environment_or_the_repository(tmp_path: Path) -> None:
    write(tmp_path / "only.toml", GOOD.format(name="only"))
    assert builtin_dir({ENV_BUILTIN: str(tmp_path)}) == tmp_path
    assert set(load_profiles(environ={ENV_BUILTIN: str(tmp_path)}).profiles) == {"only"}
    assert builtin_dir({}) == ROOT / "profiles"


def test_builtin_profiles_ship_as_data_files() -> None:
    # A non-editable install finds them in <prefix>/share/retrotread/profiles.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data_files = pyproject["tool"]["setuptools"]["data-files"]
    assert data_files["share/retrotread/profiles"] == ["profiles/*.toml"]


# ---------------------------------------------------------------------- the built-ins

BUILTIN = load_profiles(include_builtin=True)


def test_the_promised_builtins_load_and_pass_the_default_limits() -> None:
    assert BUILTIN.errors == []
    assert {"first-steps", "build-up", "hill-intro", "knee-gentle"} <= set(BUILTIN.profiles)
    for name, p in BUILTIN.profiles.items():
        assert problems(p, LIMITS) == [], name
        assert BUILTIN.sources[name].stem == name  # the file is named after the profile
        assert p.title and p.description.strip(), name
        assert all(len(phase.cue) >= 15 for phase in p.phases), name  # something to follow


@pytest.mark.parametrize("name", ["first-steps", "build-up", "hill-intro", "knee-gentle"])
def test_builtins_follow_the_evidence(name: str) -> None:
    p = BUILTIN.profiles[name]
    first, last = p.phases[0], p.phases[-1]
    assert first.direction == last.direction == "forward"  # warm-up and cool-down
    backward = [x for x in p.phases if x.direction == "backward"]
    assert backward
    assert all(1.5 <= x.speed_kmh <= 4.0 for x in backward)  # slow: 2-4 km/h, or gentler
    assert p.max_speed_kmh <= 3.5
    cues = " ".join(x.cue.lower() for x in backward)
    assert "rail" in cues  # hold the rails
    if name != "first-steps":
        assert 10 * 60 <= p.duration_s <= 30 * 60  # sessions of 10-30 min


def test_first_steps_is_about_two_minutes_backward_and_very_slow() -> None:
    p = BUILTIN.profiles["first-steps"]
    assert 90 <= p.backward_s <= 150
    assert all(x.speed_kmh <= 2.0 for x in p.phases if x.direction == "backward")


def test_build_up_extends_the_backward_blocks() -> None:
    blocks = [
        x.duration_s for x in BUILTIN.profiles["build-up"].phases if x.direction == "backward"
    ]
    assert blocks == sorted(blocks) and blocks[-1] > blocks[0]
    assert BUILTIN.profiles["build-up"].backward_s > BUILTIN.profiles["first-steps"].backward_s


def test_hill_intro_is_a_slower_backward_hill_at_5_to_10_percent() -> None:
    phases = BUILTIN.profiles["hill-intro"].phases
    hills = [x for x in phases if x.direction == "backward" and x.incline_pct > 0]
    flat = [x for x in phases if x.direction == "backward" and x.incline_pct == 0]
    assert hills and flat
    assert all(5.0 <= x.incline_pct <= 10.0 for x in hills)
    assert max(x.speed_kmh for x in hills) < max(x.speed_kmh for x in flat)
    assert hills[0].incline_pct == 5.0


def test_knee_gentle_is_flat_slow_and_short_bouts() -> None:
    p = BUILTIN.profiles["knee-gentle"]
    assert p.max_incline_pct == 0
    backward = [x for x in p.phases if x.direction == "backward"]
    assert len(backward) >= 2
    assert all(x.duration_s <= 120 and x.speed_kmh <= 2.0 for x in backward)
