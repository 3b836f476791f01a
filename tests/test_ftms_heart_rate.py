"""Heart Rate Service codec: golden frames, round trips against the spec layout, fuzzing.

Golden frames live in tests/data/heart_rate_real_frames.json with their sources; the
expected values below are read off the hex by hand (flags bit by bit, little-endian
uint16s), not copied from the codec or from the sources' own parsers.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrotread.errors import DecodeError
from retrotread.ftms import (
    BodySensorLocation,
    EncodeError,
    HeartRateMeasurement,
    SensorLocation,
    decode_body_sensor_location,
    decode_heart_rate_measurement,
    decode_to_dict,
    encode_body_sensor_location,
    encode_heart_rate_measurement,
    fit_rr_intervals,
    uuids,
)

DATA = Path(__file__).parent / "data" / "heart_rate_real_frames.json"
FRAMES: dict[str, tuple[str, bytes]] = {
    f["name"]: (f["char"], bytes.fromhex(f["hex"])) for f in json.loads(DATA.read_text())["frames"]
}
MEASUREMENTS = [data for char, data in FRAMES.values() if char == "2a37"]

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def frame(name: str) -> bytes:
    return FRAMES[name][1]


# ---------------------------------------------------------------- golden (Heart Rate Service 1.0)


@dataclass(frozen=True)
class Expected:
    bpm: int
    contact: bool | None = None
    energy_kj: int | None = None
    rr_raw: tuple[int, ...] = ()  # 1/1024 s
    wide: bool = False


GOLDEN: dict[str, Expected] = {
    # 0x10: RR present; contact bits 00 (not supported); 0x48 = 72; 0x032c = 812.
    "polar_h10_one_rr": Expected(72, rr_raw=(812,)),
    # Two beats in one second: 0x035e = 862, 0x0396 = 918.
    "polar_h10_two_rr": Expected(73, rr_raw=(862, 918)),
    "polar_h10_android": Expected(59, rr_raw=(0x0453,)),
    # 0x16: RR + contact supported (bit 2) + detected (bit 1); 0x4d = 77; 0x0316 = 790.
    "polar_h7_contact": Expected(77, contact=True, rr_raw=(790,)),
    # RR flag with no interval: no beat since the last notification (40 bpm), not an error.
    "polar_no_beat_this_second": Expected(40),
    # Garmin sends a second, implausible interval (53/1024 s); the codec reports what is sent.
    "garmin_hrm_dual_extra_rr": Expected(56, rr_raw=(0x042D, 0x0035)),
    "unbranded_strap_gatttool": Expected(52, contact=True, rr_raw=(0x04E4,)),
    "actigraph_example": Expected(66, contact=True, rr_raw=(1048, 368)),
    "movisens_two_rr": Expected(72, contact=True, rr_raw=(0x0154, 0x02EC)),
    "nordic_simple": Expected(85),
    # 0x04: contact supported, not detected; 0xff = 255 in the 8-bit format.
    "nordic_no_contact": Expected(255, contact=False),
    # 0x1e: contact detected, energy (0x0032 = 50 kJ), RR 0x0021.
    "nordic_uint8_energy_rr": Expected(85, contact=True, energy_kj=50, rr_raw=(33,)),
    # 0x1f: 16-bit heart rate 0x0101 = 257, energy 0x0132 = 306 kJ, RR 1, 0x0102, 0xffff.
    "nordic_uint16_energy_rr": Expected(
        257, contact=True, energy_kj=306, rr_raw=(1, 258, 65535), wide=True
    ),
    # 0x17: 16-bit 257, contact detected, RR flag but no interval. Kept, like the Polar case.
    "nordic_rr_flag_without_rr": Expected(257, contact=True, wide=True),
}


def test_every_measurement_frame_has_a_worked_expectation() -> None:
    assert set(GOLDEN) == {name for name, (char, _) in FRAMES.items() if char == "2a37"}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_measurement(name: str) -> None:
    want = GOLDEN[name]
    d = decode_heart_rate_measurement(frame(name))
    assert d.heart_rate_bpm == want.bpm
    assert d.sensor_contact is want.contact
    assert d.energy_expended_kj == want.energy_kj
    assert d.rr_intervals_s == tuple(raw / 1024 for raw in want.rr_raw)
    assert d.rr_intervals_ms == tuple(raw * 1000 / 1024 for raw in want.rr_raw)
    assert d.wide is want.wide
    assert (d.flags, d.missing, d.extra) == (frame(name)[0], (), b"")


@pytest.mark.parametrize(
    "name",
    sorted(
        n for n in GOLDEN if n not in ("polar_no_beat_this_second", "nordic_rr_flag_without_rr")
    ),
)
def test_golden_measurement_reencodes_byte_exact(name: str) -> None:
    assert encode_heart_rate_measurement(decode_heart_rate_measurement(frame(name))) == frame(name)


def test_rr_flag_without_intervals_reencodes_without_the_flag() -> None:
    # The flag says "RR intervals present" but none are: the encoder sends what it has.
    d = decode_heart_rate_measurement(frame("polar_no_beat_this_second"))
    assert encode_heart_rate_measurement(d) == bytes([0x00, 40])


def test_to_dict_is_what_the_cli_prints() -> None:
    assert decode_to_dict("2a37", frame("nordic_uint16_energy_rr")) == {
        "char": "2a37",
        "flags": "0x1f",
        "heart_rate_bpm": 257,
        "sensor_contact": True,
        "energy_expended_kj": 306,
        # 1/1024 s is exact in binary: 1 -> 0.9765625 ms, 258 -> 251.953125 ms.
        "rr_intervals_ms": [0.9765625, 251.953125, 63999.0234375],
    }
    assert decode_to_dict("0x2A37", frame("nordic_simple")) == {
        "char": "2a37",
        "flags": "0x00",
        "heart_rate_bpm": 85,
        "sensor_contact": None,
        "energy_expended_kj": None,
        "rr_intervals_ms": [],
    }
    full = uuids.HEART_RATE_MEASUREMENT
    assert decode_to_dict(full, frame("polar_h7_contact"))["rr_intervals_ms"] == [771.484375]


def test_energy_announced_but_cut_off_is_missing_not_an_error() -> None:
    d = decode_heart_rate_measurement(bytes.fromhex("1e 55 32"))
    assert (d.heart_rate_bpm, d.energy_expended_kj, d.missing) == (
        85,
        None,
        ("energy_expended_kj",),
    )
    assert (d.rr_intervals_s, d.extra) == ((), b"")
    assert decode_to_dict("2a37", bytes.fromhex("1e5532"))["missing"] == ["energy_expended_kj"]


def test_odd_byte_after_the_rr_intervals_is_set_aside() -> None:
    d = decode_heart_rate_measurement(frame("polar_h10_one_rr") + b"\x99")
    assert (d.rr_intervals_s, d.extra) == ((812 / 1024,), b"\x99")
    assert decode_to_dict("2a37", frame("polar_h10_one_rr") + b"\x99")["extra_hex"] == "99"


def test_bytes_no_flag_announces_are_set_aside_and_rfu_bits_ignored() -> None:
    d = decode_heart_rate_measurement(bytes.fromhex("e0 55 12 34"))
    assert (d.heart_rate_bpm, d.rr_intervals_s, d.extra) == (85, (), b"\x12\x34")
    out = d.to_dict()
    assert (out["rfu_flags"], out["extra_hex"]) == ("0xe0", "1234")


def test_contact_bits_01_mean_not_supported() -> None:
    # Bits 1-2 = 0b01 (detected without supported): "not supported" per the flag table.
    assert decode_heart_rate_measurement(bytes([0x02, 60])).sensor_contact is None


@pytest.mark.parametrize("data", ["", "00", "01 48", "10", "1f 01"])
def test_no_room_for_the_heart_rate_is_a_decode_error(data: str) -> None:
    with pytest.raises(DecodeError, match="2a37"):
        decode_heart_rate_measurement(bytes.fromhex(data))


def test_body_sensor_location() -> None:
    assert decode_body_sensor_location(frame("nordic_location_ear_lobe")) == SensorLocation(5)
    assert decode_to_dict("2a38", bytes([1])) == {
        "char": "2a38",
        "body_sensor_location": "chest",
        "code": 1,
    }
    names = ["other", "chest", "wrist", "finger", "hand", "ear_lobe", "foot"]
    for code, name in enumerate(names):
        assert decode_body_sensor_location(bytes([code])).name == name
        assert encode_body_sensor_location(name) == bytes([code])
        assert encode_body_sensor_location(BodySensorLocation(code)) == bytes([code])
    for code in (7, 0x80, 0xFF):
        assert decode_body_sensor_location(bytes([code])).to_dict() == {
            "body_sensor_location": "reserved",
            "code": code,
        }
    assert decode_body_sensor_location(bytes([1, 0xAA])).name == "chest"  # trailing ignored
    with pytest.raises(DecodeError, match="empty"):
        decode_body_sensor_location(b"")
    with pytest.raises(EncodeError, match="unknown value"):
        encode_body_sensor_location("belt")
    with pytest.raises(EncodeError, match="does not fit"):
        encode_body_sensor_location(256)


def test_uuids() -> None:
    assert uuids.HEART_RATE_SERVICE == "0000180d-0000-1000-8000-00805f9b34fb"
    assert uuids.short_name(uuids.HEART_RATE_MEASUREMENT) == "2a37"
    assert uuids.short_name(uuids.BODY_SENSOR_LOCATION) == "2a38"
    assert uuids.short_name(uuids.HEART_RATE_CONTROL_POINT) == "2a39"


# ---------------------------------------------------------------- encoder


def test_encoder_chooses_fields_by_value() -> None:
    record = HeartRateMeasurement(heart_rate_bpm=72, sensor_contact=True, rr_intervals_s=(0.5,))
    assert encode_heart_rate_measurement(record) == bytes.fromhex("16 48 0002")
    wide = HeartRateMeasurement(heart_rate_bpm=300, energy_expended_kj=0x1234, wide=True)
    assert encode_heart_rate_measurement(wide) == bytes.fromhex("09 2c01 3412")
    assert encode_heart_rate_measurement(HeartRateMeasurement(60, sensor_contact=False)) == (
        bytes.fromhex("04 3c")
    )


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (HeartRateMeasurement(heart_rate_bpm=256), "does not fit"),  # 8-bit format
        (HeartRateMeasurement(heart_rate_bpm=-1), "does not fit"),
        (HeartRateMeasurement(heart_rate_bpm=60, energy_expended_kj=70000), "does not fit"),
        (HeartRateMeasurement(heart_rate_bpm=60, rr_intervals_s=(64.0,)), "does not fit"),
        (HeartRateMeasurement(heart_rate_bpm=60, rr_intervals_s=(-0.1,)), "does not fit"),
        (HeartRateMeasurement(heart_rate_bpm=60, rr_intervals_s=(float("nan"),)), "finite"),
        (HeartRateMeasurement(heart_rate_bpm=None), "no 'not available'"),  # type: ignore[arg-type]
    ],
)
def test_encoder_refuses_what_does_not_fit(record: HeartRateMeasurement, message: str) -> None:
    with pytest.raises(EncodeError, match=message):
        encode_heart_rate_measurement(record)


def test_fit_rr_intervals_keeps_the_oldest_that_fit() -> None:
    rr = tuple(i / 1024 for i in range(700, 712))  # 12 intervals
    narrow, rest = fit_rr_intervals(HeartRateMeasurement(60, rr_intervals_s=rr))
    assert narrow.rr_intervals_s == rr[:9] and rest == rr[9:]  # 1 + 1 + 9 * 2 = 20 bytes
    assert len(encode_heart_rate_measurement(narrow)) == 20
    full, rest = fit_rr_intervals(
        HeartRateMeasurement(60, energy_expended_kj=5, wide=True, rr_intervals_s=rr)
    )
    assert full.rr_intervals_s == rr[:7] and rest == rr[7:]  # 1 + 2 + 2 + 7 * 2 = 19 bytes
    assert (
        fit_rr_intervals(HeartRateMeasurement(60, rr_intervals_s=rr), max_len=2)[0].rr_intervals_s
        == ()
    )


# ---------------------------------------------------------------- round trips (spec layout)


@dataclass(frozen=True)
class Wire:
    """A measurement built straight from the spec's field table, and what it must decode to."""

    data: bytes
    record: HeartRateMeasurement


