"""Every built-in profile runs to completion on the simulator; the log alone proves it safe."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from retrotread.config import SafetyConfig
from retrotread.ftms.control import decode_control_request
from retrotread.profiles.loader import load_profiles
from retrotread.session.log import read_session
from tests.runhelpers import run_rig

BUILTIN = load_profiles()


def test_the_four_promised_profiles_ship() -> None:
    assert BUILTIN.errors == []
    assert {"first-steps", "build-up", "hill-intro", "knee-gentle"} <= set(BUILTIN.profiles)
    first = BUILTIN.profiles["first-steps"]
    assert 90 <= first.backward_s <= 150  # about two minutes backward (SPEC.md §4)


@pytest.mark.parametrize("name", sorted(BUILTIN.profiles))
async def test_builtin_profile_completes_within_limits(tmp_path: Path, name: str) -> None:
    profile = BUILTIN.profiles[name]
    limits = SafetyConfig()
    async with run_rig(tmp_path, turn_countdown_s=5) as r:
        await r.call(r.runner.start(profile))
        await r.until(lambda: r.runner.session is None, profile.duration_s + 600, step=0.25)
        log = read_session(r.runner.last_log)  # type: ignore[arg-type]
    # From here on, only the log is evidence.
    assert log.footer is not None
    assert log.outcome == "completed"
    assert log.header is not None
    assert log.header["profile"]["name"] == name
    sp: list[tuple[float, float]] = []
    inc: list[tuple[float, float]] = []
    last_speed: tuple[float, float] | None = None
    for rec in log.of("tx"):
        req = decode_control_request(bytes.fromhex(rec["hex"]))
        t = float(rec["t"])
        if req.name == "stop_or_pause":
            last_speed = None  # the belt stops; it will restart from the bottom
        elif req.name == "set_target_speed":
            v = float(req.values["target_speed_kmh"])  # type: ignore[arg-type]
            if last_speed is None:
                assert v == 0.5, (name, t, v)  # every (re)start is at the belt's minimum
            else:
                assert abs(v - last_speed[1]) <= limits.speed_step_kmh + 1e-9, (name, t, v)
                assert t - last_speed[0] >= limits.step_interval_s - 1e-6, (name, t)
            last_speed = (t, v)
            sp.append((t, v))
        elif req.name == "set_target_inclination":
            inc.append((t, float(req.values["target_incline_pct"])))  # type: ignore[arg-type]
    assert sp
    assert max(v for _, v in sp) <= limits.max_speed_kmh
    assert max((v for _, v in inc), default=0.0) <= limits.max_incline_pct
    for (t0, a), (t1, b) in itertools.pairwise(inc):
        assert abs(b - a) <= limits.incline_step_pct + 1e-9, (name, a, b)
        assert t1 - t0 >= limits.step_interval_s - 1e-6, (name, t0, t1)
    # The hill phase is an incline ramp: several steps up, never one jump.
    hills = [p for p in profile.phases if p.incline_pct > 0]
    if hills:
        # From the treadmill's own 0 % at the start (nothing is written to keep it there).
        levels = [0.0] + [v for _, v in inc]
        rises = [b - a for a, b in itertools.pairwise(levels) if b > a]
        assert len(rises) >= int(max(p.incline_pct for p in hills) / limits.incline_step_pct)
        assert max(v for _, v in inc) == max(p.incline_pct for p in hills)
    phases = [e for e in log.of("event") if e["event"] == "phase_started"]
    assert [e["phase"] for e in phases] == [p.name for p in profile.phases]
    summary = log.footer["summary"]
    assert summary["backward_s"] == pytest.approx(profile.backward_s, rel=0.15)
