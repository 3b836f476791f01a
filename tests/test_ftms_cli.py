"""``retrotread decode CHAR HEX`` as a user runs it: a subprocess, JSON out, one-line errors.

All invocations start together in one fixture so the interpreter start-ups overlap.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrotread.cli import decode as command

ROOT = Path(__file__).resolve().parents[1]
CITYSPORTS = "8424c8002100000100ffffff3c00400000"

# Run as real processes (exit code, stdout, stderr as the user sees them).
CASES: dict[str, tuple[str, ...]] = {
    "citysports": ("2acd", CITYSPORTS),
    "uppercase_0x": ("0x2ACD", CITYSPORTS.upper()),
    "odd_hex": ("2acd", "8424c"),
    "non_hex": ("2acd", "84zz"),
    "too_short": ("2acd", "84"),
    "unknown_char": ("2a00", "00"),
    # Heart Rate Service: a Polar H10 notification with two RR intervals, a 16-bit heart
    # rate with energy (Nordic's library test vector), the body sensor location, a cut frame.
    "heart_rate_polar": ("2a37", "10495e039603"),
    "heart_rate_uint16_0x": ("0x2A37", "1F 01 01 32 01 01 00 02 01 FF FF"),
    "body_sensor_location": ("2a38", "01"),
    "heart_rate_too_short": ("2a37", "1f01"),
}
# More spellings and errors through the decode command in-process: a subprocess costs ~0.7 s
# of imports each, most of them other subcommands' dependencies.
IN_PROCESS: dict[str, tuple[str, ...]] = {
    # A full UUID, and the hex split over several arguments with spaces inside them.
    "full_uuid_spaced_hex": (
        "00002acd-0000-1000-8000-00805f9b34fb",
        "84 24 c8 00 21 00 00 01 00",
        "ff ff ff 3c 00 40 00 00",
    ),
    "colon_hex": ("2ad9", "02:96:00"),
    "pace_width_2": ("2acd", "--pace-width", "2", "6004 2c01 9600 a000 3c00"),
    "empty_after_0x": ("2acd", "0x"),
    "unknown_char_garbage": ("treadmill", "00"),
    "unsupported_op": ("2ad9", "15"),
    "reserved_stop_parameter": ("2ad9", "0803"),
}


@pytest.fixture(scope="module")
def runs() -> dict[str, subprocess.CompletedProcess[str]]:
    env = {**os.environ}
    env.pop("RETROTREAD_CONFIG", None)
    commands = {
        name: [sys.executable, "-m", "retrotread.cli", "decode", *args]
        for name, args in CASES.items()
    }
    procs = {
        name: subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for name, argv in commands.items()
    }
    out: dict[str, subprocess.CompletedProcess[str]] = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=60)
        out[name] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out


@pytest.fixture(scope="module")
def runs_in_process() -> dict[str, subprocess.CompletedProcess[str]]:
    out: dict[str, subprocess.CompletedProcess[str]] = {}
    for name, args in IN_PROCESS.items():
        stdout, stderr = io.StringIO(), io.StringIO()
        # The decode command itself, without cli.main: main() reconfigures the root logger,
        # which must not leak into the rest of the test session.
        parser = argparse.ArgumentParser(prog="retrotread decode")
        command.add_arguments(parser)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = command.run(parser.parse_args(args))
        out[name] = subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())
    return out


def ok_json(p: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    out = json.loads(p.stdout)
    assert isinstance(out, dict)
    return out


def one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert lines[0].startswith("retrotread: error: ")
    return lines[0]


CITYSPORTS_JSON = {
    "char": "2acd",
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


def test_decode_citysports_frame(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    out = ok_json(runs["citysports"])
    assert (out["speed_kmh"], out["distance_m"], out["elapsed_s"]) == (2.0, 33, 60)
    assert out == CITYSPORTS_JSON


def test_0x_uppercase_spelling(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    assert ok_json(runs["uppercase_0x"]) == CITYSPORTS_JSON


def test_decode_heart_rate_measurement(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    # 0x10: RR present, contact not supported; 0x49 = 73 bpm; RR 0x035e, 0x0396 in 1/1024 s.
    assert ok_json(runs["heart_rate_polar"]) == {
        "char": "2a37",
        "flags": "0x10",
        "heart_rate_bpm": 73,
        "sensor_contact": None,
        "energy_expended_kj": None,
        "rr_intervals_ms": [862 * 1000 / 1024, 918 * 1000 / 1024],
    }
    assert ok_json(runs["heart_rate_uint16_0x"]) == {
        "char": "2a37",
        "flags": "0x1f",
        "heart_rate_bpm": 257,
        "sensor_contact": True,
        "energy_expended_kj": 306,
        "rr_intervals_ms": [1000 / 1024, 258 * 1000 / 1024, 65535 * 1000 / 1024],
    }


def test_decode_body_sensor_location(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    assert ok_json(runs["body_sensor_location"]) == {
        "char": "2a38",
        "body_sensor_location": "chest",
        "code": 1,
    }


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("odd_hex", "'8424c' is not hex bytes"),
        ("non_hex", "'84zz' is not hex bytes"),
        ("too_short", "needs at least the 2-byte flags"),
        ("unknown_char", "characteristic 2a00 is not one this decoder covers"),
        ("heart_rate_too_short", "cannot decode 2a37 frame 1f01: 2 bytes cannot hold"),
    ],
)
def test_bad_input_is_exit_2_and_one_line(
    runs: dict[str, subprocess.CompletedProcess[str]], case: str, message: str
) -> None:
    assert message in one_line_error(runs[case])


def test_full_uuid_and_spaced_hex(
    runs_in_process: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    assert ok_json(runs_in_process["full_uuid_spaced_hex"]) == CITYSPORTS_JSON


def test_control_point_and_pace_width(
    runs_in_process: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    assert ok_json(runs_in_process["colon_hex"]) == {
        "char": "2ad9",
        "kind": "request",
        "op_code": "0x02",
        "op": "set_target_speed",
        "target_speed_kmh": 1.5,
    }
    out = ok_json(runs_in_process["pace_width_2"])
    assert (out["instantaneous_pace_s_per_500m"], out["average_pace_s_per_500m"]) == (150, 160)
    assert out["elapsed_s"] == 60 and "missing" not in out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty_after_0x", "cannot decode 2acd frame (empty)"),
        ("unknown_char_garbage", "not a characteristic UUID: 'treadmill'"),
        ("unsupported_op", "op code 0x15 is not supported"),
        ("reserved_stop_parameter", "stop_or_pause parameter 0x03 is reserved"),
    ],
)
def test_more_bad_input_in_process(
    runs_in_process: dict[str, subprocess.CompletedProcess[str]], case: str, message: str
) -> None:
    assert message in one_line_error(runs_in_process[case])
