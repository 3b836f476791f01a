"""Golden byte vectors: real frames from FTMS.md (§4, §5.2, §7, §11, §12) decoded to exact values.

The frames live in tests/data/ftms_real_frames.json with their sources; the expected values here
are worked out by hand from the spec tables, not copied from the codec.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from retrotread.errors import DecodeError, UnsupportedOpCode
from retrotread.ftms import (
    ControlOp,
    ControlRequest,
    ControlResponse,
    EncodeError,
    Features,
    MachineFeature,
    MachineStatus,
    StatusOp,
    SupportedRange,
    TargetFeature,
    TrainingStatus,
    TrainingStatusFrame,
    TreadmillData,
    decode_control_request,
    decode_control_response,
    decode_features,
    decode_machine_status,
    decode_speed_range,
    decode_to_dict,
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
from retrotread.ftms.control import (
    REQUEST_PARAMS,
    pause,
    request_control,
    reset,
    set_target_incline,
    set_target_speed,
    start_or_resume,
    stop,
)
from retrotread.ftms.features import SPEED_RANGE, encode_range
from retrotread.ftms.status import STATUS_PARAMS

DATA = Path(__file__).parent / "data" / "ftms_real_frames.json"
REAL: dict[str, tuple[str, bytes]] = {
    f["name"]: (f["char"], bytes.fromhex(f["hex"])) for f in json.loads(DATA.read_text())["frames"]
}


def frame(name: str) -> bytes:
    return REAL[name][1]


# ---------------------------------------------------------------- Treadmill Data (§5, §11, §12)


def test_citysports_frame_with_vendor_bit_13_and_step_bytes() -> None:
    d = decode_treadmill_data(frame("citysports_treadmill_data"))
    assert d.flags == 0x2484
    assert d.more_data is False
    assert d.values() == {
        "speed_kmh": 2.0,
        "distance_m": 33,
        "energy_kcal": 1,
        "energy_per_hour_kcal": None,
        "energy_per_minute_kcal": None,
        "elapsed_s": 60,
    }
    assert d.present == tuple(d.values())
    assert d.missing == ()
    assert d.extra == bytes([0x40, 0x00, 0x00])
    # Fields the flags do not announce stay None.
    assert (d.average_speed_kmh, d.incline_pct, d.heart_rate_bpm) == (None, None, None)
    assert d.to_dict() == {
        "flags": "0x2484",
        "more_data": False,
        "speed_kmh": 2.0,
        "distance_m": 33,
        "energy_kcal": 1,
        "energy_per_hour_kcal": None,
        "energy_per_minute_kcal": None,
        "elapsed_s": 60,
        "rfu_flags": "0x2000",
        "extra_hex": "400000",
    }


def test_citysports_frame_reencodes_byte_exact_with_the_vendor_extension() -> None:
    d = decode_treadmill_data(frame("citysports_treadmill_data"))
    out = encode_treadmill_data(d, vendor_bits=0x2000, vendor_bytes=d.extra)
    assert out == frame("citysports_treadmill_data")


def test_horizon_idle_frame() -> None:
    d = decode_treadmill_data(frame("horizon_idle"))
    assert d.flags == 0x0484
    assert d.values() == {
        "speed_kmh": 0.0,
        "distance_m": 0,
        "energy_kcal": 0,
        "energy_per_hour_kcal": 0,
        "energy_per_minute_kcal": 0,
        "elapsed_s": 0,
    }
    assert (d.missing, d.extra) == ((), b"")
    assert encode_treadmill_data(d) == frame("horizon_idle")


def test_life_fitness_frame_sentinels_including_7fff_in_uint16_elevation() -> None:
    d = decode_treadmill_data(frame("life_fitness"))
    assert d.flags == 0x049E
    assert d.values() == {
        "speed_kmh": 6.27,
        "average_speed_kmh": 5.63,
        "distance_m": 37,
        "incline_pct": 6.0,
        "ramp_angle_deg": None,  # 0x7FFF, the sint16 sentinel
        "elevation_gain_m": 0.0,
        "negative_elevation_gain_m": None,  # 0x7FFF in a uint16 field (FTMS.md §12 #9)
        "energy_kcal": 2,
        "energy_per_hour_kcal": None,
        "energy_per_minute_kcal": None,
        "elapsed_s": 31,
    }
    assert (d.missing, d.extra) == ((), b"")


MATRIX_TAIL_MISSING = (
    "energy_per_hour_kcal",
    "energy_per_minute_kcal",
    "heart_rate_bpm",
    "metabolic_equivalent",
    "elapsed_s",
    "remaining_s",
    "force_on_belt_n",
    "power_w",
)


@pytest.mark.parametrize(
    ("name", "speed", "avg", "distance", "incline", "gain", "energy"),
    [
        ("matrix_running_1", 0.81, 1.78, 88, 0.0, 0.0, 12),
        ("matrix_running_2", 0.81, 1.13, 213, 0.0, 3.0, 38),
        ("matrix_running_3", 9.66, 6.6, 318, 9.0, 5.0, 37),
        ("matrix_running_4", 9.66, 8.86, 1464, 0.0, 6.0, 169),
    ],
)
def test_matrix_frames_cut_at_20_bytes_decode_what_fits(
    name: str, speed: float, avg: float, distance: int, incline: float, gain: float, energy: int
) -> None:
    d = decode_treadmill_data(frame(name))
    assert len(frame(name)) == 20
    assert d.flags == 0x1F9E
    assert d.values() == {
        "speed_kmh": speed,
        "average_speed_kmh": avg,
        "distance_m": distance,
        "incline_pct": incline,
        "ramp_angle_deg": None,
        "elevation_gain_m": gain,
        "negative_elevation_gain_m": None,  # Matrix sends 0xFFFF here (FTMS.md §12 #9)
        # Regression: the energy group (5 bytes) does not fit in the last 3 bytes, but its
        # first field does; it used to be thrown away with the rest of the group.
        "energy_kcal": energy,
    }
    assert d.missing == MATRIX_TAIL_MISSING
    assert d.extra == b""


def test_matrix_frame_before_workout_without_elapsed_time() -> None:
    d = decode_treadmill_data(frame("matrix_before_workout"))
    assert d.flags == 0x1B9E
    assert d.speed_kmh == 0.0
    assert d.energy_kcal == 0
    assert d.missing == tuple(m for m in MATRIX_TAIL_MISSING if m != "elapsed_s")
    assert "elapsed_s" not in d.present


def test_truncated_frame_keeps_every_field_that_fits_whole() -> None:
    # Speed + incline group cut after the incline: the ramp angle is missing, not the incline.
    d = decode_treadmill_data(bytes.fromhex("0800 c800 3c00 ff"))
    assert d.values() == {"speed_kmh": 2.0, "incline_pct": 6.0}
    assert d.missing == ("ramp_angle_deg",)
    assert d.extra == b""


def test_flags_zero_is_a_four_byte_speed_only_frame() -> None:
    d = decode_treadmill_data(bytes.fromhex("0000 7100"))
    assert (d.values(), d.more_data, d.missing) == ({"speed_kmh": 1.13}, False, ())


def test_one_flags_word_at_every_length_in_turn() -> None:
    # The decoder compiles each flags word once and caches it: whole, cut and padded frames
    # of the same flags word, in any order, must not leak into each other.
    whole = frame("horizon_idle")  # 0x0484: speed, distance (u24), energy (5), elapsed
    names = ("speed_kmh", "distance_m", "energy_kcal", "energy_per_hour_kcal")
    names += ("energy_per_minute_kcal", "elapsed_s")
    fits = {4: 1, 5: 1, 6: 1, 7: 2, 8: 2, 9: 3, 10: 3, 11: 4, 12: 5, 13: 5, 14: 6}
    for length in [14, 4, 11, 15, 7, 14, 12, 4, 20, 9, 14, *range(4, 21)]:
        data = whole + bytes(range(1, 7)) if length > 14 else whole
        d = decode_treadmill_data(data[:length])
        count = fits.get(length, 6)
        assert (d.present, d.missing) == (names[:count], names[count:]), length
        assert d.extra == (bytes(range(1, length - 13)) if length > 14 else b""), length


def test_decoded_record_is_the_record_built_by_hand() -> None:
    d = decode_treadmill_data(frame("life_fitness") + b"\x01")
    built = TreadmillData(
        **d.values(),  # type: ignore[arg-type]
        flags=0x049E,
        present=d.present,
        missing=(),
        extra=b"\x01",
    )
    assert d == built
    assert hash(d) == hash(built)
    assert repr(d) == repr(built)
    assert replace(d, speed_kmh=1.0).speed_kmh == 1.0 and d.speed_kmh == 6.27


def test_frame_too_short_for_any_announced_field_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="too short"):
        decode_treadmill_data(bytes.fromhex("0000 c8"))
    with pytest.raises(DecodeError, match="2-byte flags"):
        decode_treadmill_data(b"\x84")


# ---------------------------------------------------------------- pace width (§5.3)

# flags 0x0460: speed, Instantaneous Pace, Average Pace, Elapsed Time.
PACE_W1 = bytes.fromhex("6004 2c01 55 50 3c00")  # 1-byte pace: 8.5 and 8.0 km/min x0.1
PACE_W2 = bytes.fromhex("6004 2c01 9600 a000 3c00")  # 2-byte pace: 150 and 160 s per 500 m


def test_pace_width_1_frame() -> None:
    d = decode_treadmill_data(PACE_W1, pace_width=1)
    assert d.values() == {
        "speed_kmh": 3.0,
        "instantaneous_pace_km_per_min": 8.5,
        "average_pace_km_per_min": 8.0,
        "elapsed_s": 60,
    }
    assert (d.missing, d.extra) == ((), b"")
    assert encode_treadmill_data(d, pace_width=1) == PACE_W1


def test_pace_width_2_frame() -> None:
    d = decode_treadmill_data(PACE_W2, pace_width=2)
    assert d.values() == {
        "speed_kmh": 3.0,
        "instantaneous_pace_s_per_500m": 150,
        "average_pace_s_per_500m": 160,
        "elapsed_s": 60,
    }
    assert (d.missing, d.extra) == ((), b"")
    assert encode_treadmill_data(d, pace_width=2) == PACE_W2


@pytest.mark.parametrize(("data", "width"), [(PACE_W1, 2), (PACE_W2, 1)])
def test_pace_frame_whose_length_does_not_add_up_is_not_trusted_from_pace_on(
    data: bytes, width: int
) -> None:
    d = decode_treadmill_data(data, pace_width=width)
    pace = (
        ("instantaneous_pace_s_per_500m", "average_pace_s_per_500m")
        if width == 2
        else ("instantaneous_pace_km_per_min", "average_pace_km_per_min")
    )
    assert d.values() == {"speed_kmh": 3.0}
    assert d.missing == (*pace, "elapsed_s")
    assert d.elapsed_s is None  # never a value read at a guessed offset
    assert d.extra == b""


def test_pace_frame_with_vendor_bytes_is_not_trusted_from_pace_on() -> None:
    # Same width-1 frame with RFU bit 13 and 3 vendor bytes: the length no longer adds up.
    data = bytes.fromhex("6024 2c01 55 50 3c00 400000")
    d = decode_treadmill_data(data, pace_width=1)
    assert d.values() == {"speed_kmh": 3.0}
    assert d.missing == ("instantaneous_pace_km_per_min", "average_pace_km_per_min", "elapsed_s")
    assert d.extra == b""


def test_fields_before_pace_stay_trusted_when_pace_does_not_add_up() -> None:
    # flags 0x0027: More Data (no speed), Average Speed, Total Distance, Instantaneous Pace.
    data = bytes.fromhex("2700 2c01 210000 9600")  # 2-byte pace, read as width 1 → 1 byte over
    d = decode_treadmill_data(data, pace_width=1)
    assert d.values() == {"average_speed_kmh": 3.0, "distance_m": 33}
    assert d.missing == ("instantaneous_pace_km_per_min",)
    assert d.more_data is True


def test_pace_width_other_than_1_or_2_is_rejected() -> None:
    with pytest.raises(ValueError, match="pace_width"):
        decode_treadmill_data(PACE_W1, pace_width=3)


# ---------------------------------------------------------------- features and ranges (§4, §7)


def test_features_citysports_by_name() -> None:
    f = decode_features(frame("features_citysports"))
    assert f.machine == (
        MachineFeature.TOTAL_DISTANCE
        | MachineFeature.STEP_COUNT
        | MachineFeature.EXPENDED_ENERGY
        | MachineFeature.ELAPSED_TIME
    )
    assert f.target == TargetFeature.SPEED_TARGET
    assert (f.speed_target, f.incline_target) == (True, False)
    assert f.to_dict() == {
        "machine_features": ["total_distance", "step_count", "expended_energy", "elapsed_time"],
        "target_setting_features": ["speed_target"],
    }
    assert encode_features(f) == frame("features_citysports")


def test_features_fitshow_by_name() -> None:
    f = decode_features(frame("features_fitshow"))
    assert f.to_dict() == {
        "machine_features": [
            "total_distance",
            "inclination",
            "elevation_gain",
            "step_count",
            "expended_energy",
            "heart_rate_measurement",
            "elapsed_time",
        ],
        "target_setting_features": ["speed_target", "inclination_target"],
    }
    assert (f.speed_target, f.incline_target) == (True, True)
    assert encode_features(f) == frame("features_fitshow")


def test_features_rfu_bits_are_ignored_and_trailing_bytes_too() -> None:
    f = decode_features(bytes.fromhex("4412ffff 0100feff 99"))
    assert f == Features(
        MachineFeature(0x1244) | MachineFeature.USER_DATA_RETENTION, TargetFeature(0x0001)
    )
    with pytest.raises(DecodeError, match="needs 8 bytes"):
        decode_features(bytes(7))


def test_speed_range_citysports() -> None:
    r = decode_speed_range(frame("speed_range_citysports"))
    assert r == SupportedRange(100, 600, 50, 100, "kmh")
    assert (r.minimum, r.maximum, r.increment) == (1.0, 6.0, 0.5)
    assert r.to_dict() == {"min_kmh": 1.0, "max_kmh": 6.0, "increment_kmh": 0.5}
    assert encode_range(SPEED_RANGE, 1.0, 6.0, 0.5) == frame("speed_range_citysports")


def test_range_with_min_above_max_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="above maximum"):
        decode_speed_range(bytes.fromhex("5802 6400 3200"))


# ---------------------------------------------------------------- control point (§8, §11)


def test_request_control_and_start_frames() -> None:
    assert request_control() == frame("request_control") == b"\x00"
    assert start_or_resume() == frame("start") == b"\x07"
    assert reset() == b"\x01"
    assert decode_control_request(frame("request_control")) == ControlRequest(
        ControlOp.REQUEST_CONTROL, {}
    )
    assert decode_control_request(frame("start")) == ControlRequest(ControlOp.START_OR_RESUME, {})
    assert decode_control_response(frame("request_control_response")) == ControlResponse(0, 1)
    assert decode_control_response(frame("start_response")) == ControlResponse(7, 1)


def test_set_speed_1_50_with_status_echo_and_response() -> None:
    assert set_target_speed(1.5) == frame("set_speed_1_50") == bytes([0x02, 0x96, 0x00])
    assert decode_control_request(frame("set_speed_1_50")) == ControlRequest(
        ControlOp.SET_TARGET_SPEED, {"target_speed_kmh": 1.5}
    )
    echo = decode_machine_status(frame("status_target_speed_1_50"))
    assert echo == MachineStatus(StatusOp.TARGET_SPEED_CHANGED, {"target_speed_kmh": 1.5}, b"")
    assert echo.name == "target_speed_changed"
    assert encode_machine_status(0x05, {"target_speed_kmh": 1.5}) == frame(
        "status_target_speed_1_50"
    )
    resp = decode_control_response(frame("set_speed_response"))
    assert resp == ControlResponse(ControlOp.SET_TARGET_SPEED, 0x01, b"")
    assert (resp.ok, resp.result_name) == (True, "success")
    assert encode_control_response(0x02, 0x01) == frame("set_speed_response")


def test_stop_with_status_and_response() -> None:
    assert stop() == frame("stop") == bytes([0x08, 0x01])
    assert pause() == bytes([0x08, 0x02])
    assert decode_control_request(frame("stop")) == ControlRequest(
        ControlOp.STOP_OR_PAUSE, {"control": "stop"}
    )
    status = decode_machine_status(frame("status_stopped"))
    assert status == MachineStatus(0x02, {"control": "stop"}, b"")
    assert status.name == "stopped_or_paused_by_user"
    assert encode_machine_status(0x02, {"control": "stop"}) == frame("status_stopped")
    assert decode_control_response(frame("stop_response")) == ControlResponse(0x08, 0x01)


def test_response_to_dict_and_failure_codes() -> None:
    r = decode_control_response(bytes.fromhex("800205"))
    assert (r.ok, r.result_name) == (False, "control_not_permitted")
    assert r.to_dict() == {
        "kind": "response",
        "request_op_code": "0x02",
        "request_op": "set_target_speed",
        "result_code": "0x05",
        "result": "control_not_permitted",
    }
    spin = decode_control_response(bytes.fromhex("801301 6400 5802")).to_dict()
    assert (spin["target_speed_low_kmh"], spin["target_speed_high_kmh"]) == (1.0, 6.0)
    with pytest.raises(DecodeError, match="want 0x80"):
        decode_control_response(bytes.fromhex("020201"))
    with pytest.raises(DecodeError, match="needs 3 bytes"):
        decode_control_response(bytes.fromhex("8002"))


def test_control_request_errors() -> None:
    with pytest.raises(UnsupportedOpCode) as info:
        decode_control_request(bytes.fromhex("15"))
    assert info.value.op_code == 0x15
    with pytest.raises(DecodeError, match="takes 3 bytes, got 2"):
        decode_control_request(bytes.fromhex("0296"))
    with pytest.raises(DecodeError, match="takes 3 bytes, got 4"):
        decode_control_request(bytes.fromhex("02960000"))
    with pytest.raises(DecodeError, match="reserved"):
        decode_control_request(bytes.fromhex("0803"))
    with pytest.raises(DecodeError, match="empty"):
        decode_control_request(b"")


# FTMS.md §8.1 "Write length" and §9 "Total length", transcribed independently of the codec.
REQUEST_LENGTH = {
    0x00: 1, 0x01: 1, 0x02: 3, 0x03: 3, 0x04: 2, 0x05: 3, 0x06: 2, 0x07: 1, 0x08: 2, 0x09: 3,
    0x0A: 3, 0x0B: 3, 0x0C: 4, 0x0D: 3, 0x0E: 5, 0x0F: 7, 0x10: 11, 0x11: 7, 0x12: 3, 0x13: 2,
    0x14: 3,
}  # fmt: skip
STATUS_LENGTH = {
    0x01: 1, 0x02: 2, 0x03: 1, 0x04: 1, 0x05: 3, 0x06: 3, 0x07: 3, 0x08: 3, 0x09: 2, 0x0A: 3,
    0x0B: 3, 0x0C: 3, 0x0D: 4, 0x0E: 3, 0x0F: 5, 0x10: 7, 0x11: 11, 0x12: 7, 0x13: 3, 0x14: 2,
    0x15: 3, 0xFF: 1,
}  # fmt: skip


def test_op_code_tables_match_the_spec_lengths() -> None:
    assert {op: 1 + sum(f.size for f in p) for op, p in REQUEST_PARAMS.items()} == REQUEST_LENGTH
    assert {op: 1 + sum(f.size for f in p) for op, p in STATUS_PARAMS.items()} == STATUS_LENGTH
    assert set(REQUEST_PARAMS) == {int(op) for op in ControlOp}
    assert set(STATUS_PARAMS) == {int(op) for op in StatusOp}


# ---------------------------------------------------------------- status frames (§6, §9, §12 #5)


def test_padded_status_frames_from_the_cs_wp8() -> None:
    started = decode_machine_status(frame("status_started_padded"))
    assert started == MachineStatus(StatusOp.STARTED_OR_RESUMED_BY_USER, {}, b"\x00\x00")
    assert started.to_dict() == {
        "op_code": "0x04",
        "op": "started_or_resumed_by_user",
        "extra_hex": "0000",
    }
    stopped = decode_machine_status(frame("status_stopped_padded"))
    assert stopped == MachineStatus(0x02, {"control": "stop"}, b"\x00")
    assert encode_machine_status(0x04, pad_to=3) == frame("status_started_padded")
    assert encode_machine_status(0x02, {"control": "stop"}, pad_to=3) == frame(
        "status_stopped_padded"
    )


def test_status_resistance_v10_uint8_and_v101_sint16() -> None:
    assert decode_machine_status(bytes.fromhex("0705")).values == {"target_resistance": 0.5}
    assert decode_machine_status(bytes.fromhex("07fbff")).values == {"target_resistance": -0.5}


def test_status_reserved_op_and_short_frames() -> None:
    assert decode_machine_status(bytes.fromhex("16aa")) == MachineStatus(0x16, {}, b"\xaa")
    assert decode_machine_status(bytes.fromhex("16")).name == "reserved"
    with pytest.raises(DecodeError, match="needs 3 bytes, got 2"):
        decode_machine_status(bytes.fromhex("0596"))
    with pytest.raises(DecodeError, match="empty"):
        decode_machine_status(b"")


@pytest.mark.parametrize(
    ("name", "status", "status_name"),
    [
        ("training_idle", TrainingStatus.IDLE, "idle"),
        ("training_pre_workout", TrainingStatus.PRE_WORKOUT, "pre_workout"),
        ("training_manual", TrainingStatus.MANUAL_MODE, "manual_mode"),
        ("training_post_workout", TrainingStatus.POST_WORKOUT, "post_workout"),
    ],
)
def test_training_status_sequence_string_flag_with_empty_string(
    name: str, status: TrainingStatus, status_name: str
) -> None:
    t = decode_training_status(frame(name))
    assert t == TrainingStatusFrame(status, None, extended=False)
    assert t.text is None  # flag 0x01 with a zero-length string (FTMS.md §12 #11)
    assert t.to_dict() == {"status": int(status), "status_name": status_name, "text": None}


def test_training_status_with_text_and_without_flag() -> None:
    assert decode_training_status(b"\x01\x0dManual") == TrainingStatusFrame(0x0D, "Manual")
    assert decode_training_status(b"\x01\x0dQuick\x00\x00") == TrainingStatusFrame(0x0D, "Quick")
    assert decode_training_status(b"\x00\x0dignored") == TrainingStatusFrame(0x0D, None)
    assert decode_training_status(b"\x03\x0dlong") == TrainingStatusFrame(0x0D, "long", True)
    assert decode_training_status(b"\x00\x42").name == "reserved"
    assert encode_training_status(0x0D, "Manual") == b"\x01\x0dManual"
    assert encode_training_status(0x01) == b"\x00\x01"
    with pytest.raises(DecodeError, match="at least 2 bytes"):
        decode_training_status(b"\x01")


# ---------------------------------------------------------------- encoding rounds (§8.1)


def test_1_13_kmh_is_raw_113_never_112() -> None:
    assert set_target_speed(1.13) == bytes([0x02, 0x71, 0x00])
    assert int(1.13 / 0.01) == 112  # the truncation bug this guards against is real


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0.29, "021d00"),  # 0.29 * 100 = 28.999999999999996
        (0.57, "023900"),  # 56.99999999999999
        (1.13, "027100"),  # 112.99999999999999
        (2.01, "02c900"),  # 200.99999999999997
        (4.35, "02b301"),  # 434.99999999999994
        (1.5, "029600"),
        (6.0, "025802"),
    ],
)
def test_speed_encoding_rounds_to_nearest(value: float, encoded: str) -> None:
    assert set_target_speed(value).hex() == encoded
    assert encode_machine_status(0x05, {"target_speed_kmh": value}).hex() == "05" + encoded[2:]
    td = encode_treadmill_data(TreadmillData(speed_kmh=value))
    assert td.hex() == "0000" + encoded[2:]


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(-0.3, "03fdff"), (5.1, "033300"), (0.7, "030700"), (-1.1, "03f5ff"), (15.0, "039600")],
)
def test_incline_encoding_rounds_to_nearest(value: float, encoded: str) -> None:
    assert set_target_incline(value).hex() == encoded


def test_every_raw_speed_and_incline_survives_value_and_back() -> None:
    # Exhaustive: raw -> value in user units -> raw, for the whole uint16 / sint16 range.
    for raw in range(0, 0x10000):
        assert set_target_speed(raw / 100)[1:] == raw.to_bytes(2, "little")
    for raw in range(-0x8000, 0x8000):
        assert set_target_incline(raw / 10)[1:] == raw.to_bytes(2, "little", signed=True)


# ---------------------------------------------------------------- encoder errors (regressions)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_encode_errors(bad: float) -> None:
    # Before: round(nan) raised a bare ValueError and round(inf) an OverflowError.
    with pytest.raises(EncodeError, match="not a finite number"):
        set_target_speed(bad)
    with pytest.raises(EncodeError):
        encode_treadmill_data(TreadmillData(speed_kmh=bad))
    with pytest.raises(EncodeError):
        encode_range(SPEED_RANGE, bad, 6.0, 0.5)


def test_huge_finite_value_that_overflows_when_scaled_is_an_encode_error() -> None:
    # Found by the fuzz test. Before: 1e307 * 100 is inf and round() raised OverflowError.
    with pytest.raises(EncodeError, match="does not fit"):
        set_target_speed(1e307)
    with pytest.raises(EncodeError, match="does not fit"):
        encode_treadmill_data(TreadmillData(speed_kmh=1.7e308))


@pytest.mark.parametrize(
    ("op", "values"),
    [(0x02, {"target_speed_kmh": 655.36}), (0x02, {"target_speed_kmh": -0.01}), (0x02, {})],
)
def test_out_of_range_or_missing_parameters_are_encode_errors(
    op: int, values: dict[str, float]
) -> None:
    with pytest.raises(EncodeError):
        encode_control_request(op, values)


def test_other_encoder_errors() -> None:
    with pytest.raises(EncodeError, match="reserved"):
        encode_control_request(0x15)
    with pytest.raises(EncodeError, match="unknown value"):
        encode_control_request(0x08, {"control": "halt"})
    with pytest.raises(EncodeError, match="has no 'not available' value"):
        encode_control_request(0x02, {"target_speed_kmh": None})
    with pytest.raises(EncodeError, match="reserved"):
        encode_machine_status(0x16)
    with pytest.raises(EncodeError, match="must be a number"):
        encode_treadmill_data(TreadmillData(speed_kmh=True))
    # 3276.7 % is raw 0x7FFF, the N/A sentinel: it must not be sent as a value.
    with pytest.raises(EncodeError, match="does not fit"):
        encode_treadmill_data(TreadmillData(incline_pct=3276.7))
    with pytest.raises(EncodeError, match="overlap defined flags"):
        encode_treadmill_data(TreadmillData(speed_kmh=1.0), vendor_bits=0x1000)


def test_training_status_text_with_a_lone_surrogate_is_an_encode_error() -> None:
    # Before: UnicodeEncodeError escaped from encode_training_status.
    with pytest.raises(EncodeError, match="not valid Unicode"):
        encode_training_status(0x0D, "\ud800")


def test_split_without_speed_is_an_encode_error() -> None:
    # Before: every fragment had More Data = 1, so no receiver could ever close the record.
    with pytest.raises(EncodeError, match="needs speed_kmh"):
        split_treadmill_data(TreadmillData(distance_m=5, elapsed_s=4))


# ---------------------------------------------------------------- decode_to_dict


def test_decode_to_dict_every_real_frame_by_its_characteristic() -> None:
    for name, (char, data) in REAL.items():
        out = decode_to_dict(char, data)
        assert out["char"] == char, name
        assert json.loads(json.dumps(out)) == out, name
    assert decode_to_dict("0x2ACD", frame("citysports_treadmill_data"))["elapsed_s"] == 60
    full = "00002ad9-0000-1000-8000-00805f9b34fb"
    assert decode_to_dict(full, frame("stop")) == {
        "char": "2ad9",
        "kind": "request",
        "op_code": "0x08",
        "op": "stop_or_pause",
        "control": "stop",
    }
    assert decode_to_dict("2ad9", frame("stop_response"))["kind"] == "response"
    with pytest.raises(DecodeError, match="not one this decoder covers"):
        decode_to_dict("2a00", b"\x00")
