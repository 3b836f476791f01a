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
  control taken back), no setpoint and no Start until a person sends ``start`` again. A
  stop the walker undid at the console before a client could know of it is no stop to it.
- ``no_restart_without_resume``: no Start after a link loss, a pause, or the treadmill's
  own pause, unless a person sent ``start`` or ``resume`` since.

The treadmill's own actions count from the moment a client could know of them: when the
treadmill's status notification was delivered (or, if the link was down then, when the
link came back), plus ``KNOW_S`` for the client to take it in. A write already on the
wire when the walker pressed a button cannot be recalled by anyone.
- ``restart_low``: a Start from rest only when the treadmill's target speed is at most
  the restart speed.
- ``stop_bound``: every ``stop`` a person sent reaches the belt (Stop accepted, or the
  belt stopped at the treadmill) once the treadmill has been reachable for
  ``stop_bound_s`` in all since the command.
- ``belt_cap``: the belt itself never runs faster than the cap (or the console's choice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from retrotread.sim.treadmill import AcceptedWrite


class StepLimitsWithInterval(Protocol):
    """The safety limits the checker needs (``[safety]`` has them all)."""

    @property
    def max_speed_kmh(self) -> float: ...

    @property
    def max_incline_pct(self) -> float: ...

    @property
    def speed_step_kmh(self) -> float: ...

    @property
    def incline_step_pct(self) -> float: ...

    @property
    def step_interval_s(self) -> float: ...


EPS = 1e-6
_ORDER_S = 1e-9
"""Commands sent at one instant are journaled this far apart, to keep their order. A write
at that instant may answer any of them: a command counts for a write up to ``EPS`` after
it (room for a thousand commands at one instant)."""
KNOW_S = 0.3
REFUSED_CONTROL = 0x05  # Result Code "Control Not Permitted"
SETPOINT_OPS = {0x02: "speed", 0x03: "incline"}
STATUS_OF = {
    "stop": b"\x02\x01",
    "pause": b"\x02\x02",
    "safety_key": b"\x03",
    "revoke": b"\xff",
    "start": b"\x04",
    "speed": b"\x05",
    "incline": b"\x06",
}


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

    @classmethod
    def of(cls, limits: StepLimitsWithInterval, speed_min_kmh: float) -> Rules:
        """The rules for ``limits`` (``[safety]`` or a walker's) on a treadmill whose speed
        range starts at ``speed_min_kmh``."""
        return cls(
            max_speed_kmh=limits.max_speed_kmh,
            max_incline_pct=limits.max_incline_pct,
            speed_step_kmh=limits.speed_step_kmh,
            incline_step_pct=limits.incline_step_pct,
            step_interval_s=limits.step_interval_s,
            speed_min_kmh=speed_min_kmh,
        )

    @property
    def restart_speed_kmh(self) -> float:
        """The lowest start: the belt's minimum, or one step when the range starts at 0."""
        return self.speed_min_kmh if self.speed_min_kmh > 0 else self.speed_step_kmh


@dataclass(frozen=True)
class ConsoleAction:
    """Something the walker did at the treadmill: at ``t``, knowable to a client at ``known``."""

    t: float
    known: float
    action: str
    value: float = 0.0
    before: float = 0.0


@dataclass
class Journal:
    """What happened to the treadmill from outside the runner, in time order."""

    commands: list[tuple[float, str]] = field(default_factory=list)
    link_losses: list[float] = field(default_factory=list)
    console_raw: list[tuple[float, str, float, float]] = field(default_factory=list)
    unreachable: list[tuple[float, float]] = field(default_factory=list)  # [from, to)
    belt: list[tuple[float, float, str]] = field(default_factory=list)  # (t, speed, state)
    statuses: list[tuple[float, bytes]] = field(default_factory=list)  # as delivered
    link_ups: list[float] = field(default_factory=list)

    def command(self, t: float, action: str) -> None:
        """A person sent ``action``; several at one instant keep the order they were sent."""
        if self.commands and self.commands[-1][0] >= t:
            t = self.commands[-1][0] + _ORDER_S
        self.commands.append((t, action))

    def link_lost(self, t: float) -> None:
        self.link_losses.append(t)

    def at_console(self, t: float, action: str, value: float = 0.0, before: float = 0.0) -> None:
        """``action``: stop, safety_key, revoke, pause, start; speed or incline (``value``,
        and the treadmill's target ``before`` it)."""
        self.console_raw.append((t, action, value, before))

    def out_of_reach(self, t0: float, t1: float) -> None:
        self.unreachable.append((t0, t1))

    def sample(self, t: float, speed_kmh: float, state: str = "") -> None:
        self.belt.append((t, speed_kmh, state))

    def stopped_at(self, t: float) -> bool:
        """Was the belt stopped (the treadmill's own state) at the last sample before ``t``?"""
        before = [b for b in self.belt if b[0] <= t]
        return bool(before) and before[-1][2] in ("idle", "stopped") and before[-1][1] == 0

    @property
    def console(self) -> list[ConsoleAction]:
        return [ConsoleAction(t, self._knowable(t, a), a, v, b) for t, a, v, b in self.console_raw]

    def _knowable(self, t: float, action: str) -> float:
        """When a client could first know of the walker's ``action`` at ``t``: its status
        notification delivered (or the link back, if it was down), plus ``KNOW_S``."""
        status = STATUS_OF.get(action)
        if status is not None:
            for sent, frame in self.statuses:
                if t - EPS <= sent <= t + 5.0 and frame.startswith(status):
                    return sent + KNOW_S
        if action == "revoke":
            return math.inf  # control taken back while we were away: a reconnect asks again
        later = [u for u in self.link_ups if u >= t]
        return (min(later) if later else math.inf) + KNOW_S

    def after_reachable_for(self, t: float, span: float) -> float:
        """When the treadmill has been reachable for ``span`` seconds in all since ``t``."""
        left = span
        while True:
            t = self.reachable_from(t)
            ahead = [a for a, _ in self.unreachable if a > t]
            gap_starts = min(ahead) if ahead else math.inf
            if t + left <= gap_starts:
                return t + left
            left -= gap_starts - t
            t = gap_starts

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
    console = journal.console
    out: list[Violation] = []
    out += _setpoints(rules, writes, console)
    out += _after_events(writes, journal, console)
    out += _restarts(rules, writes, journal, console)
    out += _stops(rules, writes, journal, console, end)
    out += _belt(rules, journal, console)
    return sorted(out, key=lambda v: v.t)


def _setpoints(
    rules: Rules, writes: Sequence[AcceptedWrite], console: list[ConsoleAction]
) -> list[Violation]:
    out: list[Violation] = []
    last: dict[str, float] = {}
    for w in writes:
        q = SETPOINT_OPS.get(w.data[0]) if w.data else None
        if q is None or len(w.data) < 3:
            continue
        raw = int.from_bytes(w.data[1:3], "little", signed=(q == "incline"))
        value = raw / (100 if q == "speed" else 10)
        # The treadmill as it was when the write reached it; and, if the walker acted so
        # shortly before that no client could know yet, as it was before the walker acted.
        # Either is a fair judge: a write is wrong only if it is wrong in both.
        # Before the walker acted: for speed, before their first action that moves the belt;
        # for incline, before their first incline change (a console start before it does
        # not change the incline, and must not hide it: seed 361193).
        contexts = [_context(w, q, None)]
        moves = (q, "pause", "stop", "safety_key", "start") if q == "speed" else (q,)
        racing = _racing(console, w.t, moves)
        if racing:
            contexts.append(_context(w, q, racing[0]))
        verdicts = [_judge(rules, q, value, *c) for c in contexts]
        if all(v for v in verdicts):
            rule, detail = verdicts[0][0]
            out.append(Violation(w.t, rule, detail))
        if q in last and w.t - last[q] < rules.step_interval_s - EPS:
            out.append(
                Violation(w.t, "interval", f"{q} written {w.t - last[q]:.3f} s after the last")
            )
        if w.result != REFUSED_CONTROL:
            # A write refused for want of control changed nothing: the same value again
            # once control is back is the first that counts (timed from there).
            last[q] = w.t
    return out


def _context(w: AcceptedWrite, q: str, walker: ConsoleAction | None) -> tuple[bool, float]:
    """(belt at rest, target before the write) as the treadmill was, or before ``walker``.

    Before a console start the belt was at rest; before a pause, stop or safety key it was
    moving at the target it had (``before`` is 0 when it was at rest already)."""
    if q == "incline":
        return False, walker.before if walker is not None else w.target_incline_pct
    if walker is None:
        if w.belt == "running" and w.speed_kmh > 0 and w.target_speed_kmh <= 0:
            # Running with no target (started at the console): a belt never runs below the
            # bottom of its range (FTMS.md §12), so that is the speed it holds.
            return False, w.speed_kmh
        at_rest = w.belt in ("idle", "stopped", "paused") or w.target_speed_kmh <= 0
        return at_rest, w.target_speed_kmh
    if walker.action == "start":
        return True, 0.0
    return walker.before <= 0, walker.before


def _judge(
    rules: Rules, q: str, value: float, at_rest: bool, before: float
) -> list[tuple[str, str]]:
    """What is wrong with writing ``value`` to a treadmill in this state (empty: nothing)."""
    wrong: list[tuple[str, str]] = []
    step = rules.speed_step_kmh if q == "speed" else rules.incline_step_pct
    cap = rules.max_speed_kmh if q == "speed" else rules.max_incline_pct
    if q == "speed" and at_rest:
        if value > rules.restart_speed_kmh + EPS:
            wrong.append(
                (
                    "step",
                    f"speed {value:g} from a belt at rest (restart is {rules.restart_speed_kmh:g})",
                )
            )
    elif abs(value - before) > step + EPS:
        wrong.append(("step", f"{q} {before:g} -> {value:g}"))
    if value > cap + EPS and not value < before - EPS:
        wrong.append(("cap", f"{q} {value:g} above the cap {cap:g}"))
    return wrong


def _racing(
    console: list[ConsoleAction], t: float, actions: tuple[str, ...]
) -> list[ConsoleAction]:
    """The walker's ``actions`` that a write at ``t`` could not yet know of."""
    return [c for c in console if c.action in actions and c.t - EPS <= t <= c.known]


def _is_start_or_setpoint(w: AcceptedWrite) -> bool:
    return bool(w.data) and w.data[0] in (0x02, 0x03, 0x07)


def _after_events(
    writes: Sequence[AcceptedWrite], journal: Journal, console: list[ConsoleAction]
) -> list[Violation]:
    """after_stop and treadmill_stop_final: silence until a person sends start."""
    out: list[Violation] = []
    starts = [t for t, a in journal.commands if a == "start"]
    # (from when it binds, from when a start command lifts it, rule, what)
    blocks = [(w.t, w.t, "after_stop", "the stop") for w in writes if w.data[:2] == b"\x08\x01"]
    console_starts = [c.t for c in console if c.action == "start"]
    blocks += [
        (c.known, c.t, "treadmill_stop_final", f"the treadmill's own {c.action}")
        for c in console
        if c.action in ("stop", "safety_key", "revoke")
        # A stop the walker undid at the console (started the belt again) before any client
        # could know of it (the link was down) left no trace to know it by: the belt a
        # client finds is the walker's running one.
        and not (c.action != "revoke" and any(c.t < t <= c.known for t in console_starts))
    ]
    for w in writes:
        if not _is_start_or_setpoint(w):
            continue
        for binds, lifted_after, rule, what in blocks:
            if binds < w.t and not any(lifted_after < t <= w.t + EPS for t in starts):
                out.append(Violation(w.t, rule, f"{w.data.hex()} after {what} at {binds:.2f}"))
                break
    return out


def _restarts(
    rules: Rules,
    writes: Sequence[AcceptedWrite],
    journal: Journal,
    console: list[ConsoleAction],
) -> list[Violation]:
    out: list[Violation] = []
    blockers = sorted(
        [(t, t, "link loss") for t in journal.link_losses]
        + [(t, t, "pause command") for t, a in journal.commands if a == "pause"]
        + [(c.known, c.t, "console pause") for c in console if c.action == "pause"]
    )
    unblocks = [t for t, a in journal.commands if a in ("start", "resume")]
    unblocks += [c.t for c in console if c.action == "start"]
    for w in writes:
        if w.data[:1] != b"\x07":
            continue
        previous = [b for b in blockers if b[0] < w.t]
        if previous:
            _, lifted_after, why = max(previous, key=lambda b: b[1])
            if not any(lifted_after < t <= w.t + EPS for t in unblocks):
                out.append(
                    Violation(
                        w.t,
                        "no_restart_without_resume",
                        f"Start after the {why} at {lifted_after:.2f} with no start/resume since",
                    )
                )
        at_rest = w.belt in ("idle", "stopped", "paused")
        changed = _racing(console, w.t, ("speed",))  # already on the wire: nobody could know
        if at_rest and not changed and w.target_speed_kmh > rules.restart_speed_kmh + EPS:
            out.append(
                Violation(
                    w.t,
                    "restart_low",
                    f"Start with the treadmill's target at {w.target_speed_kmh:g} km/h",
                )
            )
    return out


def _stops(
    rules: Rules,
    writes: Sequence[AcceptedWrite],
    journal: Journal,
    console: list[ConsoleAction],
    end: float,
) -> list[Violation]:
    out: list[Violation] = []
    reached = sorted(
        [w.t for w in writes if w.data[:2] == b"\x08\x01"]
        + [c.t for c in console if c.action in ("stop", "safety_key")]
    )
    for t, action in journal.commands:
        if action != "stop":
            continue
        deadline = journal.after_reachable_for(t, rules.stop_bound_s)
        if deadline > end:
            continue  # the run ended too soon to judge this one
        # A Stop that reached the belt just before (a second stop in a flood) answers too,
        # and a belt that was already stopped needs none.
        if not any(t - 1.0 <= r <= deadline for r in reached) and not journal.stopped_at(t):
            out.append(
                Violation(t, "stop_bound", f"stop at {t:.2f} not at the belt by {deadline:.2f}")
            )
    return out


def _belt(rules: Rules, journal: Journal, console: list[ConsoleAction]) -> list[Violation]:
    chosen = max((c.value for c in console if c.action == "speed"), default=0.0)
    ceiling = max(rules.max_speed_kmh, chosen) + 0.05
    worst = max(journal.belt, key=lambda s: s[1], default=(0.0, -math.inf, ""))
    if worst[1] > ceiling:
        return [Violation(worst[0], "belt_cap", f"the belt ran at {worst[1]:g} km/h")]
    return []
