"""Does the belt follow our setpoints? Tell console overrides from speed-locked firmware.

SPEC.md §2: a sustained mismatch after the settle time means either the walker changed the
value at the console (never fight them: leave that quantity alone) or the firmware answers
success but ignores us (speed-locked, FTMS.md §12 #20/#21: stop with a clear error).
The difference is where the value went: a locked unit stays where it was when we asked,
a walker moves it somewhere we did not ask for, and a slow motor keeps moving our way.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class Verdict(enum.StrEnum):
    OK = "ok"
    OVERRIDE = "override"
    LOCKED = "locked"


@dataclass
class SetpointWatch:
    """Follows one quantity (speed or incline) of one phase."""

    name: str
    tolerance: float
    settle_s: float
    target: float | None = None
    actual: float | None = None
    _unmatched_since: float | None = None
    _origin: float | None = None
    _best_gap: float | None = None
    _last_progress: float | None = None
    _recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=16))

    def commanded(self, value: float, now: float) -> None:
        """We wrote ``value`` as the new target."""
        self._recent.append((now, value))
        self.target = value
        if self.actual is not None and abs(self.actual - value) <= self.tolerance:
            self._clear()
        elif self._unmatched_since is None:
            self._unmatched_since = now
            self._origin = self.actual
            self._best_gap = None if self.actual is None else abs(self.actual - value)
            self._last_progress = now

    def is_our_echo(self, value: float, now: float, window_s: float = 10.0) -> bool:
        """A 'target changed' status carrying a value we recently wrote is our own echo."""
        return any(
            now - t <= window_s and abs(v - value) <= self.tolerance / 2 for t, v in self._recent
        )

    def observed(self, actual: float, now: float) -> Verdict:
        """A telemetry sample; returns what the mismatch (if any) means."""
        self.actual = actual
        if self.target is None:
            return Verdict.OK
        gap = abs(actual - self.target)
        if gap <= self.tolerance:
            self._clear()
            return Verdict.OK
        if self._unmatched_since is None:
            # It drifted away from a target it had reached: someone else moved it.
            self._unmatched_since = now
            self._origin = None
            self._best_gap = gap
            self._last_progress = now
            return Verdict.OK
        if self._best_gap is None or gap < self._best_gap - self.tolerance / 2:
            self._best_gap = gap
            self._last_progress = now
        if now - self._unmatched_since < self.settle_s:
            return Verdict.OK
        assert self._last_progress is not None
        if now - self._last_progress < self.settle_s:
            return Verdict.OK  # still closing in: a slow motor, not a problem
        if self._origin is not None and abs(actual - self._origin) <= self.tolerance:
            return Verdict.LOCKED
        return Verdict.OVERRIDE

    def reset(self) -> None:
        """Forget the target (new phase, pause, or after a verdict was acted on)."""
        self.target = None
        self._clear()

    def _clear(self) -> None:
        self._unmatched_since = None
        self._origin = None
        self._best_gap = None
        self._last_progress = None
