"""Hand-made session logs for the coach, written with the real session log writer.

``log_session`` writes what the runner writes for a session: a header (with the walker and
plan metadata of docs/plans.md), phase_started events, telemetry, override events for a
console speed change, and a footer with the outcome and summary. ``Walker`` plays a person
following a plan day by day with the real Coach.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from retrotread.coach.coach import Coach, Today
from retrotread.coach.feedback import Feedback, append_feedback
from retrotread.coach.loader import load_plans
from retrotread.coach.session import DeviceRanges
from retrotread.coach.walkers import WalkerConfig
from retrotread.config import SafetyConfig
from retrotread.profiles.model import Profile
from retrotread.session.log import SessionLogWriter

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday


def log_session(
    directory: Path,
    profile: Profile,
    started: datetime,
    *,
    walker: str | None = "anna",
    plan: dict[str, Any] | None = None,
    outcome: str = "completed",
    stop_in_phase: int | None = None,
    slow_in_phase: int | None = None,
    slow_to: float | None = None,
    feedback: Iterable[Feedback] = (),
    footer: bool = True,
) -> Path:
    """One session log as the runner would write it; returns its path."""
    t0 = 1000.0
    w = SessionLogWriter.create(directory, started, profile.name, t0=t0)
    header: dict[str, Any] = {
        "session_id": f"{started:%Y%m%d-%H%M%S}-test",
        "started_at": started.isoformat().replace("+00:00", "Z"),
        "profile": profile.model_dump(mode="json"),
        "limits": {"max_speed_kmh": 5.0},
        "treadmill": {"name": "SIM"},
        "version": "test",
    }
    if walker is not None:
        header["walker"] = walker
    if plan is not None:
        header["plan"] = plan
    w.header(**header)
    t = t0
    backward = forward = 0.0
    max_incline = 0.0
    for i, ph in enumerate(profile.phase):
        w.record(
            "event",
            t,
            event="phase_started",
            message=ph.cue,
            phase=ph.name,
            phase_index=i,
            direction=ph.direction,
            speed_kmh=ph.speed_kmh,
            incline_pct=ph.incline_pct,
        )
        length = ph.duration_s
        if stop_in_phase == i:
            length = ph.duration_s / 2
        speed = ph.speed_kmh
        if slow_in_phase == i and slow_to is not None:
            w.record(
                "event",
                t + 10,
                event="override",
                message="Speed changed at the treadmill",
                quantity="speed",
                value=slow_to,
                reason="changed at the console",
            )
        for k in range(0, int(length), 5):
            if slow_in_phase == i and slow_to is not None and k >= 15:
                speed = slow_to
            w.record(
                "telemetry",
                t + k,
                elapsed_s=k,
                speed_kmh=speed,
                incline_pct=ph.incline_pct,
                phase=ph.name,
                direction=ph.direction,
            )
        if ph.direction == "backward":
            backward += length
        else:
            forward += length
        max_incline = max(max_incline, ph.incline_pct)
        t += length
        if stop_in_phase == i:
            break
    if footer:
        w.footer(
            outcome,
            {
                "duration_s": round(t - t0, 1),
                "backward_s": backward,
                "forward_s": forward,
                "max_incline_pct": max_incline,
            },
        )
    else:
        w.close()
    for i, fb in enumerate(feedback):
        append_feedback(w.path, fb, started + timedelta(minutes=30 + i))
    return w.path


def coach(
    directory: Path,
    walkers: list[WalkerConfig] | None = None,
    safety: SafetyConfig | None = None,
) -> Coach:
    return Coach(
        load_plans(),
        walkers if walkers is not None else [WalkerConfig(name="anna")],
        safety or SafetyConfig(),
        directory,
    )


@dataclass
class Walker:
    """A person who walks today's session of a plan and reports how it went."""

    coach: Coach
    name: str = "anna"
    days: list[Today] = field(default_factory=list)

    def walk(
        self,
        plan: str | None,
        when: datetime,
        *,
        outcome: str = "completed",
        slow_to: float | None = None,
        pain_before: int | None = None,
        rating: str | None = None,
        pain: int | None = None,
        device: DeviceRanges | None = None,
    ) -> Today:
        today = self.coach.today(self.name, plan, when, pain_before=pain_before, device=device)
        profile = today.profile
        back = [i for i, p in enumerate(profile.phase) if p.direction == "backward"]
        reports = []
        if pain_before is not None:
            reports.append(Feedback(when="before", pain=pain_before))
        if rating is not None or pain is not None:
            reports.append(Feedback(when="after", rating=rating, pain=pain))  # type: ignore[arg-type]
        log_session(
            self.coach.sessions_dir,
            profile,
            when,
            walker=self.name,
            plan=today.header_plan,
            outcome=outcome,
            stop_in_phase=back[-1] if outcome in ("stopped", "stopped_by_treadmill") else None,
            slow_in_phase=back[0] if slow_to is not None else None,
            slow_to=slow_to,
            feedback=reports,
        )
        self.days.append(today)
        return today


def mwf(weeks: int, start: datetime = T0) -> list[datetime]:
    """Mondays, Wednesdays and Fridays at 9:00 for ``weeks`` weeks."""
    return [start + timedelta(days=7 * w + d) for w in range(weeks) for d in (0, 2, 4)]
