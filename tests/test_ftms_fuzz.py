"""Fuzz every FTMS decoder: any input gives a value or DecodeError, never another exception.

Inputs: random bytes, and real frames (tests/data/ftms_real_frames.json) with every bit
flipped, cut at every offset, or with garbage appended. A treadmill that sends an odd byte
must get a decode error or an ignored bit, never a crash of the daemon (STYLE.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrotread.errors import DecodeError
from retrotread.ftms import (
    EncodeError,
    TreadmillData,
    decode_control_request,
    decode_control_response,
    decode_features,
    decode_machine_status,
    decode_to_dict,
    decode_training_status,
    decode_treadmill_data,
    encode_control_request,
    encode_treadmill_data,
)
from retrotread.ftms.control import REQUEST_PARAMS
from retrotread.ftms.features import HEART_RATE_RANGE, INCLINE_RANGE, SPEED_RANGE, decode_range
from retrotread.ftms.frames import DECODABLE
from retrotread.ftms.treadmill_data import VALUE_FIELDS, iter_field_names

DATA = Path(__file__).parent / "data" / "ftms_real_frames.json"
REAL: list[bytes] = [bytes.fromhex(f["hex"]) for f in json.loads(DATA.read_text())["frames"]]

FUZZ = settings(max_examples=200, deadline=None)

# Treadmill Data groups by flags bit, in wire order, with field sizes (FTMS.md §5.1/§5.2).
GROUP_FIELDS: dict[int, tuple[tuple[str, int], ...]] = {
    0: (("speed_kmh", 2),),
    1: (("average_speed_kmh", 2),),
    2: (("distance_m", 3),),
    3: (("incline_pct", 2), ("ramp_angle_deg", 2)),
    4: (("elevation_gain_m", 2), ("negative_elevation_gain_m", 2)),
    7: (("energy_kcal", 2), ("energy_per_hour_kcal", 2), ("energy_per_minute_kcal", 1)),
    8: (("heart_rate_bpm", 1),),
    9: (("metabolic_equivalent", 1),),
    10: (("elapsed_s", 2),),
    11: (("remaining_s", 2),),
    12: (("force_on_belt_n", 2), ("power_w", 2)),
}
PACE_FIELDS = {
    1: (("instantaneous_pace_km_per_min", 1), ("average_pace_km_per_min", 1)),
    2: (("instantaneous_pace_s_per_500m", 2), ("average_pace_s_per_500m", 2)),
}
PACE_NAMES = {name for fields in PACE_FIELDS.values() for name, _ in fields}


def announced(flags: int, pace_width: int) -> list[tuple[str, int]]:
    """Every (field, size) the flags word announces, in wire order; bit 0 is inverted."""
    groups = dict(GROUP_FIELDS)
    groups[5] = PACE_FIELDS[pace_width][:1]
    groups[6] = PACE_FIELDS[pace_width][1:]
    out: list[tuple[str, int]] = []
    for bit in sorted(groups):
        if (not flags & 1) if bit == 0 else bool(flags & (1 << bit)):
            out.extend(groups[bit])
    return out


def test_announced_matches_the_codec_field_order() -> None:
    for width in (1, 2):
        assert [n for n, _ in announced(0x1FFE, width)] == list(iter_field_names(width))


def check_treadmill_data(data: bytes, pace_width: int, to_json: bool = True) -> None:
    """Decode and compare the frame's structure with an independent oracle."""
    if len(data) < 2:
        with pytest.raises(DecodeError):
            decode_treadmill_data(data, pace_width)
        return
    flags = int.from_bytes(data[:2], "little")
    fields = announced(flags, pace_width)
    names = [n for n, _ in fields]
    # FTMS.md §5.3: with pace present, pace and what follows are trusted only on an exact length.
    trusted = len(fields)
    if flags & 0x0060 and len(data) != 2 + sum(size for _, size in fields):
        trusted = next(i for i, n in enumerate(names) if n in PACE_NAMES)
    # FTMS.md §5.4: a short frame yields every field that fits whole, in order.
    offset, present = 2, []
    for name, size in fields[:trusted]:
        if offset + size > len(data):
            break
        present.append(name)
        offset += size
    if names and not present:
        with pytest.raises(DecodeError):
            decode_treadmill_data(data, pace_width)
        return

    d = decode_treadmill_data(data, pace_width)
    assert d.flags == flags
    assert d.more_data is bool(flags & 1)
    assert d.present == tuple(present)
    assert d.missing == tuple(names[len(present) :])
    assert not set(d.present) & set(d.missing)
    assert d.extra == (data[offset:] if len(present) == len(names) else b"")
    for name in VALUE_FIELDS:
        if name not in d.present:
            assert getattr(d, name) is None, name
    if to_json:
        json.dumps(d.to_dict())


def _range(spec: Any) -> Callable[[bytes], object]:
    return lambda data: decode_range(spec, data)


def _to_dict(char: str, width: int) -> Callable[[bytes], object]:
    def decode(data: bytes) -> object:
        out = decode_to_dict(char, data, pace_width=width)
        assert out["char"] == char
        json.dumps(out)  # the CLI prints it: it must be JSON
        return out

    return decode


