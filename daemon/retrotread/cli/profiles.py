"""``retrotread profiles list | show NAME | check FILE...``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from retrotread.cli._shared import Actions, fmt_time, load_config
from retrotread.config import SafetyConfig
from retrotread.errors import ProfileError
from retrotread.profiles.engine import Step, device_grids, plan
from retrotread.profiles.loader import load_profile_file, load_profiles
from retrotread.profiles.model import Limits, Profile, problems


@dataclass(frozen=True)
class _Range:
    minimum: float
    maximum: float
    increment: float


# What `profiles show` plans on: a common home treadmill (0.5-8 km/h by 0.1, 0-12 % by 0.5).
TYPICAL_SPEED = _Range(0.5, 8.0, 0.1)
TYPICAL_INCLINE = _Range(0.0, 12.0, 0.5)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = Actions(
        parser, "profiles_command", "config file for the safety limits and profile dirs"
    )
    ls = actions.add("list", "list the available profiles")
    ls.add_argument("--json", action="store_true", help="as JSON, like the MQTT profiles topic")
    show = actions.add("show", "print a profile's phases, cues and planned setpoints")
    show.add_argument("name", metavar="NAME")
    check = actions.add("check", "validate profile files against the safety limits")
    check.add_argument("files", metavar="FILE", nargs="+", type=Path)


def run(args: argparse.Namespace) -> int:
    """Run one action; 0 on success, 1 when ``check`` refused a file."""
    config = load_config(args.config)  # ConfigError: one line (cli.main)
    if args.profiles_command == "check":
        return _check(args.files, config.safety)
    profiles = load_profiles(config.profiles.dirs)
    for err in profiles.errors:
        print(f"warning: {err}", file=sys.stderr)
    if args.profiles_command == "list":
        _list(sorted(profiles.profiles.values(), key=lambda p: p.name), as_json=args.json)
        return 0
    _show(profiles.get(args.name), config.safety)  # unknown name: ProfileError, one line
    return 0


def _list(profiles: list[Profile], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps([p.summary() for p in profiles], indent=2))
        return
    print(f"{'NAME':<16} {'DURATION':>8} {'BACKWARD':>8} {'MAX km/h':>8} {'MAX %':>6}  TITLE")
    for p in profiles:
        print(
            f"{p.name:<16} {fmt_time(p.duration_s):>8} {fmt_time(p.backward_s):>8} "
            f"{p.max_speed_kmh:>8g} {p.max_incline_pct:>6g}  {p.title}"
        )


def _check(files: list[Path], limits: SafetyConfig) -> int:
    bad = 0
    for path in files:
        try:
            profile = load_profile_file(path)
        except ProfileError as exc:
            print(f"FAIL {exc}")
            bad += 1
            continue
        found = problems(profile, limits)
        if found:
            bad += 1
            for line in found:
                print(f"FAIL {path}: {line}")
        else:
            length = fmt_time(profile.duration_s)
            print(f"ok   {path}: {profile.name} ({length}, {len(profile.phases)} phases)")
    return 1 if bad else 0


def _show(profile: Profile, limits: SafetyConfig) -> None:
    print(f"{profile.name}: {profile.title}")
    if profile.description:
        print(profile.description.strip())
    print(
        f"\n{len(profile.phases)} phases, {fmt_time(profile.duration_s)} in all, "
        f"{fmt_time(profile.backward_s)} backward\n"
    )
    for i, ph in enumerate(profile.phases, 1):
        print(
            f"{i}. {ph.name} — {ph.direction}, {fmt_time(ph.duration_s)}, "
            f"{ph.speed_kmh:g} km/h, {ph.incline_pct:g} %, reached within {ph.ramp_s:g} s"
        )
        if ph.cue:
            print(f"   “{ph.cue}”")
    found = problems(profile, limits)
    if found:
        print("\nRefused with the current safety limits:")
        for line in found:
            print(f"  - {line}")
        return
    print("\nPlanned on a typical treadmill (0.5-8 km/h by 0.1, 0-12 % by 0.5):")
    for line in plan_summary(profile, limits):
        print(f"  {line}")


def plan_summary(profile: Profile, limits: Limits) -> list[str]:
    """Per phase: when it starts and when its targets are reached; then the step counts."""
    device = device_grids(limits, TYPICAL_SPEED, TYPICAL_INCLINE)
    series = plan(profile, limits, device, tick_s=0.5)
    lines = []
    for i, ph in enumerate(profile.phases):
        mine = [(t, s) for t, s in series if s.phase_index == i and s.state != "turning"]
        if not mine:
            continue
        t0 = mine[0][0]
        speed = _reached(mine, "speed", device.speed.value(device.speed.snap(ph.speed_kmh)))
        parts = [f"{i + 1}. from {fmt_time(t0)}: {ph.speed_kmh:g} km/h {speed}"]
        if device.incline is not None:
            want = device.incline.value(device.incline.snap(ph.incline_pct))
            parts.append(f"{ph.incline_pct:g} % {_reached(mine, 'incline', want)}")
        lines.append(", ".join(parts))
    changes = {"speed": 0, "incline": 0}
    previous: Step | None = None
    for _, step in series:
        if previous is not None:
            if None not in (step.target_speed_kmh, previous.target_speed_kmh):
                changes["speed"] += step.target_speed_kmh != previous.target_speed_kmh
            if None not in (step.target_incline_pct, previous.target_incline_pct):
                changes["incline"] += step.target_incline_pct != previous.target_incline_pct
        previous = step
    lines.append(
        f"{changes['speed']} speed steps of at most {limits.speed_step_kmh:g} km/h and "
        f"{changes['incline']} incline steps of at most {limits.incline_step_pct:g} %, "
        f"never two within {limits.step_interval_s:g} s"
    )
    return lines


def _reached(series: list[tuple[float, Step]], q: str, want: float) -> str:
    t0 = series[0][0]
    for t, s in series:
        value = s.target_speed_kmh if q == "speed" else s.target_incline_pct
        if value == want:
            return "from the start" if t == t0 else f"after {fmt_time(t - t0)}"
    return "not reached"
