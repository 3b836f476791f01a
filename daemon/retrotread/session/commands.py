"""``sessions list``, ``summary LOG``, ``export LOG``, ``plot LOG``: the history tools."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from retrotread.errors import RetrotreadError
from retrotread.service.progress import fmt_time
from retrotread.session.analysis import SessionView, backward_by_week, load
from retrotread.session.log import SessionLogError, list_sessions


def _config_sessions_dir(path: Path | None) -> Path:
    from retrotread.service.run_command import resolve_config

    return resolve_config(path).sessions.dir


def _notes(view: SessionView) -> None:
    for note in view.log.notes():
        print(f"note: {note}", file=sys.stderr)


# ------------------------------------------------------------------ sessions list


def add_sessions_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, help="config file (for [sessions] dir)")
    parser.add_argument("--dir", type=Path, help="sessions directory (overrides config)")
    sub = parser.add_subparsers(dest="sessions_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="every recorded session, oldest first")


def run_sessions(args: argparse.Namespace) -> int:
    directory = args.dir or _config_sessions_dir(args.config)
    paths = list_sessions(directory)
    if not paths:
        print(f"no sessions in {directory}")
        return 0
    head = f"{'DATE':<17} {'PROFILE':<14} {'TIME':>7} {'BACKWARD':>8} {'DIST m':>7}"
    print(f"{head}  {'OUTCOME':<20} FILE")
    for p in paths:
        try:
            v = load(p)
        except SessionLogError as exc:
            print(
                f"{'?':<17} {'?':<14} {'':>7} {'':>8} {'':>7}  {'unreadable':<20} {p.name} ({exc})"
            )
            continue
        outcome = v.outcome + (" (no footer)" if v.log.footer is None else "")
        print(
            f"{v.started_at:%Y-%m-%d %H:%M}  {v.profile:<14} {fmt_time(v.duration_s):>7} "
            f"{fmt_time(v.backward_s):>8} {v.distance_m:>7.0f}  {outcome:<20} {p.name}"
        )
    return 0


# ------------------------------------------------------------------ summary


def add_summary_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", metavar="LOG", type=Path)


def run_summary(args: argparse.Namespace) -> int:
    v = load(args.log)
    _notes(v)
    print(f"{v.title} — {v.started_at:%Y-%m-%d %H:%M} UTC — {v.outcome}")
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
    print(
        f"\ntotal: {fmt_time(v.duration_s)}, {v.distance_m:.0f} m, "
        f"{fmt_time(v.backward_s)} backward"
        + (f", {v.energy_kcal} kcal" if v.energy_kcal else "")
        + (f", heart rate {round(sum(hr) / len(hr))} bpm avg / {max(hr)} max" if hr else "")
    )
    this_week, last_week = backward_by_week(args.log.parent, datetime.now(UTC))
    print(f"backward walking: {this_week:.1f} min this week, {last_week:.1f} min last week")
    return 0


def _n(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


# ------------------------------------------------------------------ export / plot


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", metavar="LOG", type=Path)
    parser.add_argument("--format", required=True, choices=["tcx", "fit", "csv"])
    parser.add_argument("-o", "--output", type=Path, help="output file (default: beside the log)")


def run_export(args: argparse.Namespace) -> int:
    from retrotread.session.export import export

    v = load(args.log)
    _notes(v)
    out = args.output or args.log.with_suffix("." + args.format)
    try:
        export(v, args.format, out)
    except OSError as exc:
        raise RetrotreadError(f"cannot write {out}: {exc.strerror}") from None
    print(out)
    return 0


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", metavar="LOG", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="PNG file (default: beside the log)")


def run_plot(args: argparse.Namespace) -> int:
    from retrotread.session.plot import plot

    v = load(args.log)
    _notes(v)
    out = args.output or args.log.with_suffix(".png")
    try:
        plot(v, out)
    except OSError as exc:
        raise RetrotreadError(f"cannot write {out}: {exc.strerror}") from None
    print(out)
    return 0
