"""Injected time: one Clock (monotonic, sleep, timer) for the runner, supervisor and simulator."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time in seconds, and sleeps and timers on the same time base."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def timer(self, seconds: float) -> asyncio.Future[None]:
        """A future done ``seconds`` from now; cancel it to drop the timer.

        What a wait with a deadline needs without a task for its sleep: await it in
        ``asyncio.wait`` beside what is awaited, or hang a callback on it.
        """
        ...


def _loop_timer(seconds: float) -> asyncio.Future[None]:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    handle = loop.call_later(max(0.0, seconds), _ring, fut)
    fut.add_done_callback(lambda _: handle.cancel())
    return fut


def _ring(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class RealClock:
    """Wall-clock time."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def timer(self, seconds: float) -> asyncio.Future[None]:
        return _loop_timer(seconds)


class ScaledClock:
    """Real time sped up by ``speedup``: one real second is ``speedup`` clock seconds."""

    def __init__(self, speedup: float) -> None:
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        self.speedup = speedup
        self._origin = time.monotonic()

    def monotonic(self) -> float:
        return self._origin + (time.monotonic() - self._origin) * self.speedup

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speedup)

    def timer(self, seconds: float) -> asyncio.Future[None]:
        return _loop_timer(seconds / self.speedup)


class VirtualClock:
    """Simulated time that only moves when told to; sleepers wake in deadline order.

    ``advance(dt)`` moves time forward, waking each sleeper at its own deadline and
    letting the event loop run in between, so a 10-minute scenario takes milliseconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut = self.timer(seconds)
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()

    def timer(self, seconds: float) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if seconds <= 0:
            fut.set_result(None)
        else:
            heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        return fut

    async def _settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers in order."""
        target = self._now + seconds
        await self._settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            if fut.done():
                continue
            self._now = max(self._now, deadline)
            fut.set_result(None)
            await self._settle()
        self._now = target
        await self._settle()

    async def run_until(self, predicate: object, limit_s: float, step: float = 0.05) -> bool:
        """Advance in ``step`` increments until ``predicate()`` is true or ``limit_s`` passes."""
        assert callable(predicate)
        end = self._now + limit_s
        while self._now < end:
            if predicate():
                return True
            await self.advance(step)
        return bool(predicate())
