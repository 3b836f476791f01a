"""The stepping engine: pure (profile, time, commands) -> setpoints. No I/O, no clock reads.

SPEC.md §2 as a state machine the session runner drives with ``tick(now)`` and commands.

- Speed and incline ramp independently toward the phase target in steps no larger than
  the step limits, spread evenly over the phase's ``ramp_s``, and a quantity never changes
  twice within ``step_interval_s`` however the ticks fall. Every value is a point of the
  device grid (``grid.py``), inside the safety caps; arithmetic is in integer device units.
- From a standstill the belt starts at ``Grid.start``: the range minimum, or one step if
  the range starts at 0. That first setpoint is a start, not a step: the treadmill itself
  accelerates a stopped belt to its minimum.
- Pause freezes phase time; the speed setpoint is None (the runner sends FTMS Pause).
- Resume restarts the belt at ``Grid.start`` and ramps back to the target one step per
  ``step_interval_s``. After a pause the belt stands still, so every resume is a start
  from rest, like the first phase and the phase after a turn; this is never above the
  speed the phase's own ramp started from, so the walker never restarts at speed.
- A change of direction between phases is a turn: the belt pauses (or slows in steps to
  ``turn_speed_kmh``), ``turn_required`` is emitted, and the next phase starts only on
  ``resume`` or after ``turn_countdown_s``; it then ramps from rest (or the turn speed).
- ``finish``: jump to the last phase (the cool-down) and end normally when it ends; in
  the last phase already (or a one-phase profile, which has no cool-down) it ends now.
- The end of the last phase is ``completed``; the runner then stops the belt (FTMS Stop).
- ``override(q)``: the walker changed q at the console; q's setpoint is None for the
  rest of the phase. ``set_manual`` makes q ours again, with a new target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from retrotread.errors import ProfileError
from retrotread.profiles.grid import Device, Grid, device_grids
from retrotread.profiles.model import (
    Direction,
    Limits,
    Profile,
    check_profile,
    profile_duration_s,
)

__all__ = [
    "Device",
    "Engine",
    "Event",
    "Grid",
    "Quantity",
    "State",
    "Step",
    "device_grids",
    "plan",
    "profile_duration_s",
]

State = Literal["running", "paused", "turning", "finishing", "completed"]
Quantity = Literal["speed", "incline"]
_MOVING: tuple[State, ...] = ("running", "finishing")
_EPS = 1e-6  # seconds: tolerance for float noise in the times callers pass


@dataclass(frozen=True)
class Event:
    """Something the walker should hear about: ``phase_started``, ``turn_required``..."""

    type: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """What to hold now. A None target means: send nothing for that quantity."""

    state: State
    phase_index: int
    phase_name: str
    direction: Direction
    phase_remaining_s: float
    target_speed_kmh: float | None
    target_incline_pct: float | None
    events: tuple[Event, ...] = ()
    finished_early: bool = False


@dataclass
class _Track:
    """One quantity's setpoint: where it is, where it goes, when it may move next."""

    grid: Grid
    start: int  # the first value after "no setpoint" (a belt starting from rest)
    value: int | None = None
    target: int | None = None
    interval: float = 1.0  # this ramp's pace: seconds per step, >= step_interval_s
    due: float = 0.0  # when the ramp's next step is scheduled
    moved_at: float = -math.inf  # when the value last changed, as reported by tick()
    active: bool = True  # False: no setpoint at all (a paused or stopped belt)
    held: bool = False  # the walker took it over at the console (override)

    def aim(self, target: int, at: float, interval: float) -> None:
        self.target, self.interval, self.due = target, interval, at + interval

    def update(self, now: float, min_gap: float) -> None:
        """At most one step, and none within ``min_gap`` of the last change."""
        if not self.active or self.held:
            return
        if self.value is None:
            # A start from rest; below the start point only if the target itself is.
            target = self.start if self.target is None else self.target
            self.value = min(self.start, target)
            self.moved_at = now
            return
        if self.target is None or self.value == self.target:
            return
        if now + _EPS < self.due or now + _EPS < self.moved_at + min_gap:
            return
        self.value = self.grid.toward(self.value, self.target)
        self.moved_at = now
        # Keep the ramp's own pace; after late ticks the gap rule above caps the catch-up.
        self.due += self.interval

    def report(self) -> float | None:
        if not self.active or self.held or self.value is None:
            return None
        return self.grid.value(self.value)


