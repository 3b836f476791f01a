"""Every walker-safety rule of SPEC.md §2 that lives in the runner, against the simulator.

Each test drives the in-process simulated treadmill through real FTMS bytes on a virtual
clock, and checks what was written to the treadmill (the session log's raw tx frames),
what the treadmill did (its telemetry) and what the walker was told (events).
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from retrotread.config import SafetyConfig
from retrotread.ftms.control import decode_control_request
from retrotread.service.runner import RunnerError
from retrotread.session.log import read_session
from retrotread.sim.treadmill import Faults, SimConfig
from tests.runhelpers import RunRig, phase, profile, run_rig


def writes(rig: RunRig) -> list[tuple[float, str, dict[str, Any]]]:
    """(t, op, values) of every Control Point write, from the session log."""
    assert rig.runner.last_log is not None
    log = read_session(rig.runner.last_log)
    out = []
    for rec in log.of("tx"):
        req = decode_control_request(bytes.fromhex(rec["hex"]))
        out.append((float(rec["t"]), req.name, dict(req.values)))
    return out


def speeds(ws: list[tuple[float, str, dict[str, Any]]]) -> list[tuple[float, float]]:
    return [(t, float(v["target_speed_kmh"])) for t, op, v in ws if op == "set_target_speed"]


def inclines(ws: list[tuple[float, str, dict[str, Any]]]) -> list[tuple[float, float]]:
    return [
        (t, float(v["target_incline_pct"])) for t, op, v in ws if op == "set_target_inclination"
    ]


TWO_PHASE = profile(
    phase("warm-up", 2.0, duration=60, ramp=30),
    phase("hill", 2.0, duration=60, ramp=30, incline=4.0),
)


async def test_small_steps_never_a_jump(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        await r.call(r.runner.start(TWO_PHASE))
        await r.until(lambda: r.runner.session is None, 200)
        assert r.runner.last_outcome == "completed"
        ws = writes(r)
        sp, inc = speeds(ws), inclines(ws)
        assert sp[0][1] == 0.5  # the belt starts at its minimum, never higher
        assert [v for _, v in sp][-1] == 2.0
        assert inc[-1][1] == 4.0
        for series, limit in ((sp, 0.1), (inc, 0.5)):
            for (t0, a), (t1, b) in itertools.pairwise(series):
                assert abs(b - a) <= limit + 1e-9, (a, b)
                assert t1 - t0 >= 1.0 - 1e-6, (t0, t1)  # step_interval_s
        assert max(v for _, v in sp) <= SafetyConfig().max_speed_kmh


async def test_limits_cap_even_manual_set(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        await r.call(r.runner.start(TWO_PHASE))
        await r.until(lambda: r.sim.speed_kmh >= 1.0, 60)
        with pytest.raises(RunnerError, match="above the safety limit"):
            await r.call(r.runner.set(6.0, None))
        await r.call(r.runner.set(2.6, None))
        await r.clock.advance(30)
        await r.call(r.runner.stop())
        sp = speeds(writes(r))
        assert max(v for _, v in sp) == 2.6
        for (_, a), (_, b) in itertools.pairwise(sp):
            assert abs(b - a) <= 0.1 + 1e-9


async def test_stop_preempts_a_ramp(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        await r.call(r.runner.start(TWO_PHASE))
        await r.until(lambda: r.sim.speed_kmh >= 1.0, 60)
        before = len(r.sim.writes)
        await r.call(r.runner.stop(), limit_s=1.0)
        assert r.sim.writes[before:][-1] == b"\x08\x01"
        await r.until(lambda: r.runner.session is None, 10)
        assert r.runner.last_outcome == "stopped"
        await r.clock.advance(10)
        assert r.sim.speed_kmh == 0.0
        after_stop = r.sim.writes[r.sim.writes.index(b"\x08\x01") + 1 :]
        assert not any(w[0] in (0x02, 0x07) for w in after_stop)  # nothing restarts it


async def test_pause_and_resume_restarts_low(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        await r.call(r.runner.start(TWO_PHASE))
        await r.until(lambda: r.sim.speed_kmh >= 1.9, 60)
        await r.call(r.runner.pause())
        await r.clock.advance(5)
        assert r.sim.state == "paused"
        assert r.runner.state_name() == "paused"
        await r.clock.advance(30)
        assert r.sim.speed_kmh == 0.0
        n = len(r.sim.writes)
        await r.call(r.runner.resume())
        await r.clock.advance(30)
        resumed = [decode_control_request(w) for w in r.sim.writes[n:]]
        assert resumed[0].name == "set_target_speed"
        assert resumed[0].values["target_speed_kmh"] == 0.5  # the phase's start speed
        assert resumed[1].name == "start_or_resume"
        later = [
            float(q.values["target_speed_kmh"]) for q in resumed[2:] if q.name == "set_target_speed"
        ]
        assert later[:3] == [0.6, 0.7, 0.8]
        assert later[-1] == 2.0
        await r.call(r.runner.stop())


async def test_turn_around_pauses_and_waits(tmp_path: Path) -> None:
    p = profile(phase("fwd", 2.0, 40, 30), phase("back", 1.5, 40, 20, direction="backward"))
    async with run_rig(tmp_path) as r:
        await r.call(r.runner.start(p))
        await r.until(lambda: r.runner.state_name() == "turning", 100)
        turn = r.events("turn_required")
        assert len(turn) == 1
        assert "turn around to face the rear" in turn[0]["message"]
        await r.clock.advance(120)  # no resume: the belt stays paused, however long
        assert r.sim.state == "paused"
        assert r.sim.speed_kmh == 0.0
        assert r.runner.state_name() == "turning"
        await r.call(r.runner.resume())
        await r.until(lambda: r.runner.session is None, 100)
        assert r.runner.last_outcome == "completed"
        sp = speeds(writes(r))
        back = [v for t, v in sp if t > 40]
        assert back[0] == 0.5  # after the turn the ramp starts from the bottom again


async def test_turn_countdown_resumes_by_itself(tmp_path: Path) -> None:
    p = profile(phase("fwd", 2.0, 40, 30), phase("back", 1.5, 40, 20, direction="backward"))
    async with run_rig(tmp_path, turn_countdown_s=10) as r:
        await r.call(r.runner.start(p))
        await r.until(lambda: r.runner.state_name() == "turning", 100)
        assert "Starting again in 10 seconds" in r.events("turn_required")[0]["message"]
        t_turn = r.clock.monotonic()
        await r.until(lambda: r.runner.state_name() == "running", 30)
        assert r.clock.monotonic() - t_turn >= 10 - 0.5
        await r.until(lambda: r.runner.session is None, 100)
        assert r.runner.last_outcome == "completed"


async def test_turn_speed_slows_instead_of_pausing(tmp_path: Path) -> None:
    p = profile(phase("fwd", 2.0, 40, 30), phase("back", 1.5, 40, 20, direction="backward"))
    async with run_rig(tmp_path, turn_speed_kmh=0.8) as r:
        await r.call(r.runner.start(p))
        await r.until(lambda: r.runner.state_name() == "turning", 100)
        await r.clock.advance(30)
        assert r.sim.state == "running"
        assert r.sim.speed_kmh == pytest.approx(0.8, abs=0.01)
        assert b"\x08\x02" not in r.sim.writes
        sp = speeds(writes(r))
        for (_, a), (_, b) in itertools.pairwise(sp):
            assert abs(b - a) <= 0.1 + 1e-9  # slowing down is in steps too
        await r.call(r.runner.stop())


async def test_console_speed_change_is_never_fought(tmp_path: Path) -> None:
    p = profile(phase("one", 2.0, 120, 30, incline=0.0), phase("two", 2.5, 60, 30, incline=2.0))
    async with run_rig(tmp_path) as r:
        await r.call(r.runner.start(p))
        await r.until(lambda: r.sim.speed_kmh >= 1.5, 60)
        r.sim.set_speed_at_console(3.0)
        t_console = r.clock.monotonic()
        await r.clock.advance(5)
        ov = r.events("override")
        assert len(ov) == 1
        assert ov[0]["quantity"] == "speed"
        assert ov[0]["value"] == 3.0
        await r.until(lambda: r.runner.session is None, 300)
        sp = speeds(writes(r))
        in_phase_one = [v for t, v in sp if t_console < t < 120]
        assert in_phase_one == []  # not one speed write for the rest of that phase
        assert [v for t, v in sp if t >= 120][-1] == 2.5  # the next phase is ours again
        assert inclines(writes(r))[-1][1] == 2.0
        assert r.runner.last_outcome == "completed"


async def test_sustained_mismatch_without_status_is_an_override(tmp_path: Path) -> None:
    async with run_rig(tmp_path, config=SimConfig(pre_workout_s=1.0, echo_status=False)) as r:
        await r.call(r.runner.start(TWO_PHASE))
        await r.until(lambda: r.sim.speed_kmh >= 2.0, 60)
        # A console change that sends no status at all: only telemetry shows it.
        r.sim.target_speed_kmh = 3.2
        await r.clock.advance(15)
        ov = r.events("override")
        assert [o["quantity"] for o in ov] == ["speed"]
        assert r.runner.session is not None  # the session carries on
        await r.call(r.runner.stop())


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("stop_at_console", "console_stop"),
        ("pull_safety_key", "safety_key"),
        ("revoke_control", "control_lost"),
    ],
)
async def test_treadmill_stop_is_final(tmp_path: Path, fault: str, reason: str) -> None:
    async with run_rig(tmp_path) as r:
        await r.call(r.runner.start(TWO_PHASE))
        await r.until(lambda: r.sim.speed_kmh >= 1.0, 60)
        n = len(r.sim.writes)
        getattr(r.sim, fault)()
        await r.until(lambda: r.runner.session is None, 10)
        assert r.runner.last_outcome == "stopped_by_treadmill"
        assert r.events("stopped_by_treadmill")[0]["reason"] == reason
        await r.clock.advance(60)
        assert r.sim.writes[n:] == []  # not even a Stop: we never touch the belt again
        assert read_session(r.runner.last_log).outcome == "stopped_by_treadmill"  # type: ignore[arg-type]


async def test_speed_locked_firmware_stops_the_session(tmp_path: Path) -> None:
    async with run_rig(tmp_path, faults=Faults(speed_locked=True)) as r:
        await r.call(r.runner.start(TWO_PHASE))
        await r.until(lambda: r.runner.session is None, 60)
        assert r.runner.last_outcome == "error"
        errors = r.events("error")
        assert "speed-locked" in errors[0]["message"]
        assert r.sim.writes[-1] == b"\x08\x01"
        await r.clock.advance(10)
        assert r.sim.state == "stopped"


async def test_link_loss_pauses_and_waits_for_resume(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        await r.call(r.runner.start(TWO_PHASE))
        await r.until(lambda: r.sim.speed_kmh >= 1.5, 60)
        r.sim.drop_link("out of range")
        await r.until(lambda: bool(r.events("link_lost")), 5)
        with pytest.raises(RunnerError, match="not connected"):
            await r.call(r.runner.resume())
        await r.until(lambda: bool(r.events("link_restored")), 30)
        n = len(r.sim.writes)
        await r.clock.advance(60)
        after = [decode_control_request(w).name for w in r.sim.writes[n:]]
        assert "start_or_resume" not in after  # nothing starts the belt by surprise
        assert "set_target_speed" not in after
        assert r.runner.state_name() == "paused"
        await r.call(r.runner.resume())
        await r.until(lambda: r.runner.session is None, 200)
        assert r.runner.last_outcome == "completed"
        footer = read_session(r.runner.last_log).footer  # type: ignore[arg-type]
        assert footer is not None
        assert footer["summary"]["interruptions"] == 1


async def test_link_loss_with_on_reconnect_stop(tmp_path: Path) -> None:
    async with run_rig(tmp_path, on_reconnect="stop") as r:
        await r.call(r.runner.start(TWO_PHASE))
        await r.until(lambda: r.sim.speed_kmh >= 1.5, 60)
        r.sim.drop_link("out of range")
        await r.until(lambda: r.runner.session is None, 30)
        assert r.runner.last_outcome == "interrupted"


async def test_silence_counts_as_link_loss(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        await r.call(r.runner.start(TWO_PHASE))
        await r.until(lambda: r.sim.speed_kmh >= 1.5, 60)
        r.sim.faults.silent = True
        await r.until(lambda: bool(r.events("link_lost")), 10)
        assert "no treadmill data" in r.events("link_lost")[0]["message"]


async def test_shutdown_stops_the_belt_and_closes_the_log(tmp_path: Path) -> None:
    async with run_rig(tmp_path) as r:
        await r.call(r.runner.start(TWO_PHASE))
        await r.until(lambda: r.sim.speed_kmh >= 1.5, 60)
        await r.call(r.runner.shutdown(5))
        assert r.sim.writes[-1] == b"\x08\x01"
        log = read_session(r.runner.last_log)  # type: ignore[arg-type]
        assert log.outcome == "stopped"
        assert "shutting down" in log.footer["summary"]["message"]  # type: ignore[index]


async def test_pause_during_a_slow_turn_stops_the_belt(tmp_path: Path) -> None:
    p = profile(phase("fwd", 2.0, 40, 30), phase("back", 1.5, 40, 20, direction="backward"))
    async with run_rig(tmp_path, turn_speed_kmh=0.8) as r:
        await r.call(r.runner.start(p))
        await r.until(lambda: r.runner.state_name() == "turning", 100)
        await r.clock.advance(5)
        assert r.sim.state == "running"  # slowing to the turn speed, not paused
        await r.call(r.runner.pause())
        await r.clock.advance(10)
        assert r.sim.writes[-1] == b"\x08\x02"
        assert r.sim.state == "paused"
        assert r.sim.speed_kmh == 0.0
        with pytest.raises(RunnerError, match="already paused"):
            await r.call(r.runner.pause())
        await r.call(r.runner.stop())


@pytest.mark.parametrize("then", ["finish", "skip"])
async def test_a_new_turn_before_the_belt_restarts_needs_its_own_resume(
    tmp_path: Path, then: str
) -> None:
    """Resume at a turn says the walker has turned; a finish (or skip) before the belt
    restarts brings a phase that faces the other way: the cue asks to turn back, and the
    belt waits at rest for a new resume (it does not restart under a walker turning)."""
    p = profile(
        phase("fwd", 2.0, 40, 30),
        phase("back", 1.5, 60, 20, direction="backward"),
        phase("cool", 1.5, 40, 20),
    )
    async with run_rig(tmp_path) as r:
        await r.call(r.runner.start(p))
        await r.until(lambda: r.runner.state_name() == "turning", 100)
        assert "turn around to face the rear" in r.events("turn_required")[0]["message"]
        n = len(r.sim.writes)
        resume = asyncio.ensure_future(r.runner.resume())
        other = asyncio.ensure_future(getattr(r.runner, then)())
        await r.clock.advance(60)
        assert resume.done() and other.done()
        other.result()
        turns = r.events("turn_required")
        assert len(turns) == 2
        assert "turn around to face the front" in turns[1]["message"]
        assert turns[1]["phase"] == "cool"
        assert b"\x07" not in r.sim.writes[n:]  # no Start under a turning walker
        assert r.sim.state == "paused" and r.sim.speed_kmh == 0.0
        assert r.runner.state_name() == "turning"
        await r.call(r.runner.resume())
        await r.until(lambda: r.runner.session is None, 200)
        assert r.runner.last_outcome == ("finished_early" if then == "finish" else "completed")
        started = [e["phase"] for e in r.events("phase_started")]
        assert started == ["fwd", "cool"]
