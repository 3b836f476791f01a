"""A walker's progress over the weeks, per session and per week (``retrotread progress``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from retrotread.coach.history import SessionRecord
from retrotread.coach.loader import PlanSet
from retrotread.coach.progress import Decision, fold, learned_speed
from retrotread.session.analysis import week_start


@dataclass(frozen=True)
class SessionPoint:
    """One session as the progress report shows it."""

    when: datetime
    plan: str | None
    level: str | None  # "flat 4"
    backward_min: float
    max_incline_pct: float
    speed_kmh: float | None  # the walker's backward speed after this session (learned)
    outcome: str
    action: str | None  # what the coach did after it: advance, hold, step-back, ...
    rule: str | None
    pain_before: int | None
    pain_after: int | None
    rating: str | None
    before: str | None = None  # a rule that moved the walker before it: gap, pain-high


@dataclass
class WeekRow:
    """One calendar week (Monday 00:00 UTC)."""

    start: datetime
    sessions: int = 0
    backward_min: float = 0.0
    top_incline_pct: float = 0.0
    speed_kmh: float | None = None
    max_pain: int | None = None
    level: str | None = None


@dataclass
class Report:
    walker: str
    points: list[SessionPoint] = field(default_factory=list)
    weeks: list[WeekRow] = field(default_factory=list)


def build_report(
    plans: PlanSet, walker: str, sessions: Sequence[SessionRecord], now: datetime
) -> Report:
    """Every session of ``walker`` with what the coach made of it, and weekly totals."""
    if sessions:  # a log dated ahead of this clock (a demo's weeks) still counts
        now = max(now, sessions[-1].started_at + timedelta(seconds=1))
    decided: dict[object, Decision] = {}
    moved: dict[object, Decision] = {}
    for name in {s.plan for s in sessions if s.plan}:
        plan = plans.plans.get(name)
        if plan is None:
            continue
        pr = fold(plan, sessions, now)
        for decision in pr.decisions:
            if decision.session is None or decision.rule == "start":
                continue
            if decision.before:  # the gap, or pain given before it: what it started at
                if decision.action == "step-back":
                    moved.setdefault(decision.session, decision)
            else:  # the last one about a session is what its outcome and feedback did
                decided[decision.session] = decision
    report = Report(walker)
    for i, s in enumerate(sessions):
        plan = plans.plans.get(s.plan) if s.plan else None
        speed = learned_speed(plan, sessions[: i + 1]).kmh if plan is not None else None
        d = decided.get(s.path)
        report.points.append(
            SessionPoint(
                when=s.started_at,
                plan=s.plan,
                level=f"{s.stage} {s.level}" if s.stage and s.level else None,
                backward_min=round(s.backward_s / 60, 2),
                max_incline_pct=s.max_incline_pct,
                speed_kmh=speed,
                outcome=s.outcome,
                action=d.action if d else None,
                rule=d.rule if d else None,
                pain_before=s.feedback.pain_before,
                pain_after=s.feedback.pain_after,
                rating=s.feedback.rating,
                before=moved[s.path].rule if s.path in moved else None,
            )
        )
    if not report.points:
        return report
    week = week_start(report.points[0].when)
    last = max(week_start(now), week_start(report.points[-1].when))
    while week <= last:
        row = WeekRow(week)
        inside = [p for p in report.points if week <= p.when < week + timedelta(days=7)]
        row.sessions = len(inside)
        row.backward_min = round(sum(p.backward_min for p in inside), 1)
        row.top_incline_pct = max((p.max_incline_pct for p in inside), default=0.0)
        before = [p for p in report.points if p.when < week + timedelta(days=7)]
        speeds = [p.speed_kmh for p in before if p.speed_kmh is not None]
        row.speed_kmh = speeds[-1] if speeds else None
        pains = [v for p in inside for v in (p.pain_before, p.pain_after) if v is not None]
        row.max_pain = max(pains) if pains else None
        levels = [p.level for p in before if p.level]
        row.level = levels[-1] if levels else None
        report.weeks.append(row)
        week += timedelta(days=7)
    return report
