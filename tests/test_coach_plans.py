"""Plan files (docs/plans.md): the built-ins, user plans, and loader errors by file and key."""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from retrotread.coach.coach import Coach
from retrotread.coach.loader import builtin_plans_dir, load_plan_file, load_plans
from retrotread.coach.plan import Plan
from retrotread.coach.walkers import WalkerConfig
from retrotread.config import SafetyConfig
from retrotread.errors import PlanError
from retrotread.profiles.loader import load_profiles
from tests.coachhelpers import Walker, mwf

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = """
name = "mine"

[[stage]]
name = "only"

[[stage.level]]
bout_s = 60
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error(path: Path) -> str:
    with pytest.raises(PlanError) as err:
        load_plan_file(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_the_built_in_plans_load() -> None:
    plans = load_plans(environ={})
    assert plans.errors == []
    assert sorted(plans.plans) == ["knee-6-weeks", "retro-hill", "retro-start"]
    assert builtin_plans_dir({}) == ROOT / "profiles" / "plans"


def test_retro_start_goes_from_two_to_ten_minutes_flat() -> None:
    plan = load_plans(environ={}).get("retro-start")
    doses = [plan.spec(p).backward_s / 60 for p in range(plan.positions)]
    assert doses[0] == 2 and doses[-1] == 10
    assert doses == sorted(doses)
    assert all(plan.spec(p).incline_pct == 0 for p in range(plan.positions))
    assert all(plan.spec(p).bouts >= 2 for p in range(plan.positions))  # in bouts
    # About three weeks at three sessions a week: one completed session per level.
    assert sum(plan.spec(p).sessions for p in range(plan.positions)) == 9
    assert plan.sessions_per_week == 3
    assert plan.next == "retro-hill"


def test_retro_hill_rises_a_little_per_session_and_slows_on_the_hill() -> None:
    plan = load_plans(environ={}).get("retro-hill")
    inclines = [plan.spec(p).incline_pct for p in range(plan.positions)]
    assert inclines[0] == 2 and inclines[-1] == 8
    assert all(0 < b - a <= 1 for a, b in itertools.pairwise(inclines))
    factors = [plan.spec(p).speed_factor for p in range(plan.positions)]
    assert all(f < 1 for f in factors) and factors == sorted(factors, reverse=True)
    assert plan.requires == ("retro-start",)


def test_knee_plan_is_the_trials_dose() -> None:
    plan = load_plans(environ={}).get("knee-6-weeks")
    dose = plan.spec(plan.start_position)
    assert dose.backward_s == 600  # 10 minutes backward
    assert dose.sessions == 18 and plan.sessions_per_week == 3  # 3 x 6 weeks
    assert dose.incline_pct == 0 and dose.speed_factor == 1.0  # flat, the walker's own speed
    assert plan.speed.learn


def test_plans_are_not_read_as_profiles() -> None:
    profiles = load_profiles(environ={})
    assert profiles.errors == []
    assert not set(profiles.profiles) & {"retro-start", "retro-hill", "knee-6-weeks"}


def test_user_plans_come_from_plans_in_profile_dirs(tmp_path: Path) -> None:
    write(tmp_path / "mine" / "plans" / "mine.toml", MINIMAL)
    write(tmp_path / "mine" / "plans" / "retro-start.toml", MINIMAL.replace("mine", "retro-start"))
    (tmp_path / "profiles-only").mkdir()
    plans = load_plans([tmp_path / "mine", tmp_path / "profiles-only"], environ={})
    assert plans.errors == []
    assert plans.get("mine").stage[0].name == "only"
    assert plans.sources["retro-start"] == tmp_path / "mine" / "plans" / "retro-start.toml"
    assert plans.get("retro-start").positions == 1  # the user's replaces the built-in
    with pytest.raises(PlanError, match=r"unknown plan 'nope'; known plans: knee-6-weeks, "):
        plans.get("nope")


def test_a_broken_plan_file_hides_nothing_else(tmp_path: Path) -> None:
    write(tmp_path / "d" / "plans" / "bad.toml", "name = [")
    write(tmp_path / "d" / "plans" / "good.toml", MINIMAL)
    write(
        tmp_path / "d" / "plans" / "dangling.toml",
        MINIMAL.replace('name = "mine"', 'name = "dangling"\nrequires = ["ghost"]'),
    )
    plans = load_plans([tmp_path / "d"], environ={})
    assert "mine" in plans.plans and "dangling" in plans.plans
    assert any(
        e.startswith(f"{tmp_path / 'd' / 'plans' / 'bad.toml'}: not valid TOML")
        for e in plans.errors
    )
    assert any("plan 'dangling', requires = 'ghost': no such plan" in e for e in plans.errors)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MINIMAL.replace("bout_s = 60", "bout_s = 10"),
            "plan 'mine', stage 1 'only', level 1, bout_s = 10: Input should be greater than or "
            "equal to 30",
        ),
        (
            MINIMAL.replace("bout_s = 60", "bout_z = 60"),
            "unknown key 'bout_z' in plan 'mine', stage 1 'only', level 1",
        ),
        (
            MINIMAL + "\n[[stage.level]]\nincline_pct = 40\n",
            "plan 'mine', stage 1 'only', level 2, incline_pct = 40: Input should be less than "
            "or equal to 15",
        ),
        (
            MINIMAL.replace('name = "only"', 'name = "only"\nwarm_up_s = "long"'),
            "plan 'mine', stage 1 'only', warm_up_s = 'long': Input should be a valid number",
        ),
        (
            MINIMAL.replace('name = "mine"', 'name = "Mine Plan"'),
            "name = 'Mine Plan': String should match pattern",
        ),
        (
            MINIMAL.replace('name = "mine"', 'name = "mine"\nstart_level = 4'),
            "start_level 4 is past the last level of stage 'only' (1)",
        ),
        (
            MINIMAL + "\n[speed]\ndefault_kmh = 4\nmax_kmh = 3\n",
            "plan 'mine', speed: needs min_kmh <= default_kmh <= max_kmh, got 1, 4, 3",
        ),
        (
            MINIMAL + "\n[progression]\npain_step_back = 6\npain_rest = 5\n",
            "pain_rest (5) must not be below pain_step_back (6)",
        ),
        (
            MINIMAL + '\n[[stage]]\nname = "only"\n[[stage.level]]\nbouts = 1\n',
            "stage names must be unique: only",
        ),
        ('name = "mine"\n', "plan 'mine', stage: required"),
    ],
)
def test_loader_errors_name_file_key_and_value(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error(write(tmp_path / "p.toml", text))


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    assert "no such file" in error(tmp_path / "absent.toml")
    assert "not valid TOML" in error(write(tmp_path / "x.toml", "stage = [[["))


def docs_example(tmp_path: Path) -> Plan:
    doc = (ROOT / "docs" / "plans.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    examples = [b for b in blocks if "[[stage]]" in b]
    assert len(examples) == 1, "docs/plans.md has one worked example"
    tomllib.loads(examples[0])  # valid TOML first, for a clearer failure
    return load_plan_file(write(tmp_path / "example.toml", examples[0]))


def test_the_worked_example_in_the_docs_gives_its_table(tmp_path: Path) -> None:
    plan = docs_example(tmp_path)
    plans = load_plans(environ={})
    plans.plans[plan.name] = plan
    anna = Walker(Coach(plans, [WalkerConfig(name="anna")], SafetyConfig(), tmp_path / "s"))
    script: dict[int, dict[str, Any]] = {
        1: {"slow_to": 1.5},
        3: {"pain": 4},
        4: {"pain": 2, "rating": "easy"},
    }
    for i, when in enumerate(mwf(3)[:8]):
        anna.walk(plan.name, when, **script.get(i, {}))
    rows = [
        (
            t.progress.spec.stage.name,
            t.progress.spec.level_number,
            t.built.backward_s,
            t.built.speed_kmh,
            t.built.hill_speed_kmh,
            t.built.incline_pct,
            re.findall(r"\[rule ([a-z-]+)\]", " ".join(t.why))[0],
        )
        for t in anna.days
    ]
    assert rows == [
        ("flat", 1, 180, 1.8, None, 0, "start"),
        ("flat", 2, 300, 1.8, None, 0, "completed"),
        ("flat", 2, 300, 1.6, None, 0, "console-slow-down"),
        ("flat", 2, 300, 1.6, None, 0, "sessions-per-level"),
        ("flat", 3, 480, 1.6, None, 0, "completed"),
        ("hill", 1, 420, 1.6, 1.5, 2, "stage-complete"),
        ("hill", 2, 420, 1.6, 1.4, 4, "completed"),
        ("hill", 2, 420, 1.6, 1.4, 4, "plan-complete"),
    ]
    doc = (ROOT / "docs" / "plans.md").read_text()
    for day, row in zip(["Mon 2", "Wed 4", "Fri 6", "Mon 9", "Wed 11"], rows, strict=False):
        assert f"| {day} | {row[0]} {row[1]} |" in doc
