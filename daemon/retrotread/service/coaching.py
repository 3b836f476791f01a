"""The coach inside the daemon: plan starts, feedback, the current walker, walker topics.

The pure coach (``retrotread.coach``) decides; this module connects it to the runner and
the outputs. A plan start asks the coach for today's session and hands it to the runner
with the walker's limits and the header metadata (docs/plans.md §6); feedback goes to the
session's sidecar; every change publishes the walker's retained status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from retrotread.coach.coach import Coach
from retrotread.coach.feedback import Feedback as Report
from retrotread.coach.feedback import append_feedback
from retrotread.coach.session import DeviceRanges
from retrotread.coach.walkers import effective_limits
from retrotread.errors import CoachError, ProfileError, RetrotreadError
from retrotread.mqtt.commands import ChooseWalker, CommandError, Feedback, Start
from retrotread.profiles.model import Profile, check_profile

log = logging.getLogger(__name__)

FEEDBACK_WINDOW = timedelta(hours=24)
"""Feedback "after" goes to the walker's latest session if it started within this."""
PENDING_BEFORE = timedelta(hours=2)
"""Pain given "before" with no session running waits this long for the walker's start."""

Listener = Callable[[str, dict[str, Any]], None]
"""Called with ("walker", status) and ("walker_current", status); must not raise."""


