"""``retrotread progress [--walker W] [-o FILE.png]``: a walker's weeks, as a table and a plot."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from retrotread.cli._shared import load_config
from retrotread.errors import RetrotreadError

if TYPE_CHECKING:
    from retrotread.coach.report import Report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, help="config file (walkers, sessions dir)")
    parser.add_argument("--dir", type=Path, help="sessions directory (overrides config)")
    parser.add_argument("--walker", metavar="W", help="whose progress (default: the only walker)")
    parser.add_argument("-o", "--output", type=Path, help="also plot to this PNG")


def run(args: argparse.Namespace) -> int:
    from retrotread.coach.coach import Coach
    from retrotread.coach.report import build_report

    config = load_config(args.config)
    coach = Coach.from_config(config)
    if args.dir is not None:
        coach.sessions_dir = args.dir
    name, _ = coach.resolve_walker(args.walker)
    now = datetime.now(UTC)
    sessions = coach.history(name)
    _, notes = coach.reader.all(coach.sessions_dir)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    report = build_report(coach.plans, name, sessions, now)
    if not report.points:
        print(f"no sessions of {name} in {coach.sessions_dir}")
        return 0
    print(f"{name}: {len(report.points)} sessions")
    print_weeks(report)
    if args.output is not None:
        from retrotread.coach.plot import plot_progress

        try:
            plot_progress(report, args.output)
        except OSError as exc:
            raise RetrotreadError(f"cannot write {args.output}: {exc.strerror}") from None
        print(args.output)
    return 0


def print_weeks(report: Report) -> None:
    """The weekly table: sessions, backward minutes, top incline, speed, pain, level."""
    head = f"{'WEEK OF':<11} {'SESS':>4} {'BACKWARD':>9} {'TOP %':>5} {'SPEED':>5} {'PAIN':>4}"
    print(f"{head}  LEVEL")
    for w in report.weeks:
        speed = "-" if w.speed_kmh is None else f"{w.speed_kmh:g}"
        pain = "-" if w.max_pain is None else str(w.max_pain)
        print(
            f"{w.start:%Y-%m-%d}  {w.sessions:>4} {w.backward_min:>5.1f} min "
            f"{w.top_incline_pct:>5g} {speed:>5} {pain:>4}  {w.level or '-'}"
        )
