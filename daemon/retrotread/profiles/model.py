"""Walking profiles (SPEC.md §4): the TOML model and the safety check before the belt moves.

The ramp-time rule (SPEC.md §2, "Profiles are checked before the belt moves"): a phase
whose target is ``n = ceil(|delta| / step)`` steps away from where its ramp starts needs
``n * step_interval_s <= ramp_s``. The first step comes one interval after the phase
starts, because the previous phase may have made its last step just before it ended; so
``n`` steps take ``n`` intervals, not ``n - 1``. A ramp starts from the previous phase's
targets, except that speed starts from 0 km/h for the first phase and after a change of
direction (the belt is paused for the turn). Incline carries over, from 0 % at the start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from retrotread.errors import ProfileError
from retrotread.profiles.grid import (
    INCLINE_DIV,
    SPEED_DIV,
    Grid,
    RangeLike,
    StepLimits,
    floor_units,
)

Direction = Literal["forward", "backward"]


class Phase(BaseModel):
    """One phase: walk this way at this speed and incline, reached within ``ramp_s``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=40)
    direction: Direction = "forward"
    duration_s: float = Field(gt=0, le=4 * 3600)
    # > 0, not >= 0: a belt at 0 km/h is a pause, and a running belt cannot hold 0 anyway.
    speed_kmh: float = Field(gt=0, le=25)
    # >= 0: profiles never ask for a decline (few treadmills have one; none are needed).
    incline_pct: float = Field(default=0.0, ge=0, le=40)
    ramp_s: float = Field(default=0.0, ge=0)
    cue: str = Field(default="", max_length=300)
    # A heart-rate zone (README "Heart-rate phases"): the incline moves in small steps to
    # keep the heart rate in [low, high], from 0 % up to incline_pct at most.
    target_hr_bpm: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _ramp_within_phase(self) -> Phase:
        if self.ramp_s > self.duration_s:
            raise ValueError(
                f"ramp_s {self.ramp_s:g} is longer than the phase itself ({self.duration_s:g} s)"
            )
        return self

    @model_validator(mode="after")
    def _zone(self) -> Phase:
        zone = self.target_hr_bpm
        if zone is None:
            return self
        low, high = zone
        if not 60 <= low < high <= 220 or high - low < 5:
            raise ValueError(
                f"target_hr_bpm [{low}, {high}] must be [low, high] with 60 <= low, "
                "high <= 220 and at least 5 bpm between them"
            )
        if self.incline_pct <= 0:
            raise ValueError(
                "target_hr_bpm needs incline_pct > 0: the incline the zone may climb to"
            )
        return self


class Profile(BaseModel):
    """A named sequence of phases; ``name`` (a slug) is what commands use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")
    title: str = Field(default="", max_length=80)
    description: str = Field(default="", max_length=2000)
    phase: tuple[Phase, ...] = Field(min_length=1, max_length=50)

    @property
    def phases(self) -> tuple[Phase, ...]:
        return self.phase

    @property
    def duration_s(self) -> float:
        return profile_duration_s(self)

    @property
    def max_speed_kmh(self) -> float:
        return max(p.speed_kmh for p in self.phase)

    @property
    def max_incline_pct(self) -> float:
        return max(p.incline_pct for p in self.phase)

    @property
    def backward_s(self) -> float:
        return sum(p.duration_s for p in self.phase if p.direction == "backward")

    def summary(self) -> dict[str, object]:
        """The entry of the retained ``profiles`` topic (SPEC.md §3)."""
        return {
            "name": self.name,
            "title": self.title or self.name,
            "duration_s": round(self.duration_s),
            "max_speed_kmh": self.max_speed_kmh,
            "max_incline_pct": self.max_incline_pct,
        }


def profile_duration_s(profile: Profile) -> float:
    """Planned walking time: the sum of phase durations (turn-around waits not included)."""
    return sum(p.duration_s for p in profile.phase)


class Limits(StepLimits, Protocol):
    """The ``[safety]`` values a profile is checked against (``config.SafetyConfig``)."""

    @property
    def step_interval_s(self) -> float: ...


def steps_needed(delta: float, step: float) -> int:
    """Steps of at most ``step`` to cover ``delta``; exact for values on a 0.01 grid."""
    whole = floor_units(step, SPEED_DIV)
    if whole <= 0:
        raise ValueError(f"step {step:g} is smaller than 0.01")
    return -(-round(abs(delta) * SPEED_DIV) // whole)


def ramp_origins(profile: Profile) -> list[tuple[float, float]]:
    """(speed, incline) each phase's ramp starts from (see the module docstring)."""
    out = []
    speed, incline = 0.0, 0.0
    previous: Phase | None = None
    for phase in profile.phase:
        if previous is not None and phase.direction != previous.direction:
            speed = 0.0
        out.append((speed, incline))
        speed, incline = phase.speed_kmh, phase.incline_pct
        previous = phase
    return out


