"""Quiet when idle: every session sample goes out, idle telemetry only when it says something.

The runner's real outputs from the simulator (virtual clock) go through ``QuietIdle``; what
it passes is what MQTT would carry. Last: the daemon's wiring against a real Mosquitto.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from retrotread.clock import ScaledClock, VirtualClock
from retrotread.config import Config, MqttConfig, SessionsConfig
from retrotread.service.app import Daemon
from retrotread.service.quiet import QuietIdle
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import SimConfig, SimTreadmill
from tests.broker import Broker
from tests.runhelpers import RunRig, phase, profile, run_rig
from tests.test_daemon_mqtt import Phone, until

VALUES = ("speed_kmh", "incline_pct", "distance_m", "energy_kcal", "heart_rate_bpm")


class Passed:
    """What QuietIdle let through, each with the clock time it went out."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.out: list[tuple[float, str, dict[str, Any]]] = []

    def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        self.out.append((self.clock.monotonic(), kind, payload))

    def telemetry(self) -> list[tuple[float, dict[str, Any]]]:
        return [(t, p) for t, k, p in self.out if k == "telemetry"]


async def _quiet(rig: RunRig, heartbeat_s: float = 30.0) -> tuple[QuietIdle, Passed]:
    """The filter on the runner's outputs, once the simulated pulse (if any) is at rest."""
    walker = rig.sim.walker
    await rig.until(lambda: len(rig.telemetry()) >= 8, 60)  # connected, the belt known
    if rig.sim.config.heart_rate:
        await rig.until(lambda: round(walker.heart_rate_bpm) == round(walker.rest_bpm), 600, 1.0)
    passed = Passed(rig.clock)
    quiet = QuietIdle(passed, rig.clock, heartbeat_s)
    rig.runner.add_listener(quiet)
    return quiet, passed


