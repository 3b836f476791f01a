"""A session log turned into samples, phases and totals: what summary, export and plot use."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from retrotread.session.log import SessionLog, SessionLogError, read_session


@dataclass(frozen=True)
class Sample:
    t: float
    speed_kmh: float | None
    incline_pct: float | None
    distance_m: float | None
    heart_rate_bpm: int | None
    energy_kcal: int | None
    phase: str | None
    direction: str | None
    heart_rate_source: str | None = None  # "strap" or "treadmill" (logs before: unknown)


@dataclass
class PhaseStats:
    index: int
    name: str
    direction: str
    start_t: float
    end_t: float
    distance_m: float = 0.0
    mean_speed_kmh: float | None = None
    mean_incline_pct: float | None = None
    mean_heart_rate_bpm: int | None = None
    max_heart_rate_bpm: int | None = None
    max_speed_kmh: float | None = None

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_t - self.start_t)


@dataclass
class SessionView:
    log: SessionLog
    started_at: datetime
    profile: str
    title: str
    samples: list[Sample]
    phases: list[PhaseStats] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.log.path

    @property
    def outcome(self) -> str:
        return self.log.outcome

    @property
    def walker(self) -> str | None:
        """Who walked it (the header's ``walker``, docs/plans.md §6), when it says."""
        w = (self.log.header or {}).get("walker")
        return w if isinstance(w, str) and w else None

    @property
    def plan_level(self) -> str | None:
        """``retro-start flat 4`` for a plan session (the header's ``plan``)."""
        plan = (self.log.header or {}).get("plan")
        if not isinstance(plan, dict) or not isinstance(plan.get("name"), str):
            return None
        return f"{plan['name']} {plan.get('stage', '?')} {plan.get('level', '?')}"

    @property
    def interrupted(self) -> bool:
        return self.log.interrupted

    @property
    def duration_s(self) -> float:
        return self.log.duration_s

    @property
    def distance_m(self) -> float:
        d = [s.distance_m for s in self.samples if s.distance_m is not None]
        return max(d, default=0.0)

    @property
    def backward_s(self) -> float:
        return sum(p.duration_s for p in self.phases if p.direction == "backward")

    @property
    def energy_kcal(self) -> int | None:
        e = [s.energy_kcal for s in self.samples if s.energy_kcal is not None]
        return (max(e) - min(e)) if e else None

    @property
    def heart_rates(self) -> list[int]:
        return heart_rates(self.samples)

    @property
    def heart_rate_sources(self) -> list[str]:
        """Where the heart rate came from ("strap", "treadmill"), most used first."""
        counts: dict[str, int] = {}
        for s in self.samples:
            if s.heart_rate_bpm and s.heart_rate_source:
                counts[s.heart_rate_source] = counts.get(s.heart_rate_source, 0) + 1
        return sorted(counts, key=lambda k: -counts[k])

    @property
    def heart_rate_cap_bpm(self) -> int | None:
        """The session's heart-rate cap (README "Heart-rate cap"), when it had one."""
        block = (self.log.header or {}).get("heart_rate")
        cap = block.get("cap_bpm") if isinstance(block, dict) else None
        return int(cap) if isinstance(cap, int | float) and not isinstance(cap, bool) else None

    @property
    def hr_cap_events(self) -> list[dict[str, Any]]:
        return [e for e in self.log.of("event") if e.get("event") == "hr_cap"]


def heart_rates(samples: Iterable[Sample]) -> list[int]:
    """The heart-rate readings among ``samples`` (absent or 0: no reading)."""
    return [s.heart_rate_bpm for s in samples if s.heart_rate_bpm]


def mean_bpm(rates: Sequence[int]) -> int | None:
    """The mean of heart-rate readings in whole beats per minute; None without any."""
    return round(sum(rates) / len(rates)) if rates else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def analyse(log: SessionLog) -> SessionView:
    """Samples from telemetry records, phases from phase_started events."""
    header = log.header or {}
    started_at = log.started_at or datetime.fromtimestamp(log.path.stat().st_mtime, UTC)
    profile = header.get("profile") or {}
    samples = [
        Sample(
            t=float(r.get("t", 0.0)),
            speed_kmh=_num(r.get("speed_kmh")),
            incline_pct=_num(r.get("incline_pct")),
            distance_m=_num(r.get("distance_m")),
            heart_rate_bpm=int(r["heart_rate_bpm"]) if _num(r.get("heart_rate_bpm")) else None,
            energy_kcal=int(r["energy_kcal"]) if _num(r.get("energy_kcal")) is not None else None,
            phase=r.get("phase"),
            direction=r.get("direction"),
            heart_rate_source=r.get("heart_rate_source"),
        )
        for r in log.of("telemetry")
    ]
    view = SessionView(
        log,
        started_at,
        str(profile.get("name", "?")),
        str(profile.get("title") or profile.get("name", "?")),
        samples,
    )
    starts = [e for e in log.of("event") if e.get("event") == "phase_started"]
    end = log.duration_s
    for i, e in enumerate(starts):
        stop = float(starts[i + 1]["t"]) if i + 1 < len(starts) else end
        ph = PhaseStats(
            index=int(e.get("phase_index", i)),
            name=str(e.get("phase", f"phase {i + 1}")),
            direction=str(e.get("direction", "forward")),
            start_t=float(e["t"]),
            end_t=stop,
        )
        inside = [s for s in samples if ph.start_t <= s.t < stop]
        speeds = [s.speed_kmh for s in inside if s.speed_kmh is not None]
        inclines = [s.incline_pct for s in inside if s.incline_pct is not None]
        hrs = heart_rates(inside)
        dist = [s.distance_m for s in inside if s.distance_m is not None]
        ph.distance_m = (max(dist) - min(dist)) if len(dist) > 1 else 0.0
        ph.mean_speed_kmh = sum(speeds) / len(speeds) if speeds else None
        ph.max_speed_kmh = max(speeds) if speeds else None
        ph.mean_incline_pct = sum(inclines) / len(inclines) if inclines else None
        ph.mean_heart_rate_bpm = mean_bpm(hrs)
        ph.max_heart_rate_bpm = max(hrs) if hrs else None
        view.phases.append(ph)
    return view


def load(path: Path) -> SessionView:
    return analyse(read_session(path))


def week_start(d: datetime) -> datetime:
    d = d.astimezone(UTC)
    return datetime(d.year, d.month, d.day, tzinfo=UTC) - timedelta(days=d.weekday())


def backward_by_week(
    directory: Path, now: datetime, walker: str | None = None
) -> tuple[float, float]:
    """Minutes walked backward this week and last week, from every log in ``directory``
    (only ``walker``'s, when given: the header's ``walker``, compared without case)."""
    from retrotread.session.log import list_sessions

    this_week = week_start(now)
    last_week = this_week - timedelta(days=7)
    cur = prev = 0.0
    for p in list_sessions(directory):
        try:
            v = load(p)
        except SessionLogError:
            continue
        if walker is not None and (v.walker or "").casefold() != walker.casefold():
            continue
        if v.started_at >= this_week:
            cur += v.backward_s
        elif v.started_at >= last_week:
            prev += v.backward_s
    return cur / 60, prev / 60
