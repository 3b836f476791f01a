"""``retrotread demo --plan NAME --sessions N``: weeks of a plan in a minute or two.

The whole daemon (runner, engine, simulator through real FTMS bytes, session logs, the
coach, the MQTT bridge on a private Mosquitto) runs on a virtual clock that jumps to each
session's day; a phone starts each session over MQTT as Home Assistant would, and a
simulated walker plays the person at the treadmill: now and then they slow the belt at
the console, stop early, report knee pain, or go away for a while. The plan reacts, and
the progress plot at the end shows it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from retrotread.clock import VirtualClock
from retrotread.errors import RetrotreadError

STEP_S = 5.0  # virtual seconds per step while a session runs


class DemoError(RetrotreadError):
    """The demo could not go on (a start refused, a session that never ended)."""


@dataclass(frozen=True)
class Episode:
    """What the simulated walker does in one session."""

    console_kmh: float | None = None  # slow (or speed) the belt in the first backward bout
    stop_early: bool = False  # stop at the console in the last backward bout
    pain: int = 1
    rating: str = "right"
    days_off: int = 0  # extra days away before this session


def story(sessions: int, seed: int = 7) -> list[Episode]:
    """A walker who mostly follows the plan, and sometimes does not (fixed by ``seed``).

    Session 2 and 3: slows the belt to 1.5 km/h (twice in a row: the plan steps back, and
    learns the speed); 6: knee pain 5 afterwards; 9: stops early; 12: back from eleven
    days away; 14 and 15: rated easy. Pain otherwise 1-3.
    """
    rng = random.Random(seed)
    out = []
    for n in range(1, sessions + 1):
        pain = rng.choice([1, 1, 2, 2, 3])
        out.append(
            Episode(
                console_kmh=1.5 if n in (2, 3) else None,
                stop_early=n == 9,
                pain=5 if n == 6 else pain,
                rating="easy" if n in (14, 15) else ("hard" if n == 6 else "right"),
                days_off=11 if n == 12 else 0,
            )
        )
    return out


def schedule(episodes: list[Episode]) -> list[int]:
    """Days after the first Monday: Mondays, Wednesdays and Fridays, and after days away,
    the first of those once they are over."""
    days: list[int] = []
    day = 0
    for ep in episodes:
        if days:
            day += 1
        day += ep.days_off
        while day % 7 not in (0, 2, 4):
            day += 1
        days.append(day)
    return days


def monday(now: datetime) -> datetime:
    """This week's Monday, 09:00 UTC: where the demo's calendar starts."""
    d = now.astimezone(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    return d - timedelta(days=d.weekday())


class WeeksDriver:
    """Virtual time for the daemon, and a wall clock that jumps from session day to day."""

    def __init__(self, clock: VirtualClock, start: datetime) -> None:
        self.clock = clock
        self.start = start
        self.offset_s = 0.0

    def wall(self) -> float:
        return self.start.timestamp() + self.offset_s + self.clock.monotonic()

    def go_to(self, day: float) -> None:
        """The wall clock to ``day`` days after the start (time of day: the start's)."""
        self.offset_s = day * 86400 - self.clock.monotonic()

    async def until(self, pred: Callable[[], bool], limit_s: float, step: float = STEP_S) -> None:
        end = self.clock.monotonic() + limit_s
        while not pred():
            if self.clock.monotonic() >= end:
                raise DemoError(f"not done after {limit_s:g} simulated seconds")
            await self.clock.advance(step)
            await asyncio.sleep(0)  # the broker's sockets


async def walk_weeks(
    daemon: Any,
    phone: Any,
    driver: WeeksDriver,
    *,
    walker: str,
    plan: str,
    episodes: list[Episode],
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Walk each episode on Mondays, Wednesdays and Fridays; one line per session."""
    runner, sim = daemon.runner, daemon.sim
    done: list[dict[str, Any]] = []

    async def command(payload: dict[str, Any]) -> dict[str, Any]:
        cid = await phone.send(payload)
        await driver.until(lambda: cid in phone.results, 600, step=0.05)
        result: dict[str, Any] = phone.results[cid]
        return result

    await driver.until(
        lambda: daemon.treadmill.is_connected and daemon.bridge.connected, 600, step=0.1
    )
    for i, (day, ep) in enumerate(zip(schedule(episodes), episodes, strict=True)):
        driver.go_to(day)
        first = i == 0
        start = (
            {"action": "start", "walker": walker, "plan": plan}
            if first
            else {
                "action": "start",
                "today": True,
            }
        )
        result = await command(start)
        if not result.get("ok"):
            say(f"  start refused: {result.get('error')}")
            continue
        if ep.console_kmh is not None or ep.stop_early:
            backward_now = _in_backward_bout(runner, sim, last=ep.stop_early)
            await driver.until(backward_now, 4 * 3600, step=1.0)
            if ep.stop_early:
                sim.stop_at_console()
            elif ep.console_kmh is not None:
                sim.set_speed_at_console(ep.console_kmh)
        await driver.until(
            lambda: (
                runner.session is None and runner.belt.value == "stopped" and sim.speed_kmh == 0
            ),
            4 * 3600,
        )
        heard = phone.walker_updates.get(walker, 0)
        told = await command(
            {"action": "feedback", "walker": walker, "rating": ep.rating, "pain": ep.pain}
        )
        if told.get("ok"):
            # The status is worked out off the event loop and comes after the answer.
            await driver.until(_took_in(phone, walker, heard, ep), 600, step=0.05)
        status = phone.walkers.get(walker, {})
        log_path = runner.last_log
        line = _line(log_path, ep, status)
        say(line)
        done.append({"log": log_path, "status": status})
    return done


def _took_in(phone: Any, walker: str, heard: int, ep: Episode) -> Callable[[], bool]:
    """True once a status newer than the ``heard``-th carries this session's feedback."""

    def check() -> bool:
        status = phone.walkers.get(walker, {})
        return bool(
            phone.walker_updates.get(walker, 0) > heard
            and status.get("last_rating") == ep.rating
            and status.get("last_pain") == ep.pain
        )

    return check


def _in_backward_bout(runner: Any, sim: Any, *, last: bool) -> Callable[[], bool]:
    """True once the first (or last) backward bout is under way, the belt up to speed."""

    def check() -> bool:
        s = runner.session
        step = getattr(s, "step", None)
        if step is None or getattr(step, "direction", None) != "backward":
            return False
        phases = s.profile.phase
        backs = [k for k, p in enumerate(phases) if p.direction == "backward"]
        target = backs[-1] if last else backs[0]
        return bool(
            step.phase_index == target
            and step.state == "running"
            and sim.speed_kmh > 0.5
            and step.phase_remaining_s < 0.6 * phases[target].duration_s
        )

    return check


def _line(log_path: Path | None, ep: Episode, status: dict[str, Any]) -> str:
    from retrotread.coach.feedback import read_feedback
    from retrotread.session.log import read_session

    if log_path is None:
        return "  (no log)"
    log = read_session(log_path)
    header = log.header or {}
    plan = header.get("plan") or {}
    started = str(header.get("started_at", ""))[:10]
    back = sum(
        p["duration_s"]
        for p in header.get("profile", {}).get("phase", [])
        if p["direction"] == "backward"
    )
    what = []
    if ep.console_kmh is not None:
        what.append(f"slowed to {ep.console_kmh:g} at the console")
    if ep.stop_early:
        what.append("stopped early")
    if ep.days_off:
        what.append(f"after {ep.days_off} days away")
    fb = read_feedback(log_path)
    what.append(f"{fb.rating}, pain {fb.pain_after}")
    nxt = (status.get("why") or [""])[0]
    return (
        f"  {started}  {plan.get('name')} {plan.get('stage')} {plan.get('level')}: "
        f"{back / 60:.1f} min backward at {plan.get('speed_kmh')} km/h, {log.outcome}"
        f" ({'; '.join(what)})\n      next: {nxt}"
    )