@st.composite
def wire_measurements(draw: st.DrawFn) -> Wire:
    wide = draw(st.booleans())
    bpm = draw(st.integers(0, 0xFFFF if wide else 0xFF))
    contact = draw(st.sampled_from([None, False, True]))
    energy = draw(st.none() | st.integers(0, 0xFFFF))
    rr = draw(st.lists(st.integers(0, 0xFFFF), max_size=9))
    flags = (1 if wide else 0) | (0b110 if contact else 0b100 if contact is False else 0)
    flags |= (0x08 if energy is not None else 0) | (0x10 if rr else 0)
    data = bytes([flags]) + struct.pack("<H" if wide else "<B", bpm)
    if energy is not None:
        data += struct.pack("<H", energy)
    data += struct.pack(f"<{len(rr)}H", *rr)
    record = HeartRateMeasurement(
        heart_rate_bpm=bpm,
        sensor_contact=contact,
        energy_expended_kj=energy,
        rr_intervals_s=tuple(r / 1024 for r in rr),
        wide=wide,
        flags=flags,
    )
    return Wire(data, record)


@FAST
@given(wire_measurements())
def test_measurement_round_trips_against_the_spec_layout(wire: Wire) -> None:
    d = decode_heart_rate_measurement(wire.data)
    assert d == wire.record
    assert encode_heart_rate_measurement(d) == wire.data  # bytes -> record -> bytes
    assert encode_heart_rate_measurement(wire.record) == wire.data
    out = json.loads(json.dumps(d.to_dict()))
    assert out["rr_intervals_ms"] == [s * 1000 for s in wire.record.rr_intervals_s]


