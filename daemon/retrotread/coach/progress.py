"""The progression rules (docs/plans.md, "Rules"): where a walker stands in a plan, and why.

Progress is derived, every time, from the walker's session logs in order (a fold); nothing
is stored besides the logs and their feedback sidecars. Each step of the fold leaves a
``Decision`` naming the rule that moved (or kept) the walker, so "why" is always answerable.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from retrotread.coach.history import EARLY, SessionRecord
from retrotread.coach.plan import LevelSpec, Plan

# A session shortened by the growth cap counts toward its level when it still had at least
# this fraction of the level's backward time (a few seconds short is the level walked).
FULL_FRACTION = 0.9

Action = Literal["start", "advance", "stay", "hold", "step-back", "complete", "rest"]

# Stable rule names: they appear in messages, refusals and docs/plans.md.
RULES = (
    "start",
    "completed",
    "sessions-per-level",
    "easy-twice",
    "stage-complete",
    "plan-complete",
    "early-end",
    "console-slow-down",
    "rated-hard",
    "pain-rise",
    "pain-high",
    "pain-rest",
    "holds-in-a-row",
    "gap",
    "interrupted",
    "shortened",
    "growth-cap",
    "learned-speed",
    "requires",
    "limits",
    "device",
)

OUTCOME_WORDS = {
    "finished_early": "was finished early",
    "stopped": "was stopped",
    "stopped_by_treadmill": "was stopped at the treadmill",
    "interrupted": "was interrupted (the treadmill link was lost)",
    "error": "ended with an error",
}


def day(d: datetime) -> str:
    """``Mon 30 Nov``."""
    return f"{d:%a} {d.day} {d:%b}"


@dataclass(frozen=True)
class Decision:
    """One application of a rule: what it did, where it left the walker, and why."""

    at: datetime
    rule: str
    action: Action
    position: int
    reason: str
    session: Path | None = None
    before: bool = False  # applied when the session was planned (gap, pain given before)

    def why(self, plan: Plan) -> str:
        """``advance to flat, level 4 of 9: the session of ... was completed [rule completed]``."""
        where = plan.spec(self.position).label()
        verb = {
            "start": "start at",
            "advance": "advance to",
            "stay": "stay at",
            "hold": "hold at",
            "step-back": "step back to",
            "complete": "plan complete; keep",
            "rest": "rest, at",
        }[self.action]
        return f"{verb} {where}: {self.reason} [rule {self.rule}]"


@dataclass
class Progress:
    """Where a walker stands in one plan, derived from their sessions."""

    plan: Plan
    position: int
    completed: bool = False  # reached the end of the plan at least once
    done: dict[int, int] = field(default_factory=dict)  # full sessions walked per position
    holds: int = 0  # holds in a row so far
    easy: int = 0  # completed sessions rated easy in a row so far
    decisions: list[Decision] = field(default_factory=list)
    sessions: list[SessionRecord] = field(default_factory=list)  # this plan's, oldest first
    last_pain: int | None = None  # the walker's latest pain report (any session)
    notes: list[str] = field(default_factory=list)
    since: int = 0  # decisions[since:] are the ones after the last session of the plan

    @property
    def spec(self) -> LevelSpec:
        return self.plan.spec(self.position)

    def recent(self) -> list[Decision]:
        """What placed the walker where they are: the rules since the last session."""
        return self.decisions[self.since :]

    @property
    def last_session(self) -> SessionRecord | None:
        return self.sessions[-1] if self.sessions else None

    def _decide(
        self,
        at: datetime,
        rule: str,
        action: Action,
        reason: str,
        session: SessionRecord | None = None,
        *,
        before: bool = False,
    ) -> Decision:
        path = session.path if session else None
        d = Decision(at, rule, action, self.position, reason, path, before)
        self.decisions.append(d)
        return d


def _gap_levels(plan: Plan, last: datetime, now: datetime) -> tuple[int, float]:
    """(levels to step back, days) for the time between two sessions."""
    days = (now - last) / timedelta(days=1)
    gap = plan.progression.gap_days
    return (math.floor(days / gap) if days > gap else 0), days


def _step_back(plan: Plan, position: int, levels: int = 1) -> int:
    return max(0, position - levels)


def _advance_target(plan: Plan, position: int, steps: int) -> int:
    """``steps`` on from ``position``; a skip never jumps over a stage's last level."""
    if steps > 1 and plan.locate(position + steps)[0] != plan.locate(position)[0]:
        steps = 1
    return min(position + steps, plan.positions - 1)


