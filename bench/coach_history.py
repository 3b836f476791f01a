"""How long the coach takes to work out today's session from a long history.

Progress is derived from the session logs every time (no database). This measures
``Coach.today`` over a year of sessions (three a week, each log as large as a real one at
2 Hz telemetry with raw frames): cold (every log parsed) and warm (the daemon's reader
re-reads only logs that changed), and the walker status the daemon publishes.

    .venv/bin/python bench/coach_history.py [--weeks 52]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _common
from retrotread.coach.coach import Coach
from retrotread.coach.history import HistoryReader
from retrotread.coach.loader import load_plans
from retrotread.coach.walkers import WalkerConfig
from retrotread.config import SafetyConfig
from retrotread.session.log import SessionLogWriter


def write_year(directory: Path, weeks: int) -> int:
    """``weeks`` x 3 sessions of retro-start-like logs; returns the bytes written."""
    plans = load_plans(environ={})
    coach = Coach(plans, [WalkerConfig(name="anna")], SafetyConfig(), directory)
    start = datetime(2026, 11, 2, 9, tzinfo=UTC)
    for n in range(weeks * 3):
        when = start + timedelta(days=7 * (n // 3) + (0, 2, 4)[n % 3])
        today = coach.today("anna", "retro-start", when)
        w = SessionLogWriter.create(directory, when, today.profile.name, t0=0.0)
        w.header(
            session_id=str(n),
            started_at=when.isoformat().replace("+00:00", "Z"),
            profile=today.profile.model_dump(mode="json"),
            walker="anna",
            plan=today.header_plan,
        )
        t = 0.0
        for i, ph in enumerate(today.profile.phase):
            w.record(
                "event",
                t,
                event="phase_started",
                phase=ph.name,
                phase_index=i,
                direction=ph.direction,
                speed_kmh=ph.speed_kmh,
            )
            for k in range(int(ph.duration_s * 2)):  # 2 Hz: a frame and a sample each
                w.frame("rx", t + k / 2, "2acd", bytes.fromhex("8424c8002100000100ffffff3c00"))
                w.record(
                    "telemetry",
                    t + k / 2,
                    speed_kmh=ph.speed_kmh,
                    incline_pct=0.0,
                    phase=ph.name,
                    direction=ph.direction,
                )
            t += ph.duration_s
        backward = sum(p.duration_s for p in today.profile.phase if p.direction == "backward")
        w.footer("completed", {"backward_s": backward, "max_incline_pct": 0.0})
    return sum(p.stat().st_size for p in directory.glob("*.jsonl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--trials", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        size = write_year(directory, args.weeks)
        n = len(list(directory.glob("*.jsonl")))
        plans = load_plans(environ={})
        now = datetime(2026, 11, 2, tzinfo=UTC) + timedelta(weeks=args.weeks)
        cold, warm, status = [], [], []
        for _ in range(args.trials):
            coach = Coach(
                plans, [WalkerConfig(name="anna")], SafetyConfig(), directory, HistoryReader()
            )
            t0 = time.perf_counter()
            coach.today("anna", "retro-start", now)
            cold.append(time.perf_counter() - t0)
            for _ in range(5):
                t0 = time.perf_counter()
                coach.today("anna", "retro-start", now)
                warm.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                coach.status("anna", now)
                status.append(time.perf_counter() - t0)
        _common.table(
            f"Coach.today over {n} sessions ({size / 1e6:.0f} MB of logs)",
            [
                ("cold: every log read and parsed", [v * 1000 for v in cold], "ms"),
                ("warm: logs unchanged, records cached", [v * 1000 for v in warm], "ms"),
                ("walker status (warm)", [v * 1000 for v in status], "ms"),
            ],
        )


if __name__ == "__main__":
    main()
