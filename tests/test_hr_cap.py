"""The heart-rate cap in the runner: a simulated walker's heart (the physiological model),
read by a simulated strap on its own link, steering a simulated treadmill on a virtual
clock. Judged from what the treadmill accepted (``sim.accepted``) and by the independent
safety checker (``sim/safety_check.py``): no rule of SPEC.md §2 is broken on the way.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from retrotread.profiles.model import Profile
from retrotread.session.log import read_session
from retrotread.sim.physiology import Walker
from retrotread.sim.safety_check import Journal
from retrotread.sim.treadmill import SimConfig
from tests.hrhelpers import HrRig, hr_rig
from tests.runhelpers import phase, profile


def hill(top: float = 6.0, ramp: float = 120.0, duration: float = 600.0) -> Profile:
    return profile(
        phase("warm-up", 2.5, duration=60, ramp=30),
        phase("hill", 2.5, duration=duration, ramp=ramp, incline=top, direction="backward"),
        phase("cool-down", 1.5, duration=60, ramp=30),
        name="hill",
    )


async def run_to_end(r: HrRig, journal: Journal, prof: Profile, limit_s: float = 1500) -> None:
    journal.command(r.clock.monotonic(), "start")
    await r.call(r.runner.start(prof))
    await r.until(lambda: r.runner.session is None, limit_s, step=0.5)


def no_increase(r: HrRig, t0: float, t1: float) -> None:
    """No setpoint in [t0, t1] above the treadmill's own target before it."""
    for w in r.sim.accepted:
        if not t0 <= w.t <= t1 or w.data[:1] not in (b"\x02", b"\x03"):
            continue
        raw = int.from_bytes(w.data[1:3], "little", signed=True)
        if w.data[0] == 0x02:
            assert raw / 100 <= w.target_speed_kmh + 1e-9, (w.t, raw / 100, w.target_speed_kmh)
        else:
            assert raw / 10 <= w.target_incline_pct + 1e-9, (w.t, raw / 10, w.target_incline_pct)


async def test_a_hill_over_the_cap_is_held_stepped_down_incline_first_then_finished(
    tmp_path: Path,
) -> None:
    # A walker whose heart comes down slowly (a 90 s time constant): it stays high.
    slow = Walker(tau_down_s=90.0)
    async with hr_rig(tmp_path, cap=105, walker=slow, heart_rate_step_every_s=2.0) as r:
        journal = Journal()
        await run_to_end(r, journal, hill())
        assert r.cap_kinds()[:3] == ["holding", "stepping_down", "finish"]
        t_hold, t_step, t_finish = r.first("holding"), r.first("stepping_down"), r.first("finish")
        hold = r.cap_events()[0]
        assert hold["heart_rate_bpm"] > 105 and hold["cap_bpm"] == 105
        # Held: the hill was still climbing when the heart crossed the cap, and stopped there.
        incline_at_hold = [v for t, v in r.setpoints("incline") if t <= t_hold][-1]
        assert 0 < incline_at_hold < 6.0
        no_increase(r, t_hold, t_finish)
        assert 20 <= t_step - t_hold < 30  # sustained: 20 s above the cap
        assert 60 <= t_finish - t_hold < 75  # still above: 60 s in all
        # Stepped down in the normal small steps, incline first, one step every 2 s...
        inclines = r.setpoints("incline", t_step)
        speeds = r.setpoints("speed", t_step)
        down = [(t, v) for t, v in inclines if t < t_finish]
        assert [v for _, v in down] == [incline_at_hold - 0.5 * (i + 1) for i in range(len(down))]
        assert all(b[0] - a[0] >= 2.0 - 1e-6 for a, b in itertools.pairwise(down))
        assert down[-1][1] == 0.0
        # ...then speed, only once the belt is flat.
        slower = [(t, v) for t, v in speeds if t < t_finish]
        assert slower and slower[0][0] > down[-1][0]
        assert [round(b[1] - a[1], 2) for a, b in itertools.pairwise(slower)] == [-0.1] * (
            len(slower) - 1
        )
        # Finished: the cool-down, with a cue, and the session ends early but normally.
        cues = [e for e in r.events("cue") if e.get("reason") == "hr_cap_finish"]
        assert len(cues) == 1 and "cooling down" in cues[0]["message"]
        cool = [e for e in r.events("phase_started") if e["phase"] == "cool-down"]
        assert cool and cool[0]["_t"] >= t_finish
        assert r.runner.last_outcome == "finished_early"
        assert b"\x08\x01" not in [w.data for w in r.sim.accepted if w.t < cool[0]["_t"]]
        assert not r.violations(journal), r.violations(journal)
        # The log says where the heart rate came from, raw and decoded.
        assert r.runner.last_log is not None
        log = read_session(r.runner.last_log)
        assert log.header is not None and log.header["heart_rate"]["cap_bpm"] == 105
        assert any(x["char"] == "2a37" for x in log.of("rx"))
        tele = list(log.of("telemetry"))
        assert {x["heart_rate_source"] for x in tele[5:]} == {"strap"}
        assert max(x["heart_rate_bpm"] for x in tele) > 105
        assert [e["state"] for e in log.of("event") if e.get("event") == "hr_cap"][:3] == [
            "holding",
            "stepping_down",
            "finish",
        ]
        summary = log.footer["summary"] if log.footer else {}
        assert summary["heart_rate_source"] == "strap" and summary["hr_cap_episodes"] >= 1
        assert summary["max_heart_rate_bpm"] > 105


