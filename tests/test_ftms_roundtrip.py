"""Property-based round trips for every characteristic the FTMS codec encodes.

Treadmill Data is checked against a wire layout transcribed here from FTMS.md §5.2 (not taken
from the codec's tables), so a wrong size, order, scale or sentinel in the codec fails.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrotread.errors import DecodeError
from retrotread.ftms import (
    ControlOp,
    ControlResponse,
    Features,
    MachineFeature,
    TargetFeature,
    TrainingStatusFrame,
    TreadmillData,
    TreadmillDataAssembler,
    decode_control_request,
    decode_control_response,
    decode_features,
    decode_machine_status,
    decode_training_status,
    decode_treadmill_data,
    encode_control_request,
    encode_control_response,
    encode_features,
    encode_machine_status,
    encode_training_status,
    encode_treadmill_data,
    split_treadmill_data,
)
from retrotread.ftms.control import REQUEST_PARAMS, SPIN_DOWN_CONTROL_VALUES
from retrotread.ftms.features import (
    HEART_RATE_RANGE,
    INCLINE_RANGE,
    SPEED_RANGE,
    RangeSpec,
    SupportedRange,
    decode_range,
    encode_range,
)
from retrotread.ftms.fields import Field
from retrotread.ftms.status import SPIN_DOWN_VALUES, STATUS_PARAMS, STOP_PAUSE_VALUES
from retrotread.ftms.treadmill_data import VALUE_FIELDS


@functools.cache  # strategies drawn inside a test are built once, not once per example
def ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo, hi)


BOOLS = st.booleans()


@functools.cache
def one_of_keys(table: tuple[int, ...]) -> st.SearchStrategy[int]:
    return st.sampled_from(table)


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- FTMS.md §5.2, transcribed


@dataclass(frozen=True)
class Wire:
    """One Treadmill Data field as the spec lays it out."""

    name: str
    fmt: str  # struct code, or "u24"
    div: int
    na: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return 3 if self.fmt == "u24" else struct.calcsize("<" + self.fmt)

    @property
    def bounds(self) -> tuple[int, int]:
        if self.fmt == "u24":
            return 0, 0xFFFFFF
        signed = self.fmt.islower()
        bits = self.size * 8
        return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)

    def pack(self, raw: int) -> bytes:
        if self.fmt == "u24":
            return raw.to_bytes(3, "little")
        return struct.pack("<" + self.fmt, raw)

    def value(self, raw: int) -> float | int | None:
        if raw in self.na:
            return None
        return raw if self.div == 1 else raw / self.div


# Elevation gain: no spec sentinel, but real units send 0xFFFF / 0x7FFF (FTMS.md §12 #9) and
# the codec reads both as "not available"; 0xFFFF is what it writes.
ELEVATION_NA = (0xFFFF, 0x7FFF)
PACE = {
    1: (Wire("instantaneous_pace_km_per_min", "B", 10), Wire("average_pace_km_per_min", "B", 10)),
    2: (Wire("instantaneous_pace_s_per_500m", "H", 1), Wire("average_pace_s_per_500m", "H", 1)),
}


@functools.cache
def layout(pace_width: int) -> list[tuple[int, tuple[Wire, ...]]]:
    inst, avg = PACE[pace_width]
    return [
        (0, (Wire("speed_kmh", "H", 100),)),
        (1, (Wire("average_speed_kmh", "H", 100),)),
        (2, (Wire("distance_m", "u24", 1),)),
        (3, (Wire("incline_pct", "h", 10, (0x7FFF,)), Wire("ramp_angle_deg", "h", 10, (0x7FFF,)))),
        (
            4,
            (
                Wire("elevation_gain_m", "H", 10, ELEVATION_NA),
                Wire("negative_elevation_gain_m", "H", 10, ELEVATION_NA),
            ),
        ),
        (5, (inst,)),
        (6, (avg,)),
        (
            7,
            (
                Wire("energy_kcal", "H", 1, (0xFFFF,)),
                Wire("energy_per_hour_kcal", "H", 1, (0xFFFF,)),
                Wire("energy_per_minute_kcal", "B", 1, (0xFF,)),
            ),
        ),
        (8, (Wire("heart_rate_bpm", "B", 1),)),
        (9, (Wire("metabolic_equivalent", "B", 10),)),
        (10, (Wire("elapsed_s", "H", 1),)),
        (11, (Wire("remaining_s", "H", 1),)),
        (12, (Wire("force_on_belt_n", "h", 1, (0x7FFF,)), Wire("power_w", "h", 1, (0x7FFF,)))),
    ]


@dataclass(frozen=True)
class Frame:
    """A frame built from the transcribed layout: its bytes and what it must decode to."""

    data: bytes
    pace_width: int
    flags: int
    values: dict[str, float | int | None]  # in wire order


@functools.cache  # building strategies per draw costs more than drawing from them
def raw_for(w: Wire, sentinel: bool) -> st.SearchStrategy[int]:
    """A raw value for ``w``: its canonical sentinel, or any in-range non-sentinel value."""
    lo, hi = w.bounds
    value = st.integers(lo, hi).filter(lambda r: r not in w.na)
    if sentinel and w.na:
        return st.one_of(value, st.just(max(w.na)))
    return value


@st.composite
def treadmill_frames(
    draw: st.DrawFn,
    pace_width: int | None = None,
    need_speed: bool = False,
    with_pace: bool = True,
) -> Frame:
    width = pace_width if pace_width is not None else draw(one_of_keys((1, 2)))
    flags = 0
    body = b""
    values: dict[str, float | int | None] = {}
    for bit, wires in layout(width):
        if not with_pace and bit in (5, 6):
            continue
        if not (bit == 0 and need_speed) and not draw(BOOLS):
            continue
        while True:
            raws = [draw(raw_for(w, sentinel=True)) for w in wires]
            # A group whose every field is N/A is omitted by the encoder: draw again.
            if any(raw not in w.na for w, raw in zip(wires, raws, strict=True)):
                break
        if bit != 0:
            flags |= 1 << bit
        for w, raw in zip(wires, raws, strict=True):
            body += w.pack(raw)
            values[w.name] = w.value(raw)
    if "speed_kmh" not in values:
        flags |= 0x0001  # More Data: bit 0 is inverted (FTMS 4.9.1.1)
    return Frame(flags.to_bytes(2, "little") + body, width, flags, values)


def record_of(frame: Frame) -> TreadmillData:
    return TreadmillData(**frame.values)  # type: ignore[arg-type]


@FAST
@given(treadmill_frames())
def test_treadmill_data_round_trips_against_the_spec_layout(frame: Frame) -> None:
    d = decode_treadmill_data(frame.data, frame.pace_width)
    assert d.flags == frame.flags
    assert d.more_data is ("speed_kmh" not in frame.values)
    assert d.present == tuple(frame.values)
    assert d.values() == frame.values
    assert (d.missing, d.extra) == ((), b"")
    for name in VALUE_FIELDS:
        assert getattr(d, name) == frame.values.get(name), name
    # bytes -> record -> bytes
    assert encode_treadmill_data(d, frame.pace_width) == frame.data
    # record -> bytes -> record, from a record built by hand rather than decoded
    record = record_of(frame)
    assert encode_treadmill_data(record, frame.pace_width) == frame.data
    assert {n: getattr(d, n) for n in VALUE_FIELDS} == {n: getattr(record, n) for n in VALUE_FIELDS}


@FAST
@given(
    treadmill_frames(with_pace=False),
    st.integers(1, 7).map(lambda b: b << 13),
    st.binary(max_size=8),
)
def test_treadmill_data_vendor_bits_and_bytes_survive(
    frame: Frame, vendor_bits: int, vendor: bytes
) -> None:
    record = record_of(frame)
    encoded = encode_treadmill_data(record, vendor_bits=vendor_bits, vendor_bytes=vendor)
    assert encoded == (frame.flags | vendor_bits).to_bytes(2, "little") + frame.data[2:] + vendor
    d = decode_treadmill_data(encoded, frame.pace_width)
    assert d.values() == frame.values
    assert (d.missing, d.extra) == ((), vendor)
    assert d.to_dict()["rfu_flags"] == f"0x{vendor_bits:04x}"


@FAST
@given(treadmill_frames(need_speed=True), st.integers(7, 40) | st.just(20))
def test_split_then_reassemble_gives_the_record(frame: Frame, max_len: int) -> None:
    record = record_of(frame)
    fragments = split_treadmill_data(record, max_len=max_len, pace_width=frame.pace_width)
    assert all(len(f) <= max_len for f in fragments)
    decoded = [decode_treadmill_data(f, frame.pace_width) for f in fragments]
    # FTMS Appendix 1: every fragment but the last has More Data = 1 and no speed.
    assert [d.more_data for d in decoded] == [True] * (len(decoded) - 1) + [False]
    assert [d.speed_kmh is not None for d in decoded[:-1]] == [False] * (len(decoded) - 1)
    # Each field travels in exactly one fragment; none is cut off.
    names = [n for d in decoded for n in d.present]
    assert sorted(names) == sorted(frame.values)
    assert all(d.missing == () and d.extra == b"" for d in decoded)
    # A record that fits is sent whole, exactly as encode_treadmill_data would send it.
    if len(frame.data) <= max_len:
        assert fragments == [frame.data]
    else:
        assert len(fragments) >= 2

    assembler = TreadmillDataAssembler()
    results = [assembler.feed(d, now=0.1 * i) for i, d in enumerate(decoded)]
    assert results[:-1] == [None] * (len(results) - 1)
    merged = results[-1]
    assert merged is not None
    assert {n: getattr(merged, n) for n in VALUE_FIELDS} == {
        n: getattr(record, n) for n in VALUE_FIELDS
    }
    assert sorted(merged.present) == sorted(frame.values)
    assert (merged.more_data, merged.missing) == (False, ())
    assert assembler.dropped == 0


# ---------------------------------------------------------------- features (§4)

DEFINED = (1 << 17) - 1


@FAST
@given(st.integers(0, DEFINED), st.integers(0, DEFINED))
def test_features_round_trip(machine: int, target: int) -> None:
    f = Features(MachineFeature(machine), TargetFeature(target))
    data = encode_features(f)
    assert data == machine.to_bytes(4, "little") + target.to_bytes(4, "little")
    assert decode_features(data) == f
    names = decode_features(data).to_dict()
    assert len(names["machine_features"]) == machine.bit_count()
    assert len(names["target_setting_features"]) == target.bit_count()


@FAST
@given(st.binary(min_size=8, max_size=12))
def test_features_bytes_round_trip_with_rfu_bits_dropped(data: bytes) -> None:
    machine = int.from_bytes(data[0:4], "little") & DEFINED
    target = int.from_bytes(data[4:8], "little") & DEFINED
    expected = machine.to_bytes(4, "little") + target.to_bytes(4, "little")
    assert encode_features(decode_features(data)) == expected


# ---------------------------------------------------------------- ranges (§7)

RANGE_SPECS: dict[str, tuple[RangeSpec, str, str]] = {
    "speed": (SPEED_RANGE, "<HHH", "kmh"),
    "incline": (INCLINE_RANGE, "<hhH", "pct"),
    "heart_rate": (HEART_RATE_RANGE, "<BBB", "bpm"),
}


def _bounds(code: str) -> tuple[int, int]:
    bits = struct.calcsize("<" + code) * 8
    if code.islower():
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


@pytest.mark.parametrize("kind", sorted(RANGE_SPECS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_range_round_trip(kind: str, data: st.DataObject) -> None:
    spec, fmt, unit = RANGE_SPECS[kind]
    lo_b, hi_b = _bounds(fmt[1])
    a = data.draw(ints(lo_b, hi_b))
    b = data.draw(ints(lo_b, hi_b))
    lo, hi = min(a, b), max(a, b)
    inc = data.draw(ints(1, _bounds(fmt[3])[1]))
    div = spec.minimum.div
    wire = struct.pack(fmt, lo, hi, inc)
    decoded = decode_range(spec, wire)
    assert decoded == SupportedRange(lo, hi, inc, div, unit)
    assert encode_range(spec, decoded.minimum, decoded.maximum, decoded.increment) == wire


VALUES = st.floats(-5000, 70000, allow_nan=False)


@pytest.mark.parametrize("kind", sorted(RANGE_SPECS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_range_snap_lands_on_the_grid(kind: str, data: st.DataObject) -> None:
    spec, fmt, unit = RANGE_SPECS[kind]
    lo_b, hi_b = _bounds(fmt[1])
    a, b = data.draw(ints(lo_b, hi_b)), data.draw(ints(lo_b, hi_b))
    r = SupportedRange(min(a, b), max(a, b), data.draw(ints(1, 500)), spec.minimum.div, unit)
    value = data.draw(VALUES)
    snapped = r.snap(value)
    assert r.on_grid(snapped)
    assert r.minimum <= snapped <= r.maximum


# ---------------------------------------------------------------- training status (§6)


@FAST
@given(
    st.integers(0, 0xFF),
    st.none() | st.text(min_size=1, max_size=40).filter(lambda t: not t.endswith("\x00")),
)
def test_training_status_round_trip(status: int, text: str | None) -> None:
    data = encode_training_status(status, text)
    expected_wire = bytes([0x00, status]) if text is None else bytes([0x01, status])
    assert data[:2] == expected_wire
    assert decode_training_status(data) == TrainingStatusFrame(status, text, extended=False)
    assert encode_training_status(status, decode_training_status(data).text) == data


@FAST
@given(st.integers(0, 0xFF), st.sampled_from([0x00, 0x01, 0x02, 0x03]), st.binary(max_size=30))
def test_training_status_bytes_decode(status: int, flags: int, tail: bytes) -> None:
    d = decode_training_status(bytes([flags, status]) + tail)
    assert d.status == status
    assert d.extended is bool(flags & 0x02)
    if not flags & 0x01:
        assert d.text is None
    elif tail.rstrip(b"\x00"):
        assert d.text == tail.decode("utf-8", errors="replace").rstrip("\x00")
    else:
        assert d.text is None  # empty string means "no string" (FTMS.md §12 #11)


# ---------------------------------------------------------------- machine status (§9)


def param_values(
    draw: Callable[[st.SearchStrategy[Any]], Any],
    params: tuple[Field, ...],
    enums: dict[str, dict[int, str]],
) -> tuple[dict[str, Any], bytes]:
    """Draw raw parameters, returning the decoded values and their wire bytes."""
    values: dict[str, Any] = {}
    wire = b""
    for f in params:
        lo, hi = f.raw_range()
        if f.name in enums:
            raw = draw(one_of_keys(tuple(sorted(enums[f.name]))))
            values[f.name] = enums[f.name][raw]
        else:
            raw = draw(ints(lo, hi))
            values[f.name] = raw if f.div == 1 else raw / f.div
        wire += raw.to_bytes(f.size, "little", signed=lo < 0)
    return values, wire


STATUS_ENUMS = {"control": STOP_PAUSE_VALUES, "spin_down": SPIN_DOWN_VALUES}


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_machine_status_round_trip_every_op(data: st.DataObject) -> None:
    for op in sorted(STATUS_PARAMS):  # every op code in every example
        values, wire = param_values(data.draw, STATUS_PARAMS[op], STATUS_ENUMS)
        pad = data.draw(ints(0, 4))
        frame = bytes([op]) + wire + bytes(pad)
        encoded = encode_machine_status(op, values, pad_to=len(frame) if pad else 0)
        assert encoded == frame, f"op 0x{op:02x}"
        decoded = decode_machine_status(frame)
        assert (decoded.op, decoded.values, decoded.extra) == (op, values, bytes(pad))
        assert encode_machine_status(decoded.op, decoded.values, pad_to=len(frame)) == frame


# ---------------------------------------------------------------- control point (§8)

REQUEST_ENUMS = {"control": STOP_PAUSE_VALUES, "spin_down": SPIN_DOWN_CONTROL_VALUES}


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_control_request_round_trip_every_op(data: st.DataObject) -> None:
    for op in sorted(REQUEST_PARAMS):  # every op code in every example
        values, wire = param_values(data.draw, REQUEST_PARAMS[op], REQUEST_ENUMS)
        frame = bytes([op]) + wire
        assert encode_control_request(op, values) == frame, f"op 0x{op:02x}"
        decoded = decode_control_request(frame)
        assert (decoded.op, decoded.values) == (ControlOp(op), values)
        assert encode_control_request(decoded.op, decoded.values) == frame
        # The same write with a byte more or less is a malformed length (FTMS result 0x03).
        for bad in (frame + b"\x00", frame[:-1]):
            if bad:
                with pytest.raises(DecodeError, match="takes") as info:
                    decode_control_request(bad)
                assert type(info.value) is DecodeError


@FAST
@given(st.integers(0, 0xFF), st.integers(0, 0xFF), st.binary(max_size=17))
def test_control_response_round_trip(op: int, result: int, parameter: bytes) -> None:
    data = encode_control_response(op, result, parameter)
    assert data == bytes([0x80, op, result]) + parameter
    decoded = decode_control_response(data)
    assert decoded == ControlResponse(op, result, parameter)
    assert decoded.ok is (result == 0x01)
    assert encode_control_response(decoded.request_op, decoded.result, decoded.parameter) == data
