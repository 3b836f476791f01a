"""Walkers: the ``[[walker]]`` config entries and each walker's effective limits.

A walker's safety values may only tighten ``[safety]`` (SPEC.md §2, §4): a looser one is
refused when the config is loaded, naming the walker, the key and the value. The limits a
walker's sessions run under are the tighter of each value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from retrotread.profiles.model import Limits

IMPLICIT_WALKER = "default"
"""The walker of a house with no ``[[walker]]`` entries (and of sessions that name none)."""

# Age-predicted maximal heart rate, Tanaka, Monahan & Seals (J Am Coll Cardiol 2001):
# 208 - 0.7 x age. A derived cap uses 85 % of it, the conventional upper bound for
# submaximal exercise testing; a walker's own max_heart_rate_bpm replaces the estimate.
HR_MAX_INTERCEPT = 208.0
HR_MAX_SLOPE = 0.7
HR_CAP_FRACTION = 0.85


class SafetyLike(Limits, Protocol):
    """The ``[safety]`` values a walker can tighten (``config.SafetyConfig``)."""

    @property
    def settle_s(self) -> float: ...


class WalkerConfig(BaseModel):
    """One ``[[walker]]`` entry: a person who walks on this treadmill."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Topic- and file-safe: it appears in <base>/walker/<name> and in profile names.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
    plan: str | None = Field(
        default=None, min_length=1, max_length=48, description="the plan 'start' uses"
    )
    age: int | None = Field(default=None, ge=5, le=110)
    max_heart_rate_bpm: int | None = Field(default=None, ge=60, le=220)
    # Tightening only (checked against [safety] in config.Config); same ceilings as there.
    max_speed_kmh: float | None = Field(default=None, gt=0, le=8.0)
    max_incline_pct: float | None = Field(default=None, ge=0, le=15.0)
    speed_step_kmh: float | None = Field(default=None, ge=0.01, le=0.5)
    incline_step_pct: float | None = Field(default=None, ge=0.1, le=2.0)
    step_interval_s: float | None = Field(default=None, ge=0.5, le=30)


# key -> True when a larger value is tighter (the step interval), False when smaller is.
TIGHTENING: dict[str, bool] = {
    "max_speed_kmh": False,
    "max_incline_pct": False,
    "speed_step_kmh": False,
    "incline_step_pct": False,
    "step_interval_s": True,
}


def loosened(walker: WalkerConfig, safety: SafetyLike) -> list[str]:
    """Every value of ``walker`` that would loosen ``safety``, as a sentence each."""
    out = []
    for key, larger_is_tighter in TIGHTENING.items():
        mine = getattr(walker, key)
        if mine is None:
            continue
        house = float(getattr(safety, key))
        looser = mine < house - 1e-9 if larger_is_tighter else mine > house + 1e-9
        if looser:
            side = "below" if larger_is_tighter else "above"
            out.append(
                f"walker {walker.name!r}: {key} = {mine:g} is {side} safety.{key} = {house:g} "
                "(a walker's values may only tighten [safety])"
            )
    safety_hr = getattr(safety, "max_heart_rate_bpm", None)
    mine_hr = walker.max_heart_rate_bpm
    if mine_hr is not None and isinstance(safety_hr, int | float) and mine_hr > safety_hr:
        out.append(
            f"walker {walker.name!r}: max_heart_rate_bpm = {mine_hr} is above "
            f"safety.max_heart_rate_bpm = {safety_hr:g} (a walker's values may only tighten "
            "[safety])"
        )
    return out


def age_heart_rate_cap(age: int, fraction: float = HR_CAP_FRACTION) -> int:
    """``fraction`` (85 %) of the age-predicted maximal heart rate (208 - 0.7 x age), in
    whole beats (``[safety] heart_rate_cap_fraction``)."""
    return int((HR_MAX_INTERCEPT - HR_MAX_SLOPE * age) * fraction)


@dataclass(frozen=True)
class WalkerLimits:
    """The limits one walker's sessions run under: the tighter of [safety] and the walker.

    Satisfies ``profiles.model.Limits`` and the runner's ``Safety``.
    """

    max_speed_kmh: float
    max_incline_pct: float
    speed_step_kmh: float
    incline_step_pct: float
    step_interval_s: float
    settle_s: float
    max_heart_rate_bpm: int | None = None
    walker: str | None = None

    def tightened_by_walker(self, safety: SafetyLike) -> list[str]:
        """The keys where the walker's value is the one in force (for explanations)."""
        return [
            key
            for key in TIGHTENING
            if abs(float(getattr(self, key)) - float(getattr(safety, key))) > 1e-9
        ]


def effective_limits(safety: SafetyLike, walker: WalkerConfig | None) -> WalkerLimits:
    """The tighter of each value; the heart-rate cap is the lowest of those known."""
    safety_hr = getattr(safety, "max_heart_rate_bpm", None)
    caps = [int(safety_hr)] if isinstance(safety_hr, int | float) else []
    if walker is None:
        return WalkerLimits(
            max_speed_kmh=safety.max_speed_kmh,
            max_incline_pct=safety.max_incline_pct,
            speed_step_kmh=safety.speed_step_kmh,
            incline_step_pct=safety.incline_step_pct,
            step_interval_s=safety.step_interval_s,
            settle_s=safety.settle_s,
            max_heart_rate_bpm=min(caps) if caps else None,
        )
    if walker.max_heart_rate_bpm is not None:
        caps.append(walker.max_heart_rate_bpm)
    elif walker.age is not None:
        fraction = getattr(safety, "heart_rate_cap_fraction", HR_CAP_FRACTION)
        caps.append(age_heart_rate_cap(walker.age, float(fraction)))

    def tighter(key: str) -> float:
        house = float(getattr(safety, key))
        mine = getattr(walker, key)
        if mine is None:
            return house
        return max(house, float(mine)) if TIGHTENING[key] else min(house, float(mine))

    return WalkerLimits(
        max_speed_kmh=tighter("max_speed_kmh"),
        max_incline_pct=tighter("max_incline_pct"),
        speed_step_kmh=tighter("speed_step_kmh"),
        incline_step_pct=tighter("incline_step_pct"),
        step_interval_s=tighter("step_interval_s"),
        settle_s=safety.settle_s,
        max_heart_rate_bpm=min(caps) if caps else None,
        walker=walker.name,
    )


def find_walker(walkers: list[WalkerConfig], name: str) -> WalkerConfig | None:
    """The walker called ``name`` (names are unique regardless of case)."""
    key = name.casefold()
    return next((w for w in walkers if w.name.casefold() == key), None)