async def test_recovery_resumes_the_plan_by_ramping(tmp_path: Path) -> None:
    async with hr_rig(tmp_path, cap=118, heart_rate_finish_after_s=300) as r:
        journal = Journal()
        await run_to_end(r, journal, hill())
        kinds = r.cap_kinds()
        assert kinds[:3] == ["holding", "stepping_down", "resumed"]
        t_resumed = r.first("resumed")
        t_next = next((e["_t"] for e in r.cap_events() if e["_t"] > t_resumed), 1e9)
        bottom = [v for t, v in r.setpoints("incline") if t <= t_resumed][-1]
        back_up = [(t, v) for t, v in r.setpoints("incline", t_resumed) if t < t_next]
        # Up again one step at a time, a step every 5 s (heart_rate_step_every_s), no jump.
        assert len(back_up) >= 3
        assert [v for _, v in back_up] == [bottom + 0.5 * (i + 1) for i in range(len(back_up))]
        assert all(b[0] - a[0] >= 5.0 - 1e-6 for a, b in itertools.pairwise(back_up))
        assert "finish" not in kinds
        assert r.runner.last_outcome == "completed"
        assert not r.violations(journal), r.violations(journal)


async def test_a_lost_strap_holds_and_never_stops_the_belt(tmp_path: Path) -> None:
    # A treadmill without its own heart rate: the strap is the only source.
    async with hr_rig(
        tmp_path, cap=150, config=SimConfig(pre_workout_s=1.0, heart_rate=False)
    ) as r:
        journal = Journal()
        journal.command(r.clock.monotonic(), "start")
        await r.call(r.runner.start(hill(top=6.0, ramp=240, duration=400)))
        await r.until(lambda: r.sim.incline_pct >= 2.0, 300)
        t_lost = r.clock.monotonic()
        r.strap_sim.go_out_of_reach()
        await r.until(lambda: "no_signal" in r.cap_kinds(), 30)
        cue = [e for e in r.events("cue") if e.get("reason") == "hr_cap_no_signal"]
        assert len(cue) == 1 and "strap" in cue[0]["message"]
        held = (r.sim.target_speed_kmh, r.sim.target_incline_pct)
        await r.clock.advance(90)
        no_increase(r, t_lost, r.clock.monotonic())
        assert (r.sim.target_speed_kmh, r.sim.target_incline_pct) == held
        assert r.sim.state == "running" and r.sim.speed_kmh > 0  # never stopped for it
        assert r.runner.state()["heart_rate"]["cap_state"] == "no_signal"
        assert r.runner.state()["heart_rate"]["strap"] == "disconnected"
        r.strap_sim.come_back()
        await r.until(lambda: "resumed" in r.cap_kinds(), 30)
        assert r.cap_kinds()[-2:] == ["signal_back", "resumed"]
        await r.until(lambda: r.runner.session is None, 900, step=0.5)
        assert r.runner.last_outcome == "completed"
        assert max(v for _, v in r.setpoints("incline")) == 6.0  # the plan, after all
        # The treadmill's link never noticed: no loss, no pause, no reconnect.
        assert r.events("link_lost") == [] and r.supervisor.losses == 0
        assert r.strap_supervisor.losses == 1
        assert not r.violations(journal), r.violations(journal)


