"""Walking profiles (SPEC.md §4): the TOML model and the safety check before the belt moves."""

from __future__ import annotations

import math
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from retrotread.errors import ProfileError

Direction = Literal["forward", "backward"]


class Phase(BaseModel):
    """One phase: walk this way at this speed and incline, reached within ``ramp_s``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=40)
    direction: Direction = "forward"
    duration_s: float = Field(gt=0, le=4 * 3600)
    speed_kmh: float = Field(gt=0, le=25)
    incline_pct: float = Field(default=0.0, ge=0, le=40)
    ramp_s: float = Field(default=0.0, ge=0)
    cue: str = Field(default="", max_length=300)

    @model_validator(mode="after")
    def _ramp_within_phase(self) -> Phase:
        if self.ramp_s > self.duration_s:
            raise ValueError(
                f"ramp_s {self.ramp_s:g} is longer than the phase itself ({self.duration_s:g} s)"
            )
        return self


class Profile(BaseModel):
    """A named sequence of phases; ``name`` is what commands use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")
    title: str = ""
    description: str = ""
    phase: tuple[Phase, ...] = Field(min_length=1, max_length=50)

    @property
    def phases(self) -> tuple[Phase, ...]:
        return self.phase

    @property
    def duration_s(self) -> float:
        return sum(p.duration_s for p in self.phase)

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


class Limits(Protocol):
    max_speed_kmh: float
    max_incline_pct: float
    speed_step_kmh: float
    incline_step_pct: float
    step_interval_s: float


def steps_needed(delta: float, step: float) -> int:
    """Steps of at most ``step`` to cover ``delta`` (tolerant of float noise)."""
    return math.ceil(abs(delta) / step - 1e-9) if abs(delta) > 1e-9 else 0


def ramp_origins(profile: Profile) -> list[tuple[float, float]]:
    """(speed, incline) each phase's ramp starts from.

    The first phase starts from a standing belt, and so does a phase after a change of
    direction (the belt is paused for the turn); incline carries over either way.
    """
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


def problems(profile: Profile, limits: Limits) -> list[str]:
    """Every way ``profile`` breaks ``limits``, each naming profile, phase, field and value."""
    found = []
    for i, (phase, (v0, g0)) in enumerate(zip(profile.phase, ramp_origins(profile), strict=True)):
        where = f"profile {profile.name!r}, phase {i + 1} {phase.name!r}"
        if phase.speed_kmh > limits.max_speed_kmh + 1e-9:
            found.append(
                f"{where}: speed_kmh {phase.speed_kmh:g} is above the safety limit "
                f"max_speed_kmh = {limits.max_speed_kmh:g}"
            )
        if phase.incline_pct > limits.max_incline_pct + 1e-9:
            found.append(
                f"{where}: incline_pct {phase.incline_pct:g} is above the safety limit "
                f"max_incline_pct = {limits.max_incline_pct:g}"
            )
        for field, start, end, step, unit in (
            ("speed_kmh", v0, phase.speed_kmh, limits.speed_step_kmh, "km/h"),
            ("incline_pct", g0, phase.incline_pct, limits.incline_step_pct, "%"),
        ):
            n = steps_needed(end - start, step)
            need = n * limits.step_interval_s
            if need > phase.ramp_s + 1e-9:
                found.append(
                    f"{where}: ramp_s {phase.ramp_s:g} is too short to take {field} from "
                    f"{start:g} to {end:g} in steps of {step:g} {unit} every "
                    f"{limits.step_interval_s:g} s (needs {need:g} s)"
                )
    return found


def check_profile(profile: Profile, limits: Limits) -> None:
    """Refuse a profile that breaks the limits; nothing is silently clamped (SPEC.md §2)."""
    found = problems(profile, limits)
    if found:
        raise ProfileError("; ".join(found))
