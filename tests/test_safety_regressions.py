"""The eight races of the safety issue, each a named regression test.

All on the in-process simulator and the virtual clock, judged from what the simulated
treadmill accepted (``sim.accepted``: each Control Point write with the treadmill's own
state just before it) and from its belt, never from the runner's view of itself.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from retrotread.config import SafetyConfig
from retrotread.ftms.control import decode_control_request
from retrotread.service.runner import RunnerError
from retrotread.sim.safety_check import Journal, Rules, check
from retrotread.sim.treadmill import AcceptedWrite, SimConfig
from tests.runhelpers import RunRig, phase, profile, run_rig

LONG = profile(
    phase("warm-up", 2.5, duration=120, ramp=30),
    phase("hill", 2.0, duration=120, ramp=30, incline=6.0),
    phase("cool-down", 1.5, duration=60, ramp=20),
)


def rules(r: RunRig, safety: SafetyConfig | None = None) -> Rules:
    return Rules.of(safety or SafetyConfig(), r.sim.config.speed_min_kmh)


def assert_safe(r: RunRig, journal: Journal, safety: SafetyConfig | None = None) -> None:
    journal.statuses = list(r.sim.status_sent)
    journal.link_ups = list(r.sim.link_ups)
    violations = check(rules(r, safety), r.sim.accepted, journal, r.clock.monotonic())
    assert not violations, "\n".join(map(str, violations))


def ops(writes: list[AcceptedWrite]) -> list[str]:
    return [w.data.hex() for w in writes]


def after(r: RunRig, n: int) -> list[AcceptedWrite]:
    return r.sim.accepted[n:]


def speed_writes(ws: list[AcceptedWrite]) -> list[tuple[AcceptedWrite, float]]:
    out = []
    for w in ws:
        if w.data[0] == 0x02:
            out.append((w, float(decode_control_request(w.data).values["target_speed_kmh"])))  # type: ignore[arg-type]
    return out


def incline_writes(ws: list[AcceptedWrite]) -> list[tuple[AcceptedWrite, float]]:
    out = []
    for w in ws:
        if w.data[0] == 0x03:
            v = decode_control_request(w.data).values["target_incline_pct"]
            out.append((w, float(v)))  # type: ignore[arg-type]
    return out


async def running_at(r: RunRig, kmh: float, journal: Journal) -> None:
    journal.command(r.clock.monotonic(), "start")
    await r.call(r.runner.start(LONG))
    await r.until(lambda: r.sim.speed_kmh >= kmh - 1e-6, 120)


async def paused_by_us(r: RunRig, journal: Journal) -> None:
    """Running at 2 km/h, then paused by our command; the belt is paused."""
    await running_at(r, 2.0, journal)
    journal.command(r.clock.monotonic(), "pause")
    await r.call(r.runner.pause())
    await r.until(lambda: r.sim.state == "paused", 10)


async def out_of_reach(r: RunRig, journal: Journal) -> float:
    """The treadmill goes out of reach; when, once the runner has noticed."""
    t_out = r.clock.monotonic()
    journal.link_lost(t_out)
    r.sim.go_out_of_reach()
    await r.until(lambda: bool(r.events("link_lost")), 10)
    return t_out


async def paused_at_the_console_and_left_alone(r: RunRig, journal: Journal) -> None:
    """The walker pauses at the console now: the belt stays paused, nothing is set on it,
    the runner says paused, and every rule held."""
    journal.at_console(r.clock.monotonic(), "pause", 0.0, r.sim.target_speed_kmh)
    r.sim.pause_at_console()
    n = len(r.sim.accepted)
    await r.clock.advance(30)
    assert r.sim.state == "paused" and r.sim.speed_kmh == 0.0
    assert ops(after(r, n)) == []  # nothing set on the paused belt
    assert r.runner.state_name() == "paused"
    assert_safe(r, journal)


# 1 ------------------------------------------------------------------------------------


async def test_1_start_then_stop_in_the_same_turn_never_starts(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        journal = Journal()
        journal.command(0.0, "start")
        journal.command(0.0, "stop")
        start = asyncio.ensure_future(r.runner.start(LONG))
        stop = asyncio.ensure_future(r.runner.stop())
        await r.clock.advance(20)
        assert start.done() and stop.done()
        stop.result()  # the stop got through: an honest ok
        assert b"\x07" not in r.sim.writes
        assert r.sim.state in ("idle", "stopped")
        assert r.runner.last_outcome == "stopped"
        assert_safe(r, journal)


async def test_1_stop_while_the_restart_speed_is_in_flight(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        journal = Journal()
        await paused_by_us(r, journal)
        n = len(r.sim.accepted)
        journal.command(r.clock.monotonic(), "resume")
        await r.call(r.runner.resume())
        # The restart speed is on the wire (accepted, its reply not yet back): stop now.
        await r.until(lambda: len(r.sim.accepted) > n, 5, step=0.001)
        assert r.sim.accepted[n].data == b"\x02\x32\x00"
        journal.command(r.clock.monotonic(), "stop")
        await r.call(r.runner.stop())
        await r.clock.advance(20)
        assert ops(after(r, n)) == ["023200", "0801"]
        assert r.sim.state == "stopped"
        assert_safe(r, journal)


# 2 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("echo", [True, False])
async def test_2_resume_after_a_reconnect_restarts_low(tmp_path: Path, echo: bool) -> None:
    async with run_rig(tmp_path, config=SimConfig(pre_workout_s=1.0, echo_status=echo)) as r:
        journal = Journal()
        await running_at(r, 2.5, journal)
        journal.link_lost(r.clock.monotonic())
        r.sim.drop_link("out of range")
        await r.until(lambda: bool(r.events("link_restored")), 30)
        await r.until(lambda: r.runner.state()["belt"] == "paused", 10)
        assert r.sim.target_speed_kmh == 2.5  # the treadmill still holds the old target
        n = len(r.sim.accepted)
        journal.command(r.clock.monotonic(), "resume")
        await r.call(r.runner.resume())
        await r.clock.advance(10)
        resumed = after(r, n)
        start = next(w for w in resumed if w.data == b"\x07")
        assert start.target_speed_kmh == 0.5  # Start only once the restart speed is set
        assert ops(resumed)[:2] == ["023200", "07"]
        assert_safe(r, journal)


async def test_2_second_link_loss_while_paused_restarts_low(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        journal = Journal()
        await running_at(r, 2.5, journal)
        for n in (1, 2):
            journal.link_lost(r.clock.monotonic())
            r.sim.drop_link("out of range")
            await r.until(lambda: len(r.events("link_restored")) == n, 30)  # noqa: B023
            await r.until(lambda: r.runner.state()["belt"] == "paused", 30)
        n = len(r.sim.accepted)
        journal.command(r.clock.monotonic(), "resume")
        await r.call(r.runner.resume())
        await r.clock.advance(10)
        start = next(w for w in after(r, n) if w.data == b"\x07")
        assert start.target_speed_kmh == 0.5
        assert_safe(r, journal)


# 3 ------------------------------------------------------------------------------------


async def test_3_stop_while_disconnected_is_latched_and_honest(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        journal = Journal()
        await running_at(r, 2.0, journal)
        t_out = await out_of_reach(r, journal)
        journal.command(r.clock.monotonic(), "stop")
        with pytest.raises(RunnerError, match="not reachable: use its stop button"):
            await r.call(r.runner.stop())
        assert r.runner.state()["stop_pending"] is True
        await r.clock.advance(20)
        n = len(r.sim.accepted)
        r.sim.come_back()
        journal.out_of_reach(t_out, r.clock.monotonic())
        await r.until(lambda: r.sim.state == "stopped", 30)
        assert ops(after(r, n)) == ["00", "0801"]  # the stop first, and nothing else
        await r.clock.advance(60)
        assert r.sim.speed_kmh == 0.0
        assert ops(after(r, n)) == ["00", "0801"]
        assert r.runner.state()["stop_pending"] is False
        assert r.runner.state_name() == "stopped"
        assert_safe(r, journal)


# 4 ------------------------------------------------------------------------------------


async def test_4_pause_during_the_countdown_pauses(tmp_path: Path) -> None:
    async with run_rig(tmp_path, config=SimConfig(pre_workout_s=3.0)) as r:
        journal = Journal()
        journal.command(0.0, "start")
        await r.call(r.runner.start(LONG))
        await r.until(lambda: r.sim.state == "pre_workout", 5)
        journal.command(r.clock.monotonic(), "pause")
        await r.call(r.runner.pause())
        await r.clock.advance(30)
        assert r.sim.state == "paused"
        assert r.sim.speed_kmh == 0.0
        assert r.runner.state_name() == "paused"
        assert not [w for w in r.sim.accepted if w.data[0] == 0x02 and w.data != b"\x02\x32\x00"]
        assert_safe(r, journal)


async def test_4_set_during_the_countdown_is_the_target(tmp_path: Path) -> None:
    async with run_rig(tmp_path, config=SimConfig(pre_workout_s=3.0)) as r:
        journal = Journal()
        journal.command(0.0, "start")
        await r.call(r.runner.start(LONG))
        await r.until(lambda: r.sim.state == "pre_workout", 5)
        journal.command(r.clock.monotonic(), "set")
        await r.call(r.runner.set(1.0, None))
        await r.clock.advance(60)
        assert r.sim.target_speed_kmh == 1.0  # not the phase's 2.5
        assert max(v for _, v in speed_writes(r.sim.accepted)) == 1.0
        assert_safe(r, journal)


async def test_4_finish_during_the_countdown_goes_to_the_cool_down(tmp_path: Path) -> None:
    async with run_rig(tmp_path, config=SimConfig(pre_workout_s=3.0)) as r:
        journal = Journal()
        journal.command(0.0, "start")
        await r.call(r.runner.start(LONG))
        await r.until(lambda: r.sim.state == "pre_workout", 5)
        journal.command(r.clock.monotonic(), "finish")
        await r.call(r.runner.finish())
        await r.until(lambda: r.runner.session is None, 120)
        assert r.runner.last_outcome == "finished_early"
        started = [e["phase"] for e in r.events("phase_started")]
        assert started == ["cool-down"]
        assert max(v for _, v in speed_writes(r.sim.accepted)) == 1.5
        assert_safe(r, journal)


# 5 ------------------------------------------------------------------------------------


async def test_5_next_phase_ramps_from_the_walkers_speed(tmp_path: Path) -> None:
    p = profile(phase("one", 2.0, 60, 20), phase("two", 2.0, 60, 20, incline=2.0))
    async with run_rig(tmp_path) as r:
        journal = Journal()
        journal.command(0.0, "start")
        await r.call(r.runner.start(p))
        await r.until(lambda: r.sim.speed_kmh >= 2.0, 60)
        journal.at_console(r.clock.monotonic(), "speed", 3.5, r.sim.target_speed_kmh)
        r.sim.set_speed_at_console(3.5)
        n = len(r.sim.accepted)
        await r.until(lambda: r.runner.session is None, 200)
        sp = speed_writes(after(r, n))
        assert sp[0][1] == 3.4  # one step down from the walker's 3.5 at the next phase
        assert_safe(r, journal)


async def test_5_manual_set_after_an_override_starts_from_the_treadmill(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        journal = Journal()
        await running_at(r, 2.5, journal)
        journal.at_console(r.clock.monotonic(), "speed", 3.5, r.sim.target_speed_kmh)
        r.sim.set_speed_at_console(3.5)
        await r.until(lambda: bool(r.events("override")), 10)
        n = len(r.sim.accepted)
        journal.command(r.clock.monotonic(), "set")
        await r.call(r.runner.set(3.0, None))
        await r.clock.advance(10)
        assert [v for _, v in speed_writes(after(r, n))][:5] == [3.4, 3.3, 3.2, 3.1, 3.0]
        assert_safe(r, journal)


async def test_5_a_second_console_change_in_a_phase_is_followed(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        journal = Journal()
        await running_at(r, 2.5, journal)
        for kmh in (3.5, 2.2):
            journal.at_console(r.clock.monotonic(), "speed", kmh, r.sim.target_speed_kmh)
            r.sim.set_speed_at_console(kmh)
            await r.clock.advance(2)
        n = len(r.sim.accepted)
        journal.command(r.clock.monotonic(), "set")
        await r.call(r.runner.set(2.5, None))
        await r.clock.advance(10)
        assert [v for _, v in speed_writes(after(r, n))] == [2.3, 2.4, 2.5]
        assert_safe(r, journal)


# 6 ------------------------------------------------------------------------------------


async def test_6_incline_lowered_at_the_console_while_paused(tmp_path: Path) -> None:
    p = profile(phase("hill", 2.0, 200, 20, incline=6.0))
    async with run_rig(tmp_path) as r:
        journal = Journal()
        journal.command(0.0, "start")
        await r.call(r.runner.start(p))
        await r.until(lambda: r.sim.incline_pct >= 6.0, 120)
        journal.command(r.clock.monotonic(), "pause")
        await r.call(r.runner.pause())
        await r.clock.advance(3)
        journal.at_console(r.clock.monotonic(), "incline", 0.0, r.sim.target_incline_pct)
        r.sim.set_incline_at_console(0.0)
        await r.clock.advance(15)
        n = len(r.sim.accepted)
        journal.command(r.clock.monotonic(), "resume")
        await r.call(r.runner.resume())
        await r.clock.advance(30)
        assert incline_writes(after(r, n)) == []  # the walker's 0 % is left alone this phase
        assert r.sim.incline_pct == 0.0
        assert_safe(r, journal)


async def test_6_incline_steps_from_the_treadmill_target(tmp_path: Path) -> None:
    p = profile(phase("hill", 2.0, 60, 20, incline=4.0), phase("flat", 2.0, 60, 20))
    async with run_rig(tmp_path) as r:
        journal = Journal()
        journal.command(0.0, "start")
        await r.call(r.runner.start(p))
        await r.until(lambda: r.sim.target_incline_pct >= 4.0, 120)
        journal.at_console(r.clock.monotonic(), "incline", 3.0, r.sim.target_incline_pct)
        r.sim.set_incline_at_console(3.0)
        await r.until(lambda: r.runner.session is None, 200)
        inc = incline_writes(r.sim.accepted)
        for w, v in inc:
            assert abs(v - w.target_incline_pct) <= 0.5 + 1e-9
        assert_safe(r, journal)


# 7 ------------------------------------------------------------------------------------


async def test_7_slow_replies_never_bring_two_writes_closer_than_the_interval(
    tmp_path: Path,
) -> None:
    p = profile(phase("hill", 2.0, 80, 20, incline=5.0))
    async with run_rig(tmp_path) as r:
        r.sim.faults.control_reply_delay_s = 0.3
        journal = Journal()
        journal.command(0.0, "start")
        await r.call(r.runner.start(p))
        await r.until(lambda: r.runner.session is None, 200)
        for series in (speed_writes(r.sim.accepted), incline_writes(r.sim.accepted)):
            times = [w.t for w, _ in series]
            assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(times))
        assert len(incline_writes(r.sim.accepted)) == 10
        assert_safe(r, journal)


# 8 ------------------------------------------------------------------------------------


async def test_8_stop_behind_an_unanswered_write_still_stops_the_belt(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        journal = Journal()
        await running_at(r, 1.5, journal)
        r.sim.faults.drop_control_replies = 1
        n = len(r.sim.accepted)
        await r.until(lambda: len(r.sim.accepted) > n, 10, step=0.01)  # a write with no reply
        journal.command(r.clock.monotonic(), "stop")
        t_stop = r.clock.monotonic()
        with pytest.raises(RunnerError, match="not reachable"):
            await r.call(r.runner.stop())
        await r.until(lambda: b"\x08\x01" in r.sim.writes, 15)
        t_reached = r.sim.accepted[[w.data for w in r.sim.accepted].index(b"\x08\x01")].t
        assert t_reached - t_stop < 5.0  # drop and reconnect, then stop: no 5 s wait behind
        await r.clock.advance(30)
        assert r.sim.state == "stopped"
        assert r.sim.speed_kmh == 0.0
        assert r.runner.state()["stop_pending"] is False
        assert_safe(r, journal)


# Found later by the fault search ------------------------------------------------------


async def test_a_console_pause_just_after_a_pause_never_sent_is_the_walkers(
    tmp_path: Path,
) -> None:
    """Back in reach after the walker stopped the belt at the console: our pause (asked for
    on reconnect) is dropped unsent when the treadmill says it stopped. A console pause
    moments into the next session is the walker's, not an echo of that pause: the belt stays
    paused and no speed above the restart speed is set on it (seed 301744)."""
    async with run_rig(tmp_path) as r:
        journal = Journal()
        await running_at(r, 2.0, journal)
        t_out = await out_of_reach(r, journal)
        journal.at_console(r.clock.monotonic(), "stop", 0.0, r.sim.target_speed_kmh)
        r.sim.stop_at_console()
        await r.clock.advance(5)
        r.sim.come_back()
        journal.out_of_reach(t_out, r.clock.monotonic())
        await r.until(lambda: bool(r.events("stopped_by_treadmill")), 30, step=0.01)
        t_dropped = r.clock.monotonic()
        assert b"\x08\x02" not in r.sim.writes  # the pause never went out
        journal.command(t_dropped, "start")
        await r.call(r.runner.start(LONG))
        await r.until(lambda: r.sim.state == "running", 10, step=0.01)
        assert r.clock.monotonic() - t_dropped < 2.0  # within the echo window of old
        await paused_at_the_console_and_left_alone(r, journal)


async def test_a_console_pause_just_after_our_start_is_the_walkers_not_an_old_echo(
    tmp_path: Path,
) -> None:
    """Back after a link loss, our pause finds the belt paused already (no echo of it comes);
    the walker resumes, and pauses at the console a moment after our Start: that pause is
    theirs (an older request's echo cannot come after a newer one's answer), so nothing is
    set on the paused belt (seed 303508)."""
    async with run_rig(tmp_path) as r:
        journal = Journal()
        await paused_by_us(r, journal)
        journal.link_lost(r.clock.monotonic())
        r.sim.drop_link("dropped by the test")
        await r.until(lambda: r.sim.writes.count(b"\x08\x02") == 2, 30, step=0.01)
        t_pause = r.clock.monotonic()  # our reconnect pause, on a paused belt
        await r.until(lambda: r.runner.state_name() == "paused", 10, step=0.01)
        journal.command(r.clock.monotonic(), "resume")
        await r.call(r.runner.resume())
        await r.until(lambda: r.sim.state in ("running", "pre_workout"), 10, step=0.01)
        assert r.clock.monotonic() - t_pause < 2.0  # within the echo window of that pause
        await paused_at_the_console_and_left_alone(r, journal)


async def test_a_stop_sent_as_the_walker_starts_at_the_console_still_stops_the_belt(
    tmp_path: Path,
) -> None:
    """The walker starts the belt at the console and a person sends stop a moment later,
    while the control point must ask for control first: the console start's status cancels
    what waits there, but a person's stop is latched and goes out again at once (seed
    311534)."""
    config = SimConfig(pre_workout_s=0.0, lenient=False)
    async with run_rig(tmp_path, config=config) as r:
        journal = Journal()
        await running_at(r, 2.0, journal)
        journal.at_console(r.clock.monotonic(), "stop", 0.0, r.sim.target_speed_kmh)
        r.sim.stop_at_console()
        await r.until(lambda: r.runner.session is None and r.sim.speed_kmh == 0.0, 30)
        journal.at_console(r.clock.monotonic(), "revoke")
        r.sim.revoke_control()  # the next request asks for control first
        await r.clock.advance(10)
        r.sim.faults.control_reply_delay_s = 0.2
        n = len(r.sim.accepted)
        journal.at_console(r.clock.monotonic(), "start")
        r.sim.start_at_console()
        await r.clock.advance(0.001)
        journal.command(r.clock.monotonic(), "stop")
        stop = asyncio.ensure_future(r.runner.stop())
        await r.clock.advance(20)
        assert stop.done()
        assert b"\x08\x01" in [w.data for w in after(r, n)]
        assert r.sim.state == "stopped" and r.sim.speed_kmh == 0.0
        assert r.runner.state()["stop_pending"] is False
        assert_safe(r, journal)