class Coaching:
    """Plan sessions, feedback and walker status for one daemon."""

    def __init__(
        self,
        coach: Coach,
        runner: Any,
        treadmill: Any,
        *,
        wall: Callable[[], float] | None = None,
    ) -> None:
        self.coach = coach
        self.runner = runner
        self.treadmill = treadmill
        self._wall = wall
        self._listeners: list[Listener] = []
        self._running: tuple[str, Path] | None = None  # the walker of the session running
        self._pending: dict[str, tuple[int, datetime]] = {}  # pain before, when given
        self._last: dict[str, dict[str, Any]] = {}  # the latest status of each walker
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # one piece of coach work at a time
        self._again: tuple[Profile, Any, dict[str, Any]] | None = None  # the last walker start
        self.current = self._first_walker()
        runner.add_listener(self._on_output)

    # ------------------------------------------------------------------ outputs

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _emit(self, kind: str, payload: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, payload)
            except Exception:
                log.exception("walker listener failed")

    def publish(self, walker: str) -> None:
        """Work out the walker's status away from the event loop, then publish it.

        A year of logs is tens of milliseconds of work: done in a thread, so a running
        belt's setpoints and a stop never wait for it.
        """
        task = asyncio.get_running_loop().create_task(
            self._publish(walker), name=f"walker-status-{walker}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, walker: str) -> None:
        try:
            async with self._lock:
                status = await asyncio.to_thread(self.status, walker)
        except RetrotreadError as exc:  # a broken plan must not cost a session
            log.warning("walker %s: no status: %s", walker, exc)
            return
        self._emit_status(status)

    def _emit_status(self, status: dict[str, Any]) -> None:
        self._last[str(status["walker"]).casefold()] = status
        self._emit("walker", status)
        if str(status["walker"]).casefold() == self.current.casefold():
            self._emit("walker_current", self._current_payload(status))

    async def run(self, every_s: float = 3600.0) -> None:
        """Every walker's status now and every hour (weeks turn, gaps grow, rest days end)."""
        while True:
            for name in self.coach.walker_names():
                await self._publish(name)
            await asyncio.sleep(every_s)

    def payloads(self) -> list[tuple[str, dict[str, Any]]]:
        """The latest status of every walker and of the current one (after a connect)."""
        out: list[tuple[str, dict[str, Any]]] = []
        for name in self.coach.walker_names():
            status = self._last.get(name.casefold())
            if status is None:
                continue  # not worked out yet: published as soon as it is
            out.append(("walker", status))
            if name.casefold() == self.current.casefold():
                out.append(("walker_current", self._current_payload(status)))
        return out

    def _current_payload(self, status: dict[str, Any]) -> dict[str, Any]:
        today = status.get("today") or {}
        return {
            **status,
            "walkers": self.coach.walker_names(),
            "today_backward_min": today.get("backward_min"),
        }

    def status(self, walker: str) -> dict[str, Any]:
        return self.coach.status(walker, self.now(), device=self.device())

    def _on_output(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "event" and payload.get("type") == "session_finished":
            running, self._running = self._running, None
            if running is not None:
                self.publish(running[0])

    # ------------------------------------------------------------------ context

    def now(self) -> datetime:
        wall = self._wall or getattr(self.runner, "wall", None) or time.time
        return datetime.fromtimestamp(wall(), UTC)

    def device(self) -> DeviceRanges | None:
        caps = self.treadmill.capabilities
        if caps is None or caps.speed_range is None:
            return None
        incline = caps.incline_range if caps.can_set_incline else None
        return DeviceRanges(caps.speed_range, incline)

    def _first_walker(self) -> str:
        """The walker of the latest session that names one, else the first configured."""
        names = self.coach.walker_names()
        try:
            records, _ = self.coach.reader.all(self.coach.sessions_dir)
        except OSError:
            records = []
        for r in reversed(records):
            if r.walker is not None:
                match = next((n for n in names if n.casefold() == r.walker.casefold()), None)
                if match is not None:
                    return match
        return names[0]

    def _walker(self, name: str | None) -> str:
        """A named walker, else the current one (what the HA select chose)."""
        try:
            resolved, _ = self.coach.resolve_walker(name if name is not None else self.current)
        except CoachError as exc:
            raise CommandError(str(exc)) from None
        return resolved

    # ------------------------------------------------------------------ commands

    def choose(self, command: ChooseWalker) -> None:
        self.current = self._walker(command.walker)
        self.publish(self.current)

    async def start(self, command: Start, profiles: Callable[[str], Profile]) -> str:
        """Today's session of a plan, or a profile under a walker's limits."""
        walker = self._walker(command.walker)
        if command.profile is not None:
            return await self.start_profile(profiles(command.profile), walker)
        pain = command.pain if command.pain is not None else self._take_pending(walker)
        now = self.now()
        async with self._lock:  # the belt is at rest: this may take the loop a moment
            today = self.coach.today(
                walker, command.plan, now, device=self.device(), pain_before=pain
            )
        header = {"walker": today.walker, "plan": today.header_plan}
        sid: str = await self.runner.start(today.profile, limits=today.limits, header=header)
        self._again = (today.profile, today.limits, header)
        path = self.runner.last_log
        if path is not None:
            self._running = (today.walker, path)
            if pain is not None:
                append_feedback(path, Report(when="before", pain=pain, walker=walker), now)
        self.current = today.walker
        self.publish(today.walker)
        return sid

    async def start_profile(self, profile: Profile, walker: str | None = None) -> str:
        """``profile`` for ``walker`` (else the current one), under their limits."""
        walker = self._walker(walker)
        _, cfg = self.coach.resolve_walker(walker)
        limits = effective_limits(self.coach.safety, cfg)
        device = self.device()
        try:
            check_profile(
                profile,
                limits,
                device.speed if device else None,
                device.incline if device else None,
            )
        except ProfileError as exc:
            raise CommandError(f"for walker {walker!r}: {exc}") from None
        header = {"walker": walker}
        sid: str = await self.runner.start(profile, limits=limits, header=header)
        self._again = (profile, limits, header)
        if self.runner.last_log is not None:
            self._running = (walker, self.runner.last_log)
        self.current = walker
        return sid

    def again(self, profile: Profile) -> tuple[Any, dict[str, Any]] | None:
        """(limits, header) when ``profile`` was last started for a walker: a plain "start"
        (HA's Start button) runs it again as theirs, never under the looser [safety]."""
        if self._again is not None and self._again[0] is profile:
            return self._again[1], self._again[2]
        return None

    def feedback(self, command: Feedback) -> Path | None:
        """Store a report with the walker's session; None when it waits for their start."""
        walker = self._walker(command.walker)
        when = command.when or "after"
        now = self.now()
        report = Report(when=when, rating=command.rating, pain=command.pain, walker=walker)
        if when == "before":
            target = self._running_path(walker)
            if target is None:
                if command.pain is None:
                    raise CommandError(
                        f"walker {walker!r} has no session running: give the rating after it"
                    )
                # Waits for their next start (the HA "pain before" slider, then Start).
                self._pending[walker.casefold()] = (command.pain, now)
                return None
        else:
            target = self._target(walker, now)
            if target is None:
                hours = FEEDBACK_WINDOW.total_seconds() / 3600
                raise CommandError(
                    f"walker {walker!r} has no session in the last {hours:.0f} hours to attach "
                    "this to (pain before a session: 'when': 'before')"
                )
        path = append_feedback(target, report, now)
        self.publish(walker)
        return path

    def _running_path(self, walker: str) -> Path | None:
        if self._running is not None and self._running[0].casefold() == walker.casefold():
            return self._running[1]
        return None

    def _target(self, walker: str, now: datetime) -> Path | None:
        running = self._running_path(walker)
        if running is not None:
            return running
        sessions = self.coach.history(walker)
        if sessions and now - sessions[-1].started_at <= FEEDBACK_WINDOW:
            return sessions[-1].path
        return None

    def _take_pending(self, walker: str) -> int | None:
        pending = self._pending.pop(walker.casefold(), None)
        if pending is None or self.now() - pending[1] > PENDING_BEFORE:
            return None
        return pending[0]
