"""Treadmill Data frames decoded per second: retrotread's codec next to deancochran-ftms.

Same frames, same process, same run: each round decodes every frame with both codecs,
alternating in chunks of 100 frames, and times both in process CPU time, so a busy machine
slows both alike and the per-round ratio stays fair.
A second table times the codec's other calls on the telemetry and command paths.
Run: .venv/bin/python bench/codec_throughput.py [--rounds N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence

from deancochran_ftms.measurements import MeasurementFormatOptions, decode_measurement

import _common
from retrotread.ftms.control import (
    decode_control_request,
    decode_control_response,
    encode_control_request,
    encode_control_response,
)
from retrotread.ftms.status import (
    decode_machine_status,
    decode_training_status,
    encode_machine_status,
    encode_training_status,
)
from retrotread.ftms.treadmill_data import (
    TreadmillData,
    TreadmillDataAssembler,
    decode_treadmill_data,
    encode_treadmill_data,
)

REAL = [
    bytes.fromhex("8424c8002100000100ffffff3c00400000"),  # CITYSPORTS, vendor bit 13
    bytes.fromhex("8404000000000000000000000000"),  # Horizon, idle
    bytes.fromhex("9e0473023302250000003c00ff7f0000ff7f0200ffffff1f00"[:48]),  # Life Fitness
]

LEGACY_PACE = MeasurementFormatOptions(treadmill_pace_format="uint8Legacy")


def records(n: int) -> list[TreadmillData]:
    rng = random.Random(42)
    return [
        TreadmillData(
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
        for _ in range(n)
    ]


def frames(n: int = 2000) -> list[bytes]:
    return REAL + [encode_treadmill_data(r) for r in records(n - len(REAL))]


def per_item_us(fn: Callable[[object], object], items: Sequence[object]) -> float:
    """One pass of ``fn`` over ``items``: microseconds of this process's CPU per item.

    CPU time, not wall time: on a shared machine, time spent preempted by other processes
    would land on whichever codec happened to be running.
    """
    start = time.process_time()
    for item in items:
        fn(item)
    return (time.process_time() - start) / len(items) * 1e6


def theirs(frame: object) -> object:
    return decode_measurement("2acd", frame, LEGACY_PACE)  # type: ignore[arg-type]


def check_agreement(data: list[bytes]) -> None:
    """Same answers on the frames both understand, or the race means nothing."""
    for frame in data[len(REAL) :]:
        a = decode_treadmill_data(frame)
        b = decode_measurement("2acd", frame, LEGACY_PACE).measurement
        assert b is not None
        assert abs((b.metrics.speed_mps or 0) * 3.6 - (a.speed_kmh or 0)) < 1e-6
        assert b.metrics.distance_meters == a.distance_m
        assert b.metrics.hr_bpm == a.heart_rate_bpm
        assert b.metrics.elapsed_time_seconds == a.elapsed_s


def decode_race(data: list[bytes], rounds: int, chunk: int = 100) -> None:
    ours: list[float] = []
    peer: list[float] = []
    for _ in range(rounds):
        # Alternate chunk by chunk so both codecs see the same moments of machine load.
        mine = other = 0.0
        for i in range(0, len(data), chunk):
            part = data[i : i + chunk]
            if i // chunk % 2:
                other += per_item_us(theirs, part)
                mine += per_item_us(decode_treadmill_data, part)  # type: ignore[arg-type]
            else:
                mine += per_item_us(decode_treadmill_data, part)  # type: ignore[arg-type]
                other += per_item_us(theirs, part)
        chunks = -(-len(data) // chunk)
        ours.append(mine / chunks)
        peer.append(other / chunks)
    ratios = [p / o for o, p in zip(ours, peer, strict=True)]
    _common.table(
        f"Treadmill Data decode, {len(data)} frames per round, {rounds} interleaved rounds",
        [
            ("retrotread decode_treadmill_data (us/frame)", ours, ""),
            ("deancochran-ftms decode_measurement (us/frame)", peer, ""),
        ],
    )
    ours_fps = 1e6 / statistics.median(ours)
    peer_fps = 1e6 / statistics.median(peer)
    print(
        f"frames/s at the median: retrotread {ours_fps:,.0f}, deancochran-ftms {peer_fps:,.0f}\n"
        f"frames/s at p99 (the slow 1% of rounds): retrotread {1e6 / _common.pct(ours, 99):,.0f}, "
        f"deancochran-ftms {1e6 / _common.pct(peer, 99):,.0f}\n"
        f"ratio per round (peer time / retrotread time): median {statistics.median(ratios):.2f}x, "
        f"p99 (the worst 1% of rounds) {_common.pct(ratios, 1):.2f}x, "
        f"min {min(ratios):.2f}x, max {max(ratios):.2f}x"
    )


def hot_path(rounds: int) -> None:
    recs = records(500)
    encoded = [encode_treadmill_data(r) for r in recs]
    decoded = [decode_treadmill_data(f) for f in encoded]
    assembler = TreadmillDataAssembler()
    status = [encode_machine_status(0x05, {"target_speed_kmh": r.speed_kmh}) for r in recs]
    training = [encode_training_status(0x0D)] * len(recs)
    response = [encode_control_response(0x02, 0x01)] * len(recs)
    speeds = [r.speed_kmh for r in recs]
    requests = [encode_control_request(0x02, {"target_speed_kmh": s}) for s in speeds]
    cases: list[tuple[str, Callable[[object], object], Sequence[object]]] = [
        ("encode_treadmill_data (simulator)", encode_treadmill_data, recs),  # type: ignore[list-item]
        ("TreadmillDataAssembler.feed", assembler.feed, decoded),  # type: ignore[list-item]
        ("decode_machine_status", decode_machine_status, status),  # type: ignore[list-item]
        ("decode_training_status", decode_training_status, training),  # type: ignore[list-item]
        ("decode_control_response", decode_control_response, response),  # type: ignore[list-item]
        (
            "encode_control_request (set speed)",
            lambda s: encode_control_request(0x02, {"target_speed_kmh": s}),
            speeds,
        ),
        ("decode_control_request (simulator)", decode_control_request, requests),  # type: ignore[list-item]
    ]
    samples: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(rounds):
        for name, fn, items in cases:
            samples[name].append(per_item_us(fn, items))
    _common.table(
        f"retrotread codec, other calls on the hot paths ({rounds} rounds)",
        [(f"{name} (us/call)", samples[name], "") for name, _, _ in cases],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=61, help="interleaved rounds (default 61)")
    args = parser.parse_args()
    data = frames()
    check_agreement(data)
    print("both decoders agree on speed, distance, heart rate and elapsed time for every frame")
    for fn in (decode_treadmill_data, theirs):  # warm-up: compile plans, fill caches
        per_item_us(fn, data)  # type: ignore[arg-type]
    decode_race(data, args.rounds)
    hot_path(args.rounds)


if __name__ == "__main__":
    main()
