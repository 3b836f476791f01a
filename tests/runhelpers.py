"""A session runner on the in-process simulator with a virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrotread.clock import VirtualClock
from retrotread.config import SafetyConfig
from retrotread.link.ftms_client import FtmsTreadmill
from retrotread.profiles.model import Profile
from retrotread.service.runner import SessionRunner
from retrotread.service.supervisor import Backoff, Supervisor
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import Faults, SimConfig, SimTreadmill


def profile(*phases: dict[str, Any], name: str = "test") -> Profile:
    return Profile.model_validate({"name": name, "title": name.title(), "phase": list(phases)})


def phase(
    name: str,
    speed: float,
    duration: float = 60,
    ramp: float = 30,
    incline: float = 0.0,
    direction: str = "forward",
    cue: str = "",
) -> dict[str, Any]:
    return {
        "name": name,
        "speed_kmh": speed,
        "duration_s": duration,
        "ramp_s": ramp,
        "incline_pct": incline,
        "direction": direction,
        "cue": cue,
    }


@dataclass
class RunRig:
    clock: VirtualClock
    sim: SimTreadmill
    treadmill: FtmsTreadmill
    supervisor: Supervisor
    runner: SessionRunner
    outputs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [p for k, p in self.outputs if k == "event" and (kind is None or p["type"] == kind)]

    def telemetry(self) -> list[dict[str, Any]]:
        return [p for k, p in self.outputs if k == "telemetry"]

    async def until(self, pred: Any, limit_s: float = 600.0, step: float = 0.05) -> None:
        ok = await self.clock.run_until(pred, limit_s, step)
        assert ok, f"condition not met within {limit_s} simulated seconds"

    async def call(self, coro: Any, limit_s: float = 30.0) -> Any:
        task = asyncio.ensure_future(coro)
        await self.clock.run_until(task.done, limit_s, 0.01)
        return task.result()


@asynccontextmanager
async def run_rig(
    tmp_path: Path,
    *,
    config: SimConfig | None = None,
    faults: Faults | None = None,
    safety: SafetyConfig | None = None,
    turn_speed_kmh: float | None = None,
    turn_countdown_s: float | None = None,
    on_reconnect: str = "pause",
) -> AsyncIterator[RunRig]:
    clock = VirtualClock()
    sim = SimTreadmill(config or SimConfig(pre_workout_s=1.0), faults)
    sim_task = asyncio.create_task(sim.run(clock, tick_s=0.01))
    treadmill = FtmsTreadmill(InProcessTransport(sim), clock)
    supervisor = Supervisor(treadmill, clock, silence_timeout_s=3.0, backoff=Backoff(1.0, 4.0))
    limits = safety or SafetyConfig()
    runner = SessionRunner(
        treadmill,
        clock,
        safety=limits,
        sessions_dir=tmp_path / "sessions",
        on_reconnect=on_reconnect,  # type: ignore[arg-type]
        turn_speed_kmh=turn_speed_kmh,
        turn_countdown_s=turn_countdown_s,
    )
    rig = RunRig(clock, sim, treadmill, supervisor, runner)
    runner.add_listener(lambda k, p: rig.outputs.append((k, p)))
    runner_task = asyncio.create_task(runner.run(), name="session-runner")
    sup_task = asyncio.create_task(supervisor.run())
    try:
        await rig.until(lambda: treadmill.is_connected, 10)
        yield rig
    finally:
        await rig.call(runner.shutdown(5))
        sup_task.cancel()
        runner_task.cancel()
        await asyncio.gather(sup_task, runner_task, return_exceptions=True)
        await treadmill.disconnect()
        sim_task.cancel()
        await asyncio.gather(sim_task, return_exceptions=True)
