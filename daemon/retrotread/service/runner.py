"""The session runner: one task, one inbox, one belt state machine (SPEC.md §2).

Everything that can change what the belt does (commands, link events, status
notifications, Control Point results, time) arrives in one inbox and is handled one
message at a time by one task; library callbacks only put messages in it. The runner
never waits for the treadmill: it submits Control Point requests and their results come
back as messages, so a stop is acted on at once whatever else is in progress.

``Belt`` is the one truth about the belt. The stepping engine (pure) says what the
setpoints should be; the runner moves the belt between states to match it and writes
setpoints that are limited against what the treadmill is actually doing:

- a setpoint is one step at most from the treadmill's own current target (our last
  acknowledged write, its echo, a console change, or else a reading that has held still),
  and a quantity is written again only ``step_interval_s`` after its last write was
  acknowledged;
- every start or resume writes the low restart speed and waits for its acknowledgement
  before Start/Resume, so the belt never heads back to an old speed;
- a stop is latched until the treadmill confirms it: sent first on reconnect, and the
  person who asked is told the truth when it cannot be delivered;
- nothing but a stop is carried across a disconnect; after a reconnect the belt is
  paused and waits for ``resume``; a belt found running with no session is paused.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from retrotread import __version__
from retrotread.clock import Clock
from retrotread.errors import ConfigError, ControlError, ProfileError, RetrotreadError
from retrotread.ftms import control as cp
from retrotread.ftms.status import StatusOp, TrainingStatus
from retrotread.link.control_point import Superseded
from retrotread.link.events import (
    BadFrame,
    Capabilities,
    LinkDown,
    LinkEvent,
    LinkUp,
    RawFrame,
    StatusChanged,
    Telemetry,
    TrainingChanged,
)
from retrotread.link.ftms_client import FtmsTreadmill
from retrotread.link.strap import HeartRateSample, HeartRateStrap, StrapEvent, StrapUp
from retrotread.profiles.engine import Engine, Quantity, Step
from retrotread.profiles.grid import Grid, device_grids
from retrotread.profiles.hr_governor import HeartRateGovernor
from retrotread.profiles.model import Limits, Profile
from retrotread.service.heart_rate import HeartRateSources, cap_settings
from retrotread.service.stats import SessionStats
from retrotread.service.watch import SetpointWatch, Verdict
from retrotread.session.log import Outcome, SessionLogError, SessionLogWriter

log = logging.getLogger(__name__)

OutputListener = Callable[[str, dict[str, Any]], None]
"""Called with ("telemetry" | "event" | "state", payload); must not block or raise."""

QUANTITIES: tuple[Quantity, ...] = ("speed", "incline")
NOT_REACHABLE = (
    "treadmill not reachable: use its stop button; retrotread will stop it as soon as it is back"
)
ECHO_WINDOW_S = 0.5
"""How long after its acknowledgement a status carrying our value counts as our echo. Real
treadmills send it within 0.1-0.3 s of the write, mostly before the answer (FTMS.md §8.3
rule 8); a longer window would take the walker's own pause just after for ours. A late echo
taken for the walker's is the safe mistake (a pause, a stop, a phase left to the walker)."""
STOP_RETRY_S = 2.0
"""A stop the treadmill refused is sent again this often while the link is up."""
CLOSE_WAIT_S = 5.0
"""How long a finished session waits for the treadmill to confirm the stop."""
STEADY_S = 2.0
"""A reading unchanged for this long (and still coming) stands for a target nobody told us."""
FRESH_S = 1.5
"""A reading older than this is not 'still coming'."""
STILL_S = 10.0
"""With no session, a belt reading 0 for this long is taken as stopped (a countdown is not)."""


class RunnerError(RetrotreadError):
    """A command that does not fit the runner's state; the message is for the user."""


class Safety(Limits, Protocol):
    """The profile limits plus how long a mismatch may last before it means something."""

    @property
    def settle_s(self) -> float: ...


class Belt(enum.StrEnum):
    """What the belt is doing, as far as the runner knows (the one truth)."""

    STOPPED = "stopped"  # at rest, nothing pending (stopped, idle, or paused with no session)
    STARTING = "starting"  # restart speed and Start/Resume on their way; waiting for it to run
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPING = "stopping"
    UNKNOWN = "unknown"  # no link, or connected and waiting for the first sample


Job = Literal["setpoint", "restart_speed", "start", "pause", "stop"]


@dataclass
class _Request:
    """A command from outside; ``future`` gets its result."""

    action: str
    future: asyncio.Future[Any]
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Done:
    """A Control Point request the runner submitted has finished."""

    job: Job
    epoch: int
    quantity: Quantity | None = None
    value: float | None = None
    response: cp.ControlResponse | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.response is not None and self.response.ok


@dataclass
class _Recording:
    """The session log started or stopped being written (disk full, read-only, back).

    What the writer said at that moment: by the time this is handled it may have changed
    again, and each change is told.
    """

    writer: SessionLogWriter
    recording: bool
    problem: str | None
    gap: dict[str, Any] | None

    @staticmethod
    def of(writer: SessionLogWriter) -> _Recording:
        gap = writer.gaps[-1] if writer.recording and writer.gaps else None
        return _Recording(writer, writer.recording, writer.problem, gap)


@dataclass(frozen=True)
class _FromStrap:
    """Something from the heart-rate strap's link (never the treadmill's)."""

    event: StrapEvent


Message = _Request | _Done | _Recording | LinkEvent | _FromStrap


@dataclass
class Session:
    """Everything about the session in progress."""

    session_id: str
    profile: Profile
    limits: Safety
    engine: Engine
    step: Step
    log: SessionLogWriter
    t0: float
    started_at: datetime
    stats: SessionStats = field(default_factory=SessionStats)
    outcome: Outcome | None = None
    outcome_message: str = ""
    close_by: float = math.inf
    resume_requested: bool = True  # start/resume: the engine resumes once the belt runs
    interrupted: bool = False
    overridden: set[Quantity] = field(default_factory=set)
    watch: dict[Quantity, SetpointWatch] = field(default_factory=dict)
    phase_index: int = -1
    last_remaining: int = -1
    governor: HeartRateGovernor | None = None  # heart-rate cap and zones (issue 15)

    @property
    def alive(self) -> bool:
        return self.outcome is None


