"""A level turned into today's session: an ordinary profile, checked like any other.

The shape: a forward warm-up; backward bouts (on a hill stage, a flat backward bout first,
then straight on up the hill), each after the first preceded by forward recovery walking,
so every bout begins and ends with a turn-around; a forward cool-down. Every value is kept
within the walker's effective limits and the treadmill's ranges (when known), each ramp is
as long as the step limits need, and the result goes through ``check_profile``; a session
that cannot be made safe is refused, never clamped in silence: each adjustment is a note.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from retrotread.coach.plan import LevelSpec, Plan
from retrotread.errors import CoachRefused
from retrotread.profiles.grid import INCLINE_DIV, SPEED_DIV, Grid, RangeLike
from retrotread.profiles.model import Limits, Profile, find_problems, steps_needed

MIN_BOUT_S = 30.0
ROUND_S = 5.0  # shortened bouts are whole multiples of this

DEFAULT_CUES = {
    "warm_up": "Walk forward at an easy pace to warm up.",
    "backward": "Face the rear and hold both rails. Step back toe first, then the heel. "
    "Short steps, eyes ahead.",
    "hill": "The belt tilts up slowly. Lean slightly forward, keep holding the rails and push "
    "through the whole foot.",
    "recovery": "Turn to face the front and walk forward easily.",
    "cool_down": "Face the front and walk slowly to cool down. Well done.",
}


@dataclass(frozen=True)
class DeviceRanges:
    """What the treadmill accepts; ``incline`` None: its incline cannot be driven."""

    speed: RangeLike
    incline: RangeLike | None


@dataclass
class Built:
    """Today's session and what was adjusted to make it fit."""

    profile: Profile
    speed_kmh: float  # the backward speed on the flat
    hill_speed_kmh: float | None
    incline_pct: float
    bouts: int
    bout_s: float
    flat_s: float
    notes: list[str] = field(default_factory=list)  # each names its rule in brackets

    @property
    def backward_s(self) -> float:
        return self.flat_s + self.bouts * self.bout_s

    def summary(self) -> dict[str, Any]:
        """Today's session for the walker topic and ``plan show``."""
        p = self.profile
        return {
            "profile": p.name,
            "backward_min": round(self.backward_s / 60, 1),
            "bouts": self.bouts + (1 if self.flat_s else 0),
            "duration_min": round(p.duration_s / 60, 1),
            "backward_speed_kmh": self.speed_kmh,
            "hill_speed_kmh": self.hill_speed_kmh,
            "max_speed_kmh": p.max_speed_kmh,
            "max_incline_pct": p.max_incline_pct,
        }


def walker_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "walker"


def _steps(limits: Limits, device: DeviceRanges | None) -> tuple[float, float]:
    """The largest step per interval the check will count (the treadmill's grid, if known)."""
    speed, incline = limits.speed_step_kmh, limits.incline_step_pct
    if device is not None:
        try:
            g = Grid.build(SPEED_DIV, device.speed, limits.max_speed_kmh, speed)
            speed = g.step / g.div
        except ValueError:
            pass  # find_problems reports it
        if device.incline is not None:
            try:
                g = Grid.build(
                    INCLINE_DIV, device.incline, limits.max_incline_pct, incline, floor=0.0
                )
                incline = g.step / g.div
            except ValueError:
                pass
    return speed, incline


def _floor1(x: float) -> float:
    return math.floor(x * 10 + 1e-6) / 10