class Engine:
    """One profile run. ``tick(now)`` as often as you like; commands take ``now`` too.

    ``now`` is any monotonic clock in seconds; a ``now`` earlier than one seen before is
    taken as the latest one. Raises ProfileRefused if ``profile`` breaks ``limits``.
    With ``start_paused`` the engine waits, paused, for ``resume`` before the first phase.
    """

    def __init__(
        self,
        profile: Profile,
        limits: Limits,
        device: Device,
        now: float,
        *,
        turn_speed_kmh: float | None = None,
        turn_countdown_s: float | None = None,
        start_paused: bool = False,
    ) -> None:
        check_profile(profile, limits)  # defence in depth: a refused profile never runs
        if turn_speed_kmh is not None and not 0 < turn_speed_kmh <= limits.max_speed_kmh:
            raise ValueError(f"turn_speed_kmh {turn_speed_kmh:g} is not a speed within limits")
        if turn_countdown_s is not None and turn_countdown_s < 0:
            raise ValueError("turn_countdown_s must not be negative")
        self.profile = profile
        self.limits = limits
        self.device = device
        self.turn_speed_kmh = turn_speed_kmh
        self.turn_countdown_s = turn_countdown_s
        self.state: State = "running"
        self.phase_index = 0
        self.phase_time = 0.0  # running time spent in the current phase
        self.finished_early = False
        self._clock = now
        self._events: list[Event] = []
        self._tracks: dict[Quantity, _Track] = {"speed": _Track(device.speed, device.speed.start)}
        if device.incline is not None:
            self._tracks["incline"] = _Track(device.incline, device.incline.snap(0.0))
        self._manual: dict[Quantity, int] = {}
        self._facing: Direction = profile.phase[0].direction
        self._resume_to: State = "running"
        self._paused_at = now
        self._pending_start = False  # paused or turning before the current phase began
        self._turn_slow = False  # turning with the belt moving at the turn speed
        self._turn_deadline: float | None = None
        if device.incline is None and profile.max_incline_pct > 0:
            why = device.incline_note or "this treadmill cannot set the incline"
            self._emit("cue", f"Hill phases run flat: {why}.")
        if start_paused:
            # Waiting for the belt (the treadmill's start countdown): the first phase
            # begins on ``resume``, so its time and ramps start when the belt runs.
            self.state = "paused"
            self._pending_start = True
        else:
            self._start_phase(now, from_rest=True)

    # ------------------------------------------------------------------ commands

    def pause(self, now: float) -> None:
        """Stop the belt and freeze phase time (also during a turn); no-op otherwise."""
        self._advance(now)
        if self.state in _MOVING:
            self._resume_to = self.state
        elif self.state == "turning":
            self._resume_to = "finishing" if self.finished_early else "running"
            self._pending_start = True
            self._turn_deadline = None  # a paused walker is not counted down
        else:
            return
        self.state = "paused"
        self._paused_at = self._clock
        self._turn_slow = False
        self._stop_belt()

    def resume(self, now: float) -> None:
        """Leave a pause or a turn: the belt restarts from rest and ramps back in steps."""
        self._advance(now)
        t = self._clock
        if self.state == "turning":
            self._end_turn(t)
        elif self.state == "paused":
            self.state = self._resume_to
            if self._pending_start:
                self._pending_start = False
                self._start_phase(t, from_rest=True)
                return
            speed = self._tracks["speed"]
            assert speed.target is not None
            speed.active, speed.held, speed.value = True, False, None
            speed.aim(speed.target, t, self.limits.step_interval_s)
            incline = self._tracks.get("incline")
            if incline is not None:
                incline.due += t - self._paused_at  # its ramp was frozen with the clock

    def turned(self, now: float) -> None:
        """The walker says they are ready for this phase (``resume`` at a turn, or after a
        pause whose next phase faces the other way): from now they face its way, even
        before the belt restarts. A later turn's cue starts from there."""
        self._advance(now)
        if self.state == "turning" or (self.state == "paused" and self._pending_start):
            self._facing = self.profile.phase[self.phase_index].direction

    def skip(self, now: float) -> None:
        """Go to the next phase (ramping from where things are), or end after the last."""
        self._advance(now)
        if self.state != "completed":
            self._next_phase(self._clock, skipped=True)

    def finish(self, now: float) -> None:
        """The gentle end: go to the last phase (the cool-down) and end when it ends."""
        self._advance(now)
        if self.state == "completed":
            return
        self.finished_early = True
        last = len(self.profile.phase) - 1
        if self.phase_index < last:
            self._goto(last, self._clock)
        elif self.state in _MOVING or (self.state == "paused" and not self._pending_start):
            self._complete()  # already in the cool-down, or no cool-down to go to
            return
        if self.state == "running":
            self.state = "finishing"
        elif self.state == "paused":
            self._resume_to = "finishing"

    def set_manual(
        self, now: float, speed_kmh: float | None = None, incline_pct: float | None = None
    ) -> None:
        """A new target for the rest of this phase, reached in allowed steps.

        Raises ProfileError for a value outside the safety limits (never clamped to fit);
        values are quantised and clamped to the treadmill's own range (SPEC.md §2).
        """
        self._advance(now)
        checks: list[tuple[Quantity, float, float]] = []
        if speed_kmh is not None:
            if not 0 < speed_kmh <= self.limits.max_speed_kmh + 1e-9:
                raise ProfileError(
                    f"speed_kmh {speed_kmh:g} is outside 0 < speed <= max_speed_kmh "
                    f"= {self.limits.max_speed_kmh:g} (to stop the belt, pause or stop)"
                )
            checks.append(("speed", speed_kmh, self.limits.max_speed_kmh))
        if incline_pct is not None:
            if "incline" not in self._tracks:
                raise ProfileError("this treadmill's incline cannot be set")
            if not 0 <= incline_pct <= self.limits.max_incline_pct + 1e-9:
                raise ProfileError(
                    f"incline_pct {incline_pct:g} is outside 0 <= incline <= max_incline_pct "
                    f"= {self.limits.max_incline_pct:g}"
                )
            checks.append(("incline", incline_pct, self.limits.max_incline_pct))
        if self.state == "completed":
            return
        started = not self._pending_start and self.state != "turning"
        for q, value, _ in checks:
            track = self._tracks[q]
            raw = track.grid.snap(value)
            self._manual[q] = raw  # a phase that has not begun yet picks it up at its start
            track.held = False
            if started:
                # While paused, ramps are frozen at the pause; resume shifts them on.
                at = self._paused_at if self.state == "paused" else self._clock
                track.aim(raw, at, self.limits.step_interval_s)

    def override(self, quantity: Quantity, actual: float | None = None) -> None:
        """The walker changed ``quantity`` at the console: no setpoint for it this phase.

        ``actual`` (what the treadmill now reports) is where the next phase's ramp starts
        from; without it, the ramp starts from the last setpoint.
        """
        track = self._tracks.get(quantity)
        if track is None or self.state == "completed":
            return
        track.held = True
        if actual is not None and track.value is not None:
            track.value = track.grid.snap(actual)

    def limit(self, quantity: Quantity, value: float) -> None:
        """Something beside the profile (the heart-rate cap or zone) keeps ``quantity`` at
        or under ``value``: the setpoint goes down to it, and the ramp (this phase's, the
        next phase's, a turn's hold) goes on from there, not from where it would have been.
        Never raises a setpoint; a quantity the walker holds at the console is left alone.
        """
        track = self._tracks.get(quantity)
        if track is None or track.value is None or track.held or self.state == "completed":
            return
        raw = track.grid.snap(value)
        if raw < track.value:
            track.value = raw

    def heading(self) -> dict[Quantity, float | None]:
        """Where each ramp is heading in this phase (its target; None: no target)."""
        out: dict[Quantity, float | None] = {"speed": None, "incline": None}
        for q, track in self._tracks.items():
            if track.target is not None:
                out[q] = track.grid.value(track.target)
        return out

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> Step:
        """Advance to ``now`` and say what to hold, with the events since the last tick."""
        self._advance(now)
        if self.state in (*_MOVING, "turning"):
            for track in self._tracks.values():
                track.update(self._clock, self.limits.step_interval_s)
        events = tuple(self._events)
        self._events.clear()
        phase = self.profile.phase[self.phase_index]
        incline = self._tracks.get("incline")
        return Step(
            state=self.state,
            phase_index=self.phase_index,
            phase_name=phase.name,
            direction=phase.direction,
            phase_remaining_s=max(0.0, phase.duration_s - self.phase_time),
            target_speed_kmh=self._tracks["speed"].report(),
            target_incline_pct=incline.report() if incline and self.state != "completed" else None,
            events=events,
            finished_early=self.finished_early,
        )

    def _advance(self, now: float) -> None:
        """Move the clock to ``now``: phase time runs only while moving; cross phase ends."""
        now = max(now, self._clock)
        while True:
            t = self._clock
            deadline = self._turn_deadline
            if self.state == "turning" and deadline is not None and deadline <= now + _EPS:
                self._clock = max(t, deadline)
                self._end_turn(self._clock)
                continue
            if self.state in _MOVING:
                left = self.profile.phase[self.phase_index].duration_s - self.phase_time
                if t + left <= now + _EPS:
                    self._clock = max(t, t + left)
                    self._next_phase(self._clock, skipped=False)
                    continue
                self.phase_time += now - t
            self._clock = max(self._clock, now)
            return

    # ------------------------------------------------------------------ phases

    def _next_phase(self, t: float, *, skipped: bool) -> None:
        if self.phase_index + 1 < len(self.profile.phase):
            self._goto(self.phase_index + 1, t)
            return
        if skipped:
            self.finished_early = True
        self._complete()

    def _complete(self) -> None:
        self.state = "completed"
        self._stop_belt()
        self._emit("completed", "Profile complete.")

    def _goto(self, index: int, t: float) -> None:
        """Make phase ``index`` current; it starts now unless a turn or a pause comes first."""
        self.phase_index = index
        self.phase_time = 0.0
        self._manual.clear()
        for track in self._tracks.values():
            track.held = False  # an override lasts for the rest of its phase only
        new = self.profile.phase[index]
        if self.state == "paused":
            # Stay paused: resume starts this phase from rest. Say now if it needs a turn.
            self._pending_start = True
            if new.direction != self._facing:
                self._emit_turn("Send resume when you are ready.")
        elif self.state == "turning":
            # Still waiting at a turn (the belt paused or slow): the cue is for this phase,
            # and a countdown it announces counts from now, never from the last cue.
            if self._turn_deadline is not None and self.turn_countdown_s is not None:
                self._turn_deadline = t + self.turn_countdown_s
            self._emit_turn(self._turn_wait_text())
        elif new.direction != self._facing:
            self._begin_turn(t)
        else:
            self._start_phase(t, from_rest=False)

    def _begin_turn(self, t: float) -> None:
        self.state = "turning"
        speed = self._tracks["speed"]
        self._turn_slow = self.turn_speed_kmh is not None and speed.value is not None
        countdown = self.turn_countdown_s
        self._turn_deadline = None if countdown is None else t + countdown
        if self._turn_slow:
            assert self.turn_speed_kmh is not None and speed.value is not None
            slow = min(speed.value, speed.grid.snap(self.turn_speed_kmh))
            speed.aim(slow, t, self.limits.step_interval_s)
        else:
            self._stop_belt()
        incline = self._tracks.get("incline")
        if incline is not None and incline.value is not None:
            incline.aim(incline.value, t, self.limits.step_interval_s)  # hold it
        self._emit_turn(self._turn_wait_text())

    def _turn_wait_text(self) -> str:
        if self.turn_countdown_s is not None:
            return f"Starting again in {self.turn_countdown_s:g} seconds."
        return "Send resume when you are ready."

    def _emit_turn(self, wait: str) -> None:
        new = self.profile.phase[self.phase_index]
        face = "the front" if new.direction == "forward" else "the rear of the treadmill"
        belt = "The belt slows down" if self._turn_slow else "The belt pauses"
        if self.state == "paused":
            belt = "The belt is paused"
        # After a skip during a turn the next phase may face the way the walker already does.
        move = "keep facing" if new.direction == self._facing else "turn around to face"
        self._emit(
            "turn_required",
            f"{belt}. Hold the rails, {move} {face}. {wait}",
            direction=new.direction,
            phase=new.name,
            phase_index=self.phase_index,
        )

    def _end_turn(self, t: float) -> None:
        self.state = "finishing" if self.finished_early else "running"
        self._turn_deadline = None
        self._pending_start = False
        self._start_phase(t, from_rest=not self._turn_slow)
        self._turn_slow = False

    def _start_phase(self, t: float, *, from_rest: bool) -> None:
        """Phase ``phase_index`` begins at ``t``: aim both ramps, spread over ``ramp_s``."""
        phase = self.profile.phase[self.phase_index]
        self._facing = phase.direction
        self.phase_time = 0.0
        self._emit(
            "phase_started",
            phase.cue or f"{phase.name}: walk {phase.direction}.",
            phase=phase.name,
            phase_index=self.phase_index,
            direction=phase.direction,
            speed_kmh=phase.speed_kmh,
            incline_pct=phase.incline_pct,
        )
        wanted: dict[Quantity, float] = {"speed": phase.speed_kmh, "incline": phase.incline_pct}
        for q, track in self._tracks.items():
            target = self._manual.get(q, track.grid.snap(wanted[q]))
            if q == "speed":
                track.active = True
                if from_rest:
                    track.value = None
            origin = track.value if track.value is not None else min(track.start, target)
            n = track.grid.steps(origin, target)
            # Spread the steps evenly over ramp_s, never faster than one per interval.
            interval = max(self.limits.step_interval_s, phase.ramp_s / n if n else 0.0)
            track.aim(target, t, interval)

    def _stop_belt(self) -> None:
        speed = self._tracks["speed"]
        speed.active, speed.value = False, None

    def _emit(self, kind: str, message: str, **data: Any) -> None:
        self._events.append(Event(kind, message, data))


def plan(
    profile: Profile,
    limits: Limits,
    device: Device,
    tick_s: float = 0.5,
    *,
    turn_speed_kmh: float | None = None,
    turn_countdown_s: float | None = None,
) -> list[tuple[float, Step]]:
    """The whole profile with no commands, ticked every ``tick_s`` from t = 0.

    A turn without a countdown is resumed at once (as if the walker were ready): the
    series then holds two steps at that time, the ``turning`` one and the one after.
    """
    engine = Engine(
        profile,
        limits,
        device,
        0.0,
        turn_speed_kmh=turn_speed_kmh,
        turn_countdown_s=turn_countdown_s,
    )
    out: list[tuple[float, Step]] = []
    turns = len(profile.phase) * (turn_countdown_s or 0.0)
    limit = profile_duration_s(profile) + turns + 10 * tick_s
    n = 0
    while (t := n * tick_s) <= limit:  # t from a counter: no accumulated float error
        step = engine.tick(t)
        if step.state == "turning" and turn_countdown_s is None:
            out.append((t, step))
            engine.resume(t)
            step = engine.tick(t)
        out.append((t, step))
        if step.state == "completed":
            break
        n += 1
    return out
