"""A walker's history, read from the session logs themselves (raw-first: no database).

Each log's header says who walked (``walker``) and, for a plan session, which plan, stage
and level it was, and the backward speed it was built on (``plan``: docs/plans.md,
"Session header"). The events say what happened: ``phase_started``, ``override`` (a
change made at the treadmill's console), the footer the outcome. The feedback sidecar says
how it felt. A log that is cut off, garbled or not a session log is skipped or read up to
where it can be, never an error.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retrotread.coach.feedback import SessionFeedback, read_feedback, sidecar_path
from retrotread.session.log import SessionLog, SessionLogError, list_sessions, read_session

WALKED = ("completed", "finished_early")  # outcomes of a session walked to its end
EARLY = ("finished_early", "stopped", "stopped_by_treadmill")  # the walker ended it
# A console choice counts from this long after the override: the belt is still changing
# speed towards it before that.
SETTLE_S = 3.0
FLAT_PCT = 0.5  # a phase at or below this incline counts as flat


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class SlowDown:
    """The walker slowed a backward phase at the console."""

    phase: str
    target_kmh: float
    chosen_kmh: float


@dataclass
class SessionRecord:
    """What the coach needs to know about one session."""

    path: Path
    started_at: datetime
    walker: str | None
    profile: str
    outcome: str
    plan: str | None = None
    stage: str | None = None
    level: int | None = None
    basis_kmh: float | None = None  # the backward speed a plan session was built on
    backward_s: float = 0.0  # walked backward (from the footer, else from the phases)
    planned_backward_s: float = 0.0
    max_incline_pct: float = 0.0
    slowdowns: list[SlowDown] = field(default_factory=list)
    # The walker's backward speed as chosen at the console, converted to the flat
    # equivalent (a hill phase at 0.8 of the basis: the choice divided by 0.8).
    speed_choices: list[float] = field(default_factory=list)
    feedback: SessionFeedback = field(default_factory=SessionFeedback)

    @property
    def walked(self) -> bool:
        return self.outcome in WALKED

    @property
    def accepted_speed(self) -> float | None:
        """A plan session walked to its end with no console change: its basis speed stood."""
        if self.basis_kmh is not None and self.walked and not self.speed_choices:
            return self.basis_kmh
        return None

    @property
    def speed_evidence(self) -> float | None:
        """What this session says about the walker's own backward speed, if anything."""
        if self.speed_choices:
            return statistics.median(self.speed_choices)
        return self.accepted_speed


def record_from_log(log: SessionLog) -> SessionRecord | None:
    """The coach's view of one log; None when it has no usable header."""
    header = log.header
    if header is None:
        return None
    try:
        started = datetime.fromisoformat(str(header.get("started_at")).replace("Z", "+00:00"))
    except ValueError:
        return None
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    profile = header.get("profile") if isinstance(header.get("profile"), dict) else {}
    assert isinstance(profile, dict)
    phases = [p for p in profile.get("phase", []) if isinstance(p, dict)]
    walker = header.get("walker")
    rec = SessionRecord(
        path=log.path,
        started_at=started.astimezone(UTC),
        walker=walker if isinstance(walker, str) and walker else None,
        profile=str(profile.get("name", "?")),
        outcome=log.outcome,
        planned_backward_s=sum(
            _num(p.get("duration_s")) or 0.0 for p in phases if p.get("direction") == "backward"
        ),
    )
    plan = header.get("plan")
    if isinstance(plan, dict) and isinstance(plan.get("name"), str):
        rec.plan = plan["name"]
        rec.stage = plan.get("stage") if isinstance(plan.get("stage"), str) else None
        level = plan.get("level")
        rec.level = level if isinstance(level, int) and not isinstance(level, bool) else None
        basis = _num(plan.get("speed_kmh"))
        rec.basis_kmh = basis if basis is not None and basis > 0 else None
    _read_events(log, rec, phases)
    summary = (log.footer or {}).get("summary")
    summary = summary if isinstance(summary, dict) else {}
    walked_back = _num(summary.get("backward_s"))
    rec.backward_s = walked_back if walked_back is not None else _backward_from_events(log)
    incline = _num(summary.get("max_incline_pct"))
    rec.max_incline_pct = incline if incline is not None else _max_incline(log)
    return rec


def _read_events(log: SessionLog, rec: SessionRecord, phases: list[dict[str, Any]]) -> None:
    """Console speed changes in backward phases: slow-downs, and the speed chosen."""
    current: dict[str, Any] | None = None
    starts: list[tuple[float, dict[str, Any]]] = []
    for r in log.of("event"):
        t = _num(r.get("t"))
        if t is None:
            continue
        kind = r.get("event")
        if kind == "phase_started":
            current = dict(r)
            index = r.get("phase_index")
            if isinstance(index, int) and 0 <= index < len(phases):
                # The header's profile fills what the event leaves out.
                current = {**phases[index], **current}
            starts.append((t, current))
        elif kind == "override" and r.get("quantity") == "speed" and current is not None:
            if current.get("direction") != "backward":
                continue  # a forward phase says nothing about backward progress
            value = _num(r.get("value"))
            target = _num(current.get("speed_kmh"))
            if value is None or target is None or value <= 0:
                continue
            end = next((s for s, _ in starts if s > t), None)
            chosen = _settled_speed(log, t, current.get("name") or current.get("phase"), end)
            chosen = chosen if chosen is not None else value
            name = str(current.get("phase") or current.get("name") or "?")
            if chosen < target - 0.05:
                rec.slowdowns.append(SlowDown(name, target, round(chosen, 2)))
            factor = _factor(rec, current, target)
            if factor is not None:
                rec.speed_choices.append(chosen / factor)