@FAST
@given(
    st.integers(0, 255),
    st.lists(st.floats(0, 63.99, allow_nan=False), max_size=9),
)
def test_rr_seconds_survive_to_the_nearest_1_1024(bpm: int, rr: list[float]) -> None:
    data = encode_heart_rate_measurement(HeartRateMeasurement(bpm, rr_intervals_s=tuple(rr)))
    back = decode_heart_rate_measurement(data).rr_intervals_s
    assert len(back) == len(rr)
    assert all(abs(a - b) <= 0.5 / 1024 for a, b in zip(back, rr, strict=True))


@FAST
@given(wire_measurements(), st.integers(0, 30))
def test_fitted_record_fits_and_loses_nothing(wire: Wire, max_len: int) -> None:
    fitted, rest = fit_rr_intervals(wire.record, max_len)
    assert fitted.rr_intervals_s + rest == wire.record.rr_intervals_s
    data = encode_heart_rate_measurement(fitted)
    assert len(data) <= max_len or not fitted.rr_intervals_s
    if rest:
        assert len(data) + 2 > max_len  # one more interval would not have fitted


# ---------------------------------------------------------------- fuzz (untrusted bytes)


def oracle(data: bytes) -> HeartRateMeasurement | None:
    """The spec's reading of any bytes, written out independently; None for "undecodable"."""
    if not data:
        return None
    flags = data[0]
    size = 2 if flags & 0x01 else 1
    if len(data) < 1 + size:
        return None
    bpm = int.from_bytes(data[1 : 1 + size], "little")
    at, energy, missing, rr = 1 + size, None, (), []
    if flags & 0x08:
        if len(data) >= at + 2:
            energy, at = int.from_bytes(data[at : at + 2], "little"), at + 2
        else:
            missing = ("energy_expended_kj",)
    if flags & 0x10 and not missing:
        while at + 2 <= len(data):
            rr.append(int.from_bytes(data[at : at + 2], "little") / 1024)
            at += 2
    return HeartRateMeasurement(
        heart_rate_bpm=bpm,
        sensor_contact=bool(flags & 0x02) if flags & 0x04 else None,
        energy_expended_kj=energy,
        rr_intervals_s=tuple(rr),
        wide=bool(flags & 0x01),
        flags=flags,
        missing=missing,
        extra=b"" if missing else data[at:],
    )