def fold(plan: Plan, sessions: Sequence[SessionRecord], now: datetime) -> Progress:
    """Apply the rules to the walker's sessions (all of them, oldest first) up to ``now``.

    Only this plan's sessions move the walker; every session's pain reports count for
    "a rise since last time". A session's header says at which level it was walked, and
    that wins over what the fold computed (the log is the record of what happened).
    """
    pr = Progress(plan, plan.start_position)
    started = False
    for s in sessions:
        if s.started_at > now:
            break
        if s.plan != plan.name:
            _take_pains(pr, s)
            continue
        if not started:
            pr._decide(s.started_at, "start", "start", f"the first session, {day(s.started_at)}", s)
            started = True
        _before_session(pr, s, s.started_at, s.feedback.pain_before)
        logged = plan.position_of(s.stage, s.level) if s.stage and s.level else None
        if logged is not None and logged != pr.position:
            pr.notes.append(
                f"the session of {day(s.started_at)} was walked at {plan.spec(logged).label()}"
            )
            pr.position = logged
        pr.sessions.append(s)
        previous_pain = pr.last_pain
        if s.feedback.pain_before is not None:
            previous_pain = s.feedback.pain_before
        pr.last_pain = previous_pain
        after = s.feedback.pain_after
        if after is not None:
            pr.last_pain = after
        pr.since = len(pr.decisions)
        _after_session(pr, s, after, previous_pain)
    return pr


def _take_pains(pr: Progress, s: SessionRecord) -> None:
    for _, pain in s.feedback.pains():
        pr.last_pain = pain


def _before_session(
    pr: Progress, s: SessionRecord | None, at: datetime, pain_before: int | None
) -> None:
    """Rules applied when a session is planned: the gap, and pain reported before it."""
    plan, rules = pr.plan, pr.plan.progression
    last = pr.last_session
    if last is not None:
        levels, days = _gap_levels(plan, last.started_at, at)
        if levels and pr.position > 0:
            pr.position = _step_back(plan, pr.position, levels)
            pr.holds = pr.easy = 0
            pr._decide(
                at,
                "gap",
                "step-back",
                f"{days:.0f} days since the last session of this plan (more than "
                f"{rules.gap_days:g}: one level back per {rules.gap_days:g} days)",
                s,
                before=True,
            )
    if pain_before is None:
        return
    if pain_before >= rules.pain_step_back:
        if pr.position > 0:
            pr.position = _step_back(plan, pr.position)
        pr._decide(
            at,
            "pain-high",
            "step-back",
            f"knee pain {pain_before}/10 before the session (at or above {rules.pain_step_back})",
            s,
            before=True,
        )
    elif pr.last_pain is not None and pain_before - pr.last_pain >= rules.pain_rise_hold:
        if last is not None and (back := _position_of(plan, last)) is not None:
            pr.position = min(pr.position, back)
        pr._decide(
            at,
            "pain-rise",
            "hold",
            f"knee pain rose from {pr.last_pain} to {pain_before} since last time (a rise of "
            f"{rules.pain_rise_hold} or more)",
            s,
            before=True,
        )


def _position_of(plan: Plan, s: SessionRecord) -> int | None:
    return plan.position_of(s.stage, s.level) if s.stage and s.level else None


def _after_session(
    pr: Progress, s: SessionRecord, pain_after: int | None, previous_pain: int | None
) -> None:
    """Rules applied to a session's outcome and the feedback given after it."""
    plan, rules = pr.plan, pr.plan.progression
    at = s.started_at
    walked_at = pr.position
    holds: list[tuple[str, str]] = []
    if pain_after is not None and pain_after >= rules.pain_step_back:
        pr.position = _step_back(plan, walked_at)
        pr.holds = pr.easy = 0
        pr._decide(
            at,
            "pain-high",
            "step-back",
            f"knee pain {pain_after}/10 after the session of {day(at)} (at or above "
            f"{rules.pain_step_back})",
            s,
        )
        return
    if (
        pain_after is not None
        and previous_pain is not None
        and pain_after - previous_pain >= rules.pain_rise_hold
    ):
        holds.append(
            (
                "pain-rise",
                f"knee pain rose from {previous_pain} to {pain_after} (a rise of "
                f"{rules.pain_rise_hold} or more)",
            )
        )
    if s.outcome in EARLY:
        holds.append(("early-end", f"the session of {day(at)} {OUTCOME_WORDS[s.outcome]}"))
    for slow in s.slowdowns[:1]:
        holds.append(
            (
                "console-slow-down",
                f"you slowed the belt at the console in {slow.phase} "
                f"({slow.target_kmh:g} -> {slow.chosen_kmh:g} km/h)",
            )
        )
    if rules.hard_holds and s.feedback.rating == "hard":
        holds.append(("rated-hard", f"you rated the session of {day(at)} hard"))
    if holds:
        pr.holds += 1
        pr.easy = 0
        reason = "; ".join(text for _, text in holds)
        if pr.holds >= rules.holds_to_step_back:
            pr.position = _step_back(plan, walked_at)
            pr.holds = 0
            pr._decide(
                at,
                "holds-in-a-row",
                "step-back",
                f"{rules.holds_to_step_back} holds in a row; this time {reason}",
                s,
            )
        else:
            pr._decide(at, holds[0][0], "hold", reason, s)
        return
    if s.outcome != "completed":  # interrupted or error: not the walker's doing
        pr._decide(
            at,
            "interrupted",
            "stay",
            f"the session of {day(at)} {OUTCOME_WORDS.get(s.outcome, s.outcome)}; it neither "
            "counts nor holds",
            s,
        )
        return
    pr.holds = 0
    spec = plan.spec(walked_at)
    rating = s.feedback.rating
    pr.easy = pr.easy + 1 if rating == "easy" else 0
    if s.planned_backward_s < FULL_FRACTION * spec.backward_s - 1.0:
        pr._decide(
            at,
            "shortened",
            "stay",
            f"the session of {day(at)} was shortened to "
            f"{s.planned_backward_s / 60:.1f} of {spec.backward_s / 60:.1f} backward minutes; "
            f"the level counts once walked with at least {FULL_FRACTION:.0%} of its time",
            s,
        )
        return
    pr.done[walked_at] = pr.done.get(walked_at, 0) + 1
    count = pr.done[walked_at]
    if count < spec.sessions:
        pr._decide(
            at,
            "sessions-per-level",
            "stay",
            f"the session of {day(at)} was completed: {count} of {spec.sessions} at this level",
            s,
        )
        return
    if walked_at >= plan.positions - 1:
        pr.completed = True
        pr._decide(
            at,
            "plan-complete",
            "complete",
            f"the last level was completed on {day(at)}"
            + (f"; next: plan {plan.next!r}" if plan.next else ""),
            s,
        )
        return
    skip = rules.easy_to_skip > 0 and pr.easy >= rules.easy_to_skip
    pr.position = _advance_target(plan, walked_at, 2 if skip else 1)
    if skip:
        pr.easy = 0
    stage_done = plan.locate(pr.position)[0] != plan.locate(walked_at)[0]
    if stage_done:
        rule, text = (
            "stage-complete",
            (f"stage {plan.spec(walked_at).stage.name!r} was completed on {day(at)}"),
        )
    elif skip and pr.position - walked_at == 2:
        rule, text = (
            "easy-twice",
            (f"completed and rated easy {rules.easy_to_skip} times in a row: one level skipped"),
        )
    else:
        rule, text = "completed", f"the session of {day(at)} was completed"
    pr._decide(at, rule, "advance", text, s)


