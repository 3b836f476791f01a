"""The session runner: drives the treadmill from the stepping engine, under SPEC.md §2.

One session at a time. The engine (pure) says what the setpoints should be; the runner
writes only changed setpoints through the FTMS client, confirms them from telemetry and
status, and enforces every walker-safety rule: stop pre-empts everything, the walker's
console changes are never fought, the treadmill's own stop is final, speed-locked
firmware stops the session, link loss pauses and waits for resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from retrotread import __version__
from retrotread.clock import Clock
from retrotread.errors import ControlError, LinkError, RetrotreadError
from retrotread.ftms.status import StatusOp, TrainingStatus
from retrotread.link.events import (
    BadFrame,
    LinkDown,
    LinkEvent,
    LinkUp,
    RawFrame,
    StatusChanged,
    Telemetry,
    TrainingChanged,
)
from retrotread.link.ftms_client import FtmsTreadmill
from retrotread.profiles.model import Limits
from retrotread.service.watch import SetpointWatch, Verdict
from retrotread.session.log import SessionLogWriter

log = logging.getLogger(__name__)

Quantity = Literal["speed", "incline"]
Outcome = Literal[
    "completed", "finished_early", "stopped", "stopped_by_treadmill", "interrupted", "error"
]
OutputListener = Callable[[str, dict[str, Any]], None]
"""Called with ("telemetry" | "event" | "state", payload); must not block or raise."""


class RunnerError(RetrotreadError):
    """A command that does not fit the runner's state; the message is for the user."""


class Safety(Limits, Protocol):
    """The profile limits plus how long a mismatch may last before it means something."""

    @property
    def settle_s(self) -> float: ...


@dataclass
class Session:
    """Everything about the session in progress."""

    session_id: str
    profile: Any
    engine: Any
    log: SessionLogWriter
    t0: float
    started_at: datetime
    belt: Literal["stopped", "running", "paused"] = "stopped"
    outcome: Outcome | None = None
    outcome_message: str = ""
    interrupted: bool = False
    awaiting_reconnect_resume: bool = False
    sent: dict[Quantity, float | None] = field(
        default_factory=lambda: {"speed": None, "incline": None}
    )
    sent_at: dict[Quantity, float] = field(default_factory=lambda: {"speed": 0.0, "incline": 0.0})
    overridden: set[Quantity] = field(default_factory=set)
    phase_index: int = -1
    last_remaining: int = -1
    step: Any = None
    distance_m: float = 0.0
    _device_distance: float | None = None
    _distance_offset: float = 0.0
    energy_kcal: int | None = None
    backward_s: float = 0.0
    forward_s: float = 0.0
    max_speed: float = 0.0
    max_incline: float = 0.0
    last_sample_t: float | None = None
    overrides: int = 0
    interruptions: int = 0
    heart_rates: list[int] = field(default_factory=list)