class SessionRunner:
    """Runs one walking session at a time against an FTMS treadmill (``run`` is its task)."""

    def __init__(
        self,
        treadmill: FtmsTreadmill,
        clock: Clock,
        *,
        safety: Safety,
        sessions_dir: Path,
        on_reconnect: Literal["pause", "stop"] = "pause",
        turn_speed_kmh: float | None = None,
        turn_countdown_s: float | None = None,
        tick_s: float = 0.25,
        start_timeout_s: float = 15.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.treadmill = treadmill
        self.clock = clock
        self.safety = safety
        self.sessions_dir = sessions_dir
        self.on_reconnect = on_reconnect
        self.turn_speed_kmh = turn_speed_kmh
        self.turn_countdown_s = turn_countdown_s
        self.tick_s = tick_s
        self.start_timeout_s = start_timeout_s
        self.wall = wall
        self.session: Session | None = None
        self.last_outcome: Outcome | None = None
        self.last_log: Path | None = None
        self.last_profile: Profile | None = None
        # The belt and what the treadmill is doing, as far as we know.
        self.belt = Belt.UNKNOWN
        self.targets: dict[Quantity, float | None] = {"speed": None, "incline": None}
        self.actual: dict[Quantity, float | None] = {"speed": None, "incline": None}
        self.stop_latched = False
        self._stop_in_flight = False
        self._stop_retry_at = math.inf
        self._stop_waiters: list[asyncio.Future[Any]] = []
        self._idle_waiters: list[asyncio.Future[Any]] = []
        self._start_acked = False
        self._walker_speed: float | None = None  # chosen at the console while Start was out
        self._start_deadline = math.inf
        self._first_sample = False  # connected, waiting for the first Treadmill Data
        self._steady_since: dict[Quantity, float] = {"speed": math.inf, "incline": math.inf}
        self._still_since = math.inf  # the belt's speed has read 0 since then
        self._last_sample_at = -math.inf
        self._training: int | None = None  # the treadmill's Training Status, as last told
        self._walker_in_charge = False  # the console took control: their belt till a start
        self._outstanding: dict[Quantity, bool] = {"speed": False, "incline": False}
        self._written_at: dict[Quantity, float] = {"speed": -math.inf, "incline": -math.inf}
        self._echo: dict[Quantity, tuple[float, float]] = {}  # value, until
        self._control_echo: dict[str, float] = {}  # "pause" | "stop" | "start" -> until
        self._start_request: asyncio.Future[cp.ControlResponse] | None = None
        self._setpoint_request: dict[Quantity, asyncio.Future[cp.ControlResponse]] = {}
        # A console change of a quantity while our write of it was out ("console"), and
        # then our own echo after it ("ours-later"): which target came last.
        self._race: dict[Quantity, str] = {}
        self._epoch = 0  # one per link: results from an earlier link are stale
        # The inbox.
        self._inbox: deque[Message] = deque()
        self._wake = asyncio.Event()
        self._tick_timer: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[OutputListener] = []
        treadmill.add_listener(self._post)
        self.heart = HeartRateSources()

    def attach_strap(
        self, strap: HeartRateStrap, *, stale_after_s: float = 5.0, frozen_after_s: float = 45.0
    ) -> None:
        """Take heart rate from ``strap`` (its own link and supervisor) into the inbox."""
        self.heart.strap_expected = True
        self.heart.stale_after_s = stale_after_s
        self.heart.frozen_after_s = frozen_after_s
        strap.add_listener(lambda event: self._post(_FromStrap(event)))

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
        if not s.alive:
            return "stopped"
        if s.resume_requested or self.belt == Belt.STARTING:
            return "running"
        state = s.step.state
        return "finishing" if state == "completed" else state

    def state(self) -> dict[str, Any]:
        """The retained ``state`` payload (SPEC.md §3, plus ``belt`` and ``stop_pending``)."""
        s = self.session
        caps = self.treadmill.capabilities
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
        step = s.step if s is not None else None
        profile = s.profile if s is not None else self.last_profile
        return {
            "state": self.state_name(),
            "connected": self.treadmill.is_connected,
            "profile": profile.name if profile is not None else None,
            "phase": step.phase_name if step is not None else None,
            "phase_index": step.phase_index if step is not None else None,
            "phase_remaining_s": round(step.phase_remaining_s, 1) if step is not None else None,
            "session_id": s.session_id if s is not None else None,
            "treadmill": treadmill,
            "belt": self.belt.value,
            "stop_pending": self.stop_latched,
            "recording": s.log.recording if s is not None else None,
            "heart_rate": {
                **self.heart.report(self.clock.monotonic()),
                **(s.governor.report() if s is not None and s.governor else {"cap_state": "off"}),
            },
        }

    def _publish_state(self) -> None:
        payload = self.state()
        s = self.session
        if s is not None and not s.log.closed:
            s.log.record("state", self.clock.monotonic(), **payload)
        self._publish("state", payload)

    # ------------------------------------------------------------------ commands (API)

    @property
    def busy(self) -> bool:
        return self.session is not None

    async def start(
        self,
        profile: Profile,
        *,
        limits: Safety | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        """Start ``profile`` (validated); returns the session id.

        ``limits`` replaces ``[safety]`` for this session (a walker's tighter limits);
        ``header`` adds fields to the session log's header (walker, plan).
        """
        sid: str = await self._ask("start", profile=profile, limits=limits, header=header)
        return sid

    async def stop(self) -> None:
        """Stop the belt now, ahead of everything else; the result says if it got there."""
        await self._ask("stop")

    async def pause(self) -> None:
        await self._ask("pause")

    async def resume(self) -> None:
        await self._ask("resume")

    async def skip(self) -> None:
        await self._ask("skip")

    async def finish(self) -> None:
        await self._ask("finish")

    async def set(self, speed_kmh: float | None, incline_pct: float | None) -> None:
        await self._ask("set", speed_kmh=speed_kmh, incline_pct=incline_pct)

    async def wait_finished(self) -> Outcome | None:
        """Wait until no session is running; the last outcome."""
        if self.session is not None:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(fut)
            await fut
        return self.last_outcome

    async def shutdown(self, timeout_s: float = 10.0) -> None:
        """SIGTERM path: stop the belt, close the log with its footer, within ``timeout_s``."""
        if self.session is None:
            return
        if self._task is None or self._task.done():
            # The runner's task is gone (a bug): still try to stop the belt.
            log.error("runner task not running at shutdown: stopping the belt directly")
            try:
                async with asyncio.timeout(timeout_s):
                    await self.treadmill.stop()
            except (RetrotreadError, TimeoutError) as exc:
                log.warning("could not stop the belt at shutdown: %s", exc)
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._ask("shutdown")
        except TimeoutError:
            log.error("session did not close within %g s of shutdown", timeout_s)

    async def _ask(self, action: str, **args: Any) -> Any:
        if self._task is None or self._task.done():
            raise RunnerError("the session runner is not running")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._post(_Request(action, fut, args))
        return await fut

    # ------------------------------------------------------------------ the task

    def _post(self, message: Message) -> None:
        """The only way in: library callbacks and commands only enqueue."""
        self._inbox.append(message)
        self._wake.set()

    async def run(self) -> None:
        """The runner's task: handle messages and time, one at a time, until cancelled."""
        self._task = asyncio.current_task()
        while True:
            message = await self._receive()
            now = self.clock.monotonic()
            try:
                if message is not None:
                    self._handle(message, now)
                if not isinstance(message, RawFrame):
                    # A raw frame is only logged; its decoded event comes next and advances.
                    self._advance(now)
            except Exception as exc:  # when in doubt, the belt stops
                log.exception("session runner failed on %s", type(message).__name__)
                self._fail_safe(exc, now)

    async def _receive(self) -> Message | None:
        if self._inbox:
            return self._inbox.popleft()
        self._wake.clear()
        if self.session is None and not self.stop_latched:
            # Then nothing in _advance moves with time, and only a message (a start, a
            # stop, the link) can change that: no tick, the daemon's idle hours sleep.
            await self._wake.wait()
            return self._inbox.popleft() if self._inbox else None
        # The tick: a timer that wakes the same event a message does (no task per wake).
        tick = self._tick_timer = self.clock.timer(self.tick_s)
        tick.add_done_callback(self._ring)
        try:
            await self._wake.wait()
        finally:
            tick.cancel()
        return self._inbox.popleft() if self._inbox else None

    def _ring(self, tick: asyncio.Future[None]) -> None:
        # Only the current wait's: an earlier timer that rang as a message woke the runner
        # would otherwise cut the next wait short.
        if tick is self._tick_timer and not tick.cancelled():
            self._wake.set()

    def _fail_safe(self, exc: Exception, now: float) -> None:
        s = self.session
        try:
            if s is not None and s.alive:
                self.event("error", f"Internal error; stopping the belt: {exc}")
                self._end(s, "error", f"internal error: {exc}", now)
            else:
                self._latch_stop(now)
        except Exception:
            log.exception("session runner failed while stopping")

    def _handle(self, message: Message, now: float) -> None:
        if isinstance(message, _Request):
            self._on_request(message, now)
        elif isinstance(message, _Done):
            self._on_done(message, now)
        elif isinstance(message, RawFrame):
            self._on_frame(message)
        elif isinstance(message, Telemetry):
            self._on_telemetry(message, now)
        elif isinstance(message, StatusChanged):
            self._on_status(message, now)
        elif isinstance(message, TrainingChanged):
            self._on_training(message, now)
        elif isinstance(message, LinkDown):
            self._on_link_down(message, now)
        elif isinstance(message, LinkUp):
            self._on_link_up(message, now)
        elif isinstance(message, BadFrame):
            s = self.session
            if s is not None and not s.log.closed:
                s.log.record("event", message.t, event="bad_frame", message=str(message.error))
        elif isinstance(message, _Recording):
            self._on_recording(message)
        elif isinstance(message, _FromStrap):
            self._on_strap(message.event, now)

    def _on_recording(self, change: _Recording) -> None:
        """Say on MQTT when the session stops or starts being recorded (state + event)."""
        s = self.session
        if s is None or s.log is not change.writer:
            return
        if not change.recording:
            self.event(
                "error",
                f"Not recording: {change.problem}. The session goes on; what is not recorded "
                "is marked in its log.",
                reason="recording",
            )
        elif change.gap is not None:
            gap = change.gap
            missing = float(gap["to"]) - float(gap["from"] or 0.0)
            self.event(
                "recording_gap",
                f"Recording again: {missing:.0f} s were not recorded ({gap['lost']} records); "
                "the gap is marked in the log.",
                **{k: gap[k] for k in ("from", "to", "lost")},
            )
        self._publish_state()

    def _advance(self, now: float) -> None:
        """After every message and every tick: engine time, then the belt follows it."""
        s = self.session
        if s is not None and s.alive:
            self._tick(s, now)
        if s is not None and s.alive:
            self._reconcile(s, now)
        if (
            self.stop_latched
            and not self._stop_in_flight
            and self.treadmill.is_connected
            and now >= self._stop_retry_at
        ):
            self._submit_stop(now)
        if s is not None and not s.alive:
            self._maybe_close(s, now)

    # ------------------------------------------------------------------ commands

    def _on_request(self, request: _Request, now: float) -> None:
        handler = getattr(self, f"_cmd_{request.action}", None)
        fut = request.future
        if handler is None:
            fut.set_exception(RunnerError(f"unknown action {request.action!r}"))
            return
        try:
            result = handler(request, now)
        except RunnerError as exc:
            if not fut.done():
                fut.set_exception(exc)
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
            raise
        else:
            if result is not _LATER and not fut.done():
                fut.set_result(result)

    def _cmd_start(self, request: _Request, now: float) -> str:
        profile: Profile = request.args["profile"]
        limits: Safety = request.args.get("limits") or self.safety
        s = self.session
        if s is not None:
            if s.alive:
                raise RunnerError(f"a session is already running ({s.profile.name}); stop it first")
            raise RunnerError("the last session is still ending; try again in a moment")
        caps = self.treadmill.capabilities
        if not self.treadmill.is_connected or caps is None:
            raise RunnerError("the treadmill is not connected")
        if not caps.can_set_speed or caps.speed_range is None:
            raise RunnerError("this treadmill does not accept speed targets over FTMS")
        if self.stop_latched or self.belt in (Belt.STOPPING, Belt.PAUSING):
            raise RunnerError("the belt is still being stopped; send start again in a moment")
        if self.belt in (Belt.RUNNING, Belt.STARTING):
            raise RunnerError(
                "the belt is moving (started at the treadmill): stop or pause it there first"
            )
        engine = self._new_engine(profile, limits, caps, now)
        governor = HeartRateGovernor(engine.device, cap_settings(limits, self.safety))
        try:
            # The writer dates the session: the wall clock, unless it cannot be right.
            writer = SessionLogWriter.create(
                self.sessions_dir, datetime.fromtimestamp(self.wall(), UTC), profile.name, t0=now
            )
            started = writer.started_at or datetime.fromtimestamp(self.wall(), UTC)
            sid = f"{started.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
            writer.header(
                session_id=sid,
                started_at=started.isoformat().replace("+00:00", "Z"),
                profile=profile.model_dump(mode="json"),
                limits=_dump_limits(limits),
                treadmill=caps.to_dict(),
                version=__version__,
                heart_rate={
                    "cap_bpm": governor.cap_bpm,
                    "strap": self.heart.strap_name if self.heart.strap_expected else None,
                },
                **(request.args.get("header") or {}),
            )
        except (OSError, SessionLogError) as exc:  # one line, and the belt never moved
            raise RunnerError(str(exc)) from None
        writer.add_listener(lambda w: self._post(_Recording.of(w)))
        session = Session(sid, profile, limits, engine, engine.tick(now), writer, now, started)
        session.watch = {
            "speed": SetpointWatch("speed", _tolerance(caps.speed_range, 0.15), limits.settle_s),
            "incline": SetpointWatch(
                "incline", _tolerance(caps.incline_range, 0.3), limits.settle_s
            ),
        }
        session.governor = governor
        self.session = session
        self._walker_in_charge = False
        self.last_profile = profile
        self.last_log = writer.path
        self.event(
            "session_started",
            f"Starting {profile.title or profile.name}.",
            profile=profile.name,
        )
        if self.belt in (Belt.STOPPED, Belt.UNKNOWN) and self._training in (
            TrainingStatus.MANUAL_MODE,
            TrainingStatus.OTHER,
            TrainingStatus.PRE_WORKOUT,
        ):
            # The treadmill says it is in a workout (its console started one, perhaps at
            # 0 km/h): pause it first, so that the session starts from a belt at rest.
            self._submit_pause(now, "before the start")
        self._emit_engine_events(session, session.step)
        self._publish_state()
        return sid

    def _new_engine(
        self, profile: Profile, limits: Safety, caps: Capabilities, now: float
    ) -> Engine:
        assert caps.speed_range is not None
        incline = caps.incline_range if caps.can_set_incline else None
        try:
            device = device_grids(limits, caps.speed_range, incline)
            return Engine(
                profile,
                limits,
                device,
                now,
                turn_speed_kmh=self.turn_speed_kmh,
                turn_countdown_s=self.turn_countdown_s,
                start_paused=True,
            )
        except (ConfigError, ProfileError, ValueError) as exc:
            raise RunnerError(str(exc)) from None

    def _cmd_stop(self, request: _Request, now: float) -> object:
        s = self.session
        connected = self.treadmill.is_connected
        if s is not None and s.alive:
            why = "stopped by command" if connected else "stopped by command while out of reach"
            self._end(s, "stopped", why, now)
        else:
            self._latch_stop(now)
        if not connected:
            raise RunnerError(NOT_REACHABLE)
        self._stop_waiters.append(request.future)
        return _LATER

    def _require(self, action: str) -> Session:
        s = self.session
        if s is None or not s.alive:
            raise RunnerError(f"nothing to {action}: no session is running")
        if not self.treadmill.is_connected:
            if action == "pause":
                raise RunnerError(
                    "treadmill not reachable: use its pause or stop button; retrotread pauses "
                    "the belt as soon as it is back"
                )
            raise RunnerError(f"cannot {action}: the treadmill is not connected")
        return s

    def _cmd_pause(self, request: _Request, now: float) -> None:
        s = self._require("pause")
        moving = self.belt in (Belt.RUNNING, Belt.STARTING) or s.resume_requested
        # A turn counting down to its own restart is not paused yet: this pause stops it.
        counting_down = s.engine.state == "turning" and self.turn_countdown_s is not None
        if not moving and not counting_down:
            raise RunnerError("already paused")
        s.resume_requested = False
        s.engine.pause(now)

    def _cmd_resume(self, request: _Request, now: float) -> None:
        s = self._require("resume")
        state = s.engine.state
        if s.resume_requested:
            raise RunnerError("already starting: the belt is on its way")
        if state == "turning" and self.belt == Belt.RUNNING:
            s.engine.resume(now)  # a slow turn: ramp on from the turn speed
            return
        if state not in ("paused", "turning"):
            raise RunnerError("not paused: nothing to resume")
        s.engine.turned(now)
        s.resume_requested = True

    def _cmd_skip(self, request: _Request, now: float) -> None:
        self._require("skip").engine.skip(now)

    def _cmd_finish(self, request: _Request, now: float) -> None:
        self._require("finish").engine.finish(now)

    def _cmd_set(self, request: _Request, now: float) -> None:
        s = self._require("set")
        speed: float | None = request.args.get("speed_kmh")
        incline: float | None = request.args.get("incline_pct")
        limits = s.limits
        for name, value in (("speed_kmh", speed), ("incline_pct", incline)):
            if value is not None and not math.isfinite(value):
                raise RunnerError(f"{name} must be a number, not {value}")
        if speed is not None and speed > limits.max_speed_kmh:
            raise RunnerError(
                f"speed_kmh {speed:g} is above the safety limit of {limits.max_speed_kmh:g}"
            )
        if incline is not None:
            if s.engine.device.incline is None:
                raise RunnerError("this treadmill does not accept incline targets")
            if incline > limits.max_incline_pct:
                raise RunnerError(
                    f"incline_pct {incline:g} is above the safety limit of "
                    f"{limits.max_incline_pct:g}"
                )
        try:
            s.engine.set_manual(now, speed_kmh=speed, incline_pct=incline)
        except ProfileError as exc:
            raise RunnerError(str(exc)) from None
        for q, v in (("speed", speed), ("incline", incline)):
            if v is not None:
                s.overridden.discard(q)

    def _cmd_shutdown(self, request: _Request, now: float) -> object:
        s = self.session
        if s is None:
            return None
        self._idle_waiters.append(request.future)  # before: the session may close at once
        if s.alive:
            self._end(s, "stopped", "the daemon is shutting down", now)
        return _LATER

    # ------------------------------------------------------------------ the engine

    def _tick(self, s: Session, now: float) -> None:
        step = s.engine.tick(now)
        s.step = step
        self._emit_engine_events(s, step)
        if step.state == "completed":
            outcome: Outcome = "finished_early" if step.finished_early else "completed"
            self._end(s, outcome, "profile complete", now)
            return
        if s.governor is not None and self._govern_heart(s, s.governor, now):
            self._tick(s, now)  # the cap sent the session to its cool-down
            return
        remaining = int(step.phase_remaining_s) // 5 * 5
        if step.phase_index != s.phase_index or remaining != s.last_remaining:
            # Every 5 s of phase time: the retained state carries the time left.
            s.phase_index = step.phase_index
            s.last_remaining = remaining
            self._publish_state()

    def _emit_engine_events(self, s: Session, step: Step) -> None:
        for ev in step.events:
            if ev.type == "phase_started":
                s.log.sync()
                for w in s.watch.values():
                    w.reset()
                s.overridden.clear()
            if ev.type == "turn_required" and s.resume_requested:
                # A new turn (a finish or skip) before the belt restarted: the walker
                # turns again, and the belt waits at rest for their own resume.
                s.resume_requested = False
            if ev.type != "completed":
                self.event(ev.type, ev.message, **ev.data)

    def _desired_moving(self, s: Session) -> bool:
        state = s.step.state
        if state in ("running", "finishing"):
            return True
        if s.resume_requested:
            return True
        return state == "turning" and s.step.target_speed_kmh is not None

    def _reconcile(self, s: Session, now: float) -> None:
        """Move the belt toward what the session wants; write setpoints while it runs."""
        if not self.treadmill.is_connected or self.stop_latched:
            return
        belt = self.belt
        if self._desired_moving(s):
            if belt in (Belt.STOPPED, Belt.PAUSED):
                # The restart speed is a speed write like any other: one at a time, spaced.
                spaced = now - self._written_at["speed"] >= s.limits.step_interval_s - 1e-9
                if spaced and not self._outstanding["speed"]:
                    self._begin_start(s, now)
            elif belt == Belt.STARTING and now > self._start_deadline:
                self.event("error", "The belt did not start.")
                self._end(s, "error", "the belt did not start after FTMS Start", now)
            elif belt == Belt.RUNNING:
                self._write_setpoints(s, now)
        elif belt in (Belt.RUNNING, Belt.STARTING):
            self._submit_pause(now, "pause")

    def _begin_start(self, s: Session, now: float) -> None:
        """A start from rest: the low restart speed first, Start/Resume once it is taken."""
        grid = s.engine.device.speed
        self._set_belt(Belt.STARTING, now)
        self._start_acked = False
        self._start_request = None  # this sequence's Start is not out yet
        self._walker_speed = None
        self._start_deadline = math.inf
        self._submit_setpoint("speed", grid.value(grid.start), now, job="restart_speed")

    def _write_setpoints(self, s: Session, now: float) -> None:
        step = s.step
        wanted: dict[Quantity, float | None] = {
            "speed": step.target_speed_kmh,
            "incline": step.target_incline_pct,
        }
        for q in QUANTITIES:
            value = wanted[q]
            grid = s.engine.device.speed if q == "speed" else s.engine.device.incline
            if value is None or grid is None or q in s.overridden or self._outstanding[q]:
                continue
            if s.governor is not None:  # the heart-rate cap and zone only ever lower it
                value = s.governor.govern(wanted)[q]
                if value is None:
                    continue
            if now - self._written_at[q] < s.limits.step_interval_s - 1e-9:
                continue
            fresh = now - self._last_sample_at <= FRESH_S
            steady = fresh and now - self._steady_since[q] >= STEADY_S
            actual = self.actual[q] if steady else None
            nxt = _limited(grid, self.targets[q], actual, value)
            if nxt is not None:
                self._submit_setpoint(q, nxt, now)

    # ------------------------------------------------------------------ control point

    def _submit(
        self, request: bytes, done: _Done, *, urgent: bool = False
    ) -> asyncio.Future[cp.ControlResponse]:
        fut = self.treadmill.submit(request, urgent=urgent)
        kind = {0x07: "start", 0x08: "pause" if request[1:2] == b"\x02" else "stop"}.get(request[0])
        if kind is not None:
            self._control_echo[kind] = math.inf

        def finished(f: asyncio.Future[cp.ControlResponse]) -> None:
            if f.cancelled():
                done.error = asyncio.CancelledError()
            elif f.exception() is not None:
                done.error = f.exception()
            else:
                done.response = f.result()
            self._post(done)

        fut.add_done_callback(finished)
        return fut

    def _submit_setpoint(
        self, q: Quantity, value: float, now: float, job: Job = "setpoint"
    ) -> None:
        self._outstanding[q] = True
        self._echo[q] = (value, math.inf)
        self._race.pop(q, None)
        s = self.session
        if s is not None:
            s.watch[q].commanded(value, now)
        request = cp.set_target_speed(value) if q == "speed" else cp.set_target_incline(value)
        self._setpoint_request[q] = self._submit(request, _Done(job, self._epoch, q, value))

    def _submit_pause(self, now: float, why: str) -> None:
        self._set_belt(Belt.PAUSING, now)
        self._start_acked = False
        self._submit(cp.pause(), _Done("pause", self._epoch), urgent=True)

    def _latch_stop(self, now: float) -> None:
        """A stop is kept until the treadmill confirms it (SPEC.md §2 "Stop is latched")."""
        newly = not self.stop_latched
        self.stop_latched = True
        if self.session is not None:
            self.session.resume_requested = False
        if self.treadmill.is_connected and not self._stop_in_flight:
            self._submit_stop(now)
        elif newly:
            self._publish_state()

    def _submit_stop(self, now: float) -> None:
        self._stop_in_flight = True
        self._stop_retry_at = math.inf
        self._set_belt(Belt.STOPPING, now)
        self._start_acked = False
        self._submit(cp.stop(), _Done("stop", self._epoch), urgent=True)

    def _on_done(self, done: _Done, now: float) -> None:
        if done.epoch != self._epoch:
            return  # from a link that has since dropped: the link-loss path handled it
        kind = {"start": "start", "pause": "pause", "stop": "stop"}.get(done.job)
        if kind is not None and isinstance(done.error, Superseded):
            # Never on the wire: no echo of it will come, and the walker's own pause
            # (stop, start) at the console in the next moments is theirs, not ours.
            self._control_echo.pop(kind, None)
        elif kind is not None:
            self._older_echoes_void(kind)
            if kind in self._control_echo:
                # Its own echo may still come (FTMS.md §8.3 rule 8: either order), for a
                # little while; one that came already is not waited for again.
                self._control_echo[kind] = now + ECHO_WINDOW_S
        if done.quantity is not None:
            self._outstanding[done.quantity] = False
            value = done.value
            assert value is not None
            # The treadmill took it by the time its answer is here: the next write of this
            # quantity is spaced from now (the wire's own timing cannot make them closer).
            self._written_at[done.quantity] = now
            race = self._race.pop(done.quantity, None)
            echo_pending = done.quantity in self._echo
            if done.ok:
                if race != "console":
                    self.targets[done.quantity] = value
                elif echo_pending:
                    # The walker changed it while this write was out, and no echo says
                    # which came last: nobody knows the target (a steady reading will).
                    self.targets[done.quantity] = None
                # else: our echo came before the walker's change: theirs is the latest.
                if echo_pending:
                    self._echo[done.quantity] = (value, now + ECHO_WINDOW_S)
            else:
                self._echo.pop(done.quantity, None)
        {
            "setpoint": self._setpoint_done,
            "restart_speed": self._restart_done,
            "start": self._start_done,
            "pause": self._pause_done,
            "stop": self._stop_done,
        }[done.job](done, now)

    def _refused(self, done: _Done) -> str | None:
        """Why a request did not go through, when the treadmill itself said no.

        None for everything else: superseded by a stop or pause, or lost with the link (a
        timeout or ATT trouble drops the link: the link-loss path handles those).
        """
        if done.response is not None and not done.response.ok:
            return f"{cp.op_name(done.response.request_op)}: {done.response.result_name}"
        error = done.error
        if (
            isinstance(error, ControlError)
            and not isinstance(error, Superseded)
            and error.result_code is not None
        ):
            return str(error)
        return None

    def _setpoint_done(self, done: _Done, now: float) -> None:
        s = self.session
        why = self._refused(done)
        if why is not None and s is not None and s.alive:
            self.event("error", f"The treadmill refused a command: {why}")
            self._end(s, "error", why, now)

    def _restart_done(self, done: _Done, now: float) -> None:
        s = self.session
        if self.belt != Belt.STARTING or s is None or not s.alive:
            return
        if done.ok:
            self._start_request = self._submit(cp.start_or_resume(), _Done("start", self._epoch))
            return
        why = self._refused(done)
        if why is not None:
            # Not safe to start: the treadmill might head back to its old speed.
            self.event("error", f"The treadmill refused the restart speed ({why}); stopping.")
            self._end(s, "error", f"restart speed refused: {why}", now)

    def _start_done(self, done: _Done, now: float) -> None:
        s = self.session
        if self.belt != Belt.STARTING or s is None or not s.alive:
            return
        result = done.response.result if done.response is not None else None
        moving = (self.actual["speed"] or 0.0) > 0
        if done.ok or (result == cp.ResultCode.OPERATION_FAILED and moving):
            self._start_acked = True
            self._start_deadline = now + self.start_timeout_s
            if moving:
                self._belt_runs(s, now)
            return
        why = self._refused(done)
        if why is not None:
            self.event("error", f"The treadmill refused to start: {why}")
            self._end(s, "error", f"start refused: {why}", now)

    def _pause_done(self, done: _Done, now: float) -> None:
        if self.belt != Belt.PAUSING:
            return
        result = done.response.result if done.response is not None else None
        if done.ok or result == cp.ResultCode.OPERATION_FAILED:
            # 0x04: nothing to pause (already paused or stopped): at rest all the same.
            self._set_belt(Belt.PAUSED, now)
            return
        why = self._refused(done)
        if why is not None:
            self.event("error", f"The treadmill refused to pause ({why}); stopping the belt.")
            s = self.session
            if s is not None and s.alive:
                self._end(s, "error", f"pause refused: {why}", now)
            else:
                self._latch_stop(now)

    def _stop_done(self, done: _Done, now: float) -> None:
        self._stop_in_flight = False
        result = done.response.result if done.response is not None else None
        if done.ok or result == cp.ResultCode.OPERATION_FAILED:
            # 0x04: stop while stopped: the treadmill says the belt is at rest.
            self._stop_confirmed(now)
            return
        if isinstance(done.error, Superseded) and self.stop_latched and self.treadmill.is_connected:
            # Dropped before the wire by our own bookkeeping (the walker's start or pause at
            # the console cancels what waits): a person's stop still goes out, at once.
            self._submit_stop(now)
            return
        if not self.treadmill.is_connected or (
            done.error is not None and self._refused(done) is None
        ):
            # Lost on the way (link loss, control point timeout): still latched, sent again
            # first thing after the reconnect.
            self._resolve_stop_waiters(RunnerError(NOT_REACHABLE))
            return
        why = self._refused(done) or str(done.error)
        self.event("error", f"The treadmill refused stop ({why}): use its stop button.")
        self._resolve_stop_waiters(
            RunnerError(f"the treadmill refused stop ({why}): use its stop button")
        )
        self._stop_retry_at = now + STOP_RETRY_S

    def _stop_confirmed(self, now: float) -> None:
        self.stop_latched = False
        self._stop_in_flight = False
        if self.belt == Belt.STOPPED:
            self._publish_state()  # stop_pending changed
        self._set_belt(Belt.STOPPED, now)
        self.targets["speed"] = 0.0
        self._resolve_stop_waiters(None)

    def _resolve_stop_waiters(self, error: Exception | None) -> None:
        waiters, self._stop_waiters = self._stop_waiters, []
        for fut in waiters:
            if fut.done():
                continue
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

    def _belt_runs(self, s: Session, now: float) -> None:
        self._set_belt(Belt.RUNNING, now)
        self._start_deadline = math.inf
        if s.resume_requested:
            s.resume_requested = False
            s.engine.resume(now)
            self._tick(s, now)
        if self._walker_speed is not None and s.alive:
            self._override(s, "speed", self._walker_speed, "changed at the console", now)
            self._walker_speed = None

    def _set_belt(self, belt: Belt, now: float) -> None:
        if belt != self.belt:
            if self.belt == Belt.STARTING and belt != Belt.RUNNING:
                # A Start still waiting in the queue must not go out any more.
                start, self._start_request = self._start_request, None
                if start is not None and not start.done():
                    self.treadmill.withdraw(start, f"the belt is {belt.value} now")
            if belt == Belt.RUNNING:
                self._still_since = math.inf  # stillness counts from here
            self.belt = belt
            self._publish_state()  # every transition goes to the log and the retained state

    # ------------------------------------------------------------------ link events

    def _on_frame(self, frame: RawFrame) -> None:
        s = self.session
        if s is not None and not s.log.closed:
            s.log.frame(frame.direction, frame.t, frame.char, frame.data)

    def _on_link_down(self, event: LinkDown, now: float) -> None:
        self._epoch += 1
        self._first_sample = False
        for q in QUANTITIES:
            if self._outstanding[q]:
                self._written_at[q] = now  # it may have reached the treadmill just now
        self._set_belt(Belt.UNKNOWN, now)
        self._reset_link_knowledge()
        if self.stop_latched:
            self._resolve_stop_waiters(RunnerError(NOT_REACHABLE))
        s = self.session
        if s is not None and s.alive:
            s.interrupted = True
            s.stats.interruptions += 1
            s.resume_requested = False
            s.engine.pause(now)
            self.event(
                "link_lost", f"Lost the treadmill: {event.reason}. Waiting for it to come back."
            )
            if self.on_reconnect == "stop":
                self._end(s, "interrupted", "link lost; on_reconnect = stop", now)
        self._publish_state()

    def _reset_link_knowledge(self) -> None:
        self._stop_in_flight = False
        self._start_acked = False
        self._start_deadline = math.inf
        self._outstanding = {"speed": False, "incline": False}
        self.targets = {"speed": None, "incline": None}
        self.actual = {"speed": None, "incline": None}
        self._steady_since = {"speed": math.inf, "incline": math.inf}
        self._still_since = math.inf
        self._training = None
        self._echo.clear()
        self._control_echo.clear()
        self._race.clear()

    def _on_link_up(self, event: LinkUp, now: float) -> None:
        self._epoch += 1
        self._reset_link_knowledge()
        self._first_sample = True
        self._set_belt(Belt.UNKNOWN, now)
        s = self.session
        if self.stop_latched:
            self._submit_stop(now)  # the one thing carried across a disconnect
        elif s is not None and s.alive:
            # SPEC.md §2: on reconnect the belt is paused; only `resume` moves it again. The
            # session too, whatever came in since the loss (a console start's status that
            # was already on its way resumed it): no restart of our own after this pause.
            s.resume_requested = False
            s.engine.pause(now)
            self._submit_pause(now, "reconnect")
            self.event(
                "link_restored",
                "The treadmill is back. The session is paused: send resume to go on.",
            )
        self._publish_state()

    def _on_telemetry(self, event: Telemetry, now: float) -> None:
        r = event.record
        self.heart.treadmill_sample(r.heart_rate_bpm, event.t)
        speed = r.speed_kmh
        previous_speed = self.actual["speed"] or 0.0
        new: dict[Quantity, float | None] = {"speed": speed, "incline": r.incline_pct}
        for q in QUANTITIES:
            # Without a known target, only a value that has not moved for a while stands
            # for it: a motor still on its way to an unknown target is no base for a step.
            old, value = self.actual[q], new[q]
            if value is None or old is None or abs(value - old) >= 0.05:
                self._steady_since[q] = event.t
        self.actual = new
        self._last_sample_at = event.t
        s = self.session
        if self._first_sample:
            self._first_sample = False
            if self.belt == Belt.UNKNOWN and not self.stop_latched:
                if (speed or 0.0) > 0:
                    self._found_running(now)
                else:
                    self._set_belt(Belt.STOPPED, now)
        moving = (speed or 0.0) > 0
        if moving:
            self._still_since = math.inf
        elif self._still_since == math.inf:
            self._still_since = now
        if self.belt == Belt.STARTING and self._start_acked and moving and s is not None:
            self._belt_runs(s, now)
        elif s is None and not self.stop_latched:
            # Nobody's session: follow what the walker does at the console (statuses say
            # it first; a belt at 0 during the console's countdown is not stopped).
            if self.belt == Belt.STOPPED and moving and (speed or 0.0) > previous_speed + 0.05:
                # Speeding up: started at the console (one that sends no status). A belt
                # still slowing down after a stop is not started.
                self._set_belt(Belt.RUNNING, now)
            elif self.belt == Belt.RUNNING and now - self._still_since >= STILL_S:
                self._set_belt(Belt.STOPPED, now)
        self._publish_telemetry(s, event)
        if s is not None and s.alive and self.belt == Belt.RUNNING:
            self._check_following(s, event)

    def _found_running(self, now: float) -> None:
        """SPEC.md §2: a belt found running with no session (after a crash) is paused.

        With a session just accepted (the start came before the first sample), the belt is
        paused too: the session starts from rest, never from whatever speed it had. Not a
        belt the walker took over at the console (control taken back): theirs.
        """
        s = self.session
        if self._walker_in_charge and (s is None or not s.alive):
            return
        self._submit_pause(now, "found running")
        s = self.session
        if s is not None and s.alive:
            message = "The belt was already moving: pausing it so the session starts from rest."
        else:
            message = (
                "The belt was running with no session (retrotread restarted?): pausing it. "
                "Start a profile to go on, or use the treadmill's own buttons."
            )
        self.event("cue", message, reason="found_running")

    def _publish_telemetry(self, s: Session | None, event: Telemetry) -> None:
        r = event.record
        heart = self.heart.reading(event.t)
        step = s.step if s is not None else None
        target: dict[Quantity, float | None] = {
            "speed": step.target_speed_kmh if step is not None else None,
            "incline": step.target_incline_pct if step is not None else None,
        }
        if s is not None and s.governor is not None:
            target = s.governor.govern(target)  # what the belt is heading to, capped
        payload: dict[str, Any] = {
            "ts": self._ts(),
            "session_id": s.session_id if s is not None else None,
            "elapsed_s": round(event.t - s.t0, 2) if s is not None else None,
            "speed_kmh": r.speed_kmh,
            "incline_pct": r.incline_pct,
            "distance_m": None,
            "target_speed_kmh": target["speed"],
            "target_incline_pct": target["incline"],
            "phase": step.phase_name if step is not None else None,
            "direction": step.direction if step is not None else None,
            "heart_rate_bpm": heart.bpm,
            "energy_kcal": r.energy_kcal,
            "heart_rate_source": heart.source,
            "hr_cap_state": s.governor.state if s is not None and s.governor else "off",
        }
        if s is not None and s.alive:
            s.stats.add(event.t, r, step.direction if step is not None else None, heart)
            payload["distance_m"] = round(s.stats.distance_m, 1)
            s.log.record("telemetry", event.t, **{k: v for k, v in payload.items() if k != "ts"})
        elif r.distance_m is not None:
            payload["distance_m"] = float(r.distance_m)
        self._publish("telemetry", payload)

    def _check_following(self, s: Session, event: Telemetry) -> None:
        if s.step.state not in ("running", "finishing"):
            return
        r = event.record
        for q, actual in (("speed", r.speed_kmh), ("incline", r.incline_pct)):
            if actual is None or q in s.overridden:
                continue
            verdict = s.watch[q].observed(actual, event.t)  # type: ignore[index]
            if verdict == Verdict.OVERRIDE:
                self._override(s, q, actual, "it stayed away from the target", event.t)  # type: ignore[arg-type]
            elif verdict == Verdict.LOCKED:
                if q == "speed":
                    self.event(
                        "error",
                        "The treadmill answers speed commands with success but the belt does "
                        "not follow (speed-locked firmware). Stopping.",
                    )
                    self._end(
                        s, "error", "speed-locked firmware: the belt ignores speed targets", event.t
                    )
                else:
                    self._override(s, "incline", actual, "the incline does not follow", event.t)

    def _override(self, s: Session, q: Quantity, value: float, why: str, now: float) -> None:
        """The walker has ``q`` for the rest of this phase; ramps go on from ``value``."""
        waiting = self._setpoint_request.get(q)
        if waiting is not None and not waiting.done():
            # Not on the wire yet: it must not go out over the walker's choice.
            self.treadmill.withdraw(waiting, "the walker changed it at the console")
        s.engine.override(q, actual=value)
        s.watch[q].reset()
        if q in s.overridden:
            return
        s.overridden.add(q)
        s.stats.overrides += 1
        unit = "km/h" if q == "speed" else "%"
        self.event(
            "override",
            f"{q.capitalize()} changed at the treadmill to {value:g} {unit}; leaving {q} alone "
            "for the rest of this phase.",
            quantity=q,
            value=value,
            reason=why,
        )

    def _on_training(self, event: TrainingChanged, now: float) -> None:
        s = self.session
        status = event.training.status
        self._training = status
        if (
            status == TrainingStatus.POST_WORKOUT
            and s is not None
            and s.alive
            and self.belt not in (Belt.STARTING, Belt.STOPPING)
        ):
            # Stopped at the treadmill, perhaps while the link was down (read at connect).
            self._stopped_at_treadmill(
                now, "console_stop", "The treadmill is stopped (post-workout): session over."
            )
            return
        if (
            self.belt == Belt.STARTING
            and self._start_acked
            and s is not None
            and status in (TrainingStatus.MANUAL_MODE, TrainingStatus.OTHER)
        ):
            self._belt_runs(s, now)

    def _on_status(self, event: StatusChanged, now: float) -> None:
        st = event.status
        op = st.op
        s = self.session
        alive = s is not None and s.alive
        if op == StatusOp.STOPPED_BY_SAFETY_KEY:
            self._stopped_at_treadmill(now, "safety_key", "Safety key pulled: session over.")
        elif op == StatusOp.STOPPED_OR_PAUSED_BY_USER:
            action = str(st.values.get("control"))
            if self._our_echo(action, now):
                return
            if action == "stop":
                self._stopped_at_treadmill(
                    now, "console_stop", "Stopped at the treadmill: session over."
                )
            elif action == "pause":
                self.treadmill.cancel_queued("paused at the treadmill")
                self._set_belt(Belt.PAUSED, now)
                if s is not None and alive:
                    s.resume_requested = False
                    s.engine.pause(now)
                    self.event("cue", "Paused at the treadmill. Send resume to go on.")
        elif op == StatusOp.STARTED_OR_RESUMED_BY_USER and not self._our_echo("start", now):
            self._started_at_treadmill(now)
        elif op in (StatusOp.CONTROL_PERMISSION_LOST, StatusOp.RESET):
            self.treadmill.cancel_queued("control taken back at the treadmill")
            if s is not None and alive:
                self.event(
                    "stopped_by_treadmill",
                    "The treadmill took control back: session over.",
                    reason="control_lost",
                )
                self._end(s, "stopped_by_treadmill", "control permission lost", now, stop=False)
            self._walker_in_charge = True
        elif op == StatusOp.TARGET_SPEED_CHANGED:
            self._target_changed("speed", st.values.get("target_speed_kmh"), now)
        elif op == StatusOp.TARGET_INCLINE_CHANGED:
            self._target_changed("incline", st.values.get("target_incline_pct"), now)

    def _our_echo(self, kind: str, now: float) -> bool:
        """A stop/pause/start status that echoes our own request (before or after its reply)."""
        until = self._control_echo.get(kind)
        if until is not None and now <= until:
            del self._control_echo[kind]
            self._older_echoes_void(kind)
            return True
        return False

    def _older_echoes_void(self, kind: str) -> None:
        """The treadmill acts on requests in order and one link delivers in order: once a
        request of ``kind`` is answered or echoed, the echo of any request answered before it
        came already, if at all. A status like it now is the walker's (e.g. their pause a
        moment after our Start, on a belt our own pause had found paused: no echo of that)."""
        for other, until in list(self._control_echo.items()):
            if other != kind and until != math.inf:
                del self._control_echo[other]

    def _stopped_at_treadmill(self, now: float, reason: str, message: str) -> None:
        """The treadmill's own stop is final: no write after it, not even a stop."""
        self.treadmill.cancel_queued("the treadmill stopped")
        self._set_belt(Belt.STOPPED, now)
        self.targets["speed"] = 0.0
        if self.stop_latched:
            self._stop_confirmed(now)
        s = self.session
        if s is not None and s.alive:
            self.event("stopped_by_treadmill", message, reason=reason)
            self._end(s, "stopped_by_treadmill", message.split(":")[0].lower(), now, stop=False)

    def _started_at_treadmill(self, now: float) -> None:
        """The walker started the belt at the console: theirs, never fought."""
        s = self.session
        self.treadmill.cancel_queued("started at the treadmill")  # our own start is moot
        self._set_belt(Belt.RUNNING, now)
        if s is None or not s.alive or s.engine.state not in ("paused", "turning"):
            return
        s.resume_requested = False
        s.engine.resume(now)
        s.step = s.engine.tick(now)
        self._emit_engine_events(s, s.step)
        value = self.targets["speed"] or self.actual["speed"] or 0.0
        self._override(s, "speed", value, "started at the console", now)

    def _target_changed(self, q: Quantity, raw: object, now: float) -> None:
        if not isinstance(raw, int | float):
            return
        value = float(raw)
        echo = self._echo.get(q)
        self.targets[q] = value
        if echo is not None and abs(echo[0] - value) < 1e-6 and now <= echo[1]:
            del self._echo[q]
            if self._race.get(q) == "console":
                self._race[q] = "ours-later"
            return  # our own write, echoed (FTMS.md §8.3 rule 8: maybe before its reply)
        if self._outstanding[q]:
            self._race[q] = "console"
        s = self.session
        if s is None or not s.alive:
            return
        start = self._start_request
        if (
            q == "speed"
            and self.belt == Belt.STARTING
            and start is not None
            and not self.treadmill.withdraw(start, "the walker chose a speed at the console")
        ):
            # Start is on the wire: the belt will head for the walker's speed. Theirs for
            # the rest of the phase, once it runs.
            self._walker_speed = value
            return
        if q == "speed" and self.belt != Belt.RUNNING:
            # Chosen at the console while the belt is at rest: the walker's new target,
            # reached by ramping after the (low) restart.
            if self.belt == Belt.STARTING:
                # Our restart speed is gone: no Start on top of the walker's speed; the
                # start begins again (restart speed first) from here.
                self._set_belt(Belt.PAUSED, now)
            if value <= 0:
                return
            wanted = min(value, s.limits.max_speed_kmh)
            s.engine.set_manual(now, speed_kmh=wanted)
            s.overridden.discard("speed")
            s.stats.overrides += 1
            self.event(
                "override",
                f"Speed set at the treadmill to {value:g} km/h while paused; the belt restarts "
                f"low and ramps to {wanted:g} km/h.",
                quantity=q,
                value=value,
                reason="changed at the console while paused",
            )
            return
        self._override(s, q, value, "changed at the console", now)

    # ------------------------------------------------------------------ heart rate (issue 15)

    def _on_strap(self, event: StrapEvent, now: float) -> None:
        """The strap's own link: a strap that drops never touches the treadmill's."""
        if isinstance(event, RawFrame):
            self._on_frame(event)  # raw ``rx`` on 2a37 in the session log
        elif isinstance(event, HeartRateSample):
            self.heart.strap_sample(event.measurement, event.t)
        elif isinstance(event, StrapUp | LinkDown):
            if isinstance(event, StrapUp):
                self.heart.strap_up(event.info.name or event.info.address)
            else:
                self.heart.strap_down()
            s = self.session
            if s is not None and not s.log.closed:
                up = isinstance(event, StrapUp)
                why = "" if isinstance(event, StrapUp) else event.reason
                s.log.record("event", event.t, event="strap_link", up=up, message=why)
            self._publish_state()
        elif isinstance(event, BadFrame):
            s = self.session
            if s is not None and not s.log.closed:
                s.log.record("event", event.t, event="bad_frame", message=str(event.error))

    def _govern_heart(self, s: Session, governor: HeartRateGovernor, now: float) -> bool:
        """Feed the heart rate in use to the cap; True when it finished the session."""
        reading = self.heart.reading(now)
        change = self.heart.changed(now)
        if change is not None and not s.log.closed:
            s.log.record(
                "event",
                now,
                event="heart_rate_source",
                source=change.source,
                message=change.problem or f"heart rate from the {change.source}",
            )
        step = s.step
        phase = s.profile.phase[step.phase_index]
        wanted: dict[Quantity, float | None] = {
            "speed": step.target_speed_kmh,
            "incline": step.target_incline_pct,
        }
        free = [q for q in QUANTITIES if q not in s.overridden]
        notices = governor.update(
            now,
            reading.bpm,
            wanted=wanted,
            heading=s.engine.heading(),
            current={
                q: self.targets[q] if self.targets[q] is not None else self.actual[q]
                for q in QUANTITIES
            },
            free=free,
            moving=step.state in ("running", "finishing") and self.belt == Belt.RUNNING,
            phase_index=step.phase_index,
            zone=phase.target_hr_bpm,
            zone_max_pct=phase.incline_pct,
            why=reading.problem,
        )
        governed = governor.govern(wanted)
        for q in free:
            value, plan = governed[q], wanted[q]
            if value is not None and plan is not None and value < plan:
                s.engine.limit(q, value)  # the profile's ramps go on from where the belt is
        finish = False
        for n in notices:
            if n.kind == "holding":
                s.stats.hr_cap_episodes += 1
            self.event("hr_cap", n.message, **n.data)
            if n.cue is not None:
                self.event("cue", n.cue, reason=f"hr_cap_{n.kind}")
            if n.kind == "finish":
                s.engine.finish(now)
                finish = True
        if notices:
            self._publish_state()
        return finish

    # ------------------------------------------------------------------ the end

    def _end(
        self, s: Session, outcome: Outcome, message: str, now: float, *, stop: bool = True
    ) -> None:
        """Decide the outcome once; the belt is stopped (latched) unless the treadmill did."""
        if not s.alive:
            return
        s.outcome = outcome
        s.outcome_message = message
        s.resume_requested = False
        s.close_by = now + CLOSE_WAIT_S
        if stop:
            self._latch_stop(now)
        self._publish_state()
        self._maybe_close(s, now)

    def _maybe_close(self, s: Session, now: float) -> None:
        if self.session is not s:
            return
        if self.stop_latched and self.treadmill.is_connected and now < s.close_by:
            return  # give the treadmill a moment to confirm the stop
        self._close(s, now)

    def _close(self, s: Session, now: float) -> None:
        """Footer, fsync, state."""
        outcome: Outcome = s.outcome or "error"
        duration = now - s.t0
        summary = s.stats.summary(duration, max(s.phase_index + 1, 0), s.outcome_message)
        self.event(
            "session_finished",
            _finish_message(outcome, s.outcome_message),
            outcome=outcome,
            summary=summary,
        )
        s.log.footer(outcome, summary, wall=self.wall())
        self.last_outcome = outcome
        self.session = None
        self._publish_state()
        waiters, self._idle_waiters = self._idle_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


_LATER = object()
"""A command handler's answer: the result comes later (a stop waits for the treadmill)."""


def _limited(grid: Grid, target: float | None, actual: float | None, wanted: float) -> float | None:
    """The next value to write toward ``wanted``: one step at most from the treadmill.

    The step is measured from the treadmill's own target (our acknowledged write, an echo
    or a console change), else from what it reports doing; None when there is nothing to
    write (already there, or no knowledge yet).
    """
    base = target if target is not None else actual
    if base is None:
        return None
    raw_base = base * grid.div
    raw_wanted = round(wanted * grid.div)
    if abs(raw_base - raw_wanted) < 1e-6:
        return None
    nxt = grid.step_from(raw_base, raw_wanted)
    if nxt is None or abs(nxt - raw_base) < 1e-6:
        return None
    return grid.value(nxt)


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


def _dump_limits(limits: Safety) -> Any:
    dump = getattr(limits, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return {k: v for k, v in vars(limits).items() if not k.startswith("_")}
