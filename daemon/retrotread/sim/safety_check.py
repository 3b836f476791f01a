"""An independent judge of walker safety (SPEC.md §2), from the treadmill's side only.

It reads what the simulated treadmill accepted on its Control Point (each write with the
treadmill's own state just before it), samples of the belt, and the inputs a test gave:
commands a person sent, and faults (link losses, console actions, reachability). It never
asks the runner what it thinks it did; it shares no code with the runner or the engine.

Rules checked (names are what a violation reports):

- ``step``: a speed or incline setpoint is at most one step from the treadmill's current
  target; from a belt at rest, a speed setpoint is at most the restart speed.
- ``cap``: no setpoint above the safety cap, unless it lowers a target already above it.
- ``interval``: two setpoints of one quantity are at least ``step_interval_s`` apart.
- ``after_stop``: after a Stop reached the treadmill, no setpoint and no Start until a
  person sends ``start`` again.
- ``treadmill_stop_final``: after the treadmill's own stop (console stop, safety key,
  control taken back), no setpoint and no Start until a person sends ``start`` again.
- ``no_restart_without_resume``: no Start after a link loss, a pause, or the treadmill's
  own pause, unless a person sent ``start`` or ``resume`` since.
- ``restart_low``: a Start from rest only when the treadmill's target speed is at most
  the restart speed.
- ``stop_bound``: every ``stop`` a person sent reaches the belt (Stop accepted, or the
  belt stopped at the treadmill) within ``stop_bound_s`` of the treadmill being reachable.
- ``belt_cap``: the belt itself never runs faster than the cap (or the console's choice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from retrotread.sim.treadmill import AcceptedWrite

EPS = 1e-6
SETPOINT_OPS = {0x02: "speed", 0x03: "incline"}


@dataclass(frozen=True)
class Violation:
    t: float
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"t={self.t:.2f} {self.rule}: {self.detail}"


@dataclass(frozen=True)
class Rules:
    """The limits in force, and the treadmill's range (from the test's own settings)."""

    max_speed_kmh: float
    max_incline_pct: float
    speed_step_kmh: float
    incline_step_pct: float
    step_interval_s: float
    speed_min_kmh: float
    stop_bound_s: float = 12.0

    @property
    def restart_speed_kmh(self) -> float:
        """The lowest start: the belt's minimum, or one step when the range starts at 0."""
        return self.speed_min_kmh if self.speed_min_kmh > 0 else self.speed_step_kmh


@dataclass
class Journal:
    """What happened to the treadmill from outside the runner, in time order."""

    commands: list[tuple[float, str]] = field(default_factory=list)
    link_losses: list[float] = field(default_factory=list)
    console: list[tuple[float, str, float]] = field(default_factory=list)
    unreachable: list[tuple[float, float]] = field(default_factory=list)  # [from, to)
    belt: list[tuple[float, float]] = field(default_factory=list)  # (t, physical speed)

    def command(self, t: float, action: str) -> None:
        self.commands.append((t, action))

    def link_lost(self, t: float) -> None:
        self.link_losses.append(t)

    def at_console(self, t: float, action: str, value: float = 0.0) -> None:
        """``action``: stop, safety_key, revoke, pause, start, speed, incline."""
        self.console.append((t, action, value))

    def out_of_reach(self, t0: float, t1: float) -> None:
        self.unreachable.append((t0, t1))

    def sample(self, t: float, speed_kmh: float) -> None:
        self.belt.append((t, speed_kmh))

    def reachable_from(self, t: float) -> float:
        """The first moment at or after ``t`` when the treadmill can be reached."""
        moved = True
        while moved:
            moved = False
            for a, b in self.unreachable:
                if a <= t < b:
                    t, moved = b, True
        return t


def check(
    rules: Rules, writes: Sequence[AcceptedWrite], journal: Journal, end: float
) -> list[Violation]:
    """Every rule, over a run that ended at ``end``; an empty list means it held."""
    out: list[Violation] = []
    out += _setpoints(rules, writes, journal)
    out += _after_events(writes, journal)
    out += _restarts(rules, writes, journal)
    out += _stops(rules, writes, journal, end)
    out += _belt(rules, journal)
    return sorted(out, key=lambda v: v.t)