def build_session(
    plan: Plan,
    spec: LevelSpec,
    *,
    walker: str,
    speed_kmh: float,
    limits: Limits,
    device: DeviceRanges | None = None,
    cap_s: float | None = None,
    description: str = "",
) -> Built:
    """Today's profile for ``spec`` at the walker's flat backward speed ``speed_kmh``.

    Raises CoachRefused (rule ``limits``, ``device`` or ``growth-cap``) when no safe
    session of this level can be made.
    """
    notes: list[str] = []

    def refuse(rule: str, reason: str) -> CoachRefused:
        return CoachRefused(walker, plan.name, rule, reason)

    # -- speeds: within the walker's limits and the belt's range
    lo = device.speed.minimum if device is not None else 0.1
    hi = limits.max_speed_kmh
    if device is not None and device.speed.maximum < hi:
        hi = device.speed.maximum
    if lo > hi + 1e-9:
        raise refuse(
            "device",
            f"the treadmill's slowest speed {lo:g} km/h is above the limit of {hi:g} km/h",
        )

    def speed(value: float, what: str) -> float:
        v = _floor1(value)
        if v > hi + 1e-9:
            notes.append(f"{what} {v:g} km/h held at {_floor1(hi):g} km/h by the limits [limits]")
            v = _floor1(hi) if _floor1(hi) >= lo - 1e-9 else hi
        if v < lo - 1e-9:
            notes.append(
                f"{what} {v:g} km/h raised to the treadmill's minimum {lo:g} km/h [device]"
            )
            v = lo
        return round(v, 2)

    back = speed(speed_kmh, "backward speed")
    # -- incline
    incline = spec.incline_pct
    if incline > 0:
        if device is not None and device.incline is None:
            raise refuse(
                "device",
                f"{spec.label()} walks up a {incline:g} % hill and this treadmill's incline "
                "cannot be driven",
            )
        top = limits.max_incline_pct
        if device is not None and device.incline is not None:
            top = min(top, device.incline.maximum)
        if top < 0.5:
            raise refuse(
                "limits",
                f"{spec.label()} walks up a {incline:g} % hill and the incline limit is "
                f"{limits.max_incline_pct:g} %",
            )
        if incline > top + 1e-9:
            notes.append(f"incline {incline:g} % held at {math.floor(top * 10) / 10:g} % [limits]")
            incline = math.floor(top * 10) / 10
    hill = speed(speed_kmh * spec.speed_factor, "hill speed") if incline > 0 else None
    warm = speed(spec.stage.warm_up_speed_kmh, "warm-up speed")
    recover = speed(spec.stage.recovery_speed_kmh, "recovery speed")
    cool = speed(spec.stage.cool_down_speed_kmh, "cool-down speed")

    # -- ramps: as long as the step limits need, at least the stage's ramp_s
    speed_step, incline_step = _steps(limits, device)
    interval = limits.step_interval_s

    def need(v0: float, v1: float, g0: float, g1: float) -> float:
        n = max(steps_needed(v1 - v0, speed_step), steps_needed(g1 - g0, incline_step))
        return n * interval

    bout_speed = hill if hill is not None else back
    min_bout = max(MIN_BOUT_S, need(0.0, bout_speed, incline, incline))
    # -- backward time: the level's, shortened to the weekly growth cap if need be
    bouts, bout_s, flat_s = spec.bouts, spec.bout_s, spec.flat_s
    if cap_s is not None and flat_s + bouts * bout_s > cap_s + 1e-6:
        bouts, bout_s, flat_s = _shorten(bouts, bout_s, flat_s, cap_s, min_bout)
        if bouts == 0:
            raise refuse(
                "growth-cap",
                f"backward time may grow to {cap_s / 60:.1f} min this week, less than one "
                f"{min_bout:g} s bout",
            )
    min_flat = max(MIN_BOUT_S, need(0.0, back, 0.0, 0.0))
    if flat_s and flat_s < min_flat - 1e-9:
        notes.append(
            f"the {flat_s:g} s flat bout is left out: the step limits need {min_flat:g} s to "
            "reach its speed [limits]"
        )
        flat_s = 0.0
    if bout_s < min_bout - 1e-9:
        raise refuse(
            "limits",
            f"a backward bout of {bout_s:g} s is shorter than the {min_bout:g} s the step limits "
            f"need to reach {bout_speed:g} km/h" + (f" and {incline:g} %" if incline else ""),
        )

    # -- phases
    cues = {k: getattr(spec.stage.cues, k) or v for k, v in DEFAULT_CUES.items()}
    phases: list[dict[str, Any]] = []
    state: dict[str, Any] = {"v": 0.0, "g": 0.0, "dir": "forward"}

    def add(name: str, direction: str, duration: float, v: float, g: float, cue: str) -> None:
        v0 = 0.0 if direction != state["dir"] or not phases else float(state["v"])
        ramp_need = need(v0, v, float(state["g"]), g)
        if ramp_need > duration + 1e-9:
            if direction == "backward":
                raise refuse(
                    "limits",
                    f"phase {name!r} needs a {ramp_need:g} s ramp, longer than the phase",
                )
            duration = ramp_need  # a forward phase grows to fit its ramp
        ramp = min(max(spec.stage.ramp_s, ramp_need), duration)
        phases.append(
            {
                "name": name,
                "direction": direction,
                "duration_s": duration,
                "speed_kmh": v,
                "incline_pct": g,
                "ramp_s": ramp,
                "cue": cue[:300],
            }
        )
        state.update(v=v, g=g, dir=direction)

    total_bouts = bouts + (1 if flat_s else 0)
    plan_line = (
        f"Today: {fmt_min(flat_s + bouts * bout_s)} backward in {total_bouts} "
        f"bout{'s' if total_bouts > 1 else ''}."
    )
    add("warm-up", "forward", spec.stage.warm_up_s, warm, 0.0, f"{cues['warm_up']} {plan_line}")
    n = 0
    for i in range(bouts):
        if i > 0:
            add(f"forward-{i}", "forward", spec.stage.recovery_s, recover, 0.0, cues["recovery"])
        if i == 0 and flat_s:
            n += 1
            add(
                "backward-flat",
                "backward",
                flat_s,
                back,
                0.0,
                f"Backward on the flat, {fmt_min(flat_s)} at {back:g} km/h. {cues['backward']}",
            )
        n += 1
        if incline > 0:
            assert hill is not None
            add(
                f"hill-{i + 1}",
                "backward",
                bout_s,
                hill,
                incline,
                f"Hill bout {i + 1} of {bouts}: {fmt_min(bout_s)} backward at {incline:g} %, "
                f"{hill:g} km/h. {cues['hill']}",
            )
        else:
            add(
                f"backward-{i + 1}",
                "backward",
                bout_s,
                back,
                0.0,
                f"Backward bout {n} of {total_bouts}: {fmt_min(bout_s)} at {back:g} km/h. "
                f"{cues['backward']}",
            )
    add("cool-down", "forward", spec.stage.cool_down_s, cool, 0.0, cues["cool_down"])

    name = f"{plan.name}-{walker_slug(walker)}"[:48].rstrip("-")
    title = f"{plan.title or plan.name}: {walker}, {spec.label()}"[:80]
    try:
        profile = Profile.model_validate(
            {"name": name, "title": title, "description": description[:2000], "phase": phases}
        )
    except ValidationError as exc:  # a bug in the generator: refuse rather than run it
        raise refuse("limits", f"the generated session is not a valid profile: {exc}") from None
    problems = find_problems(
        profile,
        limits,
        device.speed if device is not None else None,
        device.incline if device is not None and incline > 0 else None,
    )
    if problems:
        raise refuse("limits", "; ".join(str(p) for p in problems))
    return Built(profile, back, hill, incline, bouts, bout_s, flat_s, notes)


def _shorten(
    bouts: int, bout_s: float, flat_s: float, cap_s: float, min_bout: float
) -> tuple[int, float, float]:
    """The same shape scaled down to at most ``cap_s`` backward seconds."""
    f = cap_s / (flat_s + bouts * bout_s)
    new_bout = math.floor(bout_s * f / ROUND_S) * ROUND_S
    new_flat = math.floor(flat_s * f / ROUND_S) * ROUND_S if flat_s else 0.0
    if new_flat and new_flat < MIN_BOUT_S:
        new_flat = 0.0
    if new_bout < min_bout:  # fewer bouts, each long enough to be worth the turn-arounds
        new_flat = 0.0
        bouts = min(bouts, math.floor(cap_s / min_bout))
        if bouts == 0:
            return 0, 0.0, 0.0
        new_bout = max(min_bout, math.floor(cap_s / bouts / ROUND_S) * ROUND_S)
        if bouts * new_bout > cap_s:
            new_bout = min_bout
    return bouts, new_bout, new_flat


def fmt_min(seconds: float) -> str:
    """``2:30``."""
    s = max(0, round(seconds))
    return f"{s // 60}:{s % 60:02d}"
