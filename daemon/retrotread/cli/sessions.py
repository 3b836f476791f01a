"""``retrotread sessions list``: every recorded session, oldest first."""

from __future__ import annotations

import argparse
from pathlib import Path

from retrotread.cli._shared import fmt_time, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, help="config file (for [sessions] dir)")
    parser.add_argument("--dir", type=Path, help="sessions directory (overrides config)")
    sub = parser.add_subparsers(dest="sessions_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="every recorded session, oldest first")


def run(args: argparse.Namespace) -> int:
    from retrotread.session.analysis import load
    from retrotread.session.log import SessionLogError, list_sessions

    directory = args.dir or load_config(args.config).sessions.dir
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