def _setpoints(rules: Rules, writes: Sequence[AcceptedWrite], journal: Journal) -> list[Violation]:
    out: list[Violation] = []
    last: dict[str, float] = {}
    for w in writes:
        q = SETPOINT_OPS.get(w.data[0]) if w.data else None
        if q is None or len(w.data) < 3:
            continue
        raw = int.from_bytes(w.data[1:3], "little", signed=(q == "incline"))
        value = raw / (100 if q == "speed" else 10)
        if q == "speed":
            before, step, cap = w.target_speed_kmh, rules.speed_step_kmh, rules.max_speed_kmh
            at_rest = w.belt in ("idle", "stopped", "paused") or before <= 0
            if at_rest and value > rules.restart_speed_kmh + EPS:
                out.append(
                    Violation(
                        w.t,
                        "step",
                        f"speed {value:g} from a belt at rest (restart is "
                        f"{rules.restart_speed_kmh:g})",
                    )
                )
            elif not at_rest and abs(value - before) > step + EPS:
                out.append(Violation(w.t, "step", f"speed {before:g} -> {value:g}"))
        else:
            before, step, cap = w.target_incline_pct, rules.incline_step_pct, rules.max_incline_pct
            if abs(value - before) > step + EPS:
                out.append(Violation(w.t, "step", f"incline {before:g} -> {value:g}"))
        if value > cap + EPS and not value < before - EPS:
            out.append(Violation(w.t, "cap", f"{q} {value:g} above the cap {cap:g}"))
        if q in last and w.t - last[q] < rules.step_interval_s - EPS:
            out.append(
                Violation(w.t, "interval", f"{q} written {w.t - last[q]:.3f} s after the last")
            )
        last[q] = w.t
    return out


def _is_start_or_setpoint(w: AcceptedWrite) -> bool:
    return bool(w.data) and w.data[0] in (0x02, 0x03, 0x07)


def _after_events(writes: Sequence[AcceptedWrite], journal: Journal) -> list[Violation]:
    """after_stop and treadmill_stop_final: silence until a person sends start."""
    out: list[Violation] = []
    starts = [t for t, a in journal.commands if a == "start"]
    stops_at = [w.t for w in writes if w.data[:2] == b"\x08\x01"]
    finals = [(t, a) for t, a, _ in journal.console if a in ("stop", "safety_key", "revoke")]
    for w in writes:
        if not _is_start_or_setpoint(w):
            continue
        for t_stop in stops_at:
            if t_stop < w.t and not any(t_stop < t <= w.t for t in starts):
                out.append(
                    Violation(w.t, "after_stop", f"{w.data.hex()} after the stop at {t_stop:.2f}")
                )
                break
        for t_final, what in finals:
            if t_final < w.t and not any(t_final < t <= w.t for t in starts):
                out.append(
                    Violation(
                        w.t,
                        "treadmill_stop_final",
                        f"{w.data.hex()} after the treadmill's own {what} at {t_final:.2f}",
                    )
                )
                break
    return out


def _restarts(rules: Rules, writes: Sequence[AcceptedWrite], journal: Journal) -> list[Violation]:
    out: list[Violation] = []
    blockers = sorted(
        [(t, "link loss") for t in journal.link_losses]
        + [(t, "pause command") for t, a in journal.commands if a == "pause"]
        + [(t, f"console {a}") for t, a, _ in journal.console if a == "pause"]
    )
    unblocks = [t for t, a in journal.commands if a in ("start", "resume")]
    console_starts = [t for t, a, _ in journal.console if a == "start"]
    for w in writes:
        if w.data[:1] != b"\x07":
            continue
        previous = [(t, why) for t, why in blockers if t < w.t]
        if previous:
            t_block, why = previous[-1]
            if not any(t_block < t <= w.t for t in unblocks + console_starts):
                out.append(
                    Violation(
                        w.t,
                        "no_restart_without_resume",
                        f"Start after the {why} at {t_block:.2f} with no start/resume since",
                    )
                )
        at_rest = w.belt in ("idle", "stopped", "paused")
        if at_rest and w.target_speed_kmh > rules.restart_speed_kmh + EPS:
            out.append(
                Violation(
                    w.t,
                    "restart_low",
                    f"Start with the treadmill's target at {w.target_speed_kmh:g} km/h",
                )
            )
    return out


def _stops(
    rules: Rules, writes: Sequence[AcceptedWrite], journal: Journal, end: float
) -> list[Violation]:
    out: list[Violation] = []
    reached = sorted(
        [w.t for w in writes if w.data[:2] == b"\x08\x01"]
        + [t for t, a, _ in journal.console if a in ("stop", "safety_key")]
    )
    for t, action in journal.commands:
        if action != "stop":
            continue
        deadline = journal.reachable_from(t) + rules.stop_bound_s
        if deadline > end:
            continue  # the run ended too soon to judge this one
        if not any(t <= r <= deadline for r in reached):
            out.append(
                Violation(
                    t, "stop_bound", f"stop sent at {t:.2f} not at the belt by {deadline:.2f}"
                )
            )
    return out


def _belt(rules: Rules, journal: Journal) -> list[Violation]:
    console = max((v for _, a, v in journal.console if a == "speed"), default=0.0)
    ceiling = max(rules.max_speed_kmh, console) + 0.05
    worst = max(journal.belt, key=lambda s: s[1], default=(0.0, -math.inf))
    if worst[1] > ceiling:
        return [Violation(worst[0], "belt_cap", f"the belt ran at {worst[1]:g} km/h")]
    return []
