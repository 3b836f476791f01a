"""Treadmill Data (0x2ACD): flags-driven record, truncation, vendor bytes, More Data reassembly.

FTMS.md §5. The flags word gates groups of fields in wire order. Bit 0 (More Data) is the
only inverted bit: 0 means Instantaneous Speed IS present (FTMS 4.9.1.1).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

from retrotread.errors import DecodeError
from retrotread.ftms.fields import EncodeError, Field, Layout, Number, u

CHAR = "2acd"

MORE_DATA = 0x0001
PACE_BITS = 0x0060
RFU_MASK = 0xE000

# Pace width (FTMS.md §5.3): the v1.0 XML says uint8 km/min x0.1, the current GSS says
# uint16 seconds per 500 m. Decided explicitly by the caller; default 1 byte (v1.0), which is
# what the deployed treadmill apps read.
PACE_FIELDS: dict[int, tuple[Field, Field]] = {
    1: (u("instantaneous_pace_km_per_min", "u8", 10), u("average_pace_km_per_min", "u8", 10)),
    2: (u("instantaneous_pace_s_per_500m", "u16"), u("average_pace_s_per_500m", "u16")),
}

# Elevation gain has no spec sentinel, but real units fill the negative gain with 0xFFFF
# (Matrix) or 0x7FFF (Life Fitness, a sint16 sentinel in a uint16 field): FTMS.md §12 #9.
_ELEVATION_NA = (0xFFFF, 0x7FFF)


@dataclass(frozen=True)
class Group:
    """Fields gated by one flags bit."""

    bit: int
    fields: tuple[Field, ...]

    @property
    def mask(self) -> int:
        return 1 << self.bit

    def size(self) -> int:
        return sum(f.size for f in self.fields)


def groups(pace_width: int = 1) -> tuple[Group, ...]:
    """The Treadmill Data groups in wire order for the chosen pace width."""
    inst_pace, avg_pace = PACE_FIELDS[_check_pace_width(pace_width)]
    return (
        Group(0, (u("speed_kmh", "u16", 100),)),
        Group(1, (u("average_speed_kmh", "u16", 100),)),
        Group(2, (u("distance_m", "u24"),)),
        Group(3, (u("incline_pct", "s16", 10, 0x7FFF), u("ramp_angle_deg", "s16", 10, 0x7FFF))),
        Group(
            4,
            (
                u("elevation_gain_m", "u16", 10, *_ELEVATION_NA),
                u("negative_elevation_gain_m", "u16", 10, *_ELEVATION_NA),
            ),
        ),
        Group(5, (inst_pace,)),
        Group(6, (avg_pace,)),
        Group(
            7,
            (
                u("energy_kcal", "u16", 1, 0xFFFF),
                u("energy_per_hour_kcal", "u16", 1, 0xFFFF),
                u("energy_per_minute_kcal", "u8", 1, 0xFF),
            ),
        ),
        Group(8, (u("heart_rate_bpm", "u8"),)),
        Group(9, (u("metabolic_equivalent", "u8", 10),)),
        Group(10, (u("elapsed_s", "u16"),)),
        Group(11, (u("remaining_s", "u16"),)),
        Group(12, (u("force_on_belt_n", "s16", 1, 0x7FFF), u("power_w", "s16", 1, 0x7FFF))),
    )


def _check_pace_width(pace_width: int) -> int:
    if pace_width not in PACE_FIELDS:
        raise ValueError(f"pace_width must be 1 or 2, not {pace_width!r}")
    return pace_width


_GROUPS = {w: groups(w) for w in PACE_FIELDS}
# Per group: its flags mask, its field names, and those with no "not available" value (a
# sent group must carry them). What the encoder checks on every record.
_SENT_IF = {
    w: tuple(
        (g.mask, tuple(f.name for f in g.fields), tuple(f.name for f in g.fields if not f.na))
        for g in gs
    )
    for w, gs in _GROUPS.items()
}


@dataclass(frozen=True)
class TreadmillData:
    """One decoded Treadmill Data notification (or a reassembled record).

    Value fields are None when absent from the frame or sent as "not available".
    ``present`` names the fields the flags announced and the frame carried;
    ``missing`` names fields the flags announced but the frame was too short for (or, with
    pace bits set and a length that does not add up, could not be trusted); ``extra`` holds
    octets after the last field (vendor data, FTMS.md §12 #4) which a client must ignore.
    """

    speed_kmh: float | None = None
    average_speed_kmh: float | None = None
    distance_m: int | None = None
    incline_pct: float | None = None
    ramp_angle_deg: float | None = None
    elevation_gain_m: float | None = None
    negative_elevation_gain_m: float | None = None
    instantaneous_pace_km_per_min: float | None = None
    average_pace_km_per_min: float | None = None
    instantaneous_pace_s_per_500m: int | None = None
    average_pace_s_per_500m: int | None = None
    energy_kcal: int | None = None
    energy_per_hour_kcal: int | None = None
    energy_per_minute_kcal: int | None = None
    heart_rate_bpm: int | None = None
    metabolic_equivalent: float | None = None
    elapsed_s: int | None = None
    remaining_s: int | None = None
    force_on_belt_n: int | None = None
    power_w: int | None = None
    more_data: bool = False
    flags: int = 0
    present: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: bytes = field(default=b"", repr=False)

    def values(self) -> dict[str, Number | None]:
        """The fields this frame carried, by name with unit (N/A values as None)."""
        return {name: getattr(self, name) for name in self.present}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: the carried values plus what was cut off or appended."""
        out: dict[str, Any] = {"flags": f"0x{self.flags:04x}", "more_data": self.more_data}
        out.update(self.values())
        if self.missing:
            out["missing"] = list(self.missing)
        if self.flags & RFU_MASK:
            out["rfu_flags"] = f"0x{self.flags & RFU_MASK:04x}"
        if self.extra:
            out["extra_hex"] = self.extra.hex()
        return out


VALUE_FIELDS: tuple[str, ...] = tuple(
    f.name
    for f in fields(TreadmillData)
    if f.name not in ("more_data", "flags", "present", "missing", "extra")
)


# Plans compiled per flags word, per pace width. A treadmill uses two or three flags words;
# garbage can announce any of 65536, so the cache is emptied when it grows past this.
_MAX_PLANS = 256


class _Plan:
    """One flags word compiled: the fields it announces, where each ends, one Layout per cut.

    Built from the group table on first sight of the flags word, so the table stays the one
    description of the layout.
    """

    __slots__ = (
        "_cuts",
        "_flags",
        "ends",
        "fields",
        "names",
        "pace",
        "pace_index",
        "size",
        "whole",
    )

    def __init__(self, flags: int, pace_width: int) -> None:
        announced = [g for g in _GROUPS[pace_width] if _gated(g, flags)]
        self.fields = tuple(f for g in announced for f in g.fields)
        self.names = tuple(f.name for f in self.fields)
        ends, offset = [], 2
        for f in self.fields:
            offset += f.size
            ends.append(offset)
        self.ends = tuple(ends)  # frame offset just past each field
        self.size = offset
        self.pace = bool(flags & PACE_BITS)
        # Index of the first field from the pace groups on (bits 5-12), or len(fields).
        self.pace_index = sum(len(g.fields) for g in announced if g.bit < 5)
        self._flags = flags
        self._cuts: dict[int, tuple[Layout, dict[str, Any]]] = {}
        self.whole = self.cut(len(self.fields))

    def cut(self, count: int) -> tuple[Layout, dict[str, Any]]:
        """The Layout of the first ``count`` fields and the record's attributes around them."""
        plan = self._cuts.get(count)
        if plan is None:
            names = self.names
            base: dict[str, Any] = dict.fromkeys(VALUE_FIELDS)
            base.update(
                more_data=bool(self._flags & MORE_DATA),
                flags=self._flags,
                present=names[:count],
                missing=names[count:],
                extra=b"",
            )
            plan = self._cuts[count] = (Layout(self.fields[:count]), base)
        return plan


_PLANS: dict[int, dict[int, _Plan]] = {w: {} for w in PACE_FIELDS}


def _plan(flags: int, pace_width: int) -> _Plan:
    plans = _PLANS[_check_pace_width(pace_width)]
    plan = plans.get(flags)
    if plan is None:
        if len(plans) >= _MAX_PLANS:
            plans.clear()
        plan = plans[flags] = _Plan(flags, pace_width)
    return plan


_new = object.__new__


def decode_treadmill_data(data: bytes, pace_width: int = 1) -> TreadmillData:
    """Decode one notification; short frames yield what fits, garbage yields DecodeError."""
    data = bytes(data)
    size = len(data)
    if size < 2:
        raise DecodeError(CHAR, data, "a Treadmill Data frame needs at least the 2-byte flags")
    plan = _plan(data[0] | data[1] << 8, pace_width)
    if size == plan.size or (size > plan.size and not plan.pace):
        layout, base = plan.whole
        extra = data[plan.size :]  # vendor bytes after the last field (FTMS.md §12 #4)
    else:
        # FTMS.md §5.4, §12 #8: a frame cut short (Matrix: 20 bytes) yields every field that
        # fits whole, even within a group (its total energy, not its per-hour rate).
        count = bisect_right(plan.ends, size)
        if plan.pace:
            # FTMS.md §5.3: with pace present, everything from pace on is trusted only if
            # the frame length adds up exactly under the chosen pace width.
            count = min(count, plan.pace_index)
        if count == 0:
            raise DecodeError(
                CHAR, data, f"frame of {size} bytes is too short for any field its flags announce"
            )
        layout, base = plan.cut(count)
        extra = b""
    # The dataclass __init__ (25 keyword arguments) would cost more than the whole decode;
    # fill the frozen record's attributes directly, exactly as __init__ would store them.
    record = _new(TreadmillData)
    attrs = record.__dict__
    attrs.update(base)
    layout.read_into(attrs, data, 2)
    if extra:
        attrs["extra"] = extra
    return record


def _gated(group: Group, flags: int) -> bool:
    if group.bit == 0:
        return not flags & MORE_DATA  # inverted bit (FTMS 4.9.1.1)
    return bool(flags & group.mask)


def _record_mask(record: TreadmillData, pace_width: int) -> int:
    """The groups to encode, as flags-bit masks: a group is sent when any field has a value."""
    attrs = vars(record)
    mask = 0
    for bit, names, required in _SENT_IF[_check_pace_width(pace_width)]:
        for name in names:
            if attrs[name] is not None:
                mask |= bit
                for req in required:
                    if attrs[req] is None:
                        raise EncodeError(f"{req} is required when its group is sent")
                break
    return mask


_ENCODERS: dict[int, dict[int, Layout]] = {w: {} for w in PACE_FIELDS}


def _encode_groups(
    record: TreadmillData, mask: int, pace_width: int, vendor_bits: int = 0
) -> bytes:
    """The frame carrying the groups in ``mask``; bit 0 (speed) is the inverted More Data."""
    layouts = _ENCODERS[pace_width]
    layout = layouts.get(mask)
    if layout is None:
        if len(layouts) >= _MAX_PLANS:
            layouts.clear()
        chosen = [f for g in _GROUPS[pace_width] if mask & g.mask for f in g.fields]
        layout = layouts[mask] = Layout(chosen)
    attrs = vars(record)
    body = layout.pack([f.to_raw(attrs[f.name]) for f in layout.fields])
    return ((mask ^ MORE_DATA) | vendor_bits).to_bytes(2, "little") + body


def encode_treadmill_data(
    record: TreadmillData, pace_width: int = 1, *, vendor_bits: int = 0, vendor_bytes: bytes = b""
) -> bytes:
    """Encode one notification. No speed means More Data = 1 (a non-final fragment).

    ``vendor_bits`` (within the RFU mask) and ``vendor_bytes`` reproduce vendor extensions
    such as the bit-13 step count of FTMS.md §12 #4.
    """
    if vendor_bits & ~RFU_MASK:
        raise EncodeError(f"vendor bits 0x{vendor_bits:04x} overlap defined flags")
    mask = _record_mask(record, pace_width)
    return _encode_groups(record, mask, pace_width, vendor_bits) + bytes(vendor_bytes)


def split_treadmill_data(
    record: TreadmillData, max_len: int = 20, pace_width: int = 1
) -> list[bytes]:
    """Split a record into notifications of at most ``max_len`` bytes (FTMS Appendix 1).

    Every fragment but the last has More Data = 1 and no speed; the last carries the speed.
    """
    mask = _record_mask(record, pace_width)
    chosen = [g for g in _GROUPS[pace_width] if mask & g.mask]
    speed = [g for g in chosen if g.bit == 0]
    rest = [g for g in chosen if g.bit != 0]
    if not speed:
        # FTMS Appendix 1 (FTMS.md §5.4): only the fragment with speed has More Data = 0;
        # without speed no fragment would ever close the record.
        raise EncodeError("a record to split needs speed_kmh: it is what closes the record")
    room = max_len - 2
    if any(g.size() > room for g in chosen):
        raise EncodeError(f"max_len {max_len} cannot hold a single field group")
    batches: list[list[Group]] = [[]]
    for g in rest:
        if sum(x.size() for x in batches[-1]) + g.size() > room:
            batches.append([])
        batches[-1].append(g)
    speed_size = sum(g.size() for g in speed)
    if sum(x.size() for x in batches[-1]) + speed_size > room:
        batches.append([])
    batches[-1] = speed + batches[-1]
    return [_encode_groups(record, sum(g.mask for g in b), pace_width) for b in batches if b]


class TreadmillDataAssembler:
    """Merge More Data fragments into records (FTMS.md §5.4).

    ``feed`` returns a complete record when a fragment with More Data = 0 arrives. Pending
    fragments are dropped by ``reset`` (call it on disconnect) and when older than
    ``max_age_s`` (a lost closing fragment must not leak stale values into a later record).
    """

    def __init__(self, max_age_s: float = 3.0) -> None:
        self.max_age_s = max_age_s
        self._pending: dict[str, Number | None] = {}
        self._present: list[str] = []
        self._missing: list[str] = []
        self._since: float | None = None
        self.dropped = 0

    def reset(self) -> None:
        if self._present:
            self.dropped += 1
        self._pending.clear()
        self._present.clear()
        self._missing.clear()
        self._since = None

    def feed(self, frame: TreadmillData, now: float = 0.0) -> TreadmillData | None:
        if self._since is not None and now - self._since > self.max_age_s:
            self.reset()
        if not frame.more_data and not self._present and not self._missing:
            # A whole record in one frame (the usual case): nothing to merge it with.
            self._since = None
            return frame
        for name in frame.present:
            self._pending[name] = getattr(frame, name)
            if name not in self._present:
                self._present.append(name)
        self._missing.extend(m for m in frame.missing if m not in self._missing)
        if frame.more_data:
            if self._since is None:
                self._since = now
            return None
        merged = replace(
            frame,
            **self._pending,  # type: ignore[arg-type]
            present=tuple(self._present),
            # A field cut off one fragment but carried by another is not missing.
            missing=tuple(m for m in self._missing if m not in self._pending),
        )
        self._pending.clear()
        self._present.clear()
        self._missing.clear()
        self._since = None
        return merged


def iter_field_names(pace_width: int = 1) -> Iterator[str]:
    """Every value field name in wire order for the chosen pace width."""
    for g in _GROUPS[_check_pace_width(pace_width)]:
        for f in g.fields:
            yield f.name
