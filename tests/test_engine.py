"""The stepping engine (SPEC.md §2): tables of scenarios, then properties over random runs.

Times are virtual seconds passed in; every assertion is on the setpoints the engine says
to hold, since those are what the session runner writes to the treadmill.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from retrotread.config import SafetyConfig
from retrotread.errors import ConfigError, ProfileError
from retrotread.profiles.engine import Device, Engine, Step, device_grids, plan
from retrotread.profiles.grid import Grid
from retrotread.profiles.model import Phase, Profile, ProfileRefused, problems, ramp_origins
from tests.runhelpers import phase as ph
from tests.runhelpers import profile as prof


@dataclass(frozen=True)
class Range:
    minimum: float
    maximum: float
    increment: float


LIMITS = SafetyConfig()
SPEED = Range(0.5, 8.0, 0.1)
INCLINE = Range(0.0, 12.0, 0.5)
DEVICE = device_grids(LIMITS, SPEED, INCLINE)


def engine(
    profile: Profile,
    device: Device = DEVICE,
    limits: SafetyConfig = LIMITS,
    **kw: Any,
) -> Engine:
    return Engine(profile, limits, device, 0.0, **kw)


def ticks(e: Engine, start: float, end: float, dt: float = 0.5) -> list[tuple[float, Step]]:
    """Tick from ``start`` to ``end`` inclusive; times from a counter, not a running sum."""
    out = []
    n = 0
    while (t := start + n * dt) <= end + 1e-9:
        out.append((t, e.tick(t)))
        n += 1
    return out


def changes(series: Iterable[tuple[float, Step]], q: str) -> list[tuple[float, float | None]]:
    """(t, value) each time the ``q`` setpoint differs from the tick before."""
    out: list[tuple[float, float | None]] = []
    last: object = object()
    for t, s in series:
        v = s.target_speed_kmh if q == "speed" else s.target_incline_pct
        if v != last:
            out.append((t, v))
            last = v
    return out


def events(series: Iterable[tuple[float, Step]], kind: str) -> list[tuple[float, Any]]:
    return [(t, ev) for t, s in series for ev in s.events if ev.type == kind]


def on_tick(t: float, dt: float) -> float:
    """The first tick time at or after ``t`` on a grid of ``dt``."""
    return math.ceil(t / dt - 1e-9) * dt


def ramp(
    start: float, stop: float, step: float, t0: float, every: float
) -> list[tuple[float, float]]:
    """The expected changes of a ramp: (t0 + k * every, start +- k * step) up to stop."""
    n = round(abs(stop - start) / step)
    sign = 1 if stop > start else -1
    return [(t0 + k * every, round(start + sign * k * step, 2)) for k in range(1, n + 1)]


# ---------------------------------------------------------------------- the device grid


@pytest.mark.parametrize(
    ("device", "cap", "step", "value", "expected"),
    [
        (SPEED, 5.0, 0.1, 2.25, 2.3),  # halves round up, not to even
        (SPEED, 5.0, 0.1, 2.24, 2.2),
        (SPEED, 5.0, 0.1, 0.3, 0.5),  # below the belt's minimum: its minimum
        (SPEED, 5.0, 0.1, 9.0, 5.0),  # above the safety cap: the cap, never more
        (Range(0.5, 8.0, 0.3), 4.9, 0.3, 5.0, 4.7),  # the cap is not on the grid: below it
        (Range(1.0, 6.0, 0.5), 5.0, 0.5, 2.2, 2.0),  # CITYSPORTS: 1-6 km/h by 0.5
        (Range(0.6, 3.8, 0.1), 5.0, 0.1, 3.9, 3.8),  # device maximum below the cap
    ],
)
def test_speed_grid_snaps_to_the_device_and_the_cap(
    device: Range, cap: float, step: float, value: float, expected: float
) -> None:
    grid = Grid.build(100, device, cap, step)
    raw = grid.snap(value)
    assert grid.value(raw) == expected
    assert (raw - grid.lo) % grid.inc == 0


def test_incline_grid_keeps_the_device_anchor_and_never_goes_downhill() -> None:
    grid = Grid.build(10, Range(-2.5, 15.0, 1.0), 10.0, 2.0, floor=0.0)
    assert (grid.lo, grid.hi, grid.inc, grid.step) == (5, 95, 10, 20)  # 0.5 .. 9.5 by 1
    assert grid.value(grid.snap(0.0)) == 0.5


def test_grid_step_is_whole_increments_below_the_limit() -> None:
    grid = Grid.build(100, SPEED, 5.0, 0.25)
    assert grid.step == 20  # 0.25 km/h allowed, the belt moves by 0.1: 0.2 per step


@pytest.mark.parametrize(("minimum", "start"), [(0.5, 0.5), (1.0, 1.0), (0.0, 0.1)])
def test_a_belt_starts_at_its_minimum_or_one_step_above_zero(minimum: float, start: float) -> None:
    grid = Grid.build(100, Range(minimum, 8.0, 0.1), 5.0, 0.1)
    assert grid.value(grid.start) == start


def test_coarse_speed_increment_is_refused_not_rounded_up() -> None:
    with pytest.raises(ConfigError) as err:
        device_grids(LIMITS, Range(1.0, 6.0, 0.5), None)
    assert "increments of 0.5" in str(err.value)
    assert "safety.speed_step_kmh = 0.1" in str(err.value)
    # Raising the step limit to the belt's increment makes it usable.
    coarse = device_grids(SafetyConfig(speed_step_kmh=0.5), Range(1.0, 6.0, 0.5), None)
    assert coarse.speed.step == 50


def test_coarse_incline_is_left_alone_and_said() -> None:
    device = device_grids(LIMITS, SPEED, Range(0.0, 12.0, 1.0))
    assert device.incline is None
    e = engine(prof(ph("hill", 2.0, incline=4.0)), device)
    s = e.tick(0.0)
    assert s.target_incline_pct is None
    cue = [ev.message for ev in s.events if ev.type == "cue"]
    assert cue and "increments of 1" in cue[0]


# ---------------------------------------------------------------------- ramps


def test_first_phase_starts_at_the_belt_minimum_and_ramps_evenly_to_target() -> None:
    e = engine(prof(ph("walk", 2.0, duration=60, ramp=30)))
    series = ticks(e, 0, 59.5)
    # 0.5 -> 2.0 is 15 steps of 0.1 spread over 30 s: one every 2 s, on target at 30 s.
    assert changes(series, "speed") == [(0.0, 0.5), *ramp(0.5, 2.0, 0.1, 0.0, 2.0)]
    assert changes(series, "incline") == [(0.0, 0.0)]


def test_a_range_from_zero_starts_one_step_up_not_at_zero() -> None:
    device = device_grids(LIMITS, Range(0.0, 8.0, 0.1), INCLINE)
    series = ticks(engine(prof(ph("walk", 1.0, ramp=10)), device), 0, 20, dt=0.25)
    # 0.1 -> 1.0 is 9 steps spread over 10 s (the check counted 10 from a standstill).
    expected = [(on_tick(k * 10 / 9, 0.25), round(0.1 + k * 0.1, 1)) for k in range(1, 10)]
    assert changes(series, "speed") == [(0.0, 0.1), *expected]


def test_ramp_is_spread_over_ramp_s_on_the_tick_grid() -> None:
    e = engine(prof(ph("walk", 3.0, duration=120, ramp=30)))
    series = ticks(e, 0, 119.5, dt=0.25)
    # 25 steps in 30 s: one every 1.2 s, each at the first tick at or after its time.
    expected = [(on_tick(k * 1.2, 0.25), round(0.5 + k * 0.1, 1)) for k in range(1, 26)]
    assert changes(series, "speed") == [(0.0, 0.5), *expected]
    assert expected[-1] == (30.0, 3.0)


def test_speed_and_incline_ramp_independently() -> None:
    p = prof(ph("flat", 2.0, 60, 30), ph("hill", 2.5, 60, 20, incline=2.0))
    series = ticks(engine(p), 0, 119.5)
    # Speed: 5 steps over 20 s (every 4 s); incline: 4 steps of 0.5 (every 5 s).
    assert [c for c in changes(series, "speed") if c[0] >= 60] == ramp(2.0, 2.5, 0.1, 60, 4)
    assert changes(series, "incline") == [(0.0, 0.0), *ramp(0.0, 2.0, 0.5, 60, 5)]


@pytest.mark.parametrize(
    ("speed_range", "target", "landed"),
    [
        (Range(0.5, 8.0, 0.05), 2.25, 2.25),  # exactly, on a finer grid
        (SPEED, 2.25, 2.3),  # quantised to the device increment
        (Range(0.5, 8.0, 0.01), 4.99, 4.99),
    ],
)
def test_target_is_landed_exactly_with_no_drift(
    speed_range: Range, target: float, landed: float
) -> None:
    device = device_grids(LIMITS, speed_range, INCLINE)
    series = ticks(engine(prof(ph("walk", target, duration=100, ramp=50)), device), 0, 99)
    values = [v for _, v in changes(series, "speed")]
    assert values[-1] == landed
    # Every value is a whole number of increments: no 2.3000000000000003.
    assert all(v is not None and v == round(v, 2) for v in values)


def test_steps_are_whole_device_increments_within_the_limit() -> None:
    limits = SafetyConfig(speed_step_kmh=0.25)
    device = device_grids(limits, SPEED, INCLINE)
    series = ticks(engine(prof(ph("walk", 2.5, ramp=30)), device, limits), 0, 59)
    values = [v for _, v in changes(series, "speed") if v is not None]
    diffs = {round(b - a, 2) for a, b in itertools.pairwise(values)}
    assert diffs == {0.2}  # 0.25 allowed, but the belt has 0.1 increments


def test_irregular_ticks_never_bring_two_changes_closer_than_the_interval() -> None:
    e = engine(prof(ph("walk", 3.0, duration=60, ramp=30)))  # a step every 1.2 s
    series = ticks(e, 0, 59.9, dt=0.7)
    ch = changes(series, "speed")
    gaps = [t1 - t0 for (t0, _), (t1, _) in itertools.pairwise(ch)]
    assert min(gaps) >= 1.0 - 1e-9
    assert ch[-1][1] == 3.0


def test_a_late_tick_takes_one_step_not_a_jump() -> None:
    e = engine(prof(ph("walk", 3.0, duration=60, ramp=30)))
    assert e.tick(0.0).target_speed_kmh == 0.5
    # The runner stalls for 20 s: the schedule says 1.8, the walker gets 0.6.
    assert e.tick(20.0).target_speed_kmh == 0.6
    assert e.tick(20.5).target_speed_kmh == 0.6
    assert e.tick(21.0).target_speed_kmh == 0.7  # then one step per interval, catching up


def test_ramp_down_is_in_steps_too() -> None:
    p = prof(ph("fast", 3.0, 60, 30), ph("slow", 2.0, 60, 20))
    series = ticks(engine(p), 0, 119.5)
    assert [c for c in changes(series, "speed") if c[0] >= 60] == ramp(3.0, 2.0, 0.1, 60, 2)


# ---------------------------------------------------------------------- pause and resume


def test_pause_freezes_time_and_resume_restarts_at_the_start_speed() -> None:
    p = prof(ph("walk", 2.0, duration=60, ramp=30, incline=1.0), ph("next", 2.0))
    e = engine(p)
    ticks(e, 0, 40)
    e.pause(40.0)
    s = e.tick(100.0)
    assert (s.state, s.target_speed_kmh, s.target_incline_pct) == ("paused", None, 1.0)
    assert s.phase_remaining_s == pytest.approx(20.0)  # frozen at the pause
    e.resume(100.0)
    series = ticks(e, 100, 119.5)
    # Restart at the belt's minimum, then one 0.1 step a second back to 2.0.
    assert changes(series, "speed") == [(100.0, 0.5), *ramp(0.5, 2.0, 0.1, 100, 1)]
    assert changes(series, "incline") == [(100.0, 1.0)]
    assert series[0][1].phase_remaining_s == pytest.approx(20.0)
    assert (series[-1][1].phase_index, series[-1][1].phase_remaining_s) == (0, 0.5)
    assert e.tick(120.0).phase_index == 1


def test_resume_restarts_low_even_when_the_phase_started_at_speed() -> None:
    # Phase 2 ramps from 3.0 (the previous phase's speed) down to 2.5; a resume still
    # starts the standing belt at its minimum rather than at 2.5 or 3.0.
    p = prof(ph("a", 3.0, 60, 30), ph("b", 2.5, 60, 10))
    e = engine(p)
    ticks(e, 0, 80)
    e.pause(80.0)
    e.resume(90.0)
    series = ticks(e, 90, 115)
    assert changes(series, "speed") == [(90.0, 0.5), *ramp(0.5, 2.5, 0.1, 90, 1)]


def test_incline_ramp_frozen_by_a_pause_goes_on_in_steps() -> None:
    p = prof(ph("flat", 2.0, 60, 30), ph("hill", 2.0, 100, 40, incline=4.0))  # 0.5 per 5 s
    e = engine(p)
    ticks(e, 0, 72)
    assert e.tick(72.0).target_incline_pct == 1.0
    e.pause(72.0)
    e.resume(200.0)
    series = ticks(e, 200, 240)
    # The step due at 75 s (3 s after the pause) comes 3 s after the resume.
    assert changes(series, "incline") == [(200.0, 1.0), *ramp(1.0, 4.0, 0.5, 198, 5)]


def test_pause_and_resume_outside_their_states_change_nothing() -> None:
    e = engine(prof(ph("walk", 2.0)))
    e.resume(5.0)  # not paused
    assert e.tick(5.0).state == "running"
    e.pause(6.0)
    e.pause(7.0)  # already paused
    e.resume(8.0)
    assert e.tick(8.0).target_speed_kmh == 0.5


# ---------------------------------------------------------------------- turning around

TURN = prof(
    ph("fwd", 2.0, 60, 30, cue="Walk forward."),
    ph("back", 1.5, 60, 20, direction="backward", cue="Face the rear, land toe first."),
)


def test_a_change_of_direction_pauses_the_belt_and_waits_for_resume() -> None:
    e = engine(TURN)
    series = ticks(e, 0, 600)
    (t_turn, turn), *_ = events(series, "turn_required")
    assert t_turn == 60.0
    assert "turn around to face the rear" in turn.message
    assert "Send resume" in turn.message
    assert turn.data["direction"] == "backward"
    waiting = [s for t, s in series if t >= 60]
    assert {s.state for s in waiting} == {"turning"}
    assert {s.target_speed_kmh for s in waiting} == {None}  # belt paused, however long
    assert {s.phase_remaining_s for s in waiting} == {60.0}  # the phase has not begun
    assert events(series, "phase_started")[-1][1].data["phase"] == "fwd"
    e.resume(600.0)
    after = ticks(e, 600, 630)
    (_, started), *_ = events(after, "phase_started")
    assert started.message == "Face the rear, land toe first."
    assert changes(after, "speed") == [(600.0, 0.5), *ramp(0.5, 1.5, 0.1, 600, 2)]


def test_turn_countdown_starts_the_next_phase_by_itself() -> None:
    series = ticks(engine(TURN, turn_countdown_s=10), 0, 100)
    assert "Starting again in 10 seconds" in events(series, "turn_required")[0][1].message
    states = {t: s.state for t, s in series}
    assert states[69.5] == "turning"
    assert states[70.0] == "running"
    assert [c for c in changes(series, "speed") if c[0] >= 60][:2] == [(60.0, None), (70.0, 0.5)]


def test_a_countdown_announced_again_counts_from_its_new_cue() -> None:
    three = prof(*TURN.phase, ph("cool", 1.0, 60, 20, cue="Cool down."))
    e = engine(three, turn_countdown_s=10)
    ticks(e, 0, 64.5)  # the turn to the rear began at 60: "Starting again in 10 seconds"
    e.finish(65.0)  # to the cool-down, announced at 65: again "in 10 seconds"
    series = ticks(e, 65, 100)
    (t_cue, cue), *_ = events(series, "turn_required")
    assert (t_cue, cue.data["phase"]) == (65.0, "cool")
    assert "Starting again in 10 seconds" in cue.message
    states = {t: s.state for t, s in series}
    assert states[74.5] == "turning"  # not at 70, five seconds after this cue
    assert states[75.0] == "finishing"


def test_turn_speed_slows_in_steps_and_restarts_from_it() -> None:
    e = engine(TURN, turn_speed_kmh=0.8)
    series = ticks(e, 0, 100)
    assert "slows down" in events(series, "turn_required")[0][1].message
    slowing = [c for c in changes(series, "speed") if c[0] >= 60]
    assert slowing == ramp(2.0, 0.8, 0.1, 60, 1)  # never a pause, never a jump
    assert series[-1][1].state == "turning"
    e.resume(100.0)
    # 0.8 -> 1.5 is 7 steps spread over the phase's ramp_s of 20 s.
    up = changes(ticks(e, 100, 130), "speed")
    expected = [(on_tick(100 + k * 20 / 7, 0.5), round(0.8 + k * 0.1, 1)) for k in range(1, 8)]
    assert up == [(100.0, 0.8), *expected]


def test_pause_during_a_slow_turn_stops_the_belt_and_resume_restarts_low() -> None:
    e = engine(TURN, turn_speed_kmh=0.8, turn_countdown_s=30)
    ticks(e, 0, 65)
    e.pause(65.0)
    paused = ticks(e, 65, 200)  # the countdown no longer runs: a paused walker waits
    assert {(s.state, s.target_speed_kmh) for _, s in paused} == {("paused", None)}
    e.resume(200.0)
    series = ticks(e, 200, 205)
    assert events(series, "phase_started")[0][1].data["phase"] == "back"
    assert changes(series, "speed")[0] == (200.0, 0.5)


# ---------------------------------------------------------------------- skip and finish

THREE = prof(
    ph("warm-up", 2.0, 60, 30),
    ph("main", 3.0, 120, 30),
    ph("cool-down", 2.0, 60, 20),
)


def test_skip_ramps_from_where_the_belt_is() -> None:
    e = engine(THREE)
    ticks(e, 0, 10)
    assert e.tick(10.0).target_speed_kmh == 1.0
    e.skip(10.0)
    series = ticks(e, 10, 40)
    assert events(series, "phase_started")[0][1].data["phase"] == "main"
    # 1.0 -> 3.0: 20 steps over the phase's 30 s, never a jump to 3.0.
    ch = changes(series, "speed")
    assert ch[0] == (10.0, 1.0)
    assert [v for _, v in ch] == [round(1.0 + k * 0.1, 1) for k in range(21)]
    assert ch[-1][0] == 40.0


def test_skip_of_the_last_phase_completes_early() -> None:
    e = engine(THREE)
    for t in (1.0, 2.0, 3.0):
        e.skip(t)
    s = e.tick(3.0)
    assert (s.state, s.finished_early, s.target_speed_kmh) == ("completed", True, None)
    assert [ev.type for ev in s.events][-1] == "completed"


def test_skip_while_paused_stays_paused_and_announces_a_turn() -> None:
    e = engine(TURN)
    ticks(e, 0, 30)
    e.pause(30.0)
    e.skip(31.0)
    s = e.tick(31.0)
    assert (s.state, s.phase_name, s.target_speed_kmh) == ("paused", "back", None)
    assert [ev.type for ev in s.events] == ["turn_required"]
    assert "The belt is paused" in s.events[0].message
    e.resume(40.0)
    series = ticks(e, 40, 41)
    assert events(series, "phase_started")[0][1].data["phase"] == "back"
    assert series[0][1].target_speed_kmh == 0.5


def test_finish_goes_to_the_cool_down_and_ends_normally() -> None:
    e = engine(THREE)
    ticks(e, 0, 100)  # in "main", at 3.0 km/h
    e.finish(100.0)
    series = ticks(e, 100, 200)
    assert series[0][1].state == "finishing"
    assert series[0][1].phase_name == "cool-down"
    speed = changes(series, "speed")
    assert speed[:-1] == [(100.0, 3.0), *ramp(3.0, 2.0, 0.1, 100, 2)]  # in steps, over ramp_s
    done = [(t, s) for t, s in series if s.state == "completed"]
    assert done[0][0] == 160.0  # the whole cool-down, then the end
    assert done[0][1].finished_early is True
    assert speed[-1] == (160.0, None)


@pytest.mark.parametrize(
    ("profile", "at"),
    [(THREE, 200.0), (prof(ph("only", 2.0, 300, 30)), 50.0)],
    ids=["in the cool-down", "no cool-down"],
)
def test_finish_in_the_last_phase_ends_now(profile: Profile, at: float) -> None:
    e = engine(profile)
    ticks(e, 0, at)
    e.finish(at)
    s = e.tick(at)
    assert (s.state, s.finished_early, s.target_speed_kmh) == ("completed", True, None)


def test_finish_while_paused_stays_paused_until_resume() -> None:
    e = engine(THREE)
    ticks(e, 0, 20)
    e.pause(20.0)
    e.finish(21.0)
    assert (e.tick(50.0).state, e.tick(50.0).target_speed_kmh) == ("paused", None)
    e.resume(50.0)
    s = e.tick(50.0)
    assert (s.state, s.phase_name, s.target_speed_kmh) == ("finishing", "cool-down", 0.5)


def test_completion_stops_setpoints_and_is_said_once() -> None:
    series = ticks(engine(prof(ph("walk", 2.0, 30, 20))), 0, 40)
    done = events(series, "completed")
    assert [t for t, _ in done] == [30.0]
    assert all(s.target_speed_kmh is None and s.state == "completed" for t, s in series if t >= 30)
    assert series[-1][1].finished_early is False


# ---------------------------------------------------------------------- manual and override


def test_manual_target_ramps_in_steps_for_the_rest_of_the_phase() -> None:
    e = engine(prof(ph("one", 2.0, 120, 30), ph("two", 2.5, 60, 10)))
    ticks(e, 0, 40)
    e.set_manual(40.0, speed_kmh=3.0, incline_pct=1.0)
    series = ticks(e, 40, 130)
    speed = changes(series, "speed")
    assert speed[: 1 + 10] == [(40.0, 2.0), *ramp(2.0, 3.0, 0.1, 40, 1)]
    assert changes(series, "incline")[:3] == [(40.0, 0.0), (41.0, 0.5), (42.0, 1.0)]
    # Held until the phase ends; the next phase goes to its own targets, in steps.
    assert [c for c in speed if 50 < c[0] < 120] == []
    assert [c for c in speed if c[0] >= 120] == ramp(3.0, 2.5, 0.1, 120, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"speed_kmh": 5.5}, "speed_kmh 5.5 is outside"),
        ({"speed_kmh": 0.0}, "pause or stop"),
        ({"incline_pct": 10.5}, "incline_pct 10.5 is outside"),
        ({"incline_pct": -1.0}, "incline_pct -1 is outside"),
    ],
)
def test_manual_target_outside_the_limits_is_refused_not_clamped(
    kwargs: dict[str, float], message: str
) -> None:
    e = engine(prof(ph("one", 2.0, 120, 30)))
    ticks(e, 0, 40)
    with pytest.raises(ProfileError, match=message):
        e.set_manual(40.0, **kwargs)
    series = ticks(e, 40, 60)
    assert {s.target_speed_kmh for _, s in series} == {2.0}
    assert {s.target_incline_pct for _, s in series} == {0.0}


def test_manual_incline_on_a_treadmill_without_incline_is_refused() -> None:
    e = engine(prof(ph("one", 2.0)), device_grids(LIMITS, SPEED, None))
    with pytest.raises(ProfileError, match="incline cannot be set"):
        e.set_manual(1.0, incline_pct=2.0)


def test_override_leaves_the_quantity_alone_for_the_rest_of_the_phase() -> None:
    p = prof(ph("one", 2.0, 120, 30, incline=1.0), ph("two", 2.5, 60, 30, incline=2.0))
    e = engine(p)
    ticks(e, 0, 40)
    e.override("speed")
    series = ticks(e, 40, 150)
    in_one = [s for t, s in series if t < 120]
    assert {s.target_speed_kmh for s in in_one} == {None}  # never fight the walker
    assert {s.target_incline_pct for s in in_one} == {1.0}  # the other quantity is still ours
    # The next phase is ours again, ramping from the last setpoint in steps.
    assert [c for c in changes(series, "speed") if c[0] >= 120][:3] == [
        (120.0, 2.0),
        (126.0, 2.1),
        (132.0, 2.2),
    ]


def test_override_with_the_actual_value_ramps_from_there_next_phase() -> None:
    e = engine(prof(ph("one", 2.0, 120, 30), ph("two", 2.5, 60, 30)))
    ticks(e, 0, 40)
    e.override("speed", actual=3.4)
    series = ticks(e, 120, 160)
    speed = changes(series, "speed")
    assert speed[0] == (120.0, 3.4)  # where the walker left it, not the old setpoint
    assert [v for _, v in speed] == [round(3.4 - k * 0.1, 1) for k in range(10)]
    assert speed[-1] == (150.0, 2.5)


def test_override_incline_then_manual_takes_it_back() -> None:
    e = engine(prof(ph("one", 2.0, 120, 30, incline=2.0)))
    ticks(e, 0, 40)
    e.override("incline")
    assert e.tick(41.0).target_incline_pct is None
    e.set_manual(50.0, incline_pct=1.0)
    series = ticks(e, 50, 53)
    assert changes(series, "incline") == [(50.0, 2.0), (51.0, 1.5), (52.0, 1.0)]


# ---------------------------------------------------------------------- refusal and plan


def test_a_refused_profile_never_gets_an_engine() -> None:
    p = prof(ph("warm", 2.0), ph("sprint", 6.0, ramp=60))
    with pytest.raises(ProfileRefused) as err:
        engine(p)
    assert str(err.value) == (
        "profile 'test', phase 2 'sprint': speed_kmh 6 is above the safety limit max_speed_kmh = 5"
    )
    (problem,) = err.value.problems
    assert (problem.phase_number, problem.field, problem.value) == (2, "speed_kmh", 6.0)


def test_plan_runs_the_whole_profile_with_turns_resumed_at_once() -> None:
    series = plan(TURN, LIMITS, DEVICE, tick_s=0.5)
    t_end, last = series[-1]
    assert (t_end, last.state) == (120.0, "completed")
    at_turn = [s for t, s in series if t == 60.0]
    assert [(s.state, s.target_speed_kmh) for s in at_turn] == [("turning", None), ("running", 0.5)]
    assert [ev.type for s in at_turn for ev in s.events] == ["turn_required", "phase_started"]


# ---------------------------------------------------------------------- properties


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Profile, SafetyConfig, Range, Range | None, float]:
    tick = draw(st.sampled_from([0.25, 0.5]))
    limits = SafetyConfig(
        max_speed_kmh=draw(st.sampled_from([4.0, 5.0, 6.5])),
        max_incline_pct=draw(st.sampled_from([5.0, 10.0, 12.0])),
        speed_step_kmh=draw(st.sampled_from([0.1, 0.2, 0.25, 0.5])),
        incline_step_pct=draw(st.sampled_from([0.5, 1.0, 2.0])),
        step_interval_s=draw(st.sampled_from([0.5, 1.0, 2.0])),
    )
    speed = Range(
        draw(st.sampled_from([0.0, 0.3, 0.5, 1.0])),
        draw(st.sampled_from([4.5, 8.0, 20.0])),
        draw(st.sampled_from([0.01, 0.05, 0.1])),
    )
    incline = draw(
        st.one_of(
            st.none(),
            st.builds(
                Range,
                st.sampled_from([-3.0, 0.0]),
                st.sampled_from([8.0, 15.0]),
                st.sampled_from([0.1, 0.5]),
            ),
        )
    )
    grid_speed = Grid.build(100, speed, limits.max_speed_kmh, limits.speed_step_kmh)
    grid_incline = Grid.build(10, Range(0, 15, 0.1), 15, limits.incline_step_pct)
    if incline is not None:
        grid_incline = Grid.build(
            10, incline, limits.max_incline_pct, limits.incline_step_pct, floor=0.0
        )
    n = draw(st.integers(1, 4))
    speed_lo = math.ceil(max(speed.minimum, 0.1) * 20)  # targets on a 0.05 grid
    speed_hi = math.floor(min(speed.maximum, limits.max_speed_kmh) * 20 + 1e-9)
    incline_hi = (
        limits.max_incline_pct if incline is None else min(limits.max_incline_pct, incline.maximum)
    )
    raw = [
        Phase(
            name=f"p{i}",
            direction=draw(st.sampled_from(["forward", "backward"])),
            speed_kmh=draw(st.integers(speed_lo, speed_hi)) / 20,
            incline_pct=draw(st.integers(0, int(incline_hi * 2))) / 2,
            duration_s=1,
        )
        for i in range(n)
    ]
    # ramp_s: what the ramp needs in the device's own steps (so it may run), plus slack.
    origins = ramp_origins(Profile(name="x", phase=tuple(raw)))
    phases = []
    for r, (v0, g0) in zip(raw, origins, strict=True):
        need_v = math.ceil(round(abs(r.speed_kmh - v0) * 100) / grid_speed.step)
        need_g = math.ceil(round(abs(r.incline_pct - g0) * 10) / grid_incline.step)
        ramp_s = max(need_v, need_g) * limits.step_interval_s + draw(st.integers(0, 20))
        duration = ramp_s + draw(st.integers(1, 60))
        phases.append(r.model_copy(update={"ramp_s": ramp_s, "duration_s": duration}))
    profile = Profile(name="random", phase=tuple(phases))
    return profile, limits, speed, incline, tick


def _check_invariants(
    series: list[tuple[float, Step]],
    device: Device,
    limits: SafetyConfig,
    rebased: Iterable[float] = (),
) -> None:
    """Small steps, spaced steps, on the grid, within limits, restarts low (SPEC.md §2).

    ``rebased``: times of ``override("incline", actual=...)``; the next incline setpoint
    starts from what the walker set, not from the last one sent.
    """
    rebase_times = sorted(rebased)
    grids: dict[str, Grid | None] = {"speed": device.speed, "incline": device.incline}
    caps = {"speed": limits.max_speed_kmh, "incline": limits.max_incline_pct}
    for q, grid in grids.items():
        last_value: float | None = None  # the last setpoint sent, across gaps
        moved_at = -math.inf
        previous: float | None = None
        last_seen = -math.inf  # the time of the last non-None setpoint
        for t, s in series:
            v = s.target_speed_kmh if q == "speed" else s.target_incline_pct
            if grid is None:
                assert v is None
                continue
            if v is None:
                previous = None
                continue
            raw = round(v * grid.div)
            assert raw / grid.div == v  # exact: no float drift
            assert grid.lo <= raw <= grid.hi and (raw - grid.lo) % grid.inc == 0
            assert v <= caps[q] + 1e-9
            # A rebase is a command after the tick at its time: it shows in later ticks.
            if q == "incline" and any(last_seen <= r < t for r in rebase_times):
                previous = None
            last_seen = t
            if previous is None and q == "incline":
                # Only an override hides the incline; the walker may have moved it meanwhile.
                moved_at = t if v != last_value else moved_at
            elif previous is None and raw <= grid.start:
                moved_at = t  # the belt (re)starts low
            elif previous is None:
                # After an override: the ramp goes on from the last setpoint, in steps.
                assert last_value is not None, (t, v)
                previous = last_value
            if previous is not None and v != previous:
                assert abs(raw - round(previous * grid.div)) <= grid.step, (q, t, previous, v)
                assert t - moved_at >= limits.step_interval_s - 1e-6, (q, t, moved_at)
                moved_at = t
            previous = last_value = v


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_plan_keeps_every_rule_and_reaches_each_target_on_time(
    scenario: tuple[Profile, SafetyConfig, Range, Range | None, float],
) -> None:
    profile, limits, speed_range, incline_range, tick = scenario
    assume(not problems(profile, limits, speed_range, incline_range))
    device = device_grids(limits, speed_range, incline_range)
    series = plan(profile, limits, device, tick_s=tick)
    _check_invariants(series, device, limits)
    assert series[-1][1].state == "completed"
    assert series[-1][0] == profile.duration_s  # turns resumed at once: no waits
    # Each phase lands on its (quantised) targets by start + ramp_s and holds them.
    t_start = 0.0
    by_time = dict(series)
    for i, phase in enumerate(profile.phases):
        reached = math.ceil((t_start + phase.ramp_s) / tick) * tick
        holding = [s for t, s in series if reached <= t < t_start + phase.duration_s]
        assert all(s.phase_index == i for s in holding)
        want_speed = device.speed.value(device.speed.snap(phase.speed_kmh))
        assert {s.target_speed_kmh for s in holding} <= {want_speed}
        if device.incline is not None:
            want_incline = device.incline.value(device.incline.snap(phase.incline_pct))
            assert {s.target_incline_pct for s in holding} <= {want_incline}
        assert by_time[t_start].phase_index == i
        t_start += phase.duration_s


COMMANDS: list[Callable[[Engine, float, Any], None]] = [
    lambda e, t, x: e.pause(t),
    lambda e, t, x: e.resume(t),
    lambda e, t, x: e.skip(t),
    lambda e, t, x: e.finish(t),
    lambda e, t, x: e.set_manual(t, speed_kmh=0.5 + x * 4.5),
    lambda e, t, x: e.set_manual(t, incline_pct=round(x * 10, 1)),
    lambda e, t, x: e.override("speed"),
    lambda e, t, x: e.override("incline", actual=x * 12),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenarios(),
    st.lists(st.floats(0.05, 3.0), min_size=50, max_size=400),
    st.lists(
        st.tuples(st.integers(0, 399), st.integers(0, len(COMMANDS) - 1), st.floats(0, 1)),
        max_size=12,
    ),
    st.sampled_from([None, 0.8]),
    st.sampled_from([None, 5.0]),
)
def test_any_commands_at_any_tick_times_keep_every_rule(
    scenario: tuple[Profile, SafetyConfig, Range, Range | None, float],
    gaps: list[float],
    commands: list[tuple[int, int, float]],
    turn_speed: float | None,
    countdown: float | None,
) -> None:
    profile, limits, speed_range, incline_range, _ = scenario
    assume(not problems(profile, limits))
    device = device_grids(limits, speed_range, incline_range)
    e = Engine(profile, limits, device, 0.0, turn_speed_kmh=turn_speed, turn_countdown_s=countdown)
    todo: dict[int, list[tuple[int, float]]] = {}
    for at, which, x in commands:
        todo.setdefault(at, []).append((which, x))
    series = []
    rebased = []
    t = 0.0
    for i, gap in enumerate(gaps):
        series.append((t, e.tick(t)))
        for which, x in todo.get(i, []):
            # A manual value outside these limits is refused and changes nothing.
            with contextlib.suppress(ProfileError):
                COMMANDS[which](e, t, x)
            if which == len(COMMANDS) - 1:
                rebased.append(t)
            # The runner ticks after every message it handles: so do we (a pause and a
            # resume at one instant show the belt stopping, then restarting low).
            series.append((t, e.tick(t)))
        t += gap
    _check_invariants(series, device, limits, rebased)
    for _, s in series:
        if s.state in ("paused", "completed") or (s.state == "turning" and turn_speed is None):
            assert s.target_speed_kmh is None  # a paused, turning or finished belt stays put
