"""A session runner with a simulated treadmill and a simulated strap on one walker's heart,
each on its own link and supervisor, on a virtual clock."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrotread.backoff import Backoff
from retrotread.clock import VirtualClock
from retrotread.config import SafetyConfig
from retrotread.ftms.control import decode_control_request
from retrotread.link.ftms_client import FtmsTreadmill
from retrotread.link.strap import HeartRateStrap
from retrotread.service.runner import SessionRunner
from retrotread.service.supervisor import Supervisor
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.physiology import Walker
from retrotread.sim.safety_check import Journal, Violation, check
from retrotread.sim.strap import SimStrap, StrapFaults
from retrotread.sim.treadmill import SimConfig, SimTreadmill
from tests.runhelpers import RunRig
from tests.test_safety_regressions import rules


@dataclass(kw_only=True)
class HrRig(RunRig):
    walker: Walker
    strap_sim: SimStrap
    strap: HeartRateStrap
    strap_supervisor: Supervisor
    safety: SafetyConfig

    def cap_events(self) -> list[dict[str, Any]]:
        return self.events("hr_cap")

    def cap_kinds(self) -> list[str]:
        return [e["state"] for e in self.cap_events()]

    def first(self, state: str) -> float:
        """The clock time of the first ``hr_cap`` event in ``state``."""
        return float(next(e["_t"] for e in self.cap_events() if e["state"] == state))

    def setpoints(self, q: str, since: float = 0.0) -> list[tuple[float, float]]:
        """(time, value) of the speed or incline setpoints the treadmill accepted."""
        op = 0x02 if q == "speed" else 0x03
        key = "target_speed_kmh" if q == "speed" else "target_incline_pct"
        out = []
        for w in self.sim.accepted:
            if w.data[:1] == bytes([op]) and w.t >= since:
                out.append((w.t, float(decode_control_request(w.data).values[key])))  # type: ignore[arg-type]
        return out

    def violations(self, journal: Journal) -> list[Violation]:
        """SPEC.md §2 judged from the treadmill's accepted writes (the safety checker)."""
        journal.statuses = list(self.sim.status_sent)
        journal.link_ups = list(self.sim.link_ups)
        return check(rules(self, self.safety), self.sim.accepted, journal, self.clock.monotonic())


@asynccontextmanager
async def hr_rig(
    tmp_path: Path,
    *,
    cap: int | None = 115,
    walker: Walker | None = None,
    config: SimConfig | None = None,
    strap_faults: StrapFaults | None = None,
    turn_countdown_s: float | None = 5.0,
    **safety: Any,
) -> AsyncIterator[HrRig]:
    clock = VirtualClock()
    w = walker or Walker()
    sim = SimTreadmill(config or SimConfig(pre_workout_s=1.0), walker=w)
    strap_sim = SimStrap(w, faults=strap_faults)
    sims = [
        asyncio.create_task(sim.run(clock, tick_s=0.05)),
        asyncio.create_task(strap_sim.run(clock, tick_s=0.05)),
    ]
    treadmill = FtmsTreadmill(InProcessTransport(sim), clock)
    supervisor = Supervisor(
        treadmill, clock, silence_timeout_s=3.0, backoff=Backoff(1.0, 4.0, random.Random(1))
    )
    strap = HeartRateStrap(InProcessTransport(strap_sim), clock)
    strap_supervisor = Supervisor(
        strap,
        clock,
        silence_timeout_s=3.0,
        backoff=Backoff(1.0, 4.0, random.Random(2)),
        what="heart-rate strap",
    )
    limits = SafetyConfig(max_heart_rate_bpm=cap, **safety)
    runner = SessionRunner(
        treadmill,
        clock,
        safety=limits,
        sessions_dir=tmp_path / "sessions",
        turn_countdown_s=turn_countdown_s,
    )
    runner.attach_strap(strap)
    rig = HrRig(
        clock,
        sim,
        treadmill,
        supervisor,
        runner,
        walker=w,
        strap_sim=strap_sim,
        strap=strap,
        strap_supervisor=strap_supervisor,
        safety=limits,
    )

    def listen(kind: str, payload: dict[str, Any]) -> None:
        rig.outputs.append((kind, {**payload, "_t": clock.monotonic()}))
        if kind == "event" and payload["type"] == "phase_started":
            w.backward = payload["direction"] == "backward"  # the walker follows the cues

    runner.add_listener(listen)
    tasks = [
        asyncio.create_task(runner.run(), name="session-runner"),
        asyncio.create_task(supervisor.run()),
        asyncio.create_task(strap_supervisor.run()),
    ]
    try:
        await rig.until(lambda: treadmill.is_connected and strap.is_connected, 10)
        await rig.clock.advance(2.0)  # the first heart-rate readings
        yield rig
    finally:
        await rig.call(runner.shutdown(5))
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await treadmill.disconnect()
        await strap.disconnect()
        for t in sims:
            t.cancel()
        await asyncio.gather(*sims, return_exceptions=True)
