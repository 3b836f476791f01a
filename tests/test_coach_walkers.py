"""Walkers (SPEC.md §2, §4): [[walker]] entries only tighten [safety]; effective limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrotread.coach.walkers import (
    WalkerConfig,
    age_heart_rate_cap,
    effective_limits,
    find_walker,
)
from retrotread.config import SafetyConfig, load_config
from retrotread.errors import ConfigError


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path, {})


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_no_walkers_is_the_default(tmp_path: Path) -> None:
    config = load_config(None, {"HOME": str(tmp_path)})
    assert config.walker == []


def test_walkers_parse_with_optional_values(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
[safety]
max_speed_kmh = 4.5

[[walker]]
name = "anna"
age = 64
plan = "knee-6-weeks"
max_speed_kmh = 3.5

[[walker]]
name = "Ben_2"
""",
    )
    anna, ben = config.walker  # type: ignore[attr-defined]
    assert (anna.name, anna.age, anna.plan, anna.max_speed_kmh) == ("anna", 64, "knee-6-weeks", 3.5)
    assert (ben.name, ben.age, ben.max_speed_kmh) == ("Ben_2", None, None)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("max_speed_kmh = 5.5", "max_speed_kmh = 5.5 is above safety.max_speed_kmh = 5"),
        ("max_incline_pct = 12", "max_incline_pct = 12 is above safety.max_incline_pct = 10"),
        ("speed_step_kmh = 0.2", "speed_step_kmh = 0.2 is above safety.speed_step_kmh = 0.1"),
        ("incline_step_pct = 1.0", "incline_step_pct = 1 is above safety.incline_step_pct = 0.5"),
        ("step_interval_s = 0.5", "step_interval_s = 0.5 is below safety.step_interval_s = 1"),
    ],
)
def test_a_looser_value_is_refused_naming_walker_key_and_value(
    tmp_path: Path, line: str, expected: str
) -> None:
    message = refusal(tmp_path, f'[[walker]]\nname = "anna"\n{line}\n')
    assert f"walker 'anna': {expected}" in message
    assert "may only tighten [safety]" in message
    assert message.startswith(str(tmp_path / "config.toml"))


def test_looser_than_a_tightened_safety_section(tmp_path: Path) -> None:
    message = refusal(
        tmp_path, '[safety]\nmax_speed_kmh = 3.0\n[[walker]]\nname = "tom"\nmax_speed_kmh = 3.5\n'
    )
    assert "walker 'tom': max_speed_kmh = 3.5 is above safety.max_speed_kmh = 3" in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    message = refusal(
        tmp_path,
        '[[walker]]\nname = "anna"\nmax_speed_kmh = 6\n[[walker]]\nname = "ANNA"\n'
        "step_interval_s = 0.6\n",
    )
    assert "max_speed_kmh = 6" in message
    assert "walker 'ANNA' is configured twice" in message
    assert "step_interval_s = 0.6 is below" in message


def test_field_errors_name_the_walker(tmp_path: Path) -> None:
    assert "walker 'anna', age = 3: Input should be greater than or equal to 5" in refusal(
        tmp_path, '[[walker]]\nname = "anna"\nage = 3\n'
    )
    assert "unknown key 'max_sped_kmh' in walker 'anna'" in refusal(
        tmp_path, '[[walker]]\nname = "anna"\nmax_sped_kmh = 3\n'
    )
    assert "walker #2, name: Field required" in refusal(
        tmp_path, '[[walker]]\nname = "anna"\n[[walker]]\nage = 40\n'
    )
    assert "walker 'a/b', name = 'a/b'" in refusal(tmp_path, '[[walker]]\nname = "a/b"\n')


def test_a_walker_slower_than_the_turn_speed_is_refused(tmp_path: Path) -> None:
    message = refusal(
        tmp_path,
        '[treadmill]\nturn_speed_kmh = 1.5\n[[walker]]\nname = "anna"\nmax_speed_kmh = 1.2\n',
    )
    assert "walker 'anna': max_speed_kmh = 1.2 is below treadmill.turn_speed_kmh = 1.5" in message


def test_effective_limits_are_the_tighter_of_each() -> None:
    safety = SafetyConfig(max_speed_kmh=4.0, max_incline_pct=8.0, step_interval_s=1.5)
    walker = WalkerConfig(name="anna", max_speed_kmh=3.0, max_incline_pct=9.0, step_interval_s=2.0)
    limits = effective_limits(safety, walker)
    assert (limits.max_speed_kmh, limits.max_incline_pct) == (3.0, 8.0)
    assert (limits.speed_step_kmh, limits.incline_step_pct) == (0.1, 0.5)
    assert (limits.step_interval_s, limits.settle_s) == (2.0, 5.0)
    assert limits.walker == "anna"
    assert limits.tightened_by_walker(safety) == ["max_speed_kmh", "step_interval_s"]
    assert effective_limits(safety, None).max_speed_kmh == 4.0


def test_heart_rate_cap_from_age_or_given() -> None:
    # 85 % of 208 - 0.7 x age: age 60 -> 166 * 0.85 = 141.1
    assert age_heart_rate_cap(60) == 141
    assert age_heart_rate_cap(30) == 158
    safety = SafetyConfig()
    assert effective_limits(safety, WalkerConfig(name="a", age=60)).max_heart_rate_bpm == 141
    given_hr = WalkerConfig(name="a", age=60, max_heart_rate_bpm=150)
    assert effective_limits(safety, given_hr).max_heart_rate_bpm == 150  # own value wins
    assert effective_limits(safety, WalkerConfig(name="a")).max_heart_rate_bpm is None


def test_find_walker_ignores_case() -> None:
    walkers = [WalkerConfig(name="Anna"), WalkerConfig(name="ben")]
    assert find_walker(walkers, "anna") is walkers[0]
    assert find_walker(walkers, "BEN") is walkers[1]
    assert find_walker(walkers, "carl") is None


@given(
    st.floats(0.5, 8.0),
    st.floats(0.5, 8.0),
    st.floats(0.5, 30.0),
    st.floats(0.5, 30.0),
)
def test_effective_limits_never_loosen(
    house_speed: float, walker_speed: float, house_interval: float, walker_interval: float
) -> None:
    safety = SafetyConfig(max_speed_kmh=house_speed, step_interval_s=house_interval)
    walker = WalkerConfig(name="w", max_speed_kmh=walker_speed, step_interval_s=walker_interval)
    limits = effective_limits(safety, walker)
    assert limits.max_speed_kmh <= house_speed
    assert limits.max_speed_kmh <= walker_speed
    assert limits.step_interval_s >= house_interval
    assert limits.step_interval_s >= walker_interval
