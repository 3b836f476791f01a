"""Helpers to run link-level code against the in-process simulator on a virtual clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from retrotread.clock import VirtualClock
from retrotread.link.events import LinkEvent
from retrotread.link.ftms_client import FtmsTreadmill
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import Faults, SimConfig, SimTreadmill

T = TypeVar("T")


@dataclass
class Rig:
    clock: VirtualClock
    sim: SimTreadmill
    treadmill: FtmsTreadmill
    events: list[LinkEvent] = field(default_factory=list)

    async def drive(self, coro: Coroutine[Any, Any, T], limit_s: float = 30.0) -> T:
        """Run ``coro`` while advancing simulated time in small steps."""
        task = asyncio.ensure_future(coro)
        waited = 0.0
        while not task.done() and waited < limit_s:
            await self.clock.advance(0.01)
            waited += 0.01
        if not task.done():
            task.cancel()
            raise AssertionError(f"still running after {limit_s} simulated seconds")
        return task.result()

    def of(self, kind: type[T]) -> list[T]:
        return [e for e in self.events if isinstance(e, kind)]


@asynccontextmanager
async def rig(
    config: SimConfig | None = None, faults: Faults | None = None, **client: Any
) -> AsyncIterator[Rig]:
    clock = VirtualClock()
    sim = SimTreadmill(config, faults)
    task = asyncio.create_task(sim.run(clock, tick_s=0.01), name="sim")
    treadmill = FtmsTreadmill(InProcessTransport(sim), clock, **client)
    r = Rig(clock, sim, treadmill)
    treadmill.add_listener(r.events.append)
    try:
        yield r
    finally:
        await treadmill.disconnect()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