def _values(p: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(p[k] for k in VALUES)


async def test_idle_and_unchanged_is_one_message_per_heartbeat(tmp_path: Path) -> None:
    # Nobody on the belt: no hand on the pulse grips, no heart rate (a resting pulse that
    # wanders by 2 bpm is news: test_heart_rate_steps_of_two_bpm_... has that).
    idle = SimConfig(pre_workout_s=1.0, heart_rate=False)
    async with run_rig(tmp_path, config=idle) as rig:
        quiet, passed = await _quiet(rig, heartbeat_s=30.0)
        start = rig.clock.monotonic()
        before = len(rig.telemetry())
        await rig.clock.advance(125.0)
        sent = len(rig.telemetry()) - before
        assert sent >= 125 * 4 - 8  # the treadmill kept sending at 4 Hz
        got = passed.telemetry()
        times = [t for t, _ in got]
        assert len(got) == 5, [
            (t, _values(p)) for t, p in got
        ]  # the first sample, then one per 30 s: 30, 60, 90, 120
        assert times[0] - start < 0.5
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(30.0 <= g < 30.5 for g in gaps), gaps
        # Unchanged but for the resting burn the simulator counts, which is not news.
        assert {_values(p)[:3] + _values(p)[4:] for _, p in got} == {(0.0, 0.0, 0.0, None)}
        assert got[0][1]["speed_kmh"] == 0.0
        assert quiet.held == sent - len(got)
        assert [k for _, k, _ in passed.out] == ["telemetry"] * 5  # nothing else happened


async def test_a_session_passes_every_sample_and_the_rest_values_follow(
    tmp_path: Path,
) -> None:
    async with run_rig(tmp_path) as rig:
        quiet, passed = await _quiet(rig)
        await rig.clock.advance(2.0)
        p = profile(phase("only", 1.5, duration=30, ramp=20))
        await rig.call(rig.runner.start(p))
        await rig.until(lambda: rig.runner.session is None, 120)
        await rig.until(lambda: rig.sim.speed_kmh == 0.0, 60)
        await rig.clock.advance(10.0)  # at rest again, well under a heartbeat

        emitted = rig.telemetry()
        in_session = [p for p in emitted if p["session_id"] is not None]
        got = [p for _, p in passed.telemetry()]
        assert len(in_session) > 60
        assert [p for p in got if p["session_id"] is not None] == in_session
        # Every sample while the belt still moved after the session went out too, then the
        # first one at rest: Home Assistant's last values are the belt at rest, no session.
        after = emitted[emitted.index(in_session[-1]) + 1 :]
        moving = [p for p in after if (p["speed_kmh"] or 0) > 0]
        assert moving, "the belt coasts after the stop"
        for sample in moving:
            assert sample in got
        first_still = next(p for p in after if p["speed_kmh"] == 0.0)
        assert first_still in got
        assert got[-1]["speed_kmh"] == 0.0
        assert got[-1]["session_id"] is None
        assert got[-1]["elapsed_s"] is None
        # Once still, only a real change (the pulse coming down) gets out, not the rest.
        still = after[after.index(first_still) :]
        assert len(still) > 30
        assert len([p for p in got if p in still]) < len(still) // 4
        assert quiet.held > 0


async def test_a_change_at_the_console_goes_out_and_ends_on_its_final_value(
    tmp_path: Path,
) -> None:
    # No heart rate: a pulse wandering by 2 bpm would be news of its own.
    async with run_rig(tmp_path, config=SimConfig(pre_workout_s=1.0, heart_rate=False)) as rig:
        _, passed = await _quiet(rig)
        await rig.clock.advance(5.0)
        n = len(passed.telemetry())
        rig.sim.set_incline_at_console(2.0)
        await rig.until(lambda: rig.sim.incline_pct == 2.0, 30)
        await rig.clock.advance(5.0)
        got = [p for _, p in passed.telemetry()][n:]
        inclines = [p["incline_pct"] for p in got]
        assert inclines[-1] == 2.0
        assert inclines == sorted(inclines)
        assert len(inclines) == len(set(inclines))  # each value once: only changes went out


async def test_heart_rate_steps_of_two_bpm_and_sensor_coming_and_going() -> None:
    clock = VirtualClock()
    got: list[dict[str, Any]] = []
    quiet = QuietIdle(lambda k, p: got.append(p), clock, heartbeat_s=30.0)
    base = {"session_id": None, "speed_kmh": 0.0, "incline_pct": 0.0, "distance_m": 0.0}
    for bpm in (72, 73, 71, 74, 74, None, None, 60, 61, 62):
        quiet("telemetry", {**base, "heart_rate_bpm": bpm})
    assert [p["heart_rate_bpm"] for p in got] == [72, 74, None, 60, 62]
    quiet("state", {"state": "idle"})  # states and events always pass
    quiet("event", {"type": "cue"})
    assert len(got) == 7
    quiet.resend()  # e.g. the broker came back
    quiet("telemetry", {**base, "heart_rate_bpm": 62})
    assert got[-1] == {**base, "heart_rate_bpm": 62}
    # The treadmill's link coming back (a state that says so) makes the next sample news.
    quiet("state", {"state": "idle", "connected": True})
    quiet("telemetry", {**base, "heart_rate_bpm": 62})
    quiet("telemetry", {**base, "heart_rate_bpm": 62})
    assert len(got) == 10 and got[-1] == {**base, "heart_rate_bpm": 62}
    quiet("state", {"state": "idle", "connected": True})  # no change: nothing is news
    quiet("telemetry", {**base, "heart_rate_bpm": 62})
    assert len(got) == 11
    every = QuietIdle(lambda k, p: got.append(p), clock, heartbeat_s=0)
    for _ in range(3):
        every("telemetry", {**base, "heart_rate_bpm": 62})
    assert len(got) == 14  # 0: every sample, as before


async def test_the_daemon_sends_quiet_idle_telemetry_over_mqtt(
    broker: Broker, tmp_path: Path
) -> None:
    config = Config(
        mqtt=MqttConfig(host="127.0.0.1", port=broker.port, device_id="t1", idle_telemetry_s=5),
        sessions=SessionsConfig(dir=tmp_path / "sessions"),
    )
    sim = SimTreadmill(SimConfig(pre_workout_s=1.0))
    daemon = Daemon(config, InProcessTransport(sim), ScaledClock(10.0), sim=sim)
    emitted: list[dict[str, Any]] = []
    daemon.runner.add_listener(lambda k, p: emitted.append(p) if k == "telemetry" else None)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        async with Phone(broker.port) as phone:
            await until(lambda: len(phone.on("telemetry")) >= 1)
            n_emitted, n_got = len(emitted), len(phone.on("telemetry"))
            await until(lambda: len(emitted) >= n_emitted + 200, 20)  # 50 clock seconds
            await asyncio.sleep(0.2)
            got = len(phone.on("telemetry")) - n_got
            # 50 s of samples at rest: a heartbeat every 5 s (and any pulse change of 2 bpm),
            # a fraction of the 200 samples the treadmill sent.
            assert 1 <= got <= 40, got
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