def check(data: bytes) -> None:
    """Decode any bytes: the oracle's answer, or DecodeError exactly when it has none."""
    want = oracle(data)
    if want is None:
        with pytest.raises(DecodeError):
            decode_heart_rate_measurement(data)
        with pytest.raises(DecodeError):
            decode_to_dict("2a37", data)
    else:
        assert decode_heart_rate_measurement(data) == want
        json.dumps(decode_to_dict("2a37", data))
    try:
        json.dumps(decode_to_dict("2a38", data))
    except DecodeError:
        assert not data


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes(data: bytes) -> None:
    check(data)


def test_every_flags_byte_at_every_length() -> None:
    body = bytes(range(0x41, 0x41 + 24))
    for flags in range(256):
        for length in range(0, 26):
            check((bytes([flags]) + body)[:length])


def test_bit_flips_truncations_and_garbage_on_real_frames() -> None:
    for real in MEASUREMENTS:
        for cut in range(len(real)):
            check(real[:cut])
        for bit in range(len(real) * 8):
            flipped = bytearray(real)
            flipped[bit // 8] ^= 1 << (bit % 8)
            check(bytes(flipped))
        for garbage in (b"\x00", b"\xff", b"\x01\x02\x03"):
            check(real + garbage)


@FAST
@given(
    bpm=st.integers(-5, 70000) | st.floats() | st.none() | st.booleans(),
    energy=st.none() | st.integers(-5, 70000) | st.floats(),
    rr=st.lists(st.floats() | st.integers(-5, 70000), max_size=12),
    wide=st.booleans(),
    contact=st.none() | st.booleans(),
)
def test_encoder_raises_only_encode_error(
    bpm: object, energy: object, rr: list[float], wide: bool, contact: bool | None
) -> None:
    record = HeartRateMeasurement(
        heart_rate_bpm=bpm,  # type: ignore[arg-type]
        sensor_contact=contact,
        energy_expended_kj=energy,  # type: ignore[arg-type]
        rr_intervals_s=tuple(rr),
        wide=wide,
    )
    try:
        data = encode_heart_rate_measurement(record)
    except EncodeError:
        return
    d = decode_heart_rate_measurement(data)
    assert isinstance(bpm, int | float) and abs(d.heart_rate_bpm - bpm) <= 0.5
    assert d.sensor_contact is contact and d.wide is wide
    assert len(d.rr_intervals_s) == len(rr)
