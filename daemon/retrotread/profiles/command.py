"""``retrotread profiles list | show NAME | check FILE...``."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from retrotread.errors import ProfileError
from retrotread.profiles.engine import device_grids, plan
from retrotread.profiles.loader import load_profile_file, load_profiles
from retrotread.profiles.model import Profile, problems
from retrotread.service.progress import fmt_time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, help="config file (limits, profile dirs)")
    sub = parser.add_subparsers(dest="profiles_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="list the available profiles")
    ls.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="print a profile's phases, cues and planned setpoints")
    show.add_argument("name", metavar="NAME")
    check = sub.add_parser("check", help="validate profile files against the safety limits")
    check.add_argument("files", metavar="FILE", nargs="+", type=Path)


def run(args: argparse.Namespace) -> int:
    from retrotread.service.run_command import resolve_config

    config = resolve_config(args.config)
    if args.profiles_command == "check":
        return _check(args.files, config.safety)
    profiles = load_profiles(config.profiles.dirs)
    for err in profiles.errors:
        print(f"warning: {err}", file=sys.stderr)
    if args.profiles_command == "list":
        rows = [p.summary() for _, p in sorted(profiles.profiles.items())]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'NAME':<16} {'DURATION':>8} {'BACKWARD':>8} {'MAX km/h':>8} {'MAX %':>6}  TITLE")
        for _, p in sorted(profiles.profiles.items()):
            print(
                f"{p.name:<16} {fmt_time(p.duration_s):>8} {fmt_time(p.backward_s):>8} "
                f"{p.max_speed_kmh:>8g} {p.max_incline_pct:>6g}  {p.title}"
            )
        return 0
    profile = profiles.get(args.name)
    _show(profile, config.safety)
    return 0


def _check(files: list[Path], limits: object) -> int:
    bad = 0
    for path in files:
        try:
            profile = load_profile_file(path)
        except ProfileError as exc:
            print(f"FAIL {exc}")
            bad += 1
            continue
        found = problems(profile, limits)  # type: ignore[arg-type]
        if found:
            bad += 1
            for line in found:
                print(f"FAIL {path}: {line}")
        else:
            length = fmt_time(profile.duration_s)
            print(f"ok   {path}: {profile.name} ({length}, {len(profile.phases)} phases)")
    return 1 if bad else 0


def _show(profile: Profile, limits: object) -> None:
    print(f"{profile.name}: {profile.title}")
    if profile.description:
        print(profile.description.strip())
    print(
        f"\n{len(profile.phases)} phases, {fmt_time(profile.duration_s)} in all, "
        f"{fmt_time(profile.backward_s)} backward\n"
    )
    for i, ph in enumerate(profile.phases, 1):
        print(
            f"{i}. {ph.name} — {ph.direction}, {fmt_time(ph.duration_s)}, {ph.speed_kmh:g} km/h, "
            f"{ph.incline_pct:g} %, reached within {ph.ramp_s:g} s"
        )
        if ph.cue:
            print(f"   “{ph.cue}”")
    found = problems(profile, limits)  # type: ignore[arg-type]
    if found:
        print("\nRefused with the current safety limits:")
        for line in found:
            print(f"  - {line}")
        return
    # The plan on a typical treadmill (0.5-8 km/h by 0.1, 0-12 % by 0.5).
    device = device_grids(
        limits,  # type: ignore[arg-type]
        _Range(0.5, 8.0, 0.1),
        _Range(0.0, 12.0, 0.5),
    )
    series = plan(profile, limits, device, tick_s=1.0)  # type: ignore[arg-type]
    changes = sum(
        1
        for (_, a), (_, b) in itertools.pairwise(series)
        if (a.target_speed_kmh, a.target_incline_pct) != (b.target_speed_kmh, b.target_incline_pct)
    )
    print(
        f"\nPlanned on a typical treadmill: {changes} setpoint changes, in steps within the limits."
    )


class _Range:
    def __init__(self, lo: float, hi: float, inc: float) -> None:
        self.minimum, self.maximum, self.increment = lo, hi, inc
