"""The setpoints a treadmill accepts, in exact integer device units (pure, no I/O).

FTMS gives speed in 0.01 km/h and inclination in 0.1 % (FTMS.md §7), so the engine works
in those integers: quantising, stepping and landing on a target never drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from retrotread.errors import ConfigError

SPEED_DIV = 100  # FTMS Supported Speed Range unit: 0.01 km/h
INCLINE_DIV = 10  # FTMS Supported Inclination Range unit: 0.1 %


class RangeLike(Protocol):
    """A supported range as FTMS reports it (``retrotread.ftms.features.SupportedRange``)."""

    @property
    def minimum(self) -> float: ...

    @property
    def maximum(self) -> float: ...

    @property
    def increment(self) -> float: ...


class StepLimits(Protocol):
    """The part of ``[safety]`` that shapes the grids."""

    @property
    def max_speed_kmh(self) -> float: ...

    @property
    def max_incline_pct(self) -> float: ...

    @property
    def speed_step_kmh(self) -> float: ...

    @property
    def incline_step_pct(self) -> float: ...


def round_half_up(x: float) -> int:
    """Nearest integer, halves up (``round`` rounds halves to even: 0.25 -> 0.2)."""
    return math.floor(x + 0.5)


def floor_units(x: float, div: int) -> int:
    """``x`` in units of 1/div, rounded down but tolerant of float noise (0.29 * 100)."""
    return math.floor(x * div + 1e-6)


@dataclass(frozen=True)
class Grid:
    """One quantity's allowed setpoints in raw units (value = raw / div).

    ``lo``..``hi`` is the device range cut at the safety cap, every point ``lo + k * inc``;
    ``step`` is the largest allowed change, a whole number of increments.
    """

    div: int
    lo: int
    hi: int
    inc: int
    step: int

    @classmethod
    def build(
        cls,
        div: int,
        device: RangeLike,
        cap: float,
        step: float,
        *,
        floor: float | None = None,
    ) -> Grid:
        """The grid of ``device`` within ``cap`` and ``floor``; ValueError says why if none."""
        inc = max(1, round_half_up(device.increment * div))
        lo = round_half_up(device.minimum * div)
        if floor is not None and lo < round_half_up(floor * div):
            # Keep the device's own grid (anchored at its minimum), from the floor up.
            lo += -(-(round_half_up(floor * div) - lo) // inc) * inc
        hi = min(round_half_up(device.maximum * div), floor_units(cap, div))
        if hi < lo:
            raise ValueError(
                f"the treadmill's range starts at {lo / div:g}, above the safety limit {cap:g}"
            )
        hi = lo + (hi - lo) // inc * inc
        whole = floor_units(step, div) // inc * inc
        if whole < inc:
            raise ValueError(
                f"the treadmill moves in increments of {inc / div:g}, larger than the "
                f"allowed step of {step:g}"
            )
        return cls(div, lo, hi, inc, whole)

    @property
    def start(self) -> int:
        """A belt's first setpoint from a standstill: the range minimum, or one step if 0.

        A running belt cannot go below its minimum (FTMS.md §12 #29), so starting there is
        the lowest possible start; a range from 0 starts one allowed step above 0, never 0.
        """
        return self.lo if self.lo > 0 else min(self.lo + self.step, self.hi)

    def snap(self, value: float) -> int:
        """The grid point nearest ``value``, clamped into ``lo``..``hi``."""
        offset = round_half_up(value * self.div) - self.lo
        k = (2 * offset + self.inc) // (2 * self.inc)  # nearest whole increment, halves up
        k = min(max(k, 0), (self.hi - self.lo) // self.inc)
        return self.lo + k * self.inc

    def toward(self, current: int, target: int) -> int:
        """One allowed step from ``current`` toward ``target``, never past it."""
        if current < target:
            return min(target, current + self.step)
        return max(target, current - self.step)

    def step_from(self, base: float, target: int) -> int | None:
        """The point nearest ``target`` at most one step from ``base``, or None if none is.

        ``base`` is where the treadmill's own target is now, in raw units and possibly off
        the grid (a console change, a telemetry reading). Points are the device's grid from
        ``lo`` up; above the safety cap only when ``base`` already is, and then never above
        ``base``: slowing down toward the allowed range is always a step. None means no
        point is within a step (a belt at rest: its first setpoint is a start, not a step).
        """
        upper = min(base + self.step, max(float(self.hi), base))
        lower = max(base - self.step, float(self.lo))
        k_lo = math.ceil((lower - self.lo) / self.inc - 1e-9)
        k_hi = math.floor((upper - self.lo) / self.inc + 1e-9)
        if k_lo > k_hi:
            return None
        k = (2 * (target - self.lo) + self.inc) // (2 * self.inc)  # nearest, halves up
        return self.lo + min(max(k, k_lo), k_hi) * self.inc

    def steps(self, origin: int, target: int) -> int:
        """How many steps a ramp from ``origin`` to ``target`` takes."""
        return -(-abs(target - origin) // self.step)

    def value(self, raw: int) -> float:
        """Raw units to km/h or % (a correctly rounded division: 230 -> 2.3 exactly)."""
        return raw / self.div


@dataclass(frozen=True)
class Device:
    """What the treadmill accepts; ``incline`` is None when the engine must leave it alone.

    ``incline_note`` says why incline is left alone, when the treadmill has an incline
    motor that the limits do not allow to be driven.
    """

    speed: Grid
    incline: Grid | None
    incline_note: str | None = None


def device_grids(
    limits: StepLimits, speed_range: RangeLike, incline_range: RangeLike | None
) -> Device:
    """Grids from the treadmill's supported ranges (None: no incline control).

    Raises ConfigError when the belt cannot move in steps as small as the limits demand:
    the walker's step limit is never rounded up to fit a coarse treadmill.
    """
    try:
        speed = Grid.build(SPEED_DIV, speed_range, limits.max_speed_kmh, limits.speed_step_kmh)
    except ValueError as exc:
        raise ConfigError(
            f"cannot drive this treadmill's speed within [safety]: {exc} "
            f"(safety.speed_step_kmh = {limits.speed_step_kmh:g}, "
            f"safety.max_speed_kmh = {limits.max_speed_kmh:g})"
        ) from None
    incline = note = None
    if incline_range is not None:
        try:
            incline = Grid.build(
                INCLINE_DIV,
                incline_range,
                limits.max_incline_pct,
                limits.incline_step_pct,
                floor=0.0,  # profiles never go downhill
            )
        except ValueError as exc:
            note = f"this treadmill's incline is left alone: {exc}"
    return Device(speed, incline, note)
