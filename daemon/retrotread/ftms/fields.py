"""Declarative field formats and the one generic walk over them.

A field carries its wire format, its resolution as a divisor (value = raw / div, so
1.13 km/h is exactly raw 113 and never 112), the raw values that mean "not available" and,
for an enumerated parameter, its named codes. A ``Layout`` is a run of fields in wire order
compiled into one ``struct.Struct``: every table (Treadmill Data per flags word, Machine
Status and Control Point per op code, the supported ranges, Heart Rate Measurement) reads
and writes its fields through it, so the tables stay the only description of the bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from retrotread.errors import RetrotreadError

Format = Literal["u8", "u16", "u24", "u32", "s16"]

_SIZE: dict[str, int] = {"u8": 1, "u16": 2, "u24": 3, "u32": 4, "s16": 2}
_SIGNED: dict[str, bool] = {"u8": False, "u16": False, "u24": False, "u32": False, "s16": True}
_RANGE: dict[str, tuple[int, int]] = {
    "u8": (0, 0xFF),
    "u16": (0, 0xFFFF),
    "u24": (0, 0xFFFFFF),
    "u32": (0, 0xFFFFFFFF),
    "s16": (-0x8000, 0x7FFF),
}
# struct has no 3-byte code: a u24 travels as its low u16 and high u8 (little-endian).
_CODE: dict[str, str] = {"u8": "B", "u16": "H", "u24": "HB", "u32": "I", "s16": "h"}

Number = int | float
Value = Number | str | None

RESERVED = "reserved"


class EncodeError(RetrotreadError, ValueError):
    """A value that cannot be put on the wire (out of the field's range, wrong type)."""


class ReservedCode(ValueError):
    """A strict read met a code its enumerated field does not name (``Layout.read``)."""

    def __init__(self, field: Field, raw: int) -> None:
        self.field = field
        self.raw = raw
        super().__init__(f"{field.name} 0x{raw:02x} is reserved")


@dataclass(frozen=True)
class Field:
    """One wire field: name (with its unit), format, resolution divisor, N/A raw values.

    ``codes`` names the values of an enumerated parameter (e.g. 1 = "stop", 2 = "pause").
    """

    name: str
    fmt: Format
    div: int = 1
    na: frozenset[int] = frozenset()
    codes: tuple[tuple[int, str], ...] = ()

    @property
    def size(self) -> int:
        return _SIZE[self.fmt]

    def raw_range(self) -> tuple[int, int]:
        return _RANGE[self.fmt]

    def to_raw(self, value: Value) -> int:
        """The raw integer for ``value``, rounded to the nearest step; None encodes N/A.

        An enumerated field takes one of its names, or a raw int (which lets a test send a
        reserved code on purpose).
        """
        if self.codes:
            value = self._code_of(value)
        # The common cases first: an int is exact; a float within +-1e15 is finite (NaN
        # fails the comparison) and stays finite scaled.
        if type(value) is int:
            raw = value * self.div
        elif type(value) is float and -1e15 < value < 1e15:
            raw = round(value * self.div)
        elif value is None:
            if not self.na:
                raise EncodeError(f"{self.name} has no 'not available' value")
            return max(self.na)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise EncodeError(f"{self.name} must be a number, not {value!r}")
        elif isinstance(value, float) and not math.isfinite(value):
            # round() would raise ValueError (NaN) or OverflowError (inf), not EncodeError.
            raise EncodeError(f"{self.name}={value} is not a finite number")
        else:
            scaled = value * self.div
            if isinstance(scaled, float) and not math.isfinite(scaled):  # 1e307 * 100 is inf
                raise EncodeError(f"{self.name}={value} does not fit the wire format {self.fmt}")
            raw = round(scaled)
        lo, hi = _RANGE[self.fmt]
        if not lo <= raw <= hi or raw in self.na:
            raise EncodeError(f"{self.name}={value} does not fit the wire format {self.fmt}")
        return raw

    def _code_of(self, value: Value) -> int:
        for code, name in self.codes:
            if value == name:
                return code
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        names = sorted(name for _, name in self.codes)
        raise EncodeError(f"unknown value {value!r} for {self.name}; expected one of {names}")

    def write(self, value: Value) -> bytes:
        return self.to_raw(value).to_bytes(self.size, "little", signed=_SIGNED[self.fmt])


def u(name: str, fmt: Format, div: int = 1, *na: int) -> Field:
    """Shorthand for a numeric table entry."""
    return Field(name, fmt, div, frozenset(na))


def enum(name: str, codes: Mapping[int, str]) -> Field:
    """Shorthand for a one-byte enumerated parameter."""
    return Field(name, "u8", codes=tuple(sorted(codes.items())))


class Layout:
    """Fields in wire order compiled into one ``struct.Struct``: the generic field walk.

    Compile once per table entry (an op code, a flags word) and reuse: reading is one
    ``unpack_from`` plus one pass that applies the N/A values, divisors and names.
    """

    __slots__ = ("_join", "_split", "_steps", "_struct", "fields", "names", "size")

    def __init__(self, fields: Iterable[Field]) -> None:
        self.fields = tuple(fields)
        self.names = tuple(f.name for f in self.fields)
        self._struct = struct.Struct("<" + "".join(_CODE[f.fmt] for f in self.fields))
        self.size = self._struct.size
        # Each u24 by its index among the fields and among the struct's items (one more per
        # u24 before it), last first so that splitting or joining one never moves another.
        u24 = [i for i, f in enumerate(self.fields) if f.fmt == "u24"]
        self._split = tuple(reversed(u24))
        self._join = tuple(reversed([index + rank for rank, index in enumerate(u24)]))
        self._steps = tuple(
            (f.name, f.na, f.div, dict(f.codes) if f.codes else None) for f in self.fields
        )

    def __repr__(self) -> str:
        return f"Layout({', '.join(self.names)})"

    def unpack(self, data: bytes, offset: int = 0) -> Sequence[int]:
        """The raw integers of every field at ``offset``; the caller checks the length."""
        raws = self._struct.unpack_from(data, offset)
        if not self._join:
            return raws
        joined = list(raws)
        for at in self._join:
            joined[at] |= joined.pop(at + 1) << 16
        return joined

    def read_into(
        self, out: dict[str, Any], data: bytes, offset: int = 0, *, strict: bool = False
    ) -> None:
        """Store every field's value in ``out`` by name: N/A -> None, scaled, codes named.

        A code an enumerated field does not name reads as "reserved", or raises
        ``ReservedCode`` when ``strict``.
        """
        for (name, na, div, codes), raw in zip(self._steps, self.unpack(data, offset), strict=True):
            if raw in na:
                out[name] = None
            elif codes is not None:
                named = codes.get(raw)
                if named is None:
                    if strict:
                        raise ReservedCode(self.fields[self.names.index(name)], raw)
                    named = RESERVED
                out[name] = named
            elif div == 1:
                out[name] = raw
            else:
                out[name] = raw / div

    def read(self, data: bytes, offset: int = 0, *, strict: bool = False) -> dict[str, Value]:
        out: dict[str, Value] = {}
        self.read_into(out, data, offset, strict=strict)
        return out

    def write(self, values: Mapping[str, Any], what: str) -> bytes:
        """Encode ``values`` by name; ``what`` names the frame in the error for a missing one."""
        raws: list[int] = []
        for f in self.fields:
            if f.name not in values:
                raise EncodeError(f"{what} needs {f.name}")
            raws.append(f.to_raw(values[f.name]))
        return self.pack(raws)

    def pack(self, raws: Sequence[int]) -> bytes:
        """The wire bytes of raw integers (one per field, in range) in field order."""
        if not self._split:
            return self._struct.pack(*raws)
        split = list(raws)
        for index in self._split:
            split.insert(index + 1, split[index] >> 16)
            split[index] &= 0xFFFF
        return self._struct.pack(*split)
