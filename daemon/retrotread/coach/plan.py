"""Plans (docs/plans.md): stages of levels that turn into today's session for a walker.

A plan is data: each level says how many backward bouts of how long, on what incline and
at what fraction of the walker's own backward speed, and how many completed sessions it
takes to move on. A stage holds the defaults its levels share (warm-up, cool-down,
forward recovery between bouts). The rules that move a walker between levels live in
``coach.progress``; turning a level into a profile lives in ``coach.session``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, model_validator

SLUG = r"^[a-z0-9][a-z0-9-]{0,31}$"

# What a level is when neither it nor its stage says otherwise.
LEVEL_DEFAULTS: dict[str, float | int] = {
    "bouts": 2,
    "bout_s": 120.0,
    "incline_pct": 0.0,
    "speed_factor": 1.0,
    "sessions": 1,
    "flat_s": 0.0,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _LevelFields(_Model):
    """The keys a level sets, and its stage may set for all of its levels."""

    bouts: int | None = Field(default=None, ge=1, le=10, description="backward bouts")
    bout_s: float | None = Field(default=None, ge=30, le=1800, description="each bout's length")
    incline_pct: float | None = Field(default=None, ge=0, le=15)
    speed_factor: float | None = Field(
        default=None, ge=0.5, le=1.2, description="fraction of the walker's backward speed"
    )
    sessions: int | None = Field(
        default=None, ge=1, le=60, description="completed sessions at this level to move on"
    )
    flat_s: float | None = Field(
        default=None, ge=0, le=1800, description="a flat backward bout before hill bouts"
    )


class Level(_LevelFields):
    """One step of a stage."""

    note: str = Field(default="", max_length=200, description="shown with the level")


class Cues(_Model):
    """Spoken-style cues for the generated phases (defaults in ``coach.session``)."""

    warm_up: str | None = Field(default=None, max_length=200)
    backward: str | None = Field(default=None, max_length=200)
    hill: str | None = Field(default=None, max_length=200)
    recovery: str | None = Field(default=None, max_length=200)
    cool_down: str | None = Field(default=None, max_length=200)


class Stage(_LevelFields):
    """A run of levels with one session shape; the levels' shared values are defaults here."""

    name: str = Field(pattern=SLUG)
    title: str = Field(default="", max_length=80)
    warm_up_s: float = Field(default=180.0, ge=30, le=1800)
    warm_up_speed_kmh: float = Field(default=2.5, ge=0.5, le=6.0)
    cool_down_s: float = Field(default=180.0, ge=30, le=1800)
    cool_down_speed_kmh: float = Field(default=2.0, ge=0.5, le=6.0)
    recovery_s: float = Field(default=60.0, ge=30, le=900, description="forward between bouts")
    recovery_speed_kmh: float = Field(default=2.5, ge=0.5, le=6.0)
    ramp_s: float = Field(default=30.0, ge=5, le=300, description="the least ramp per phase")
    cues: Cues = Field(default_factory=Cues)
    level: tuple[Level, ...] = Field(min_length=1, max_length=60)


class Speed(_Model):
    """The walker's own backward speed: a default until their console choices teach it."""

    default_kmh: float = Field(default=2.0, ge=0.5, le=6.0)
    min_kmh: float = Field(default=1.0, ge=0.5, le=6.0)
    max_kmh: float = Field(default=3.5, ge=0.5, le=6.0)
    learn: bool = True
    learn_sessions: int = Field(default=3, ge=1, le=10)
    recent_sessions: int = Field(default=6, ge=1, le=30)

    @model_validator(mode="after")
    def _ordered(self) -> Speed:
        if not self.min_kmh <= self.default_kmh <= self.max_kmh:
            raise ValueError(
                f"needs min_kmh <= default_kmh <= max_kmh, got {self.min_kmh:g}, "
                f"{self.default_kmh:g}, {self.max_kmh:g}"
            )
        return self


class Progression(_Model):
    """The thresholds of the progression rules (docs/plans.md, "Rules")."""

    max_weekly_growth: float = Field(default=0.5, ge=0, le=3)
    gap_days: float = Field(default=10.0, ge=2, le=60)
    holds_to_step_back: int = Field(default=2, ge=1, le=10)
    easy_to_skip: int = Field(default=2, ge=0, le=10)  # 0: never skip a level
    pain_step_back: int = Field(default=5, ge=1, le=10)
    pain_rise_hold: int = Field(default=2, ge=1, le=10)
    pain_rest: int = Field(default=8, ge=1, le=10)
    hard_holds: bool = True

    @model_validator(mode="after")
    def _pain_order(self) -> Progression:
        if self.pain_rest < self.pain_step_back:
            raise ValueError(
                f"pain_rest ({self.pain_rest}) must not be below pain_step_back "
                f"({self.pain_step_back})"
            )
        return self


