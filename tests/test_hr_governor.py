"""The heart-rate governor (profiles/hr_governor.py) as tables: pure, no clock, no I/O.

A tiny belt follows what the governor lets through, the way the runner's limiter would
(one step per interval toward the governed target), so the tables read as a session:
time, heart rate, and what the treadmill's targets are afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from retrotread.config import SafetyConfig
from retrotread.ftms.features import SupportedRange
from retrotread.profiles.grid import Device, device_grids
from retrotread.profiles.hr_governor import CapSettings, HeartRateGovernor, Notice, Quantity

SPEED = SupportedRange(50, 800, 10, 100, "kmh")  # 0.5-8 km/h by 0.1
INCLINE = SupportedRange(0, 120, 5, 10, "pct")  # 0-12 % by 0.5


def device() -> Device:
    return device_grids(SafetyConfig(), SPEED, INCLINE)


@dataclass
class Belt:
    """The treadmill's targets, following the governed ones one step a second."""

    gov: HeartRateGovernor
    speed: float = 3.0
    incline: float = 6.0
    wanted: dict[Quantity, float | None] = field(
        default_factory=lambda: {"speed": 3.0, "incline": 6.0}
    )
    heading: dict[Quantity, float | None] | None = None  # None: the first ``wanted``
    sync: bool = False  # ``wanted`` is an engine: ramps to ``heading``, follows limits down
    free: tuple[Quantity, ...] = ("speed", "incline")
    t: float = 0.0
    notices: list[tuple[float, Notice]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._plan = dict(self.wanted)

    def current(self) -> dict[Quantity, float | None]:
        return {"speed": self.speed, "incline": self.incline}

    def feed(self, t: float, bpm: int | None, *, moving: bool = True) -> None:
        """One update at ``t``, then the belt takes at most one step toward the result."""
        self.t = t
        if self.sync:  # the engine's ramp: one step a second toward where it is heading
            heading = self.heading if self.heading is not None else self._plan
            for q, step in (("speed", 0.1), ("incline", 0.5)):
                plan, goal = self.wanted[q], heading[q]  # type: ignore[index]
                if plan is not None and goal is not None:
                    self.wanted[q] = round(min(max(goal, plan - step), plan + step), 2)  # type: ignore[index]
        notices = self.gov.update(
            t,
            bpm,
            current=self.current(),
            free=self.free,
            moving=moving,
            wanted=self.wanted,
            heading=self.heading if self.heading is not None else self._plan,
        )
        for n in notices:
            self.notices.append((t, n))
        governed = self.gov.govern(self.wanted)
        for q in self.free:  # the runner's engine.limit: the plan goes on from the belt
            value, plan = governed[q], self.wanted[q]
            if self.sync and value is not None and plan is not None and value < plan:
                self.wanted[q] = value
        for q, step in (("speed", 0.1), ("incline", 0.5)):
            target = governed[q]  # type: ignore[index]
            if target is None or q not in self.free:
                continue
            now = getattr(self, q)
            nxt = min(max(target, now - step), now + step)
            setattr(self, q, round(nxt, 2))

    def run(self, t0: float, t1: float, bpm: int | None, dt: float = 1.0) -> None:
        t = t0
        while t <= t1 + 1e-9:
            self.feed(t, bpm)
            t += dt

    def kinds(self) -> list[str]:
        return [n.kind for _, n in self.notices]


def state(b: Belt) -> str:
    return b.gov.state  # a call: mypy does not narrow it across assertions


def gov(cap: int | None = 120, **kw: float) -> HeartRateGovernor:
    return HeartRateGovernor(device(), CapSettings(cap, **kw))  # type: ignore[arg-type]


def test_off_without_a_cap_passes_everything() -> None:
    b = Belt(gov(None), speed=2.0, incline=0.0)
    b.run(0, 120, 190)
    assert b.gov.state == "off" and b.notices == []
    assert (b.speed, b.incline) == (3.0, 6.0)  # ramped to the plan, however high the pulse


def test_under_the_cap_the_plan_passes() -> None:
    b = Belt(gov(120), speed=2.0, incline=2.0)
    b.run(0, 60, 110)
    assert b.gov.state == "ok" and b.notices == []
    assert (b.speed, b.incline) == (3.0, 6.0)


@pytest.mark.parametrize(
    ("seconds_over", "incline", "speed", "state"),
    [
        # Over the cap: held where it is, no increase however the plan climbs.
        (10, 2.0, 2.0, "holding"),
        (19, 2.0, 2.0, "holding"),
        # 20 s over: one step down at once, then one every 5 s, incline first...
        (20, 1.5, 2.0, "stepping_down"),
        (25, 1.0, 2.0, "stepping_down"),
        (35, 0.0, 2.0, "stepping_down"),
        # ...then speed, 0.1 km/h a step.
        (40, 0.0, 1.9, "stepping_down"),
        (55, 0.0, 1.6, "stepping_down"),
    ],
)
def test_over_the_cap_holds_then_steps_incline_first_then_speed(
    seconds_over: int, incline: float, speed: float, state: str
) -> None:
    b = Belt(gov(120), speed=2.0, incline=2.0)  # the plan wants 3.0 km/h and 6 %
    b.run(0, seconds_over, 125)  # over from t = 0
    assert (b.incline, b.speed, b.gov.state) == (incline, speed, state)
    assert b.kinds()[0] == "holding"


def test_crossing_mid_ramp_holds_where_the_treadmill_is() -> None:
    b = Belt(gov(120), speed=2.0, incline=2.0)
    b.feed(0, 110)  # under: the ramp to the plan takes its first step
    assert (b.speed, b.incline) == (2.1, 2.5)
    b.run(1, 15, 125)
    assert (b.speed, b.incline) == (2.1, 2.5)
    assert b.gov.ceilings == {"speed": 2.1, "incline": 2.5}


def test_finish_once_after_sixty_seconds_over_and_steps_go_on() -> None:
    b = Belt(gov(120), speed=2.0, incline=1.0)
    b.run(0, 59, 130)
    assert "finish" not in b.kinds()
    b.run(60, 61, 130)
    assert b.kinds() == ["holding", "stepping_down", "finish"]
    b.run(62, 200, 130)
    assert b.kinds().count("finish") == 1 and b.gov.finished
    assert (b.incline, b.speed) == (0.0, 0.5)  # all the way down to the belt's start speed


def test_dips_under_the_cap_do_not_restart_the_count() -> None:
    """A pulse hovering at the cap (noise) still gets stepped down."""
    b = Belt(gov(120), speed=2.0, incline=2.0)
    for t in range(0, 60):
        b.feed(t, 122 if t % 2 == 0 else 118)  # over, band, over, band...
    assert "stepping_down" in b.kinds()
    assert b.incline < 2.0


def test_recovery_needs_the_hysteresis_and_then_ramps_back() -> None:
    b = Belt(gov(120, hysteresis_bpm=5), speed=2.0, incline=2.0)
    b.run(0, 30, 125)
    low = (b.speed, b.incline)
    assert low == (2.0, 0.5)
    b.run(31, 60, 117)  # under the cap, not by 5: still held, not stepping
    assert (b.speed, b.incline) == low and b.gov.state == "holding"
    b.feed(61, 115)  # 5 under: the episode is over
    assert b.kinds()[-1] == "resumed" and state(b) == "recovering"
    assert b.gov.over_s == 0
    # Ramping back, never jumping: the ceilings rise one step every 5 s...
    b.run(62, 65, 112)
    assert (b.speed, b.incline) == low
    b.feed(66, 112)
    assert (b.speed, b.incline) == (2.1, 1.0)
    b.run(67, 71, 112)
    assert (b.speed, b.incline) == (2.2, 1.5)
    # ...and go once the plan is under them.
    b.run(72, 130, 112)
    assert (b.speed, b.incline) == (3.0, 6.0)
    assert b.gov.ceilings == {} and state(b) == "ok"


def test_after_recovery_a_plan_coming_down_is_waited_for_not_climbed_toward() -> None:
    """The engine's ramp down to the cool-down is still above the stepped-down belt."""
    b = Belt(gov(120), speed=2.0, incline=2.0, sync=True)
    b.run(0, 30, 125)
    assert b.incline == 0.5 and b.wanted["incline"] == 0.5  # the engine followed it down
    b.heading = {"speed": 3.0, "incline": 0.0}  # the next phase: flat
    b.run(31, 32, 110)
    assert b.kinds()[-1] == "resumed"
    assert "incline" not in b.gov.ceilings  # nothing above to climb back to
    assert b.gov.ceilings["speed"] == 2.0  # speed still rises gently to its 3 km/h
    b.wanted["incline"] = 0.0
    b.run(33, 34, 110)
    assert b.incline == 0.0


def test_after_recovery_the_ceilings_climb_to_the_plan_and_go() -> None:
    b = Belt(gov(120), speed=2.0, incline=2.0, sync=True)
    b.wanted = {"speed": 2.0, "incline": 2.0}  # the engine ramps to 3 km/h and 6 %
    b.heading = {"speed": 3.0, "incline": 6.0}
    b.run(0, 30, 125)
    assert b.wanted == {"speed": 2.0, "incline": 0.5}  # followed the belt down
    b.run(31, 35, 110)
    assert (b.speed, b.incline) == (2.0, 0.5)  # the first rise comes 5 s after recovery
    b.run(36, 36, 110)
    assert (b.speed, b.incline) == (2.1, 1.0)
    b.run(37, 40, 110)
    assert (b.speed, b.incline) == (2.1, 1.0)  # one step every 5 s, however fast the plan
    b.run(41, 200, 110)
    assert (b.speed, b.incline) == (3.0, 6.0) and b.gov.ceilings == {}
    assert state(b) == "ok"


def test_over_again_while_ramping_back_is_a_new_episode_from_where_things_are() -> None:
    b = Belt(gov(120), speed=2.0, incline=2.0)
    b.run(0, 30, 125)
    b.run(31, 45, 110)  # recovered at 31; ceilings rose at 36, 41
    assert (b.speed, b.incline) == (2.2, 1.5)
    b.feed(46, 125)
    assert b.kinds()[-1] == "holding" and b.gov.over_s == 0
    assert b.gov.ceilings == {"speed": 2.2, "incline": 1.5}
    b.run(47, 60, 125)
    assert (b.speed, b.incline) == (2.2, 1.5)  # held; the 20 s count started again


def test_no_heart_rate_holds_and_never_steps_or_finishes() -> None:
    b = Belt(gov(120), speed=2.0, incline=2.0)
    b.feed(0, 110)
    b.run(1, 600, None)
    assert b.kinds() == ["no_signal"]  # said once, not every second
    assert b.notices[0][0] == 6  # after the 5 s grace
    assert b.notices[0][1].cue is not None
    assert (b.speed, b.incline) == (2.1, 2.5)  # held where it was when the reading went
    assert b.gov.state == "no_signal" and not b.gov.finished
    b.feed(601, 110)  # back, and under the cap by the hysteresis
    assert b.kinds() == ["no_signal", "signal_back", "resumed"]
    b.run(602, 700, 110)
    assert (b.speed, b.incline) == (3.0, 6.0)


def test_a_reading_missing_for_less_than_the_grace_holds_silently() -> None:
    b = Belt(gov(120), speed=2.0, incline=2.0)
    b.feed(0, 110)
    b.run(1, 4, None)
    assert (b.speed, b.incline) == (2.1, 2.5) and b.gov.state == "no_signal"
    b.run(5, 100, 110)
    assert b.kinds() == []  # nothing to tell: neither the hold nor its end
    assert (b.speed, b.incline) == (3.0, 6.0)


def test_no_heart_rate_during_an_episode_freezes_its_count() -> None:
    b = Belt(gov(120), speed=2.0, incline=2.0)
    b.run(0, 15, 130)
    b.run(16, 200, None)  # lost: neither steps down nor finishes
    assert b.gov.over_s == pytest.approx(15) and not b.gov.finished
    assert b.incline == 2.0
    b.run(201, 206, 130)  # back and over: the count goes on from 15 s
    assert "stepping_down" in b.kinds() and b.incline < 2.0


def test_a_quantity_taken_at_the_console_is_neither_held_nor_stepped() -> None:
    b = Belt(gov(120), speed=2.0, incline=4.0, free=("speed",))
    b.run(0, 40, 130)
    assert "incline" not in b.gov.ceilings
    assert b.incline == 4.0  # the walker's; steps went to speed instead
    assert b.speed == pytest.approx(1.5)  # a step at 20, 25, 30, 35 and 40 s


def test_paused_or_turning_time_does_not_count() -> None:
    b = Belt(gov(120), speed=2.0, incline=2.0)
    for t in range(0, 300):
        b.feed(t, 130, moving=False)
    assert b.gov.over_s == 0 and b.kinds() == ["holding"] and not b.gov.finished


def test_a_lower_plan_target_passes_under_a_ceiling() -> None:
    b = Belt(gov(120), speed=3.0, incline=6.0)
    b.feed(0, 130)
    b.wanted = {"speed": 2.0, "incline": 3.0}  # the next phase is easier
    b.run(1, 15, 130)
    assert (b.speed, b.incline) == (2.0, 3.0)


# ---------------------------------------------------------------------- zones


@dataclass
class ZoneRun:
    gov: HeartRateGovernor
    incline: float = 0.0
    top: float = 8.0
    log: list[tuple[float, float]] = field(default_factory=list)

    def feed(self, t: float, bpm: int | None, phase: int = 0) -> float:
        self.gov.update(
            t,
            bpm,
            current={"speed": 2.0, "incline": self.incline},
            free=("speed", "incline"),
            moving=True,
            phase_index=phase,
            zone=(100, 110),
            zone_max_pct=self.top,
        )
        target = self.gov.govern({"speed": 2.0, "incline": self.top})["incline"]
        assert target is not None
        self.incline = target
        self.log.append((t, target))
        return target


def zone_gov(**kw: float) -> HeartRateGovernor:
    s = {"zone_step_every_s": 20.0, "zone_reverse_after_s": 60.0, **kw}
    return HeartRateGovernor(device(), CapSettings(None, **s))  # type: ignore[arg-type]


def test_zone_raises_one_step_per_interval_while_below() -> None:
    z = ZoneRun(zone_gov())
    assert z.feed(0, 90) == 0.0  # starts where the treadmill is
    assert z.feed(19, 90) == 0.0
    assert z.feed(20, 90) == 0.5
    assert z.feed(39, 90) == 0.5
    assert z.feed(40, 90) == 1.0
    for t in range(41, 1000):
        z.feed(t, 90)
    assert z.incline == 8.0  # never above the phase's incline


def test_zone_holds_inside_and_lowers_above() -> None:
    z = ZoneRun(zone_gov(), incline=4.0)
    for t in range(0, 100):
        z.feed(t, 105)
    assert z.incline == 4.0
    z.feed(100, 115)
    assert z.incline == 3.5
    z.feed(110, 115)
    assert z.incline == 3.5  # one step per interval
    z.feed(120, 115)
    assert z.incline == 3.0


def test_zone_waits_before_changing_direction() -> None:
    z = ZoneRun(zone_gov(), incline=4.0)
    z.feed(0, 90)
    z.feed(20, 90)
    assert z.incline == 4.5  # went up at 20
    z.feed(40, 115)  # too soon to go back down (60 s)
    assert z.incline == 4.5
    z.feed(60, 115)
    assert z.incline == 4.5
    z.feed(80, 115)
    assert z.incline == 4.0  # 60 s after the last step up


def test_zone_holds_without_a_reading_and_restarts_each_phase() -> None:
    z = ZoneRun(zone_gov(), incline=3.0)
    for t in range(0, 200):
        z.feed(t, None)
    assert z.incline == 3.0
    z.incline = 1.0
    assert z.feed(200, 90, phase=1) == 1.0  # a new phase starts from the treadmill's incline


def test_the_cap_still_rules_a_zone() -> None:
    g = HeartRateGovernor(device(), CapSettings(120, zone_step_every_s=5.0))
    z = ZoneRun(g, incline=2.0)
    for t in range(0, 30):
        z.feed(t, 125)  # above the zone and the cap: both say down
    assert z.incline < 2.0
    assert g.state == "stepping_down"
