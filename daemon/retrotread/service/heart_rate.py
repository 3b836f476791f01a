"""Which heart rate is in use: the strap's when it has one, else the treadmill's own field.

Pure bookkeeping, fed by the session runner from its inbox (strap samples and link state,
Treadmill Data records) and asked with ``reading(now)``. A reading is usable when it is
recent (``stale_after_s``), non-zero, from a strap with skin contact, and not frozen: a
strap that sends beat-to-beat (RR) intervals and repeats the very same value and intervals
for ``frozen_after_s`` is stuck, not a steady heart (every live beat is a new interval). A
value without intervals (a strap without RR, the treadmill's own field) may be steady for
long: it is never taken for frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from retrotread.ftms.heart_rate import HeartRateMeasurement
from retrotread.profiles.hr_governor import CapSettings

Source = Literal["strap", "treadmill"]


@dataclass(frozen=True)
class Reading:
    """The heart rate in use (``bpm`` None: none), where it comes from, and why not."""

    bpm: int | None
    source: Source | None
    problem: str | None = None


@dataclass
class _Feed:
    """One sensor's latest value and how long it has been the same."""

    bpm: int | None = None
    at: float | None = None
    signature: object = None
    same_since: float | None = None

    def take(self, bpm: int, now: float, signature: object) -> None:
        """A value at ``now``; ``signature`` None: one that cannot tell frozen from steady."""
        if signature is None or signature != self.signature or self.same_since is None:
            self.same_since = now
        self.bpm, self.at, self.signature = bpm, now, signature

    def forget(self) -> None:
        self.bpm = self.at = self.signature = self.same_since = None


class HeartRateSources:
    """The strap (when one is configured) and the treadmill's own heart-rate field."""

    def __init__(
        self,
        *,
        strap_expected: bool = False,
        stale_after_s: float = 5.0,
        frozen_after_s: float = 45.0,
    ) -> None:
        self.strap_expected = strap_expected
        self.stale_after_s = stale_after_s
        self.frozen_after_s = frozen_after_s
        self.strap_connected = False
        self.strap_name: str | None = None
        self.strap_contact: bool | None = None
        self._strap = _Feed()
        self._treadmill = _Feed()
        self._last_source: Source | None = None
        self._last_problem: str | None = None

    # ------------------------------------------------------------------ inputs

    def strap_up(self, name: str | None) -> None:
        self.strap_connected = True
        self.strap_name = name

    def strap_down(self) -> None:
        self.strap_connected = False
        self.strap_contact = None
        self._strap.forget()

    def strap_sample(self, m: HeartRateMeasurement, now: float) -> None:
        self.strap_contact = m.sensor_contact
        if m.sensor_contact is False or m.heart_rate_bpm <= 0:
            self._strap.forget()
            return
        # With beat intervals, every new beat changes the signature: a steady heart that
        # still beats is never taken for a frozen strap. Without them: no frozen check.
        signature = (m.heart_rate_bpm, m.rr_intervals_s) if m.rr_intervals_s else None
        self._strap.take(m.heart_rate_bpm, now, signature)

    def treadmill_sample(self, bpm: int | None, now: float) -> None:
        if bpm is None or bpm <= 0:
            self._treadmill.forget()  # 0: the console has no heart rate (FTMS.md §12)
            return
        self._treadmill.take(bpm, now, None)  # a console's value may hold still for long

    # ------------------------------------------------------------------ the answer

    def _usable(self, feed: _Feed, now: float) -> str | None:
        """None when ``feed`` has a usable value at ``now``, else why not."""
        if feed.bpm is None or feed.at is None:
            return "no reading"
        if now - feed.at > self.stale_after_s:
            return f"no reading for more than {self.stale_after_s:g} s"
        # Frozen: the same value *received* again and again for that long (a strap that
        # sends nothing is stale, not frozen).
        if feed.same_since is not None and feed.at - feed.same_since >= self.frozen_after_s:
            return f"the same value for {self.frozen_after_s:g} s (frozen?)"
        return None

    def reading(self, now: float) -> Reading:
        strap_problem = self._usable(self._strap, now)
        if strap_problem is None:
            return Reading(self._strap.bpm, "strap")
        if self._usable(self._treadmill, now) is None:
            return Reading(self._treadmill.bpm, "treadmill")
        if self.strap_expected:
            if not self.strap_connected:
                why = "the heart-rate strap is not connected"
            elif self.strap_contact is False:
                why = "the strap has no skin contact"
            else:
                why = f"strap: {strap_problem}"
            return Reading(None, None, why)
        return Reading(None, None, "no heart-rate sensor")

    def changed(self, now: float) -> Reading | None:
        """The reading, when its source or problem differs from the last time asked."""
        r = self.reading(now)
        if (r.source, r.problem) == (self._last_source, self._last_problem):
            return None
        self._last_source, self._last_problem = r.source, r.problem
        return r

    def report(self, now: float) -> dict[str, Any]:
        """The heart-rate part of the retained state (the beats themselves are telemetry)."""
        r = self.reading(now)
        return {
            "source": r.source,
            "strap": None
            if not self.strap_expected
            else ("connected" if self.strap_connected else "disconnected"),
            "strap_contact": self.strap_contact,
        }


def cap_settings(limits: object, house: object) -> CapSettings:
    """The cap a session runs under: its limits' ``max_heart_rate_bpm`` (``[safety]``'s, or
    a walker's tighter one, ``coach.walkers.effective_limits``), acting as ``house``
    (``[safety]``) says. Limits without the key (a plain ``Limits``) have no cap."""
    cap = getattr(limits, "max_heart_rate_bpm", None)
    defaults = CapSettings(None)

    def num(key: str, default: float) -> float:
        value = getattr(house, f"heart_rate_{key}", default)
        return float(value) if isinstance(value, int | float) else default

    step_interval = float(getattr(limits, "step_interval_s", 1.0))
    return CapSettings(
        cap_bpm=int(cap) if isinstance(cap, int | float) else None,
        hysteresis_bpm=int(num("hysteresis_bpm", defaults.hysteresis_bpm)),
        step_down_after_s=num("step_down_after_s", defaults.step_down_after_s),
        finish_after_s=num("finish_after_s", defaults.finish_after_s),
        step_every_s=max(step_interval, num("step_every_s", defaults.step_every_s)),
    )