def read_log(path: Path) -> SessionLog:
    """What the coach needs of a log: its events, and its telemetry only when it matters.

    Most logs are read for their header, events and footer alone (a tenth of the work of
    parsing every frame and sample); one with a console change (the speed chosen is read
    from the telemetry after it) or without a footer (its figures come from the samples)
    is read whole.
    """
    log = read_session(path, kinds=("event",))
    if log.footer is None or any(r.get("event") == "override" for r in log.of("event")):
        log = read_session(path)
    return log


def _factor(rec: SessionRecord, phase: dict[str, Any], target: float) -> float | None:
    """The phase's speed as a fraction of the walker's flat backward speed, if known."""
    if rec.basis_kmh is not None:
        return target / rec.basis_kmh
    incline = _num(phase.get("incline_pct")) or 0.0
    return 1.0 if incline <= FLAT_PCT else None  # a profile's hill phase: unknown


def _settled_speed(log: SessionLog, t: float, phase: Any, end: float | None) -> float | None:
    """The median belt speed from a console change to the end of its phase."""
    speeds = [
        v
        for r in log.of("telemetry")
        if (rt := _num(r.get("t"))) is not None
        and rt >= t + SETTLE_S
        and (end is None or rt < end)
        and (phase is None or r.get("phase") in (None, phase))
        and (v := _num(r.get("speed_kmh"))) is not None
        and v > 0
    ]
    return statistics.median(speeds) if speeds else None


def _backward_from_events(log: SessionLog) -> float:
    """Backward time from the phase events, for a log without a footer summary."""
    starts = [
        (t, r.get("direction"))
        for r in log.of("event")
        if r.get("event") == "phase_started" and (t := _num(r.get("t"))) is not None
    ]
    end = log.duration_s
    total = 0.0
    for i, (t, direction) in enumerate(starts):
        stop = starts[i + 1][0] if i + 1 < len(starts) else end
        if direction == "backward":
            total += max(0.0, stop - t)
    return total


def _max_incline(log: SessionLog) -> float:
    inclines = [v for r in log.of("telemetry") if (v := _num(r.get("incline_pct"))) is not None]
    return max(inclines, default=0.0)


@dataclass
class History:
    """One walker's sessions, oldest first, and what could not be read."""

    walker: str
    sessions: list[SessionRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def of_plan(self, plan: str) -> list[SessionRecord]:
        return [s for s in self.sessions if s.plan == plan]


class HistoryReader:
    """Reads session logs into records, re-reading a file only when it has changed.

    The daemon keeps one: a long history is parsed once, and each new or growing log
    (the session in progress, a new feedback report) is read again.
    """

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[int, int, int, int], SessionRecord | None]] = {}

    def read(self, path: Path) -> SessionRecord | None:
        try:
            st = path.stat()
        except OSError:
            return None
        try:
            fb = sidecar_path(path).stat()
            fb_key = (fb.st_mtime_ns, fb.st_size)
        except OSError:
            fb_key = (0, 0)
        key = (st.st_mtime_ns, st.st_size, *fb_key)
        hit = self._cache.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        try:
            rec = record_from_log(read_log(path))
        except SessionLogError:
            rec = None
        if rec is not None:
            rec.feedback = read_feedback(path)
        self._cache[path] = (key, rec)
        return rec

    def all(self, directory: Path) -> tuple[list[SessionRecord], list[str]]:
        """Every readable session in ``directory``, oldest first, and notes on the rest."""
        records, notes = [], []
        for path in list_sessions(directory):
            rec = self.read(path)
            if rec is None:
                notes.append(f"{path.name}: not a readable session log; skipped")
                continue
            notes.extend(rec.feedback.notes)
            records.append(rec)
        records.sort(key=lambda r: r.started_at)
        return records, notes

    def history(self, directory: Path, walker: str, *, implicit: bool = False) -> History:
        """``walker``'s sessions; with ``implicit``, sessions that name no walker are theirs."""
        records, notes = self.all(directory)
        return History(walker, select(records, walker, implicit=implicit), notes)


def select(
    records: Iterable[SessionRecord], walker: str, *, implicit: bool = False
) -> list[SessionRecord]:
    """The records of ``walker`` (names compared without case)."""
    key = walker.casefold()
    return [
        r
        for r in records
        if (r.walker is not None and r.walker.casefold() == key) or (implicit and r.walker is None)
    ]