@dataclass(frozen=True)
class Problem:
    """One reason to refuse a profile; ``str()`` names profile, phase, field and value."""

    profile: str
    phase_number: int | None  # 1-based, as a person counts; None: the whole profile
    phase: str | None
    field: str
    value: float
    reason: str

    def __str__(self) -> str:
        where = f"profile {self.profile!r}"
        if self.phase_number is not None:
            where += f", phase {self.phase_number} {self.phase!r}"
        return f"{where}: {self.field} {self.value:g} {self.reason}"


class ProfileRefused(ProfileError):
    """``check_profile`` refused a profile; ``problems`` has every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def find_problems(
    profile: Profile,
    limits: Limits,
    speed_range: RangeLike | None = None,
    incline_range: RangeLike | None = None,
) -> list[Problem]:
    """Every way ``profile`` breaks the limits (and the treadmill's ranges, when given).

    Nothing here is clamped: a value out of bounds is a problem, never rounded into range.
    With a range, ramps are counted in the treadmill's whole increments (a 0.5 % step
    limit on a 0.2 % grid moves at most 0.4 % per step).
    """
    found: list[Problem] = []
    speed_step, incline_step = limits.speed_step_kmh, limits.incline_step_pct

    def problem(i: int | None, field: str, value: float, reason: str) -> None:
        name = profile.phase[i].name if i is not None else None
        found.append(
            Problem(profile.name, None if i is None else i + 1, name, field, value, reason)
        )

    if speed_range is not None:
        try:
            grid = Grid.build(SPEED_DIV, speed_range, limits.max_speed_kmh, speed_step)
            speed_step = grid.step / grid.div
        except ValueError as exc:
            problem(None, "safety.speed_step_kmh", speed_step, f"cannot be kept: {exc}")
    if incline_range is not None and profile.max_incline_pct > 0:
        try:
            grid = Grid.build(
                INCLINE_DIV, incline_range, limits.max_incline_pct, incline_step, floor=0.0
            )
            incline_step = grid.step / grid.div
        except ValueError as exc:
            problem(None, "safety.incline_step_pct", incline_step, f"cannot be kept: {exc}")

    for i, (phase, (v0, g0)) in enumerate(zip(profile.phase, ramp_origins(profile), strict=True)):
        if phase.speed_kmh > limits.max_speed_kmh + 1e-9:
            problem(
                i,
                "speed_kmh",
                phase.speed_kmh,
                f"is above the safety limit max_speed_kmh = {limits.max_speed_kmh:g}",
            )
        if phase.incline_pct > limits.max_incline_pct + 1e-9:
            problem(
                i,
                "incline_pct",
                phase.incline_pct,
                f"is above the safety limit max_incline_pct = {limits.max_incline_pct:g}",
            )
        if speed_range is not None:
            if phase.speed_kmh > speed_range.maximum + 1e-9:
                problem(
                    i,
                    "speed_kmh",
                    phase.speed_kmh,
                    f"is above the treadmill's maximum of {speed_range.maximum:g} km/h",
                )
            if phase.speed_kmh < speed_range.minimum - 1e-9:
                problem(
                    i,
                    "speed_kmh",
                    phase.speed_kmh,
                    f"is below the treadmill's minimum of {speed_range.minimum:g} km/h",
                )
        if incline_range is not None and phase.incline_pct > incline_range.maximum + 1e-9:
            problem(
                i,
                "incline_pct",
                phase.incline_pct,
                f"is above the treadmill's maximum of {incline_range.maximum:g} %",
            )
        for field, start, end, step, unit in (
            ("speed_kmh", v0, phase.speed_kmh, speed_step, "km/h"),
            ("incline_pct", g0, phase.incline_pct, incline_step, "%"),
        ):
            need = steps_needed(end - start, step) * limits.step_interval_s
            if need > phase.ramp_s + 1e-9:
                problem(
                    i,
                    "ramp_s",
                    phase.ramp_s,
                    f"is too short to take {field} from {start:g} to {end:g} in steps of "
                    f"{step:g} {unit} every {limits.step_interval_s:g} s (needs {need:g} s)",
                )
    return found


def problems(
    profile: Profile,
    limits: Limits,
    speed_range: RangeLike | None = None,
    incline_range: RangeLike | None = None,
) -> list[str]:
    """``find_problems`` as lines a person reads; empty when the profile may run."""
    return [str(p) for p in find_problems(profile, limits, speed_range, incline_range)]


def check_profile(
    profile: Profile,
    limits: Limits,
    speed_range: RangeLike | None = None,
    incline_range: RangeLike | None = None,
) -> None:
    """Raise ProfileRefused (a ProfileError) unless ``profile`` may run (SPEC.md §2)."""
    found = find_problems(profile, limits, speed_range, incline_range)
    if found:
        raise ProfileRefused(found)
