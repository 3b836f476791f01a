"""``retrotread summary LOG``: per phase and in all, and backward minutes by week."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from retrotread.cli._shared import fmt_time, print_notes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", metavar="LOG", type=Path)


def run(args: argparse.Namespace) -> int:
    from retrotread.session.analysis import backward_by_week, load, mean_bpm

    v = load(args.log)
    print_notes(v.log)
    print(f"{v.title} — {v.started_at:%Y-%m-%d %H:%M} UTC — {v.outcome}")
    if v.walker or v.plan_level:
        who = f"walker {v.walker}" if v.walker else "no walker named"
        print(who + (f", plan {v.plan_level}" if v.plan_level else ""))
    if v.interrupted:
        print("(interrupted session: figures cover what was recorded)")
    head = f"{'#':>2} {'PHASE':<16} {'DIR':<9} {'TIME':>6} {'DIST m':>7}"
    print(f"\n{head} {'km/h':>5} {'%':>5} {'bpm':>5}")
    for ph in v.phases:
        print(
            f"{ph.index + 1:>2} {ph.name:<16} {ph.direction:<9} {fmt_time(ph.duration_s):>6} "
            f"{ph.distance_m:>7.0f} {_n(ph.mean_speed_kmh, '.1f'):>5} "
            f"{_n(ph.mean_incline_pct, '.1f'):>5} {_n(ph.mean_heart_rate_bpm, '.0f'):>5}"
        )
    hr = v.heart_rates
    sources = v.heart_rate_sources
    source = ""
    if sources:
        source = f" ({sources[0]}{', ' + sources[1] + ' at times' if len(sources) > 1 else ''})"
    print(
        f"\ntotal: {fmt_time(v.duration_s)}, {v.distance_m:.0f} m, "
        f"{fmt_time(v.backward_s)} backward"
        + (f", {v.energy_kcal} kcal" if v.energy_kcal else "")
        + (f", heart rate {mean_bpm(hr)} bpm avg / {max(hr)} max{source}" if hr else "")
    )
    cap = v.heart_rate_cap_bpm
    if cap is not None:
        states = [str(e.get("state")) for e in v.hr_cap_events]
        held = states.count("holding")
        print(
            f"heart-rate cap {cap} bpm: "
            + (
                f"held {held} time{'s' if held != 1 else ''}"
                + (", stepped down" if "stepping_down" in states else "")
                + (", finished early by the cap" if "finish" in states else "")
                if held
                else "never reached"
            )
            + (", heart rate lost for a while" if "no_signal" in states else "")
        )
    gaps = v.log.gaps
    if gaps:
        missing = sum(float(g.get("to") or 0) - float(g.get("from") or 0) for g in gaps)
        lost = sum(int(g.get("lost") or 0) for g in gaps)
        print(
            f"{len(gaps)} gap{'s' if len(gaps) > 1 else ''}: {missing:.0f} s not recorded "
            f"({lost} records lost; figures cover what was recorded)"
        )
    from retrotread.coach.feedback import read_feedback

    feedback = read_feedback(args.log)  # the sidecar (docs/plans.md §5); never raises
    for note in feedback.notes:
        print(f"note: {note}", file=sys.stderr)
    if feedback.describe():
        print(f"feedback: {feedback.describe()}")
    this_week, last_week = backward_by_week(args.log.parent, datetime.now(UTC), v.walker)
    whose = f" ({v.walker})" if v.walker else ""
    print(f"backward walking{whose}: {this_week:.1f} min this week, {last_week:.1f} min last week")
    return 0


def _n(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)
