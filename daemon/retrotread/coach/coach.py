"""The coach: which walker, which plan, and today's session with the reasons for it.

One object the daemon, the CLI and the tests share. It holds the plans, the walkers, the
``[safety]`` limits and where the session logs are; every answer is computed afresh from
the logs (through a ``HistoryReader`` that re-reads only changed files) and a ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from retrotread.coach.history import HistoryReader, SessionRecord, select
from retrotread.coach.loader import PlanSet, load_plans
from retrotread.coach.plan import Plan
from retrotread.coach.progress import (
    LearnedSpeed,
    Progress,
    day,
    fold,
    learned_speed,
    plan_today,
    weekly_cap,
)
from retrotread.coach.session import Built, DeviceRanges, build_session, fmt_min
from retrotread.coach.walkers import (
    IMPLICIT_WALKER,
    SafetyLike,
    WalkerConfig,
    WalkerLimits,
    effective_limits,
    find_walker,
)
from retrotread.errors import CoachError, CoachRefused, PlanError
from retrotread.session.analysis import week_start

DEFAULT_PLAN = "retro-start"


@dataclass
class Today:
    """Today's session of a plan for a walker, and why it is what it is."""

    walker: str
    plan: Plan
    progress: Progress
    speed: LearnedSpeed
    built: Built
    limits: WalkerLimits
    why: list[str] = field(default_factory=list)

    @property
    def profile(self) -> Any:
        return self.built.profile

    @property
    def header_plan(self) -> dict[str, Any]:
        """The session header's ``plan`` value (docs/plans.md, "Session header")."""
        spec = self.progress.spec
        return {
            "name": self.plan.name,
            "stage": spec.stage.name,
            "level": spec.level_number,
            "speed_kmh": self.built.speed_kmh,  # the flat backward speed it prescribes
        }

    def summary(self) -> dict[str, Any]:
        spec = self.progress.spec
        return {
            "plan": self.plan.name,
            "stage": spec.stage.name,
            "level": spec.level_number,
            "levels": spec.levels_in_stage,
            **self.built.summary(),
        }


