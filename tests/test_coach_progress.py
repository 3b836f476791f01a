"""The progression rules (docs/plans.md, "Rules") on hand-made session logs.

Each test writes logs with the real session log writer (tests/coachhelpers.py), as the
runner would, and asks the real Coach for today's session: the level, the backward time
and the reasons must follow the rules.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from retrotread.coach.walkers import WalkerConfig
from retrotread.config import SafetyConfig
from retrotread.errors import CoachError, CoachRefused
from tests.coachhelpers import T0, Walker, coach, log_session, mwf

RETRO_START_MIN = [2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.5, 10.0]


def backward_min(w: Walker) -> list[float]:
    return [round(t.built.backward_s / 60, 2) for t in w.days]


def levels(w: Walker) -> list[int]:
    return [t.progress.spec.level_number for t in w.days]


def test_completed_sessions_advance_as_the_plan_says(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    for when in mwf(4):
        w.walk("retro-start", when)
    # One level per completed session, two minutes to ten over three weeks; then the
    # plan is complete and the last level is kept.
    assert backward_min(w) == [*RETRO_START_MIN, 10.0, 10.0, 10.0]
    assert levels(w) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9]
    assert all("growth-cap" not in " ".join(t.why) for t in w.days)
    last = w.days[-1]
    assert last.progress.completed
    assert "plan complete; keep flat, level 9 of 9" in last.why[0]
    assert "next: plan 'retro-hill'" in last.why[0]
    assert "[rule plan-complete]" in last.why[0]
    assert "advance to flat, level 2 of 9" in w.days[1].why[0]
    assert "[rule completed]" in w.days[1].why[0]


def test_the_first_session_is_about_two_minutes_backward_in_bouts(tmp_path: Path) -> None:
    today = Walker(coach(tmp_path)).walk("retro-start", T0)
    phases = today.profile.phase
    assert [p.direction for p in phases] == [
        "forward",
        "backward",
        "forward",
        "backward",
        "forward",
    ]
    assert [p.duration_s for p in phases if p.direction == "backward"] == [60, 60]
    assert phases[0].name == "warm-up" and phases[-1].name == "cool-down"
    assert all(p.incline_pct == 0 for p in phases)
    assert "[rule start]" in today.why[0]


def test_an_early_end_holds_and_two_in_a_row_step_back(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    days = mwf(3)
    for when in days[:4]:
        w.walk("retro-start", when)  # levels 1-4, now at 5
    w.walk("retro-start", days[4], outcome="stopped")  # at 5: stopped -> hold at 5
    w.walk("retro-start", days[5], outcome="finished_early")  # at 5 again -> step back to 4
    w.walk("retro-start", days[6])  # at 4: completed -> 5
    w.walk("retro-start", days[7])
    assert levels(w) == [1, 2, 3, 4, 5, 5, 4, 5]
    assert "hold at flat, level 5 of 9: the session of Wed 11 Nov was stopped" in w.days[5].why[0]
    assert "[rule early-end]" in w.days[5].why[0]
    step = w.days[6].why[0]
    assert step.startswith("step back to flat, level 4 of 9: 2 holds in a row")
    assert "finished early" in step and "[rule holds-in-a-row]" in step


def test_stopped_at_the_treadmill_holds(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    w.walk("retro-start", T0)
    w.walk("retro-start", T0 + timedelta(days=2), outcome="stopped_by_treadmill")
    today = w.coach.today("anna", "retro-start", T0 + timedelta(days=4))
    assert today.progress.spec.level_number == 2
    assert "was stopped at the treadmill" in today.why[0]


def test_a_console_slow_down_holds_and_teaches_the_speed(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    w.walk("retro-start", T0)
    w.walk("retro-start", T0 + timedelta(days=2), slow_to=1.4)  # at level 2: slowed -> hold
    today = w.coach.today("anna", "retro-start", T0 + timedelta(days=4))
    assert today.progress.spec.level_number == 2
    assert "you slowed the belt at the console in backward-1 (1.8 -> 1.4 km/h)" in today.why[0]
    assert "[rule console-slow-down]" in today.why[0]
    # Evidence: 1.4 chosen, 1.8 kept -> the median of the two.
    assert today.speed.kmh == 1.6
    assert {p.speed_kmh for p in today.profile.phase if p.direction == "backward"} == {1.6}


def test_learned_speed_follows_console_choices_within_limits(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    days = mwf(3)
    w.walk("retro-start", days[0])
    for when in days[1:4]:
        w.walk("retro-start", when, slow_to=1.2)
    assert [t.speed.kmh for t in w.days] == [1.8, 1.8, 1.5, 1.2]
    assert "1.2 chosen" in w.days[-1].speed.reason
    # The walker speeds up at the console (an override that is not a slow-down: no hold).
    faster = Walker(coach(tmp_path / "b"), name="anna")
    for when in days[:4]:
        faster.walk("retro-start", when, slow_to=2.6)
    assert [t.speed.kmh for t in faster.days] == [1.8, 2.6, 2.6, 2.6]
    assert levels(faster) == [1, 2, 3, 4]  # speeding up is no reason to hold


def test_learned_speed_never_exceeds_the_walkers_limit(tmp_path: Path) -> None:
    slow = WalkerConfig(name="anna", max_speed_kmh=2.0)
    w = Walker(coach(tmp_path, [slow]))
    days = mwf(2)
    for when in days[:4]:
        w.walk("retro-start", when, slow_to=3.2)  # 3.2 chosen at a console with no limits
    last = w.days[-1]
    assert [t.speed.kmh for t in w.days] == [1.8, 2.0, 2.0, 2.0]
    assert "held at 2 km/h by anna's limits" in last.speed.reason
    assert "3.2 chosen" in last.speed.reason  # what she chose is still what is learned from
    assert last.profile.max_speed_kmh <= 2.0  # sessions stay within anna's limit
    assert w.coach.status("anna", days[4])["learned_speed_kmh"] == 2.0


def test_a_long_gap_steps_back(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    days = mwf(2)
    for when in days[:5]:
        w.walk("retro-start", when)  # now at level 6
    after_11 = days[4] + timedelta(days=11)
    today = w.coach.today("anna", "retro-start", after_11)
    assert today.progress.spec.level_number == 5
    gap = next(line for line in today.why if "[rule gap]" in line)
    assert gap.startswith("step back to flat, level 5 of 9: 11 days since the last session")
    after_23 = days[4] + timedelta(days=23)
    assert w.coach.today("anna", "retro-start", after_23).progress.spec.level_number == 4
    # Exactly ten days is not more than ten.
    after_10 = days[4] + timedelta(days=10)
    assert w.coach.today("anna", "retro-start", after_10).progress.spec.level_number == 6


def test_the_gap_is_remembered_once_walked(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    days = mwf(2)
    for when in days[:5]:
        w.walk("retro-start", when)
    back = days[4] + timedelta(days=12)
    w.walk("retro-start", back)  # walked at level 5 after the gap, completed -> 6
    today = w.coach.today("anna", "retro-start", back + timedelta(days=2))
    assert today.progress.spec.level_number == 6
    assert levels(w) == [1, 2, 3, 4, 5, 5]


def test_high_pain_after_a_session_steps_back(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    days = mwf(2)
    for when in days[:3]:
        w.walk("retro-start", when, pain=1)
    w.walk("retro-start", days[3], pain=5)  # at level 4, completed, but pain 5 -> back to 3
    today = w.coach.today("anna", "retro-start", days[4])
    assert today.progress.spec.level_number == 3
    assert "knee pain 5/10 after the session of Mon 9 Nov (at or above 5)" in today.why[0]
    assert "[rule pain-high]" in today.why[0]


def test_a_rise_of_two_points_holds(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    days = mwf(2)
    w.walk("retro-start", days[0], pain=1)
    w.walk("retro-start", days[1], pain=3)  # level 2 completed, pain 1 -> 3: hold at 2
    today = w.coach.today("anna", "retro-start", days[2])
    assert today.progress.spec.level_number == 2
    assert "knee pain rose from 1 to 3 (a rise of 2 or more) [rule pain-rise]" in today.why[0]


def test_pain_before_the_session_shapes_today(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    days = mwf(2)
    for when in days[:4]:
        w.walk("retro-start", when, pain=2)  # now at 5
    today = w.walk("retro-start", days[4], pain_before=6)
    assert today.progress.spec.level_number == 4
    assert any("knee pain 6/10 before the session" in line for line in today.why)
    with pytest.raises(CoachRefused) as err:
        w.coach.today("anna", "retro-start", days[5], pain_before=8)
    e = err.value
    assert (e.walker, e.plan, e.rule) == ("anna", "retro-start", "pain-rest")
    assert str(e).startswith("walker 'anna', plan 'retro-start': refused by rule 'pain-rest'")


def test_pain_at_rest_level_refuses_until_a_new_report(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    w.walk("retro-start", T0, pain=9)
    with pytest.raises(CoachRefused) as err:
        w.coach.today("anna", "retro-start", T0 + timedelta(days=2))
    assert err.value.rule == "pain-rest"
    assert "the last report was knee pain 9/10" in str(err.value)
    today = w.coach.today("anna", "retro-start", T0 + timedelta(days=2), pain_before=2)
    assert today.progress.spec.level_number == 1


def test_rated_hard_holds_and_easy_twice_skips(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    days = mwf(3)
    w.walk("retro-start", days[0], rating="right")  # 1 -> 2
    w.walk("retro-start", days[1], rating="hard")  # hold at 2
    w.walk("retro-start", days[2], rating="easy")  # 2 -> 3
    w.walk("retro-start", days[3], rating="easy")  # 3 -> 5 (skip)
    w.walk("retro-start", days[4], rating="easy")  # 5 -> 6 (the streak starts again)
    w.walk("retro-start", days[5])
    assert levels(w) == [1, 2, 2, 3, 5, 6]
    assert "[rule rated-hard]" in w.days[2].why[0]
    assert "rated easy 2 times in a row: one level skipped [rule easy-twice]" in w.days[4].why[0]


def test_an_interrupted_session_neither_counts_nor_holds(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    days = mwf(2)
    w.walk("retro-start", days[0])
    w.walk("retro-start", days[1], outcome="stopped")  # hold 1
    w.walk("retro-start", days[2], outcome="interrupted")  # neutral
    w.walk("retro-start", days[3], outcome="stopped")  # hold 2 -> back
    assert levels(w) == [1, 2, 2, 2]
    today = w.coach.today("anna", "retro-start", days[4])
    assert today.progress.spec.level_number == 1
    assert "[rule interrupted]" in w.days[3].why[0]


def test_backward_time_grows_at_most_the_weekly_fraction(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    for d in range(8):  # every day
        w.walk("retro-start", T0 + timedelta(days=d))
    # Nothing was walked a week or more before days 0-6: the cap is 2 x the plan's first
    # dose (2 min). Day 7 may reach 2 x day 0's 2 minutes too.
    assert backward_min(w) == [2.0, 2.5, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    capped = w.days[4]
    assert any("[rule growth-cap]" in line for line in capped.why)
    # A shortened session does not count toward the level.
    assert levels(w) == [1, 2, 3, 4, 5, 5, 5, 5]
    assert "[rule shortened]" in w.days[5].why[0]
    # Day 8: day 1's 2.5 minutes are a week old: the cap is 5 minutes, level 5 fits.
    day8 = w.coach.today("anna", "retro-start", T0 + timedelta(days=8))
    assert day8.built.backward_s == 300


def test_hill_plan_opens_only_after_the_flat_plan_is_completed(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    days = mwf(6)
    with pytest.raises(CoachRefused) as err:
        w.coach.today("anna", "retro-hill", days[0])
    e = err.value
    assert (e.walker, e.plan, e.rule) == ("anna", "retro-hill", "requires")
    assert "opens once plan 'retro-start' is completed (anna has not started it)" in str(e)
    for when in days[:8]:
        w.walk("retro-start", when)
    with pytest.raises(CoachRefused) as err:
        w.coach.today("anna", "retro-hill", days[8])
    assert "(anna is at flat, level 9 of 9 of it)" in str(err.value)
    assert w.coach.current_plan("anna", days[8]).name == "retro-start"
    w.walk(None, days[8])  # the last level of retro-start
    assert w.coach.current_plan("anna", days[9]).name == "retro-hill"  # next
    for when in days[9:16]:
        w.walk(None, when)
    hill = w.days[9:]
    assert [t.plan.name for t in hill] == ["retro-hill"] * 7
    assert [t.built.incline_pct for t in hill] == [2, 3, 4, 5, 6, 7, 8]
    for t in hill:
        flat = [p for p in t.profile.phase if p.direction == "backward" and p.incline_pct == 0]
        up = [p for p in t.profile.phase if p.incline_pct > 0]
        assert flat and up
        assert max(p.speed_kmh for p in up) < min(p.speed_kmh for p in flat)


def test_knee_plan_runs_the_trial_dose_and_steps_back_for_pain(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    days = mwf(7)
    for when in days[:3]:
        w.walk("knee-6-weeks", when, pain=3)
    w.walk("knee-6-weeks", days[3], pain=6)  # -> 8 minutes
    w.walk("knee-6-weeks", days[4], pain=3)  # -> back to 10
    for when in days[5:19]:
        w.walk("knee-6-weeks", when, pain=2)
    mins = backward_min(w)
    assert mins[:6] == [10, 10, 10, 10, 8, 10]
    assert not w.days[-1].progress.completed
    # 3 + 14 = 17 full sessions at the trial's dose: one more completes it.
    assert "17 of 18 at this level" in w.coach.today("anna", "knee-6-weeks", days[19]).why[0]
    w.walk("knee-6-weeks", days[19])
    final = w.coach.today("anna", "knee-6-weeks", days[20])
    assert final.progress.completed
    assert final.built.backward_s == 600


def test_the_header_says_where_a_session_was_walked(tmp_path: Path) -> None:
    c = coach(tmp_path)
    t = c.today("anna", "retro-start", T0)
    log_session(
        tmp_path,
        t.profile,
        T0,
        plan={"name": "retro-start", "stage": "flat", "level": 6, "speed_kmh": 1.8},
    )
    today = c.today("anna", "retro-start", T0 + timedelta(days=2))
    # Completed at level 6 (the log says so), so level 7 next; the dose was level 1's:
    # "shortened" keeps it at 6. The log wins over the fold's own count.
    assert today.progress.spec.level_number == 6
    assert "the session of Mon 2 Nov was walked at flat, level 6 of 9" in today.progress.notes


def test_walkers_histories_are_their_own(tmp_path: Path) -> None:
    c = coach(tmp_path, [WalkerConfig(name="anna"), WalkerConfig(name="ben")])
    anna, ben = Walker(c, "anna"), Walker(c, "ben")
    for when in mwf(1):
        anna.walk("retro-start", when)
    ben.walk("retro-start", T0 + timedelta(days=5))
    assert levels(anna) == [1, 2, 3]
    assert levels(ben) == [1]
    with pytest.raises(CoachError, match="which walker"):
        c.today(None, "retro-start", T0)
    with pytest.raises(CoachError, match="unknown walker 'carl'; known walkers: anna, ben"):
        c.today("carl", "retro-start", T0)


def test_no_walkers_configured_is_one_implicit_walker(tmp_path: Path) -> None:
    c = coach(tmp_path, [])
    t = c.today(None, "retro-start", T0)
    assert t.walker == "default"
    # A session that names no walker (a profile started as before) is the implicit walker's.
    log_session(tmp_path, t.profile, T0, walker=None, plan=t.header_plan)
    assert c.today(None, "retro-start", T0 + timedelta(days=2)).progress.spec.level_number == 2
    with pytest.raises(CoachError, match="no walkers are configured"):
        c.today("anna", "retro-start", T0)


def test_a_walkers_own_limits_shape_every_session(tmp_path: Path) -> None:
    cautious = WalkerConfig(name="anna", max_speed_kmh=1.5, max_incline_pct=4)
    c = coach(tmp_path, [cautious], SafetyConfig(max_speed_kmh=4.0))
    t = c.today("anna", "retro-start", T0)
    assert t.profile.max_speed_kmh <= 1.5
    assert t.limits.max_speed_kmh == 1.5
    assert any("warm-up speed 2.5 km/h held at 1.5 km/h by the limits" in w for w in t.why)


def test_status_payload_for_the_walker_topic(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    days = mwf(2)
    w.walk("retro-start", days[0], rating="right", pain=1)
    w.walk("retro-start", days[1], slow_to=1.6, pain=2)
    status = w.coach.status("anna", days[1] + timedelta(hours=5))
    assert status["walker"] == "anna"
    assert (status["plan"], status["stage"], status["level"], status["levels"]) == (
        "retro-start",
        "flat",
        2,
        9,
    )
    assert (status["sessions_this_week"], status["sessions_per_week"]) == (2, 3)
    assert status["learned_speed_kmh"] == 1.7
    assert (status["last_pain"], status["last_rating"]) == (2, "right")
    assert status["today"]["backward_min"] == 2.5
    assert status["today"]["backward_speed_kmh"] == 1.7
    assert status["refused"] is None
    assert any("[rule console-slow-down]" in line for line in status["why"])
