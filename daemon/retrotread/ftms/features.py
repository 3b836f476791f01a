"""Fitness Machine Feature (0x2ACC) and the supported speed/incline/HR ranges (FTMS.md §4, §7)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntFlag
from functools import cached_property
from typing import Any

from retrotread.errors import DecodeError
from retrotread.ftms.fields import EncodeError, Field, Layout, u

FEATURE_CHAR = "2acc"


class MachineFeature(IntFlag):
    """Fitness Machine Features, bits 0-16 (bits 17-31 are RFU and ignored)."""

    AVERAGE_SPEED = 1 << 0
    CADENCE = 1 << 1
    TOTAL_DISTANCE = 1 << 2
    INCLINATION = 1 << 3
    ELEVATION_GAIN = 1 << 4
    PACE = 1 << 5
    STEP_COUNT = 1 << 6
    RESISTANCE_LEVEL = 1 << 7
    STRIDE_COUNT = 1 << 8
    EXPENDED_ENERGY = 1 << 9
    HEART_RATE_MEASUREMENT = 1 << 10
    METABOLIC_EQUIVALENT = 1 << 11
    ELAPSED_TIME = 1 << 12
    REMAINING_TIME = 1 << 13
    POWER_MEASUREMENT = 1 << 14
    FORCE_ON_BELT_AND_POWER_OUTPUT = 1 << 15
    USER_DATA_RETENTION = 1 << 16


class TargetFeature(IntFlag):
    """Target Setting Features, bits 0-16 (bits 17-31 are RFU and ignored)."""

    SPEED_TARGET = 1 << 0
    INCLINATION_TARGET = 1 << 1
    RESISTANCE_TARGET = 1 << 2
    POWER_TARGET = 1 << 3
    HEART_RATE_TARGET = 1 << 4
    TARGETED_EXPENDED_ENERGY = 1 << 5
    TARGETED_STEP_NUMBER = 1 << 6
    TARGETED_STRIDE_NUMBER = 1 << 7
    TARGETED_DISTANCE = 1 << 8
    TARGETED_TRAINING_TIME = 1 << 9
    TARGETED_TIME_IN_TWO_HR_ZONES = 1 << 10
    TARGETED_TIME_IN_THREE_HR_ZONES = 1 << 11
    TARGETED_TIME_IN_FIVE_HR_ZONES = 1 << 12
    INDOOR_BIKE_SIMULATION = 1 << 13
    WHEEL_CIRCUMFERENCE = 1 << 14
    SPIN_DOWN_CONTROL = 1 << 15
    TARGETED_CADENCE = 1 << 16


_DEFINED = (1 << 17) - 1


def _names(flag_type: type[IntFlag], value: int) -> list[str]:
    return [m.name.lower() for m in flag_type if m.name and value & m.value]


@dataclass(frozen=True)
class Features:
    """The two feature words, with RFU bits dropped."""

    machine: MachineFeature
    target: TargetFeature

    @property
    def speed_target(self) -> bool:
        return TargetFeature.SPEED_TARGET in self.target

    @property
    def incline_target(self) -> bool:
        return TargetFeature.INCLINATION_TARGET in self.target

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine_features": _names(MachineFeature, self.machine),
            "target_setting_features": _names(TargetFeature, self.target),
        }


def decode_features(data: bytes) -> Features:
    """Decode the 8-byte feature value; trailing bytes are ignored (FTMP 4.4.2)."""
    data = bytes(data)
    if len(data) < 8:
        raise DecodeError(FEATURE_CHAR, data, f"needs 8 bytes, got {len(data)}")
    machine = int.from_bytes(data[0:4], "little") & _DEFINED
    target = int.from_bytes(data[4:8], "little") & _DEFINED
    return Features(MachineFeature(machine), TargetFeature(target))


def encode_features(features: Features) -> bytes:
    return int(features.machine).to_bytes(4, "little") + int(features.target).to_bytes(4, "little")


@dataclass(frozen=True)
class RangeSpec:
    """Wire layout of one supported-range characteristic."""

    char: str
    unit: str
    minimum: Field
    maximum: Field
    increment: Field

    @cached_property
    def layout(self) -> Layout:
        return Layout((self.minimum, self.maximum, self.increment))


SPEED_RANGE = RangeSpec(
    "2ad4", "kmh", u("min", "u16", 100), u("max", "u16", 100), u("inc", "u16", 100)
)
INCLINE_RANGE = RangeSpec(
    "2ad5", "pct", u("min", "s16", 10), u("max", "s16", 10), u("inc", "u16", 10)
)
HEART_RATE_RANGE = RangeSpec("2ad7", "bpm", u("min", "u8"), u("max", "u8"), u("inc", "u8"))


@dataclass(frozen=True)
class SupportedRange:
    """A supported range in raw wire units (exact integers) and the resolution divisor.

    Keeping raw integers lets the engine quantise without float drift; ``minimum`` etc.
    give the values in user units.
    """

    raw_min: int
    raw_max: int
    raw_increment: int
    div: int
    unit: str

    @property
    def minimum(self) -> float:
        return self.raw_min / self.div

    @property
    def maximum(self) -> float:
        return self.raw_max / self.div

    @property
    def increment(self) -> float:
        return self.raw_increment / self.div

    def snap(self, value: float) -> float:
        """Clamp ``value`` into the range and round it to the nearest point of the grid."""
        raw = round(value * self.div)
        raw = min(max(raw, self.raw_min), self.raw_max)
        steps = round((raw - self.raw_min) / self.raw_increment)
        raw = self.raw_min + steps * self.raw_increment
        if raw > self.raw_max:
            raw -= self.raw_increment
        return raw / self.div

    def on_grid(self, value: float) -> bool:
        raw = round(value * self.div)
        in_range = self.raw_min <= raw <= self.raw_max
        return in_range and (raw - self.raw_min) % self.raw_increment == 0

    def to_dict(self) -> dict[str, float]:
        return {
            f"min_{self.unit}": self.minimum,
            f"max_{self.unit}": self.maximum,
            f"increment_{self.unit}": self.increment,
        }


def decode_range(spec: RangeSpec, data: bytes) -> SupportedRange:
    """Decode a supported range; min > max is untrustworthy and raises DecodeError.

    An increment of 0 (seen on cheap units) means "any value at the field's resolution".
    """
    data = bytes(data)
    layout = spec.layout
    if len(data) < layout.size:
        raise DecodeError(spec.char, data, f"needs {layout.size} bytes, got {len(data)}")
    lo, hi, inc = layout.unpack(data)
    if lo > hi:
        raise DecodeError(spec.char, data, f"minimum {lo} is above maximum {hi}")
    return SupportedRange(lo, hi, inc or 1, spec.minimum.div, spec.unit)


def encode_range(spec: RangeSpec, minimum: float, maximum: float, increment: float) -> bytes:
    if minimum > maximum or increment <= 0 or math.isnan(increment):
        raise EncodeError(f"bad range {minimum}..{maximum} step {increment}")
    return spec.layout.write({"min": minimum, "max": maximum, "inc": increment}, spec.char)


def decode_speed_range(data: bytes) -> SupportedRange:
    return decode_range(SPEED_RANGE, data)


def decode_incline_range(data: bytes) -> SupportedRange:
    return decode_range(INCLINE_RANGE, data)