class SessionRunner:
    """Runs one walking session at a time against an FTMS treadmill."""

    def __init__(
        self,
        treadmill: FtmsTreadmill,
        clock: Clock,
        *,
        safety: Safety,
        sessions_dir: Path,
        engine_factory: Callable[..., Any],
        on_reconnect: Literal["pause", "stop"] = "pause",
        tick_s: float = 0.25,
        start_timeout_s: float = 15.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.treadmill = treadmill
        self.clock = clock
        self.safety = safety
        self.sessions_dir = sessions_dir
        self.engine_factory = engine_factory
        self.on_reconnect = on_reconnect
        self.tick_s = tick_s
        self.start_timeout_s = start_timeout_s
        self.wall = wall
        self.session: Session | None = None
        self.last_outcome: Outcome | None = None
        self.last_log: Path | None = None
        self.last_profile: Any = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._listeners: list[OutputListener] = []
        self._watch: dict[Quantity, SetpointWatch] = {}
        self._belt_running = asyncio.Event()
        treadmill.add_listener(self._on_link_event)

    # ------------------------------------------------------------------ outputs

    def add_listener(self, listener: OutputListener) -> None:
        self._listeners.append(listener)

    def _publish(self, kind: str, payload: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, payload)
            except Exception:
                log.exception("output listener failed")

    def _ts(self) -> float:
        return round(self.wall(), 3)

    def event(self, kind: str, message: str, **extra: Any) -> None:
        """Publish and log one event (SPEC.md §3 event types)."""
        payload = {"ts": self._ts(), "type": kind, "message": message, **extra}
        s = self.session
        if s is not None:
            payload.setdefault("session_id", s.session_id)
            s.log.record("event", self.clock.monotonic(), event=kind, message=message, **extra)
        self._publish("event", payload)

    def log_command(self, command: dict[str, Any]) -> None:
        """Record a received command in the running session's log (SPEC.md §5 ``cmd``)."""
        s = self.session
        if s is not None and not s.log.closed:
            s.log.record("cmd", self.clock.monotonic(), **command)

    def state_name(self) -> str:
        s = self.session
        if s is None:
            if not self.treadmill.is_connected:
                return "disconnected"
            if self.last_outcome in ("stopped", "stopped_by_treadmill"):
                return "stopped"
            return "error" if self.last_outcome == "error" else "idle"
        if s.outcome is not None:
            return "stopped"
        if s.step is None:
            return "running"
        state = str(s.step.state)
        return {"completed": "finishing"}.get(state, state)

    def state(self) -> dict[str, Any]:
        """The retained ``state`` payload (SPEC.md §3)."""
        s = self.session
        caps = self.treadmill.capabilities
        step = s.step if s else None
        treadmill = None
        if caps is not None:
            treadmill = {
                "name": caps.name,
                "address": caps.address,
                "speed_range": [caps.speed_range.minimum, caps.speed_range.maximum]
                if caps.speed_range
                else None,
                "incline_range": [caps.incline_range.minimum, caps.incline_range.maximum]
                if caps.incline_range
                else None,
            }
        profile = s.profile if s else self.last_profile
        return {
            "state": self.state_name(),
            "connected": self.treadmill.is_connected,
            "profile": getattr(profile, "name", None),
            "phase": getattr(step, "phase_name", None),
            "phase_index": getattr(step, "phase_index", None),
            "phase_remaining_s": round(step.phase_remaining_s, 1) if step else None,
            "session_id": s.session_id if s else None,
            "treadmill": treadmill,
        }

    def _publish_state(self) -> None:
        payload = self.state()
        if self.session is not None:
            self.session.log.record("state", self.clock.monotonic(), **payload)
        self._publish("state", payload)

    # ------------------------------------------------------------------ commands

    @property
    def busy(self) -> bool:
        return self.session is not None

    async def start(self, profile: Any) -> str:
        """Start ``profile`` (already validated against the limits); returns the session id."""
        if self.session is not None:
            raise RunnerError(
                f"a session is already running ({self.session.profile.name}); stop it first"
            )
        if not self.treadmill.is_connected or self.treadmill.capabilities is None:
            raise RunnerError("the treadmill is not connected")
        caps = self.treadmill.capabilities
        if not caps.can_set_speed:
            raise RunnerError("this treadmill does not accept speed targets over FTMS")
        now = self.clock.monotonic()
        started = datetime.fromtimestamp(self.wall(), UTC)
        engine = self.engine_factory(profile, caps, now)
        writer = SessionLogWriter.create(self.sessions_dir, started, profile.name, t0=now)
        sid = f"{started.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        session = Session(sid, profile, engine, writer, now, started)
        writer.header(
            session_id=sid,
            started_at=started.isoformat().replace("+00:00", "Z"),
            profile=_dump(profile),
            limits=_dump(self.safety),
            treadmill=caps.to_dict(),
            version=__version__,
        )
        self.session = session
        self.last_profile = profile
        self.last_log = writer.path
        self._watch = {
            "speed": SetpointWatch(
                "speed", _tolerance(caps.speed_range, 0.15), self.safety.settle_s
            ),
            "incline": SetpointWatch(
                "incline", _tolerance(caps.incline_range, 0.3), self.safety.settle_s
            ),
        }
        self._task = asyncio.create_task(self._run(session), name=f"session-{sid}")
        return sid

    async def stop(self) -> None:
        """Stop the belt now, ahead of everything queued, and end the session."""
        s = self.session
        if s is not None:
            self._end(s, "stopped", "stopped by command")
        if s is not None:
            s.belt = "stopped"
        if self.treadmill.is_connected:
            await self.treadmill.stop()
        elif s is None:
            raise RunnerError("the treadmill is not connected")
        self._wake.set()

    def _require(self, action: str) -> Session:
        s = self.session
        if s is None or s.outcome is not None:
            raise RunnerError(f"nothing to {action}: no session is running")
        if not self.treadmill.is_connected and action != "pause":
            raise RunnerError(f"cannot {action}: the treadmill is not connected")
        return s

    async def pause(self) -> None:
        s = self._require("pause")
        # A turn with a turn speed keeps the belt moving: that one can still be paused.
        if s.step is not None and (
            s.step.state == "paused" or (s.step.state == "turning" and s.belt != "running")
        ):
            raise RunnerError("already paused")
        s.engine.pause(self.clock.monotonic())
        await self._apply_now(s)

    async def resume(self) -> None:
        s = self._require("resume")
        state = s.step.state if s.step is not None else "running"
        if state not in ("paused", "turning"):
            raise RunnerError("not paused: nothing to resume")
        s.awaiting_reconnect_resume = False
        s.engine.resume(self.clock.monotonic())
        await self._apply_now(s)

    async def skip(self) -> None:
        s = self._require("skip")
        s.engine.skip(self.clock.monotonic())
        await self._apply_now(s)

    async def finish(self) -> None:
        s = self._require("finish")
        s.engine.finish(self.clock.monotonic())
        await self._apply_now(s)

    async def set(self, speed_kmh: float | None, incline_pct: float | None) -> None:
        s = self._require("set")
        caps = self.treadmill.capabilities
        if speed_kmh is not None and speed_kmh > self.safety.max_speed_kmh:
            raise RunnerError(
                f"speed_kmh {speed_kmh:g} is above the safety limit of "
                f"{self.safety.max_speed_kmh:g}"
            )
        if incline_pct is not None:
            if caps is None or not caps.can_set_incline:
                raise RunnerError("this treadmill does not accept incline targets")
            if incline_pct > self.safety.max_incline_pct:
                raise RunnerError(
                    f"incline_pct {incline_pct:g} is above the safety limit of "
                    f"{self.safety.max_incline_pct:g}"
                )
        s.engine.set_manual(self.clock.monotonic(), speed_kmh=speed_kmh, incline_pct=incline_pct)
        for q, v in (("speed", speed_kmh), ("incline", incline_pct)):
            if v is not None:
                s.overridden.discard(q)
        await self._apply_now(s)

    async def _apply_now(self, s: Session) -> None:
        self._wake.set()
        await asyncio.sleep(0)

    async def wait_finished(self) -> Outcome | None:
        task = self._task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        return self.last_outcome

    async def shutdown(self, timeout_s: float = 10.0) -> None:
        """SIGTERM path: stop the belt, close the log with its footer, within ``timeout_s``."""
        s = self.session
        if s is None:
            return
        self._end(s, "stopped", "the daemon is shutting down")
        self._wake.set()
        task = self._task
        if task is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # ------------------------------------------------------------------ the loop

    def _end(self, s: Session, outcome: Outcome, message: str) -> None:
        if s.outcome is None:
            s.outcome = outcome
            s.outcome_message = message

    async def _run(self, s: Session) -> None:
        try:
            self.event(
                "session_started",
                f"Starting {s.profile.title or s.profile.name}.",
                profile=s.profile.name,
            )
            await self._start_belt(s, None)
            if s.outcome is None:
                # Phase time and ramps start when the belt actually runs (after the
                # treadmill's own start countdown), not when the command was accepted.
                caps = self.treadmill.capabilities
                s.engine = self.engine_factory(s.profile, caps, self.clock.monotonic())
                await self._loop(s)
        except asyncio.CancelledError:
            self._end(s, "interrupted", "cancelled")
            raise
        except Exception as exc:  # when in doubt, the belt stops
            log.exception("session failed")
            self._end(s, "error", f"internal error: {exc}")
        finally:
            await self._finish(s)

    async def _loop(self, s: Session) -> None:
        while s.outcome is None:
            now = self.clock.monotonic()
            step = s.engine.tick(now)
            s.step = step
            self._emit_engine_events(s, step)
            if step.state == "completed":
                self._end(
                    s,
                    "finished_early" if getattr(step, "finished_early", False) else "completed",
                    "profile complete",
                )
                break
            try:
                await self._apply(s, step)
            except LinkError as exc:
                log.info("command not sent, link down: %s", exc)
            except ControlError as exc:
                self.event("error", f"The treadmill refused a command: {exc}")
                self._end(s, "error", str(exc))
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick_s * 4):
                    await self._sleep_or_wake()

    async def _sleep_or_wake(self) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(self.tick_s))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _emit_engine_events(self, s: Session, step: Any) -> None:
        for ev in getattr(step, "events", ()) or ():
            kind = str(ev.type)
            extra = {k: v for k, v in dict(getattr(ev, "data", {}) or {}).items()}
            if kind == "phase_started":
                s.log.sync()
                self._watch["speed"].reset()
                self._watch["incline"].reset()
                s.overridden.clear()
            if kind == "completed":
                continue
            self.event(kind, str(ev.message), **extra)
        remaining = int(getattr(step, "phase_remaining_s", 0.0)) // 5 * 5
        if getattr(step, "phase_index", None) != s.phase_index or remaining != s.last_remaining:
            # Every 5 s of phase time: the retained state carries the time left.
            s.phase_index = step.phase_index
            s.last_remaining = remaining
            self._publish_state()

    async def _apply(self, s: Session, step: Any) -> None:
        if not self.treadmill.is_connected:
            return
        if s.awaiting_reconnect_resume:
            return
        caps = self.treadmill.capabilities
        assert caps is not None
        turn_running = step.state == "turning" and step.target_speed_kmh
        want_running = step.state in ("running", "finishing") or bool(turn_running)
        if not want_running:
            if s.belt == "running":
                s.belt = "paused"  # before the write: its status echo may come first
                self._forget_sent(s)
                await self.treadmill.pause()
                self._publish_state()
            return
        if s.belt != "running":
            await self._start_belt(s, step)
            if s.outcome is not None:
                return
        now = self.clock.monotonic()
        if "speed" not in s.overridden and step.target_speed_kmh is not None:
            await self._send(s, "speed", step.target_speed_kmh, now)
        if (
            "incline" not in s.overridden
            and step.target_incline_pct is not None
            and caps.can_set_incline
        ):
            await self._send(s, "incline", step.target_incline_pct, now)

    async def _send(self, s: Session, q: Quantity, value: float, now: float) -> None:
        last = s.sent[q]
        if last is not None and abs(last - value) < 1e-9:
            return
        if last is not None:
            # Defence in depth behind the engine: on the wire, one quantity never changes
            # by more than its step, nor more often than step_interval_s (SPEC.md §2).
            if now - s.sent_at[q] < self.safety.step_interval_s - 1e-9:
                return
            grid = getattr(getattr(s.engine, "device", None), q, None)
            step = grid.step / grid.div if grid is not None else self._step_limit(q)
            if abs(value - last) > step + 1e-9:
                value = round(last + (step if value > last else -step), 2)
        s.sent_at[q] = now
        # Recorded before the write: the treadmill's status echo of this very target can
        # arrive before the Control Point indication (FTMS.md §8.3 rule 8).
        s.sent[q] = value
        self._watch[q].commanded(value, now)
        if q == "speed":
            await self.treadmill.set_speed(value)
        else:
            await self.treadmill.set_incline(value)

    def _step_limit(self, q: Quantity) -> float:
        return self.safety.speed_step_kmh if q == "speed" else self.safety.incline_step_pct

    def _forget_sent(self, s: Session) -> None:
        s.sent = {"speed": None, "incline": None}
        self._watch["speed"].reset()
        self._watch["incline"].reset()

    async def _start_belt(self, s: Session, step: Any) -> None:
        """FTMS Start/Resume; a resume first sets the low restart speed so nothing jumps."""
        if s.belt == "paused" and step is not None and step.target_speed_kmh is not None:
            s.sent["speed"] = step.target_speed_kmh
            s.sent_at["speed"] = self.clock.monotonic()
            self._watch["speed"].commanded(step.target_speed_kmh, self.clock.monotonic())
            await self.treadmill.set_speed(step.target_speed_kmh)
        self._belt_running.clear()
        s.belt = "running"
        await self.treadmill.start()
        self._publish_state()
        # FTMS.md §8.4 step 5: wait for the countdown before writing speeds.
        try:
            async with asyncio.timeout(self.start_timeout_s):
                while not self._belt_running.is_set() and s.outcome is None:
                    self._wake.clear()  # or every telemetry sample would make this spin
                    await self._sleep_or_wake()
        except TimeoutError:
            self.event("error", "The belt did not start.")
            self._end(s, "error", "the belt did not start after FTMS Start")

    # ------------------------------------------------------------------ link events

    def _on_link_event(self, event: LinkEvent) -> None:
        s = self.session
        if isinstance(event, RawFrame):
            if s is not None and not s.log.closed:
                s.log.frame(event.direction, event.t, event.char, event.data)
            return
        if isinstance(event, Telemetry):
            self._on_telemetry(s, event)
        elif isinstance(event, StatusChanged):
            self._on_status(s, event)
        elif isinstance(event, TrainingChanged):
            if event.training.status in (TrainingStatus.MANUAL_MODE, TrainingStatus.OTHER):
                self._belt_running.set()
        elif isinstance(event, LinkDown):
            self._belt_running.clear()
            if s is not None and s.outcome is None:
                s.interrupted = True
                s.interruptions += 1
                s.engine.pause(self.clock.monotonic())
                s.belt = "stopped"
                self._forget_sent(s)
                self.event(
                    "link_lost", f"Lost the treadmill: {event.reason}. Waiting for it to come back."
                )
            self._publish_state()
        elif isinstance(event, LinkUp):
            if s is not None and s.outcome is None and s.interrupted:
                s.awaiting_reconnect_resume = self.on_reconnect == "pause"
                self.event(
                    "link_restored",
                    "The treadmill is back. The session is paused: send resume to go on."
                    if self.on_reconnect == "pause"
                    else "The treadmill is back; the session was stopped.",
                )
                asyncio.get_running_loop().create_task(self._after_reconnect(s))
            self._publish_state()
        elif isinstance(event, BadFrame) and s is not None:
            s.log.record("event", event.t, event="bad_frame", message=str(event.error))
        self._wake.set()

    async def _after_reconnect(self, s: Session) -> None:
        """SPEC.md §2: on reconnect the belt is paused (or stopped) — never restarted by us."""
        try:
            if self.on_reconnect == "stop":
                self._end(s, "interrupted", "link lost; on_reconnect = stop")
                await self.treadmill.stop()
            else:
                await self.treadmill.pause()
        except (ControlError, LinkError) as exc:
            log.info("after reconnect: %s", exc)  # a belt already stopped answers 0x04
        self._wake.set()

    def _on_telemetry(self, s: Session | None, event: Telemetry) -> None:
        r = event.record
        if r.speed_kmh is not None and r.speed_kmh > 0:
            self._belt_running.set()
        step = s.step if s is not None else None
        payload = {
            "ts": self._ts(),
            "session_id": s.session_id if s else None,
            "elapsed_s": round(event.t - s.t0, 2) if s else None,
            "speed_kmh": r.speed_kmh,
            "incline_pct": r.incline_pct,
            "distance_m": None,
            "target_speed_kmh": getattr(step, "target_speed_kmh", None),
            "target_incline_pct": getattr(step, "target_incline_pct", None),
            "phase": getattr(step, "phase_name", None),
            "direction": getattr(step, "direction", None),
            "heart_rate_bpm": r.heart_rate_bpm or None,
            "energy_kcal": r.energy_kcal,
        }
        if s is not None and s.outcome is None:
            self._account(s, event)
            payload["distance_m"] = round(s.distance_m, 1)
            s.log.record("telemetry", event.t, **{k: v for k, v in payload.items() if k != "ts"})
            if s.belt == "running" and not s.awaiting_reconnect_resume:
                self._check_following(s, event)
        elif r.distance_m is not None:
            payload["distance_m"] = float(r.distance_m)
        self._publish("telemetry", payload)

    def _account(self, s: Session, event: Telemetry) -> None:
        r = event.record
        if r.distance_m is not None:
            d = float(r.distance_m)
            if s._device_distance is None:
                s._distance_offset = -d
            elif d < s._device_distance:  # the console reset its counter
                s._distance_offset += s._device_distance
            s._device_distance = d
            s.distance_m = max(s.distance_m, d + s._distance_offset)
        if s.last_sample_t is not None and r.speed_kmh:
            dt = min(event.t - s.last_sample_t, 5.0)
            if r.distance_m is None:
                s.distance_m += r.speed_kmh / 3.6 * dt
            if getattr(s.step, "direction", "forward") == "backward":
                s.backward_s += dt
            else:
                s.forward_s += dt
        s.last_sample_t = event.t
        s.max_speed = max(s.max_speed, r.speed_kmh or 0.0)
        s.max_incline = max(s.max_incline, r.incline_pct or 0.0)
        if r.energy_kcal is not None:
            s.energy_kcal = r.energy_kcal
        if r.heart_rate_bpm:
            s.heart_rates.append(r.heart_rate_bpm)

    def _check_following(self, s: Session, event: Telemetry) -> None:
        r = event.record
        for q, actual in (("speed", r.speed_kmh), ("incline", r.incline_pct)):
            if actual is None or q in s.overridden:
                continue
            verdict = self._watch[q].observed(actual, event.t)  # type: ignore[index]
            if verdict == Verdict.OVERRIDE:
                self._override(s, q, actual, "it stayed away from the target")  # type: ignore[arg-type]
            elif verdict == Verdict.LOCKED:
                if q == "speed":
                    msg = (
                        "The treadmill answers speed commands with success but the belt does not "
                        "follow (speed-locked firmware). Stopping."
                    )
                    self.event("error", msg)
                    self._end(s, "error", "speed-locked firmware: the belt ignores speed targets")
                    asyncio.get_running_loop().create_task(self._stop_quietly())
                else:
                    self._override(s, "incline", actual, "the incline does not follow")

    def _override(self, s: Session, q: Quantity, value: float, why: str) -> None:
        if q in s.overridden:
            return
        s.overridden.add(q)
        s.overrides += 1
        s.engine.override(q, actual=value)
        self._watch[q].reset()
        unit = "km/h" if q == "speed" else "%"
        self.event(
            "override",
            f"{q.capitalize()} changed at the treadmill to {value:g} {unit}; leaving {q} alone "
            "for the rest of this phase.",
            quantity=q,
            value=value,
            reason=why,
        )

    def _on_status(self, s: Session | None, event: StatusChanged) -> None:
        st = event.status
        if s is None or s.outcome is not None:
            return
        op = st.op
        now = event.t
        if op == StatusOp.STOPPED_BY_SAFETY_KEY:
            self.event(
                "stopped_by_treadmill", "Safety key pulled: session over.", reason="safety_key"
            )
            self._end(s, "stopped_by_treadmill", "safety key pulled")
            s.belt = "stopped"
        elif op == StatusOp.STOPPED_OR_PAUSED_BY_USER:
            action = st.values.get("control")
            ours = s.belt == ("stopped" if action == "stop" else "paused")
            if action == "stop" and not ours:
                self.event(
                    "stopped_by_treadmill",
                    "Stopped at the treadmill: session over.",
                    reason="console_stop",
                )
                self._end(s, "stopped_by_treadmill", "stopped at the treadmill")
                s.belt = "stopped"
            elif action == "pause" and not ours:
                s.engine.pause(now)
                s.belt = "paused"
                self._forget_sent(s)
                self.event("cue", "Paused at the treadmill. Send resume to go on.")
        elif op == StatusOp.CONTROL_PERMISSION_LOST:
            self.event(
                "stopped_by_treadmill",
                "The treadmill took control back: session over.",
                reason="control_lost",
            )
            self._end(s, "stopped_by_treadmill", "control permission lost")
        elif op == StatusOp.TARGET_SPEED_CHANGED and s.belt == "running":
            v = st.values.get("target_speed_kmh")
            if isinstance(v, float | int) and not self._watch["speed"].is_our_echo(float(v), now):
                self._override(s, "speed", float(v), "changed at the console")
        elif op == StatusOp.TARGET_INCLINE_CHANGED and s.belt == "running":
            v = st.values.get("target_incline_pct")
            if isinstance(v, float | int) and not self._watch["incline"].is_our_echo(float(v), now):
                self._override(s, "incline", float(v), "changed at the console")
        self._wake.set()

    async def _stop_quietly(self) -> None:
        with contextlib.suppress(ControlError, LinkError):
            await self.treadmill.stop()

    # ------------------------------------------------------------------ the end

    async def _finish(self, s: Session) -> None:
        outcome: Outcome = s.outcome or "error"
        stopped_by_treadmill = outcome == "stopped_by_treadmill"
        # The treadmill's own stop is final: we never send anything after it. Otherwise the
        # belt is stopped (best effort, bounded) before the log is closed.
        try:
            if not stopped_by_treadmill and s.belt != "stopped" and self.treadmill.is_connected:
                try:
                    async with asyncio.timeout(5):
                        await self.treadmill.stop()
                except (ControlError, LinkError, TimeoutError) as exc:
                    log.warning("could not stop the belt at session end: %s", exc)
        finally:
            self._close(s, outcome)

    def _close(self, s: Session, outcome: Outcome) -> None:
        """Footer, fsync, state: runs even when the stop above was cancelled."""
        # A session completed after a reconnect is still completed; the summary counts
        # the interruptions. One stopped while the treadmill was away was interrupted.
        if outcome == "stopped" and s.interrupted and not self.treadmill.is_connected:
            outcome = "interrupted"
        summary = self._summary(s)
        self.event(
            "session_finished",
            _finish_message(outcome, s.outcome_message),
            outcome=outcome,
            summary=summary,
        )
        s.log.footer(outcome, summary)
        self.last_outcome = outcome
        self.session = None
        self._publish_state()

    def _summary(self, s: Session) -> dict[str, Any]:
        duration = self.clock.monotonic() - s.t0
        hr = s.heart_rates
        return {
            "duration_s": round(duration, 1),
            "distance_m": round(s.distance_m, 1),
            "backward_s": round(s.backward_s, 1),
            "forward_s": round(s.forward_s, 1),
            "max_speed_kmh": round(s.max_speed, 2),
            "max_incline_pct": round(s.max_incline, 1),
            "energy_kcal": s.energy_kcal,
            "mean_heart_rate_bpm": round(sum(hr) / len(hr)) if hr else None,
            "phases_reached": max(s.phase_index + 1, 0),
            "overrides": s.overrides,
            "interruptions": s.interruptions,
            "message": s.outcome_message,
        }


def _finish_message(outcome: str, detail: str) -> str:
    text = {
        "completed": "Session complete. Well walked!",
        "finished_early": "Session finished early after the cool-down.",
        "stopped": "Session stopped.",
        "stopped_by_treadmill": "Session ended at the treadmill.",
        "interrupted": "Session interrupted.",
        "error": "Session ended with an error.",
    }[outcome]
    return f"{text} ({detail})" if detail and outcome not in ("completed",) else text


def _tolerance(r: Any, default: float) -> float:
    """How far telemetry may be from the target and still count as on target."""
    if r is None:
        return default
    return max(float(r.increment) * 1.5, default)


def _dump(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if hasattr(obj, "__dict__"):
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    return obj
