"""Declarative field formats: one table entry per wire field, one generic reader and writer.

A field carries its wire format, its resolution as a divisor (value = raw / div, so
1.13 km/h is exactly raw 113 and never 112), and the raw values that mean "not available".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from retrotread.errors import RetrotreadError

Format = Literal["u8", "u16", "u24", "u32", "s16"]

_SIZE: dict[str, int] = {"u8": 1, "u16": 2, "u24": 3, "u32": 4, "s16": 2}
_SIGNED: dict[str, bool] = {"u8": False, "u16": False, "u24": False, "u32": False, "s16": True}

Number = int | float


class EncodeError(RetrotreadError, ValueError):
    """A value that cannot be put on the wire (out of the field's range, wrong type)."""


@dataclass(frozen=True)
class Field:
    """One wire field: name (with its unit), format, resolution divisor, N/A raw values."""

    name: str
    fmt: Format
    div: int = 1
    na: frozenset[int] = frozenset()

    @property
    def size(self) -> int:
        return _SIZE[self.fmt]

    def raw_range(self) -> tuple[int, int]:
        bits = self.size * 8
        if _SIGNED[self.fmt]:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return 0, (1 << bits) - 1

    def read(self, data: bytes, offset: int) -> Number | None:
        """Decode this field at ``offset``; the caller checks there are ``size`` bytes."""
        raw = int.from_bytes(data[offset : offset + self.size], "little", signed=_SIGNED[self.fmt])
        if raw in self.na:
            return None
        return self.from_raw(raw)

    def from_raw(self, raw: int) -> Number:
        if self.div == 1:
            return raw
        return raw / self.div

    def to_raw(self, value: Number | None) -> int:
        """The raw integer for ``value``, rounded to the nearest step; None encodes N/A."""
        if value is None:
            if not self.na:
                raise EncodeError(f"{self.name} has no 'not available' value")
            return max(self.na)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EncodeError(f"{self.name} must be a number, not {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            # round() would raise ValueError (NaN) or OverflowError (inf), not EncodeError.
            raise EncodeError(f"{self.name}={value} is not a finite number")
        scaled = value * self.div
        if isinstance(scaled, float) and not math.isfinite(scaled):  # 1e307 * 100 is inf
            raise EncodeError(f"{self.name}={value} does not fit the wire format {self.fmt}")
        raw = round(scaled)
        lo, hi = self.raw_range()
        if not lo <= raw <= hi or raw in self.na:
            raise EncodeError(f"{self.name}={value} does not fit the wire format {self.fmt}")
        return raw

    def write(self, value: Number | None) -> bytes:
        return self.to_raw(value).to_bytes(self.size, "little", signed=_SIGNED[self.fmt])


def u(name: str, fmt: Format, div: int = 1, *na: int) -> Field:
    """Shorthand for a table entry."""
    return Field(name, fmt, div, frozenset(na))
