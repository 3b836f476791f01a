"""No generated session ever exceeds the walker's or [safety] limits or fails the profile check.

Properties over walkers (any tightening of any [safety]), treadmills (ranges and
increments), plans (the built-ins and random plan files) and histories (random outcomes,
console slow-downs, pain, ratings and gaps, written as real session logs): today's session
is either refused, naming walker, plan and rule, or an ordinary profile that passes
``check_profile`` against the walker's effective limits and the treadmill's ranges.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrotread.coach.coach import Coach
from retrotread.coach.loader import PlanSet, load_plans
from retrotread.coach.plan import Plan
from retrotread.coach.progress import RULES
from retrotread.coach.session import DeviceRanges
from retrotread.coach.walkers import WalkerConfig
from retrotread.config import SafetyConfig
from retrotread.errors import CoachRefused
from retrotread.profiles.model import check_profile
from tests.coachhelpers import T0, Walker

BUILTIN = load_plans(environ={})


@dataclass(frozen=True)
class Range:
    minimum: float
    maximum: float
    increment: float


def _round(x: float, n: int = 2) -> float:
    return round(x, n)


@st.composite
def safeties(draw: st.DrawFn) -> SafetyConfig:
    return SafetyConfig(
        max_speed_kmh=draw(st.floats(1.0, 8.0).map(_round)),
        max_incline_pct=draw(st.sampled_from([0.0, 3.0, 5.0, 8.0, 10.0, 15.0])),
        speed_step_kmh=draw(st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.5])),
        incline_step_pct=draw(st.sampled_from([0.1, 0.5, 1.0, 2.0])),
        step_interval_s=draw(st.sampled_from([0.5, 1.0, 2.0, 3.0])),
    )


@st.composite
def walkers(draw: st.DrawFn, safety: SafetyConfig) -> WalkerConfig:
    """A walker whose values only tighten ``safety`` (the config refuses anything else)."""
    values: dict[str, Any] = {"name": "anna"}
    if draw(st.booleans()):
        values["max_speed_kmh"] = _round(draw(st.floats(0.5, safety.max_speed_kmh)))
    if draw(st.booleans()):
        values["max_incline_pct"] = _round(draw(st.floats(0, safety.max_incline_pct)), 1)
    if draw(st.booleans()):
        values["speed_step_kmh"] = draw(
            st.sampled_from([s for s in (0.05, 0.1, 0.2) if s <= safety.speed_step_kmh] or [0.05])
        )
    if draw(st.booleans()):
        values["step_interval_s"] = draw(
            st.sampled_from([i for i in (1.0, 2.0, 3.0) if i >= safety.step_interval_s] or [3.0])
        )
    if draw(st.booleans()):
        values["age"] = draw(st.integers(20, 90))
    return WalkerConfig(**values)


@st.composite
def devices(draw: st.DrawFn) -> DeviceRanges | None:
    if draw(st.booleans()):
        return None
    inc = draw(st.sampled_from([0.01, 0.05, 0.1, 0.2]))
    lo = draw(st.sampled_from([0.0, 0.5, 0.8, 1.0, 1.6]))
    speed = Range(lo, draw(st.sampled_from([6.0, 12.0, 20.0])), inc)
    incline = None
    if draw(st.booleans()):
        incline = Range(
            draw(st.sampled_from([0.0, -3.0])),
            draw(st.sampled_from([6.0, 12.0, 15.0])),
            draw(st.sampled_from([0.1, 0.5, 1.0])),
        )
    return DeviceRanges(speed, incline)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """A built-in plan, or a random one within what the plan model accepts."""
    if draw(st.booleans()):
        return BUILTIN.get(draw(st.sampled_from(sorted(BUILTIN.plans))))
    levels = [
        {
            "bouts": draw(st.integers(1, 4)),
            "bout_s": draw(st.sampled_from([30, 45, 60, 120, 300])),
            "incline_pct": draw(st.sampled_from([0, 0, 2, 5, 8, 15])),
            "speed_factor": draw(st.sampled_from([0.5, 0.8, 1.0, 1.2])),
            "sessions": draw(st.integers(1, 3)),
            "flat_s": draw(st.sampled_from([0, 30, 60])),
        }
        for _ in range(draw(st.integers(1, 5)))
    ]
    default = draw(st.floats(0.5, 6.0).map(lambda x: _round(x, 1)))
    return Plan.model_validate(
        {
            "name": "random",
            "speed": {"default_kmh": default, "min_kmh": min(default, 1.0), "max_kmh": 6.0},
            "progression": {"max_weekly_growth": draw(st.sampled_from([0, 0.1, 0.5, 2]))},
            "stage": [
                {
                    "name": "s",
                    "warm_up_speed_kmh": draw(st.sampled_from([0.5, 3.0, 6.0])),
                    "ramp_s": draw(st.sampled_from([5, 30, 120])),
                    "level": levels,
                }
            ],
        }
    )


session_steps = st.lists(
    st.tuples(
        st.floats(0.4, 15.0),  # days since the previous session
        st.sampled_from(["completed", "completed", "stopped", "finished_early", "interrupted"]),
        st.one_of(st.none(), st.floats(0.5, 4.0).map(lambda x: _round(x, 1))),  # console speed
        st.one_of(st.none(), st.integers(0, 10)),  # pain after
        st.one_of(st.none(), st.sampled_from(["easy", "right", "hard"])),
    ),
    max_size=7,
)


def check(
    today: Any, safety: SafetyConfig, walker: WalkerConfig, device: DeviceRanges | None
) -> None:
    limits = today.limits
    profile = today.profile
    check_profile(
        profile,
        limits,
        device.speed if device else None,
        device.incline if device and profile.max_incline_pct > 0 else None,
    )
    for ceiling in (safety.max_speed_kmh, walker.max_speed_kmh):
        if ceiling is not None:
            assert profile.max_speed_kmh <= ceiling + 1e-9
    for ceiling in (safety.max_incline_pct, walker.max_incline_pct):
        if ceiling is not None:
            assert profile.max_incline_pct <= ceiling + 1e-9
    if device is not None:
        assert all(device.speed.minimum - 1e-9 <= p.speed_kmh for p in profile.phase)
        assert profile.max_speed_kmh <= device.speed.maximum + 1e-9


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_no_generated_session_breaks_a_limit_or_the_check(data: st.DataObject) -> None:
    safety = data.draw(safeties(), "safety")
    walker = data.draw(walkers(safety), "walker")
    device = data.draw(devices(), "device")
    plan = data.draw(plans(), "plan")
    steps = data.draw(session_steps, "history")
    plan_set = PlanSet(plans={**BUILTIN.plans, plan.name: plan})
    with tempfile.TemporaryDirectory() as tmp:
        coach = Coach(plan_set, [walker], safety, Path(tmp))
        person = Walker(coach, "anna")
        when = T0
        for days, outcome, console, pain, rating in [(0.0, "completed", None, None, None), *steps]:
            when += timedelta(days=days)
            try:
                today = coach.today("anna", plan.name, when, device=device)
            except CoachRefused as exc:
                refused = exc
            else:
                refused = None
            if refused is not None:
                assert (refused.walker, refused.plan) == ("anna", plan.name)
                assert refused.rule in RULES
                assert str(refused).startswith(f"walker 'anna', plan {plan.name!r}: refused by ")
                continue
            check(today, safety, walker, device)
            person.walk(
                plan.name,
                when,
                outcome=outcome,
                slow_to=console,
                pain=pain,
                rating=rating,
                device=device,
            )


TYPICAL = DeviceRanges(Range(0.5, 16.0, 0.1), Range(0.0, 12.0, 0.5))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    walker=st.builds(
        WalkerConfig,
        name=st.just("anna"),
        max_speed_kmh=st.one_of(st.none(), st.sampled_from([1.5, 2.0, 3.0, 4.0])),
        max_incline_pct=st.one_of(st.none(), st.sampled_from([0.0, 4.0, 8.0])),
        step_interval_s=st.one_of(st.none(), st.sampled_from([1.0, 2.0])),
    ),
    plan=st.sampled_from(sorted(BUILTIN.plans)),
    device=st.sampled_from([None, TYPICAL]),
    days=st.lists(st.floats(1.0, 4.0), min_size=1, max_size=12),
)
def test_sane_walkers_on_a_common_treadmill_are_never_refused_a_flat_plan(
    walker: WalkerConfig, plan: str, device: DeviceRanges | None, days: list[float]
) -> None:
    """Built-in flat plans always have a session for a walker with sane limits."""
    if BUILTIN.get(plan).requires:
        plan = "retro-start"
    with tempfile.TemporaryDirectory() as tmp:
        coach = Coach(BUILTIN, [walker], SafetyConfig(), Path(tmp))
        person = Walker(coach, "anna")
        when = T0
        for d in days:
            when += timedelta(days=d)
            today = person.walk(plan, when, device=device)
            check(today, SafetyConfig(), walker, device)
