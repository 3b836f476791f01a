"""Treadmill Data frames decoded per second: retrotread's codec next to deancochran-ftms.

Same frames, same process, same run. Run: .venv/bin/python bench/codec_throughput.py
"""

from __future__ import annotations

import random
import time

from deancochran_ftms.measurements import MeasurementFormatOptions, decode_measurement

import _common
from retrotread.ftms.treadmill_data import (
    TreadmillData,
    decode_treadmill_data,
    encode_treadmill_data,
)

REAL = [
    bytes.fromhex("8424c8002100000100ffffff3c00400000"),  # CITYSPORTS, vendor bit 13
    bytes.fromhex("8404000000000000000000000000"),  # Horizon, idle
    bytes.fromhex("9e0473023302250000003c00ff7f0000ff7f0200ffffff1f00"[:48]),  # Life Fitness
]


def frames(n: int = 2000) -> list[bytes]:
    rng = random.Random(42)
    out = list(REAL)
    while len(out) < n:
        rec = TreadmillData(
            speed_kmh=round(rng.uniform(0.5, 8), 2),
            distance_m=rng.randrange(0, 20000),
            incline_pct=round(rng.uniform(0, 12), 1),
            ramp_angle_deg=round(rng.uniform(0, 6), 1),
            energy_kcal=rng.randrange(0, 900),
            energy_per_hour_kcal=rng.randrange(0, 900),
            energy_per_minute_kcal=rng.randrange(0, 20),
            heart_rate_bpm=rng.randrange(60, 180),
            elapsed_s=rng.randrange(0, 7200),
        )
        out.append(encode_treadmill_data(rec))
    return out


def rate(fn: object, data: list[bytes], seconds: float = 1.0) -> float:
    assert callable(fn)
    count = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        for frame in data:
            fn(frame)
        count += len(data)
    return count / (time.perf_counter() - start)


def main(trials: int = 7) -> None:
    data = frames()
    legacy = MeasurementFormatOptions(treadmill_pace_format="uint8Legacy")
    ours = [rate(decode_treadmill_data, data, 0.7) for _ in range(trials)]
    theirs = [
        rate(lambda b: decode_measurement("2acd", b, legacy), data, 0.7) for _ in range(trials)
    ]
    _common.table(
        f"Treadmill Data decode throughput ({len(data)} frames, {trials} trials of 0.7 s)",
        [
            ("retrotread decode_treadmill_data (frames/s)", ours, ""),
            ("deancochran-ftms decode_measurement (frames/s)", theirs, ""),
        ],
    )
    print("both decoders agree on speed, distance and heart rate for the sampled frames")
    # Same answers on the frames both understand, or the race means nothing.
    for frame in data[3:200]:
        a = decode_treadmill_data(frame)
        b = decode_measurement("2acd", frame, legacy).measurement
        assert b is not None
        assert abs((b.metrics.speed_mps or 0) * 3.6 - (a.speed_kmh or 0)) < 1e-6
        assert b.metrics.distance_meters == a.distance_m
        assert b.metrics.hr_bpm == a.heart_rate_bpm


if __name__ == "__main__":
    main()
