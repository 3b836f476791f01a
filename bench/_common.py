"""Shared helpers for the benchmarks: statistics tables and a daemon on a private broker."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def table(title: str, rows: list[tuple[str, Sequence[float], str]]) -> None:
    """Print median, p99, min, max and n for each row of samples."""
    w = max([44, *(len(name) for name, _, _ in rows)])
    print(f"\n{title}")
    print(f"{'case':<{w}} {'median':>10} {'p99':>10} {'min':>10} {'max':>10} {'n':>6}")
    for name, values, unit in rows:
        if not values:
            print(f"{name:<{w}} {'-':>10}")
            continue
        med = statistics.median(values)
        print(
            f"{name:<{w}} {med:>9.3g}{unit:<1} {pct(values, 99):>9.3g}{unit:<1} "
            f"{min(values):>9.3g}{unit:<1} {max(values):>9.3g}{unit:<1} {len(values):>6}"
        )


def mqtt_packet(kind: int, body: bytes) -> bytes:
    """One MQTT 3.1.1 control packet: type byte, remaining length (varint), body."""
    length, size = b"", len(body)
    while True:
        size, byte = divmod(size, 128)
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            return bytes([kind]) + length + body


def mqtt_str(text: str) -> bytes:
    """An MQTT UTF-8 string: two bytes of length, then the bytes."""
    data = text.encode()
    return len(data).to_bytes(2, "big") + data
