"""The heart-rate governor: pure (heart rate, time, wanted setpoints) -> governed setpoints.

SPEC.md §2 "Heart-rate cap" and the optional per-phase ``target_hr_bpm`` (README), as a
state machine that the session runner feeds with the heart rate in use and asks before it
writes a setpoint. No I/O and no clock reads: every call takes ``now``. It only ever
lowers what the engine wants (a ceiling per quantity); the runner's limiter still makes
every change one step from the treadmill's own target, one step per ``step_interval_s``.

The cap (``max_heart_rate_bpm``), in episodes:

- at or below the cap, and no episode: the engine's targets pass through;
- above the cap: an episode begins. Each free quantity gets a ceiling at the treadmill's
  current target: no further increases;
- above the cap for ``step_down_after_s`` in all during the episode (brief dips under the
  cap do not restart the count, so a heart rate hovering at the cap is not ignored): the
  ceilings step down one grid step every ``step_every_s`` while the heart rate is above
  the cap, incline first down to 0 %, then speed down to the start speed;
- above the cap for ``finish_after_s`` in all: ``finish`` once (the cool-down);
- at or below ``cap - hysteresis_bpm``: the episode ends; the ceilings rise one step
  every ``step_every_s`` (paused while the heart rate is back between the two) and go
  once the plan is under them: the profile resumes its plan by a gentle ramp, never a
  jump, and the count starts again from zero;
- no heart rate (sensor lost, no skin contact, a stale or frozen value): ceilings where
  things are (hold) at once, said after ``grace_s``; nothing steps down or finishes,
  and the count of time above the cap waits. Never a stop.

A quantity the walker took over at the console is not free: it is neither held nor
stepped (SPEC.md §2 "Never fight the walker").

The zone (a phase's ``target_hr_bpm = [low, high]``, incline only): the incline starts
where the treadmill's is when the phase begins and moves one step every
``zone_step_every_s``: up while the heart rate is below ``low``, down while above
``high``, held inside the range (the range is the hysteresis band) and with no reading.
It reverses direction only ``zone_reverse_after_s`` after its last step the other way,
and stays within 0 % and what the engine's ramp allows (the phase's ``incline_pct``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from retrotread.profiles.grid import Device, Grid

Quantity = Literal["speed", "incline"]
CapState = Literal["off", "ok", "holding", "stepping_down", "recovering", "no_signal"]
NoticeKind = Literal["holding", "stepping_down", "finish", "resumed", "no_signal", "signal_back"]
_STEP_ORDER: tuple[Quantity, ...] = ("incline", "speed")


@dataclass(frozen=True)
class CapSettings:
    """How the cap acts (``[safety]``); ``cap_bpm`` None: the cap is off."""

    cap_bpm: int | None
    hysteresis_bpm: int = 5
    step_down_after_s: float = 20.0
    finish_after_s: float = 60.0
    step_every_s: float = 5.0
    grace_s: float = 5.0  # a missing reading is held at once, and said after this long
    zone_step_every_s: float = 20.0
    zone_reverse_after_s: float = 60.0


@dataclass(frozen=True)
class Notice:
    """A change of the cap's state: ``message`` for automations and the log (an ``hr_cap``
    event), ``cue`` for the walker when they should hear about it."""

    kind: NoticeKind
    message: str
    cue: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Zone:
    phase_index: int
    value: int | None = None  # raw incline units; None until the treadmill's is known
    due: float = 0.0
    last_dir: int = 0
    last_dir_at: float = -math.inf


class HeartRateGovernor:
    """One session's cap and zone. ``update`` on every tick, then ``govern`` the targets."""

    def __init__(self, device: Device, settings: CapSettings) -> None:
        self.device = device
        self.settings = settings
        self.state: CapState = "off" if settings.cap_bpm is None else "ok"
        self.finished = False  # the cap has sent the session to its cool-down
        self.over_s = 0.0  # time above the cap in the current episode
        self.ceilings: dict[Quantity, float] = {}
        self.bpm: int | None = None
        self._last: float | None = None
        self._next_step = math.inf
        self._missing_since: float | None = None  # since when there is no reading
        self._told_missing = False
        self._stepping = False  # stepping down in this episode
        self._announced = False  # the walker was told of this hold: tell them it is over
        self._rising = False  # the episode is over: the ceilings rise back to the plan
        self._zone: _Zone | None = None
        self._zone_target: float | None = None

    @property
    def cap_bpm(self) -> int | None:
        return self.settings.cap_bpm

    @property
    def episode(self) -> bool:
        """Holding back: something has a ceiling."""
        return bool(self.ceilings)

    def grid(self, q: Quantity) -> Grid | None:
        return self.device.speed if q == "speed" else self.device.incline

    # ------------------------------------------------------------------ time

    def update(
        self,
        now: float,
        bpm: int | None,
        *,
        current: Mapping[Quantity, float | None],
        free: Collection[Quantity],
        moving: bool,
        wanted: Mapping[Quantity, float | None] | None = None,
        heading: Mapping[Quantity, float | None] | None = None,
        phase_index: int = 0,
        zone: tuple[int, int] | None = None,
        zone_max_pct: float | None = None,
        why: str | None = None,
    ) -> list[Notice]:
        """Take the heart rate in use at ``now`` (None: none) and the treadmill's targets.

        ``current``: the treadmill's own targets (None: not known yet); ``free``: the
        quantities retrotread may set (not taken at the console); ``moving``: the belt runs
        the profile (not paused, not at a turn); ``wanted``: the engine's targets now (a
        ceiling they are under goes); ``heading``: where the engine's ramps are going this
        phase (a ceiling rises back only toward a plan above it); ``zone``: the phase's
        ``target_hr_bpm`` with ``zone_max_pct`` its top incline; ``why``: why there is no
        heart rate.
        """
        dt = 0.0 if self._last is None else max(0.0, now - self._last)
        previous = self.bpm
        self._last = now
        self.bpm = bpm
        notices: list[Notice] = []
        self._update_zone(now, bpm, current, moving, phase_index, zone, zone_max_pct)
        cap = self.settings.cap_bpm
        if cap is None:
            return notices
        if bpm is None:
            self._no_reading(now, current, free, why, notices)
            return notices
        self._missing_since = None
        if self._told_missing:
            self._told_missing = False
            notices.append(self._notice("signal_back", f"Heart rate back: {bpm} bpm."))
        if moving and previous is not None and previous > cap:
            self.over_s += dt  # the time since the last reading was spent above the cap
        if bpm > cap:
            self._over(now, bpm, current, free, moving, notices)
        elif bpm <= cap - self.settings.hysteresis_bpm:
            self._under(now, bpm, moving, wanted or {}, heading or {}, notices)
        elif self.episode:
            # Under the cap but not by the hysteresis: hold (no steps down, none up).
            self.state = "recovering" if self._rising else "holding"
        else:
            self.state = "ok"
        return notices

    def _no_reading(
        self,
        now: float,
        current: Mapping[Quantity, float | None],
        free: Collection[Quantity],
        why: str | None,
        notices: list[Notice],
    ) -> None:
        """Hold at once; say so once the reading has been missing for the grace time."""
        self._hold(current, free)
        self.state = "no_signal"
        if self._missing_since is None:
            self._missing_since = now
        if not self._told_missing and now - self._missing_since >= self.settings.grace_s:
            self._told_missing = self._announced = True
            reason = f" ({why})" if why else ""
            notices.append(
                self._notice(
                    "no_signal",
                    f"No heart rate{reason}: holding speed and incline (no increases).",
                    "No heart rate from the strap: the belt will not speed up or climb until "
                    "it is back. Check that the strap is snug and moist.",
                )
            )

    def _over(
        self,
        now: float,
        bpm: int,
        current: Mapping[Quantity, float | None],
        free: Collection[Quantity],
        moving: bool,
        notices: list[Notice],
    ) -> None:
        s = self.settings
        if self.state not in ("holding", "stepping_down"):
            # A new episode (or one held by a missing reading until now): no increases
            # from where the treadmill is, even from a ceiling that was rising again.
            for q, value in current.items():
                if q in self.ceilings and value is not None:
                    self.ceilings[q] = min(self.ceilings[q], value)
            self._rising = False
            self._announced = True
            notices.append(
                self._notice(
                    "holding",
                    f"Heart rate {bpm} bpm is above the cap of {s.cap_bpm}: no increases.",
                )
            )
        self._hold(current, free)  # also a quantity that has become free since
        self.state = "holding"
        if moving and self.over_s >= s.step_down_after_s:
            self.state = "stepping_down"
            if not self._stepping:
                self._stepping = True
                self._next_step = now
                notices.append(
                    self._notice(
                        "stepping_down",
                        f"Heart rate above the cap for {s.step_down_after_s:g} s: stepping "
                        "incline, then speed, down.",
                        "Your heart is working hard: the belt eases off, a little at a time.",
                    )
                )
            if now + 1e-9 >= self._next_step:
                self._step_down(current, free)
                self._next_step = now + s.step_every_s
        if moving and self.over_s >= s.finish_after_s and not self.finished:
            self.finished = True
            notices.append(
                self._notice(
                    "finish",
                    f"Heart rate above the cap for {s.finish_after_s:g} s: finishing with the "
                    "cool-down.",
                    "Your heart rate has stayed above your limit: cooling down now. Keep "
                    "holding the rails and breathe out slowly.",
                )
            )

    def _under(
        self,
        now: float,
        bpm: int,
        moving: bool,
        wanted: Mapping[Quantity, float | None],
        heading: Mapping[Quantity, float | None],
        notices: list[Notice],
    ) -> None:
        """Under the cap by the hysteresis: the episode is over; the ceilings rise and go.

        A ceiling rises one step every ``step_every_s`` toward where the plan is heading
        this phase, and goes once it is there, or once the plan heads no higher than it:
        a plan coming down (a ramp still above the belt) is never climbed toward.
        """
        s = self.settings
        if self.episode and not self._rising:
            self._rising = True
            self._next_step = now + s.step_every_s
        if self._announced:
            self._announced = False  # a hold nobody was told about ends quietly too
            notices.append(
                self._notice(
                    "resumed",
                    f"Heart rate {bpm} bpm, {s.hysteresis_bpm} under the cap: back to the "
                    "plan, ramping.",
                    "Your heart rate is down again: the session carries on, gently.",
                )
            )
        self.over_s = 0.0
        self._stepping = False
        if self._rising and moving and now + 1e-9 >= self._next_step:
            self._next_step = now + s.step_every_s
            for q in list(self.ceilings):
                grid = self.grid(q)
                goal = heading.get(q)
                if grid is None or goal is None or goal <= self.ceilings[q] + 1e-9:
                    continue
                raw = grid.step_from(self.ceilings[q] * grid.div, grid.snap(goal))
                if raw is not None:
                    self.ceilings[q] = grid.value(raw)
        for q in list(self.ceilings):
            goal = heading.get(q)
            if goal is not None and goal <= self.ceilings[q] + 1e-9:
                del self.ceilings[q]  # the plan goes no higher: nothing left to hold back
        if not self.ceilings:
            self._rising = False
            self._next_step = math.inf
        self.state = "recovering" if self.ceilings else "ok"

    def govern(self, wanted: Mapping[Quantity, float | None]) -> dict[Quantity, float | None]:
        """The engine's targets under the zone and the ceilings (None stays None)."""
        out: dict[Quantity, float | None] = dict(wanted)
        if self._zone_target is not None and out.get("incline") is not None:
            out["incline"] = min(float(out["incline"] or 0.0), self._zone_target)
        for q, ceiling in self.ceilings.items():
            value = out.get(q)
            if value is not None and value > ceiling:
                out[q] = ceiling
        return out

    def report(self) -> dict[str, Any]:
        """The cap's part of the state and telemetry payloads."""
        return {
            "cap_bpm": self.settings.cap_bpm,
            "cap_state": self.state,
            "cap_finished": self.finished,
        }

    # ------------------------------------------------------------------ the cap

    def _notice(self, kind: NoticeKind, message: str, cue: str | None = None) -> Notice:
        data: dict[str, Any] = {
            "state": kind,
            "heart_rate_bpm": self.bpm,
            "cap_bpm": self.settings.cap_bpm,
            "above_s": round(self.over_s, 1),
        }
        return Notice(kind, message, cue, data)

    def _hold(self, current: Mapping[Quantity, float | None], free: Collection[Quantity]) -> None:
        """A ceiling at the treadmill's current target for every free quantity without one."""
        for q in _STEP_ORDER:
            value = current.get(q)
            if q not in free or q in self.ceilings or value is None:
                continue
            if value > 0 or (q == "incline" and value == 0):  # a speed of 0 is a belt at rest
                self.ceilings[q] = value

    def _step_down(
        self, current: Mapping[Quantity, float | None], free: Collection[Quantity]
    ) -> None:
        """One grid step down: the first free quantity (incline, then speed) above its floor."""
        self._hold(current, free)
        for q in _STEP_ORDER:
            grid = self.grid(q)
            ceiling = self.ceilings.get(q)
            if grid is None or q not in free or ceiling is None:
                continue
            now_at = current.get(q)
            base = min(ceiling, now_at) if now_at is not None else ceiling
            floor = grid.snap(0.0) if q == "incline" else grid.start
            raw = base * grid.div
            if raw <= floor + 1e-6:
                continue
            nxt = grid.step_from(raw, floor)
            if nxt is None or nxt >= raw - 1e-6:
                continue
            self.ceilings[q] = grid.value(nxt)
            return

    # ------------------------------------------------------------------ the zone

    def _update_zone(
        self,
        now: float,
        bpm: int | None,
        current: Mapping[Quantity, float | None],
        moving: bool,
        phase_index: int,
        zone: tuple[int, int] | None,
        zone_max_pct: float | None,
    ) -> None:
        grid = self.device.incline
        if zone is None or grid is None:
            self._zone = None
            self._zone_target = None
            return
        z = self._zone
        if z is None or z.phase_index != phase_index:
            z = self._zone = _Zone(phase_index, due=now + self.settings.zone_step_every_s)
        if z.value is None:
            at = current.get("incline")
            if at is None:
                self._zone_target = grid.value(grid.snap(0.0))
                return
            z.value = grid.snap(at)
        top = grid.snap(zone_max_pct) if zone_max_pct is not None else grid.hi
        low, high = zone
        direction = 0
        if moving and bpm is not None and now + 1e-9 >= z.due:
            if bpm < low and z.value < top:
                direction = 1
            elif bpm > high and z.value > grid.snap(0.0):
                direction = -1
            turning = direction != 0 and z.last_dir == -direction
            if turning and now - z.last_dir_at < self.settings.zone_reverse_after_s - 1e-9:
                direction = 0  # too soon to turn around: hold
            if direction:
                target = top if direction > 0 else grid.snap(0.0)
                z.value = grid.toward(z.value, target)
                z.last_dir, z.last_dir_at = direction, now
            z.due = now + self.settings.zone_step_every_s
        z.value = min(z.value, top)
        self._zone_target = grid.value(z.value)