async def test_the_strap_dropping_and_coming_back_leaves_the_treadmill_session_alone(
    tmp_path: Path,
) -> None:
    async with hr_rig(tmp_path, cap=None) as r:
        journal = Journal()
        journal.command(r.clock.monotonic(), "start")
        await r.call(r.runner.start(hill(top=4.0, ramp=120, duration=240)))
        await r.until(lambda: r.sim.speed_kmh >= 2.0, 120)
        for _ in range(3):
            r.strap_sim.drop_link("the strap slipped")
            await r.clock.advance(15)
        await r.until(lambda: r.runner.session is None, 900, step=0.5)
        assert r.runner.last_outcome == "completed"
        assert r.events("link_lost") == [] and r.supervisor.losses == 0
        assert r.strap_supervisor.losses == 3 and r.strap_sim.connects == 4
        pauses = [w for w in r.sim.accepted if w.data == b"\x08\x02"]
        assert len(pauses) == len(r.events("turn_required")) == 2  # the turns, nothing else
        sources = [t.get("heart_rate_source") for t in r.telemetry() if t["session_id"]]
        assert "strap" in sources and "treadmill" in sources  # the console filled the gaps
        assert not r.violations(journal), r.violations(journal)


async def test_console_changes_during_an_episode_are_not_fought(tmp_path: Path) -> None:
    async with hr_rig(tmp_path, cap=105, heart_rate_finish_after_s=600) as r:
        journal = Journal()
        journal.command(r.clock.monotonic(), "start")
        await r.call(r.runner.start(hill()))
        await r.until(lambda: "stepping_down" in r.cap_kinds(), 600)
        t = r.clock.monotonic()
        journal.at_console(t, "incline", 8.0, r.sim.target_incline_pct)
        r.sim.set_incline_at_console(8.0)  # the walker wants more, over the cap or not
        await r.until(lambda: bool(r.events("override")), 10)
        await r.clock.advance(60)
        assert r.setpoints("incline", t + 0.01) == []  # the walker's incline, left alone
        assert r.sim.target_incline_pct == 8.0
        speeds = r.setpoints("speed", t)
        assert speeds and all(b[1] < a[1] for a, b in itertools.pairwise(speeds))
        assert not r.violations(journal), r.violations(journal)


async def test_a_heart_rate_zone_climbs_in_small_steps_and_holds(tmp_path: Path) -> None:
    zone = profile(
        phase("warm-up", 2.5, duration=60, ramp=30),
        {
            **phase("zone", 2.5, duration=900, ramp=60, incline=8.0, direction="backward"),
            "target_hr_bpm": [108, 114],
        },
        phase("cool-down", 1.5, duration=60, ramp=30),
        name="zone",
    )
    async with hr_rig(tmp_path, cap=None) as r:
        journal = Journal()
        await run_to_end(r, journal, zone, 1800)
        inclines = r.setpoints("incline")
        assert inclines and max(v for _, v in inclines) < 8.0  # the zone, not the top
        start = next(e["_t"] for e in r.events("phase_started") if e["phase"] == "zone")
        moves = [(t, v) for t, v in inclines if start <= t < start + 900]
        # A zone step every 20 s (its write may wait a moment behind a speed write).
        assert all(b[0] - a[0] >= 15 for a, b in itertools.pairwise(moves))
        assert all(abs(b[1] - a[1]) == 0.5 for a, b in itertools.pairwise(moves))
        late = [
            x["heart_rate_bpm"]
            for x in r.telemetry()
            if x["phase"] == "zone" and x["_t"] > start + 500
        ]
        assert late and 104 <= sum(late) / len(late) <= 118
        assert not r.violations(journal), r.violations(journal)
