"""``retrotread sessions list``: every recorded session, oldest first."""

from __future__ import annotations

import argparse
from pathlib import Path

from retrotread.cli._shared import fmt_time, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, help="config file (for [sessions] dir)")
    parser.add_argument("--dir", type=Path, help="sessions directory (overrides config)")
    sub = parser.add_subparsers(dest="sessions_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="every recorded session, oldest first")
    ls.add_argument("--walker", metavar="W", help="only this walker's sessions")


def run(args: argparse.Namespace) -> int:
    from retrotread.session.analysis import load
    from retrotread.session.log import SessionLogError, list_sessions

    directory = args.dir or load_config(args.config).sessions.dir
    paths = list_sessions(directory)
    if not paths:
        print(f"no sessions in {directory}")
        return 0
    walker = args.walker.casefold() if args.walker else None
    head = f"{'DATE':<17} {'PROFILE':<14} {'TIME':>7} {'BACKWARD':>8} {'DIST m':>7}"
    print(f"{head}  {'OUTCOME':<20} {'WALKER':<10} FILE")
    shown = 0
    for p in paths:
        try:
            v = load(p)
        except SessionLogError as exc:
            if walker is None:
                print(
                    f"{'?':<17} {'?':<14} {'':>7} {'':>8} {'':>7}  {'unreadable':<20} "
                    f"{'?':<10} {p.name} ({exc})"
                )
            continue
        if walker is not None and (v.walker or "").casefold() != walker:
            continue
        shown += 1
        outcome = v.outcome + (" (no footer)" if v.log.footer is None else "")
        print(
            f"{v.started_at:%Y-%m-%d %H:%M}  {v.profile:<14} {fmt_time(v.duration_s):>7} "
            f"{fmt_time(v.backward_s):>8} {v.distance_m:>7.0f}  {outcome:<20} "
            f"{v.walker or '-':<10} {p.name}"
        )
    if walker is not None and not shown:
        print(f"(no sessions of {args.walker})")
    return 0