class Plan(_Model):
    """A named progression; ``name`` (a slug) is what commands use."""

    name: str = Field(pattern=SLUG)
    title: str = Field(default="", max_length=80)
    description: str = Field(default="", max_length=3000)
    sessions_per_week: int = Field(default=3, ge=1, le=7)
    requires: tuple[str, ...] = Field(default=(), max_length=10)
    next: str | None = Field(default=None, pattern=SLUG)
    start_level: int = Field(default=1, ge=1)
    speed: Speed = Field(default_factory=Speed)
    progression: Progression = Field(default_factory=Progression)
    stage: tuple[Stage, ...] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        names = [s.name for s in self.stage]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"stage names must be unique: {', '.join(twice)}")
        if self.start_level > len(self.stage[0].level):
            raise ValueError(
                f"start_level {self.start_level} is past the last level of stage "
                f"{self.stage[0].name!r} ({len(self.stage[0].level)})"
            )
        if self.name in self.requires:
            raise ValueError(f"plan {self.name!r} cannot require itself")
        return self

    @property
    def positions(self) -> int:
        """Levels in all stages: a walker's position is an index into them (0-based)."""
        return sum(len(s.level) for s in self.stage)

    @property
    def start_position(self) -> int:
        return self.start_level - 1

    def locate(self, position: int) -> tuple[int, int]:
        """(stage index, level index) of a position, clamped into the plan."""
        position = min(max(position, 0), self.positions - 1)
        for i, stage in enumerate(self.stage):
            if position < len(stage.level):
                return i, position
            position -= len(stage.level)
        raise AssertionError("unreachable: position clamped above")

    def position_of(self, stage: str, level: int) -> int | None:
        """The position of ``stage`` level ``level`` (1-based), None if there is none."""
        base = 0
        for s in self.stage:
            if s.name == stage:
                return base + level - 1 if 1 <= level <= len(s.level) else None
            base += len(s.level)
        return None

    def spec(self, position: int) -> LevelSpec:
        """The level at ``position`` (clamped into the plan), its stage's defaults filled in."""
        return self._specs[min(max(position, 0), self.positions - 1)]

    @cached_property
    def _specs(self) -> tuple[LevelSpec, ...]:
        return tuple(self._resolve(p) for p in range(self.positions))

    def _resolve(self, position: int) -> LevelSpec:
        si, li = self.locate(position)
        stage = self.stage[si]
        level = stage.level[li]

        def pick(key: str) -> float:
            for source in (level, stage):
                value = getattr(source, key)
                if value is not None:
                    return float(value)
            return float(LEVEL_DEFAULTS[key])

        return LevelSpec(
            plan=self.name,
            stage=stage,
            stage_index=si,
            level_number=li + 1,
            position=min(max(position, 0), self.positions - 1),
            bouts=int(pick("bouts")),
            bout_s=pick("bout_s"),
            incline_pct=pick("incline_pct"),
            speed_factor=pick("speed_factor"),
            sessions=int(pick("sessions")),
            flat_s=pick("flat_s") if pick("incline_pct") > 0 else 0.0,
            note=level.note,
        )

    def summary(self) -> dict[str, object]:
        """One entry of a plan list (CLI, MQTT)."""
        first, last = self.spec(self.start_position), self.spec(self.positions - 1)
        return {
            "name": self.name,
            "title": self.title or self.name,
            "stages": [s.name for s in self.stage],
            "levels": self.positions,
            "sessions_per_week": self.sessions_per_week,
            "backward_min_first": round(first.backward_s / 60, 1),
            "backward_min_last": round(last.backward_s / 60, 1),
            "max_incline_pct": max(self.spec(p).incline_pct for p in range(self.positions)),
            "requires": list(self.requires),
        }


@dataclass(frozen=True)
class LevelSpec:
    """One level, every value resolved: what today's session is built from."""

    plan: str
    stage: Stage
    stage_index: int
    level_number: int  # 1-based within the stage, as a person counts
    position: int
    bouts: int
    bout_s: float
    incline_pct: float
    speed_factor: float
    sessions: int
    flat_s: float
    note: str = ""

    @property
    def backward_s(self) -> float:
        return self.flat_s + self.bouts * self.bout_s

    @property
    def levels_in_stage(self) -> int:
        return len(self.stage.level)

    def label(self) -> str:
        """``flat, level 3 of 9``."""
        return f"{self.stage.name}, level {self.level_number} of {self.levels_in_stage}"
