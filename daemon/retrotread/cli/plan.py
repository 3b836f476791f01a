"""``retrotread plan list | show NAME [--walker W]``: the plans, and today's session."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from retrotread.cli._shared import Actions, fmt_time, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = Actions(
        parser, "plan_command", "config file for walkers, safety limits, sessions and plan dirs"
    )
    ls = actions.add("list", "list the available plans")
    ls.add_argument("--json", action="store_true", help="as JSON")
    show = actions.add(
        "show", "a plan's levels, and a walker's session today: phase by phase, and why"
    )
    show.add_argument("name", metavar="NAME")
    show.add_argument("--walker", metavar="W", help="whose session (default: the only walker)")
    show.add_argument("--json", action="store_true", help="today's session as JSON")


def run(args: argparse.Namespace) -> int:
    """0 on success; 1 when today's session is refused (the reason is printed)."""
    from retrotread.coach.coach import Coach

    config = load_config(args.config)
    coach = Coach.from_config(config)
    for err in coach.plans.errors:
        print(f"warning: {err}", file=sys.stderr)
    if args.plan_command == "list":
        return _list(coach, as_json=args.json)
    return _show(coach, args.name, args.walker, as_json=args.json)


def _list(coach: object, *, as_json: bool) -> int:
    from retrotread.coach.coach import Coach

    assert isinstance(coach, Coach)
    plans = [coach.plans.plans[n] for n in sorted(coach.plans.plans)]
    if as_json:
        print(json.dumps([p.summary() for p in plans], indent=2))
        return 0
    head = f"{'NAME':<14} {'LEVELS':>6} {'/WEEK':>5} {'BACKWARD':>11} {'MAX %':>5}"
    print(f"{head}  {'NEEDS':<12} TITLE")
    for p in plans:
        s = p.summary()
        backward = f"{s['backward_min_first']:g}-{s['backward_min_last']:g} min"
        needs = ", ".join(p.requires) or "-"
        print(
            f"{p.name:<14} {p.positions:>6} {p.sessions_per_week:>5} {backward:>11} "
            f"{s['max_incline_pct']:>5g}  {needs:<12} {p.title}"
        )
    return 0


def _show(coach: object, name: str, walker: str | None, *, as_json: bool) -> int:
    from retrotread.coach.coach import Coach
    from retrotread.errors import CoachError, CoachRefused

    assert isinstance(coach, Coach)
    plan = coach.plans.get(name)  # unknown: PlanError, one line
    now = datetime.now(UTC)
    try:
        today = coach.today(walker, plan.name, now)
    except CoachRefused as exc:
        if as_json:
            print(json.dumps({"refused": str(exc), "rule": exc.rule}))
        else:
            _levels(plan)
            print(f"\ntoday: refused: {exc}")
        return 1
    except CoachError:
        if walker is not None or as_json:
            raise
        _levels(plan)  # several walkers and none named: the plan alone
        print("\n(name a walker with --walker to see their session today)")
        return 0
    if as_json:
        print(
            json.dumps(
                {
                    **today.summary(),
                    "walker": today.walker,
                    "why": today.why,
                    "profile": today.profile.model_dump(mode="json"),
                },
                indent=2,
            )
        )
        return 0
    _levels(plan, today.progress.position)
    spec = today.progress.spec
    print(f"\n{today.walker} today: {spec.label()} — {today.profile.title}")
    print(f"{'#':>2} {'PHASE':<14} {'DIR':<9} {'TIME':>6} {'km/h':>5} {'%':>5} {'RAMP':>5}  CUE")
    for i, ph in enumerate(today.profile.phase, 1):
        print(
            f"{i:>2} {ph.name:<14} {ph.direction:<9} {fmt_time(ph.duration_s):>6} "
            f"{ph.speed_kmh:>5g} {ph.incline_pct:>5g} {ph.ramp_s:>4g}s  {ph.cue}"
        )
    b = today.built
    print(
        f"\n{fmt_time(b.backward_s)} backward, {fmt_time(today.profile.duration_s)} in all "
        f"(plus the turn-arounds)"
    )
    print("why:")
    for line in today.why:
        print(f"  - {line}")
    print("(checked against the walker's limits; the daemon checks the treadmill's ranges too)")
    return 0


def _levels(plan: object, current: int | None = None) -> None:
    from retrotread.coach.plan import Plan

    assert isinstance(plan, Plan)
    print(f"{plan.name} — {plan.title}")
    if plan.requires:
        print(f"opens after: {', '.join(plan.requires)}")
    head = f"   {'STAGE':<10} {'LEVEL':>5} {'BACKWARD':>9} {'BOUTS':>9} {'%':>4} {'SPEED':>6}"
    print(f"{head} {'SESS':>4}  NOTE")
    for p in range(plan.positions):
        s = plan.spec(p)
        mark = "→" if p == current else " "
        bouts = f"{s.bouts}x{fmt_time(s.bout_s)}" + (f"+{fmt_time(s.flat_s)}" if s.flat_s else "")
        print(
            f" {mark} {s.stage.name:<10} {s.level_number:>5} {fmt_time(s.backward_s):>9} "
            f"{bouts:>9} {s.incline_pct:>4g} {s.speed_factor:>5.0%} {s.sessions:>4}  {s.note}"
        )
