"""The stepping engine: pure (profile, time, commands) -> setpoints. No I/O, no clock.

SPEC.md §2. Speed and incline ramp independently toward each phase's target in steps no
larger than the step limits and no more often than ``step_interval_s``, spread evenly over
the phase's ``ramp_s``, quantised to the device grid and landing exactly on target.
Arithmetic is in integer device units (0.01 km/h, 0.1 %) so nothing drifts.

States: ``running``; ``paused`` (belt paused, phase time frozen); ``turning`` (a change of
direction: belt paused or slowed to the turn speed until resume or a countdown);
``finishing`` (running the cool-down after ``finish``); ``completed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from retrotread.profiles.model import Limits, Phase, Profile, ramp_origins

State = Literal["running", "paused", "turning", "finishing", "completed"]
Quantity = Literal["speed", "incline"]
QUANTITIES: tuple[Quantity, ...] = ("speed", "incline")


@dataclass(frozen=True)
class Grid:
    """One quantity's allowed setpoints, in raw device units.

    ``lo``..``hi`` is the device range cut at the safety cap; ``inc`` the device increment;
    ``step`` the largest allowed change, rounded down to whole increments.
    """

    div: int
    lo: int
    hi: int
    inc: int
    step: int

    @classmethod
    def build(
        cls, div: int, dev_lo: float, dev_hi: float, dev_inc: float, cap: float, step: float
    ) -> Grid | None:
        lo, inc = round(dev_lo * div), max(1, round(dev_inc * div))
        hi = min(round(dev_hi * div), math.floor(cap * div + 1e-6))
        hi = lo + (hi - lo) // inc * inc
        whole = math.floor(step * div + 1e-6) // inc * inc
        if hi < lo or whole < inc:
            return None  # the device cannot move in steps as small as the limit allows
        return cls(div, lo, hi, inc, whole)

    def snap(self, value: float) -> int:
        raw = round(value * self.div)
        raw = min(max(raw, self.lo), self.hi)
        raw = self.lo + round((raw - self.lo) / self.inc) * self.inc
        return min(raw, self.hi)

    def toward(self, current: int, target: int, steps: int) -> int:
        """``current`` moved ``steps`` whole steps toward ``target``, never past it."""
        if current < target:
            return min(target, current + steps * self.step)
        return max(target, current - steps * self.step)

    def value(self, raw: int) -> float:
        return raw / self.div


@dataclass(frozen=True)
class Device:
    """What the treadmill accepts; None for a quantity it cannot set in small steps."""

    speed: Grid | None
    incline: Grid | None


def device_grids(limits: Limits, speed_range: Any, incline_range: Any) -> Device:
    """Grids from FTMS supported ranges (objects with minimum/maximum/increment)."""
    speed = incline = None
    if speed_range is not None:
        speed = Grid.build(
            100,
            speed_range.minimum,
            speed_range.maximum,
            speed_range.increment,
            limits.max_speed_kmh,
            limits.speed_step_kmh,
        )
    if incline_range is not None:
        incline = Grid.build(
            10,
            max(0.0, incline_range.minimum),
            incline_range.maximum,
            incline_range.increment,
            limits.max_incline_pct,
            limits.incline_step_pct,
        )
    return Device(speed, incline)


@dataclass(frozen=True)
class Event:
    type: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """What to hold now. A None target means: do not send that quantity."""

    state: State
    phase_index: int
    phase_name: str
    direction: str
    phase_remaining_s: float
    target_speed_kmh: float | None
    target_incline_pct: float | None
    events: tuple[Event, ...] = ()
    finished_early: bool = False


@dataclass
class _Ramp:
    """A schedule: from ``origin`` to ``target``, one step every ``interval`` from ``t0``."""

    origin: int
    target: int
    t0: float
    interval: float

    def at(self, grid: Grid, t: float) -> int:
        if self.origin == self.target:
            return self.target
        k = math.floor((t - self.t0) / self.interval + 1e-9) + 1 if t >= self.t0 else 0
        return grid.toward(self.origin, self.target, max(0, k))


class Engine:
    """One profile run. Call ``tick(now)`` as often as you like; commands take ``now`` too."""

    def __init__(
        self,
        profile: Profile,
        limits: Limits,
        device: Device,
        now: float,
        *,
        turn_speed_kmh: float | None = None,
        turn_countdown_s: float | None = None,
    ) -> None:
        if device.speed is None:
            raise ValueError("the treadmill cannot take speed targets in steps this small")
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
        self._origins = ramp_origins(profile)
        self._events: list[Event] = []
        self._speed: int | None = None
        self._incline: int | None = None
        self._ramps: dict[Quantity, _Ramp | None] = {"speed": None, "incline": None}
        self._overridden: set[Quantity] = set()
        self._paused_from: State = "running"
        self._turn_started = 0.0
        self._start_phase(0, now, from_rest=True)

    # ------------------------------------------------------------------ commands

    def pause(self, now: float) -> None:
        self._advance(now)
        if self.state in ("running", "finishing"):
            self._paused_from = self.state
            self.state = "paused"

    def resume(self, now: float) -> None:
        """Restart at the phase's start speed and ramp back; never jump (SPEC.md §2)."""
        self._advance(now)
        if self.state == "paused":
            self.state = self._paused_from
            step_s = self.limits.step_interval_s
            speed_ramp = self._ramps["speed"]
            target = speed_ramp.target if speed_ramp else self._phase_target("speed")
            self._set_ramp("speed", self._phase_origin_speed(), target, now, step_s)
            # Ramps run on absolute time: re-base the incline ramp so the pause is not
            # caught up in one jump.
            ramp = self._ramps["incline"]
            if self._incline is not None and ramp is not None:
                interval = max(step_s, ramp.interval)
                self._set_ramp("incline", self._incline, ramp.target, now, interval)
        elif self.state == "turning":
            self._end_turn(now)

    def skip(self, now: float) -> None:
        self._advance(now)
        if self.state == "completed":
            return
        self._next_phase(now)

    def finish(self, now: float) -> None:
        """Go to the cool-down (the last phase) and end normally."""
        self._advance(now)
        if self.state == "completed":
            return
        self.finished_early = True
        last = len(self.profile.phase) - 1
        if self.phase_index < last:
            self._goto(last, now)
        if self.state == "running":
            self.state = "finishing"
        elif self.state == "paused":
            self._paused_from = "finishing"

    def set_manual(
        self, now: float, speed_kmh: float | None = None, incline_pct: float | None = None
    ) -> None:
        """A new target for the rest of this phase, reached in allowed steps."""
        self._advance(now)
        wanted: tuple[tuple[Quantity, float | None], ...] = (
            ("speed", speed_kmh),
            ("incline", incline_pct),
        )
        for q, value in wanted:
            grid = self._grid(q)
            if value is None or grid is None:
                continue
            self._overridden.discard(q)
            current = self._current(q) if self._current(q) is not None else grid.snap(value)
            assert current is not None
            self._set_ramp(q, current, grid.snap(value), now, self.limits.step_interval_s)

    def override(self, quantity: Quantity) -> None:
        """The walker changed it at the console: produce no setpoint for it this phase."""
        self._overridden.add(quantity)

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> Step:
        self._advance(now)
        events = tuple(self._events)
        self._events.clear()
        phase = self.profile.phase[self.phase_index]
        speed = incline = None
        turning_slowly = self.state == "turning" and self.turn_speed_kmh is not None
        if self.state in ("running", "finishing") or turning_slowly:
            speed = self._value("speed")
            incline = self._value("incline")
        elif self.state == "paused":
            incline = self._value("incline")
        return Step(
            state=self.state,
            phase_index=self.phase_index,
            phase_name=phase.name,
            direction=phase.direction,
            phase_remaining_s=max(0.0, phase.duration_s - self.phase_time),
            target_speed_kmh=speed,
            target_incline_pct=incline,
            events=events,
            finished_early=self.finished_early,
        )

    def _advance(self, now: float) -> None:
        """Move phase time forward to ``now`` (only while running) and cross phase ends."""
        dt = max(0.0, now - self._clock)
        self._clock = max(self._clock, now)
        if self.state == "turning":
            countdown = self.turn_countdown_s
            if countdown is not None and now - self._turn_started >= countdown:
                self._end_turn(now)
            else:
                self._update_values(now)  # slowing to the turn speed, step by step
            return
        if self.state not in ("running", "finishing"):
            return
        self.phase_time += dt
        self._update_values(now)
        while self.state in ("running", "finishing"):
            phase = self.profile.phase[self.phase_index]
            if self.phase_time < phase.duration_s - 1e-9:
                break
            over = self.phase_time - phase.duration_s
            self._next_phase(now - over)
            if self.state in ("running", "finishing"):
                self.phase_time = over
                self._update_values(now)

    def _update_values(self, now: float) -> None:
        for q in QUANTITIES:
            ramp, grid = self._ramps[q], self._grid(q)
            if ramp is None or grid is None:
                continue
            value = ramp.at(grid, now)
            if q == "speed":
                self._speed = value
            else:
                self._incline = value

    # ------------------------------------------------------------------ phases

    def _next_phase(self, now: float) -> None:
        if self.phase_index + 1 >= len(self.profile.phase):
            self.state = "completed"
            self._events.append(Event("completed", "Profile complete."))
            return
        self._goto(self.phase_index + 1, now)

    def _goto(self, index: int, now: float) -> None:
        old = self.profile.phase[self.phase_index]
        new = self.profile.phase[index]
        self.phase_index = index
        self.phase_time = 0.0
        self._overridden.clear()
        if new.direction != old.direction:
            self._begin_turn(new, now)
        else:
            # A skip while paused stays paused: resume restarts slow in the new phase.
            self._start_phase(index, now, from_rest=False)

    def _begin_turn(self, new: Phase, now: float) -> None:
        self.state = "turning"
        self._turn_started = now
        face = "the front" if new.direction == "forward" else "the rear of the treadmill"
        wait = (
            f"Starting again in {self.turn_countdown_s:g} seconds."
            if self.turn_countdown_s is not None
            else "Send resume when you are ready."
        )
        slow = "The belt slows down" if self.turn_speed_kmh is not None else "The belt pauses"
        self._events.append(
            Event(
                "turn_required",
                f"{slow}. Hold the rails, turn around to face {face}. {wait}",
                {"direction": new.direction, "phase": new.name},
            )
        )
        grid = self.device.speed
        assert grid is not None
        if self.turn_speed_kmh is not None and self._speed is not None:
            self._set_ramp(
                "speed",
                self._speed,
                min(self._speed, grid.snap(self.turn_speed_kmh)),
                now,
                self.limits.step_interval_s,
            )
        else:
            self._speed = None
            self._ramps["speed"] = None

    def _end_turn(self, now: float) -> None:
        self.state = "finishing" if self.finished_early else "running"
        self._start_phase(self.phase_index, now, from_rest=self.turn_speed_kmh is None)

    def _start_phase(self, index: int, now: float, from_rest: bool) -> None:
        phase = self.profile.phase[index]
        self._events.append(
            Event(
                "phase_started",
                phase.cue or f"{phase.name}: walk {phase.direction}.",
                {
                    "phase": phase.name,
                    "phase_index": index,
                    "direction": phase.direction,
                    "speed_kmh": phase.speed_kmh,
                    "incline_pct": phase.incline_pct,
                },
            )
        )
        for q in QUANTITIES:
            grid = self._grid(q)
            if grid is None:
                continue
            target = self._phase_target(q)
            current = self._current(q)
            if current is None or (q == "speed" and from_rest):
                current = grid.snap(self._origins[index][0 if q == "speed" else 1])
            n = max(1, math.ceil(abs(target - current) / grid.step))
            spread = phase.ramp_s / n if phase.ramp_s else 0.0
            interval = max(self.limits.step_interval_s, spread)
            # From rest the first setpoint is the belt's start speed (its range minimum).
            self._set_ramp(q, current, target, now, interval)

    def _phase_origin_speed(self) -> int:
        grid = self.device.speed
        assert grid is not None
        return grid.snap(self._origins[self.phase_index][0])

    def _phase_target(self, q: Quantity) -> int:
        grid = self._grid(q)
        assert grid is not None
        phase = self.profile.phase[self.phase_index]
        return grid.snap(phase.speed_kmh if q == "speed" else phase.incline_pct)

    def _set_ramp(
        self,
        q: Quantity,
        origin: int,
        target: int,
        now: float,
        interval: float,
    ) -> None:
        self._ramps[q] = _Ramp(origin, target, now + interval, interval)
        if q == "speed":
            self._speed = origin
        else:
            self._incline = origin

    def _grid(self, q: Quantity) -> Grid | None:
        return self.device.speed if q == "speed" else self.device.incline

    def _current(self, q: Quantity) -> int | None:
        return self._speed if q == "speed" else self._incline

    def _value(self, q: Quantity) -> float | None:
        grid, raw = self._grid(q), self._current(q)
        if grid is None or raw is None or q in self._overridden:
            return None
        return grid.value(raw)


def plan(
    profile: Profile, limits: Limits, device: Device, tick_s: float = 0.5
) -> list[tuple[float, Step]]:
    """Run the whole profile with no commands: the setpoint series (for tests and display).

    Turns end at once (as if resume came immediately).
    """
    engine = Engine(profile, limits, device, 0.0)
    out: list[tuple[float, Step]] = []
    t = 0.0
    limit = profile.duration_s + 60 * len(profile.phase) + 10
    while t <= limit:
        step = engine.tick(t)
        out.append((t, step))
        if step.state == "completed":
            break
        if step.state == "turning":
            engine.resume(t)
        t = round(t + tick_s, 6)
    return out