def plan_today(
    plan: Plan,
    sessions: Sequence[SessionRecord],
    now: datetime,
    pain_before: int | None = None,
) -> Progress:
    """The fold up to ``now``, then the rules of planning a session now."""
    pr = fold(plan, sessions, now)
    if not pr.sessions:
        pr._decide(now, "start", "start", "no session of this plan yet")
    _before_session(pr, None, now, pain_before)
    return pr


def weekly_cap(
    plan: Plan, sessions: Sequence[SessionRecord], now: datetime
) -> tuple[float, float, datetime | None]:
    """(cap, reference, when): today's backward seconds may not exceed ``cap``.

    The reference is the longest backward time the walker walked in one session on a day
    at least seven days before today (any plan or profile), and never less than the plan's
    starting dose; the cap is ``1 + max_weekly_growth`` times it.
    """
    floor = plan.spec(plan.start_position).backward_s
    cutoff = now.date() - timedelta(days=7)
    ref, when = floor, None
    for s in sessions:
        if s.started_at.date() <= cutoff and s.backward_s > ref:
            ref, when = s.backward_s, s.started_at
    return (1 + plan.progression.max_weekly_growth) * ref, ref, when


@dataclass(frozen=True)
class LearnedSpeed:
    """The walker's own backward speed on the flat, and where it came from."""

    kmh: float
    learned: bool
    reason: str


def learned_speed(plan: Plan, sessions: Sequence[SessionRecord]) -> LearnedSpeed:
    """The median of the latest speed evidence in the walker's recent sessions.

    A session is evidence when the walker chose a backward speed at the console (the
    belt's speed after the change, converted to the flat equivalent), or walked a plan
    session to its end without changing it (its speed stood). The median of the last
    ``learn_sessions`` pieces of evidence among the last ``recent_sessions`` sessions
    with backward walking, within the plan's ``min_kmh`` and ``max_kmh``.
    """
    sp = plan.speed
    if not sp.learn:
        return LearnedSpeed(sp.default_kmh, False, f"plan {plan.name!r} does not learn speed")
    recent = [s for s in sessions if s.planned_backward_s > 0][-sp.recent_sessions :]
    evidence: list[tuple[float, SessionRecord]] = []
    for s in reversed(recent):
        value = s.speed_evidence
        if value is not None:
            evidence.append((value, s))
        if len(evidence) >= sp.learn_sessions:
            break
    if not evidence:
        return LearnedSpeed(
            sp.default_kmh,
            False,
            f"the plan's starting speed {sp.default_kmh:g} km/h (no console choices yet)",
        )
    raw = statistics.median(v for v, _ in evidence)
    kmh = min(max(round(raw, 1), sp.min_kmh), sp.max_kmh)
    items = ", ".join(
        f"{v:.1f} {'chosen' if s.speed_choices else 'kept'} {day(s.started_at)}"
        for v, s in evidence
    )
    bounded = ""
    if kmh != round(raw, 1):
        bounded = f"; held within the plan's {sp.min_kmh:g}-{sp.max_kmh:g} km/h"
    return LearnedSpeed(
        kmh,
        True,
        f"{kmh:g} km/h, the median of your last "
        + (f"{len(evidence)} sessions" if len(evidence) > 1 else "session")
        + f" with a backward speed ({items}){bounded}",
    )