class Coach:
    """Plans, walkers, limits and the session logs: today's session for anyone."""

    def __init__(
        self,
        plans: PlanSet,
        walkers: Sequence[WalkerConfig],
        safety: SafetyLike,
        sessions_dir: Path,
        reader: HistoryReader | None = None,
    ) -> None:
        self.plans = plans
        self.walkers = list(walkers)
        self.safety = safety
        self.sessions_dir = sessions_dir
        self.reader = reader or HistoryReader()

    @classmethod
    def from_config(cls, config: Any, plans: PlanSet | None = None) -> Coach:
        """The coach of a ``config.Config``: its walkers, [safety], sessions and plan dirs."""
        return cls(
            plans if plans is not None else load_plans(config.profiles.dirs),
            config.walker,
            config.safety,
            config.sessions.dir,
        )

    # ------------------------------------------------------------------ who

    def walker_names(self) -> list[str]:
        return [w.name for w in self.walkers] or [IMPLICIT_WALKER]

    def resolve_walker(self, name: str | None) -> tuple[str, WalkerConfig | None]:
        """(name, config) of a walker; None picks the only one. CoachError if unknown."""
        if not self.walkers:
            if name is None or name.casefold() == IMPLICIT_WALKER:
                return IMPLICIT_WALKER, None
            raise CoachError(
                f"unknown walker {name!r}: no walkers are configured (add [[walker]] entries "
                f"to the config, or leave 'walker' out)"
            )
        if name is None:
            if len(self.walkers) == 1:
                return self.walkers[0].name, self.walkers[0]
            raise CoachError(f"which walker? name one of: {', '.join(self.walker_names())}")
        found = find_walker(self.walkers, name)
        if found is None:
            raise CoachError(
                f"unknown walker {name!r}; known walkers: {', '.join(self.walker_names())}"
            )
        return found.name, found

    def limits(self, walker: str | None) -> WalkerLimits:
        """The limits ``walker``'s sessions run under (``[safety]`` for the implicit one)."""
        _, cfg = self.resolve_walker(walker)
        return effective_limits(self.safety, cfg)

    def history(self, walker: str) -> list[SessionRecord]:
        """``walker``'s sessions, oldest first (the implicit walker owns unnamed ones)."""
        records, _ = self.reader.all(self.sessions_dir)
        return select(records, walker, implicit=not self.walkers)

    # ------------------------------------------------------------------ which plan

    def current_plan(
        self,
        walker: str | None,
        now: datetime,
        sessions: Sequence[SessionRecord] | None = None,
    ) -> Plan:
        """The plan ``start`` without one uses: the walker's configured plan, else the plan
        of their latest plan session, else retro-start; then on through ``next`` while the
        plan is complete and the next one is open to them."""
        name, cfg = self.resolve_walker(walker)
        sessions = self.history(name) if sessions is None else sessions
        chosen = cfg.plan if cfg is not None and cfg.plan else None
        if chosen is None:
            chosen = next((s.plan for s in reversed(sessions) if s.plan), None)
        if chosen is None or chosen not in self.plans.plans:
            if chosen is not None and cfg is not None and cfg.plan == chosen:
                self.plans.get(chosen)  # a configured plan that is missing: say so
            chosen = DEFAULT_PLAN if DEFAULT_PLAN in self.plans.plans else None
            if chosen is None:
                if not self.plans.plans:
                    raise PlanError("no plans are available")
                chosen = sorted(self.plans.plans)[0]
        plan = self.plans.get(chosen)
        for _ in range(len(self.plans.plans)):
            nxt = plan.next
            if not nxt or nxt not in self.plans.plans or not fold(plan, sessions, now).completed:
                break
            following = self.plans.get(nxt)
            if self._missing(following, sessions, now):
                break
            plan = following
        return plan

    def _missing(
        self, plan: Plan, sessions: Sequence[SessionRecord], now: datetime
    ) -> list[tuple[str, Progress | None]]:
        """The plans ``plan`` requires that the walker has not completed."""
        out: list[tuple[str, Progress | None]] = []
        for required in plan.requires:
            other = self.plans.plans.get(required)
            if other is None:
                out.append((required, None))
                continue
            pr = fold(other, sessions, now)
            if not pr.completed:
                out.append((required, pr))
        return out

    # ------------------------------------------------------------------ today

    def today(
        self,
        walker: str | None,
        plan: str | None,
        now: datetime,
        *,
        device: DeviceRanges | None = None,
        pain_before: int | None = None,
        sessions: Sequence[SessionRecord] | None = None,
    ) -> Today:
        """Today's session; CoachRefused names walker, plan and rule when there is none.

        ``sessions``: the walker's history when the caller has it already.
        """
        name, cfg = self.resolve_walker(walker)
        sessions = self.history(name) if sessions is None else sessions
        chosen = (
            self.plans.get(plan) if plan is not None else self.current_plan(name, now, sessions)
        )
        limits = effective_limits(self.safety, cfg)
        rules = chosen.progression
        for required, pr in self._missing(chosen, sessions, now):
            where = (
                f"{name} is at {pr.spec.label()} of it"
                if pr is not None and pr.sessions
                else f"{name} has not started it"
                if pr is not None
                else "it is not installed"
            )
            raise CoachRefused(
                name,
                chosen.name,
                "requires",
                f"this plan opens once plan {required!r} is completed ({where})",
            )
        if pain_before is not None and pain_before >= rules.pain_rest:
            raise CoachRefused(
                name,
                chosen.name,
                "pain-rest",
                f"knee pain {pain_before}/10 before the session (at or above "
                f"{rules.pain_rest}): rest today, and if it stays high, see your physiotherapist",
            )
        if pain_before is None:
            last = _last_pain(sessions)
            if last is not None and last[0] >= rules.pain_rest:
                raise CoachRefused(
                    name,
                    chosen.name,
                    "pain-rest",
                    f"the last report was knee pain {last[0]}/10 ({day(last[1])}): rest, and "
                    "give today's knee pain with the start when it has settled",
                )
        progress = plan_today(chosen, sessions, now, pain_before)
        spec = progress.spec
        speed = within(learned_speed(chosen, sessions), limits, name)
        cap_s, ref_s, ref_when = weekly_cap(chosen, sessions, now)
        why = _recent_reasons(chosen, progress)
        why.append(f"backward speed {speed.reason} [rule learned-speed]")
        cap = None
        if spec.backward_s > cap_s + 1e-6:
            cap = cap_s
            since = f"on {day(ref_when)}" if ref_when else "(the plan's first dose)"
            why.append(
                f"backward time held to {fmt_min(cap_s)} instead of {fmt_min(spec.backward_s)}: "
                f"at most +{rules.max_weekly_growth:.0%} on the longest walked a week or more "
                f"ago, {fmt_min(ref_s)} {since} [rule growth-cap]"
            )
        built = build_session(
            chosen,
            spec,
            walker=name,
            speed_kmh=speed.kmh,
            limits=limits,
            device=device,
            cap_s=cap,
            description="\n".join(why),
        )
        why.extend(built.notes)
        return Today(name, chosen, progress, speed, built, limits, why)

    # ------------------------------------------------------------------ status

    def status(
        self, walker: str | None, now: datetime, *, device: DeviceRanges | None = None
    ) -> dict[str, Any]:
        """The retained ``<base>/walker/<name>`` payload (SPEC.md §3)."""
        name, _ = self.resolve_walker(walker)
        sessions = self.history(name)
        week = week_start(now)
        this_week = [s for s in sessions if s.started_at >= week and s.walked]
        last_pain = _last_pain(sessions)
        rating = next((s.feedback.rating for s in reversed(sessions) if s.feedback.rating), None)
        out: dict[str, Any] = {
            "walker": name,
            "plan": None,
            "stage": None,
            "level": None,
            "levels": None,
            "complete": False,
            "sessions_this_week": len(this_week),
            "sessions_per_week": None,
            "backward_min_this_week": round(sum(s.backward_s for s in this_week) / 60, 1),
            "today": None,
            "refused": None,
            "learned_speed_kmh": None,
            "last_pain": last_pain[0] if last_pain else None,
            "last_rating": rating,
            "why": [],
            "updated": now.isoformat().replace("+00:00", "Z"),
        }
        try:
            plan = self.current_plan(name, now, sessions)
        except CoachError as exc:
            out["refused"] = str(exc)
            return out
        progress = fold(plan, sessions, now)
        out.update(
            plan=plan.name,
            stage=progress.spec.stage.name,
            level=progress.spec.level_number,
            levels=progress.spec.levels_in_stage,
            complete=progress.completed,
            sessions_per_week=plan.sessions_per_week,
            learned_speed_kmh=within(learned_speed(plan, sessions), self.limits(name), name).kmh,
        )
        try:
            today = self.today(name, plan.name, now, device=device, sessions=sessions)
        except CoachError as exc:
            out["refused"] = str(exc)
            out["why"] = _recent_reasons(plan, progress)
            return out
        out.update(
            stage=today.progress.spec.stage.name,
            level=today.progress.spec.level_number,
            today=today.summary(),
            why=today.why,
        )
        return out


def within(speed: LearnedSpeed, limits: WalkerLimits, walker: str) -> LearnedSpeed:
    """The learned speed, no faster than the walker may be driven."""
    top = math.floor(limits.max_speed_kmh * 10 + 1e-6) / 10
    if speed.kmh <= top:
        return speed
    return LearnedSpeed(
        top, speed.learned, f"{speed.reason}; held at {top:g} km/h by {walker}'s limits"
    )


def _last_pain(sessions: Sequence[SessionRecord]) -> tuple[int, datetime] | None:
    for s in reversed(sessions):
        pains = s.feedback.pains()
        if pains:
            return pains[-1][1], s.started_at
    return None


def _recent_reasons(plan: Plan, progress: Progress) -> list[str]:
    """The decisions since the last session of the plan (that session's first)."""
    return [d.why(plan) for d in progress.recent()]