DECODERS: dict[str, Callable[[bytes], object]] = {
    "treadmill_data_pace1": lambda data: check_treadmill_data(data, 1),
    "treadmill_data_pace2": lambda data: check_treadmill_data(data, 2),
    "features": decode_features,
    "speed_range": _range(SPEED_RANGE),
    "incline_range": _range(INCLINE_RANGE),
    "heart_rate_range": _range(HEART_RATE_RANGE),
    "training_status": decode_training_status,
    "machine_status": decode_machine_status,
    "control_request": decode_control_request,
    "control_response": decode_control_response,
    **{f"to_dict_{c}": _to_dict(c, 1) for c in DECODABLE},
    "to_dict_2acd_pace2": _to_dict("2acd", 2),  # pace width only matters to Treadmill Data
}


def feed(data: bytes) -> None:
    """Run every decoder; DecodeError (UnsupportedOpCode included) is the only allowed failure."""
    for name, decoder in DECODERS.items():
        try:
            decoder(data)
        except DecodeError:
            pass
        except Exception as exc:
            raise AssertionError(f"{name} on {data.hex()}: {exc!r}") from exc


def test_real_frames_all_decode_under_their_own_characteristic() -> None:
    frames = json.loads(DATA.read_text())["frames"]
    for f in frames:
        decode_to_dict(f["char"], bytes.fromhex(f["hex"]))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=40))
def test_random_bytes(data: bytes) -> None:
    feed(data)


@settings(max_examples=300, deadline=None)
@given(flags=st.integers(0, 0xFFFF), body=st.binary(max_size=38))
def test_random_treadmill_data_bodies(flags: int, body: bytes) -> None:
    for width in (1, 2):
        check_treadmill_data(flags.to_bytes(2, "little") + body, width)


def mutations(frame: bytes) -> list[bytes]:
    """Every single-bit flip and every truncation of ``frame``."""
    out = [frame[:cut] for cut in range(len(frame))]
    for i in range(len(frame) * 8):
        flipped = bytearray(frame)
        flipped[i // 8] ^= 1 << (i % 8)
        out.append(bytes(flipped))
    return out


def test_bit_flips_and_truncations_of_real_frames() -> None:
    mutated = [m for frame in REAL for m in mutations(frame)]
    assert len(mutated) == sum(9 * len(f) for f in REAL)
    for data in mutated:
        feed(data)


@settings(max_examples=200, deadline=None)
@given(frame=st.sampled_from(REAL), garbage=st.binary(min_size=1, max_size=24))
def test_real_frames_with_garbage_appended(frame: bytes, garbage: bytes) -> None:
    feed(frame + garbage)


@settings(max_examples=200, deadline=None)
@given(
    frame=st.sampled_from(REAL),
    edits=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_real_frames_with_random_byte_edits(frame: bytes, edits: list[tuple[int, int]]) -> None:
    data = bytearray(frame)
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
        else:
            data.append(value)
    feed(bytes(data))


def test_treadmill_data_with_every_defined_flags_combination() -> None:
    # All 2**13 combinations of the defined bits with a body long enough for every field
    # (vendor extra, or untrusted pace). Short bodies: see test_random_treadmill_data_bodies.
    for flags in range(0x2000):
        check_treadmill_data(flags.to_bytes(2, "little") + bytes(range(40)), 1, to_json=False)
    # Pace (FTMS.md §5.3): the exact body for one width is off by one or two for the other.
    for flags in range(0x2000):
        if not flags & 0x0060 or flags % 3:
            continue  # a third of the pace combinations keeps this fast
        for width in (1, 2):
            size = sum(n for _, n in announced(flags, width))
            frame = flags.to_bytes(2, "little") + bytes(range(size))
            check_treadmill_data(frame, 1, to_json=False)
            check_treadmill_data(frame, 2, to_json=False)
    for rfu in (0x2000, 0x4000, 0x8000, 0xE000):
        check_treadmill_data((rfu | 0x0484).to_bytes(2, "little") + bytes(17), 1)


# ---------------------------------------------------------------- encoders take any number


@FUZZ
@given(
    op=st.sampled_from(sorted(REQUEST_PARAMS)),
    value=st.floats() | st.integers(-(2**40), 2**40) | st.none() | st.text(max_size=3),
)
def test_control_request_encoder_raises_only_encode_error(op: int, value: object) -> None:
    params = REQUEST_PARAMS[op]
    try:
        data = encode_control_request(op, {f.name: value for f in params})
    except EncodeError:
        return
    if op in (0x08, 0x13) and isinstance(value, int) and value not in (1, 2):
        # The encoder passes a raw int through, so a test can send a reserved Stop/Spin Down
        # parameter on purpose; the decoder rejects it (the server answers 0x03).
        with pytest.raises(DecodeError, match="reserved"):
            decode_control_request(data)
        return
    decoded = decode_control_request(data)
    for f in params:
        v = decoded.values[f.name]
        if isinstance(v, str):
            assert v in ("stop", "pause", "start", "ignore")
        else:
            assert isinstance(value, int | float) and v is not None
            assert abs(v - value) <= 0.5 / f.div + 1e-9  # rounded to the field's resolution


@FUZZ
@given(speed=st.floats(), incline=st.floats() | st.none(), hr=st.integers(-5, 300) | st.none())
def test_treadmill_data_encoder_raises_only_encode_error(
    speed: float, incline: float | None, hr: int | None
) -> None:
    record = TreadmillData(speed_kmh=speed, incline_pct=incline, heart_rate_bpm=hr)
    try:
        data = encode_treadmill_data(record)
    except EncodeError:
        return
    d = decode_treadmill_data(data)
    assert d.speed_kmh is not None and abs(d.speed_kmh - speed) <= 0.005
    assert d.heart_rate_bpm == hr
