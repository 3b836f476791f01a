"""Quiet when idle: outside a session, telemetry goes out only when it says something new.

A treadmill that is switched on sends Treadmill Data 2-5 times a second whether anyone
walks or not, and the daemon spends most of its day like that. Between the runner's
outputs and the MQTT bridge, ``QuietIdle`` passes every sample of a session (and every
sample while the belt moves), and otherwise a sample only when speed, incline, distance
or heart rate changed, a session began or ended, the treadmill or the broker came back,
or ``heartbeat_s`` passed since the last one. States and events always pass. The session
log is not affected: the runner writes it before this filter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from retrotread.clock import Clock

Output = Callable[[str, dict[str, Any]], None]

HEART_RATE_STEP_BPM = 2
"""A resting pulse wanders by a beat per minute all the time; two or more is news."""
_EXACT = ("speed_kmh", "incline_pct", "distance_m")
"""Any change is news: at rest these move only when the walker or the treadmill acts (a
distance reset to 0). Energy is not: some units count a resting burn."""


class QuietIdle:
    """An output listener that forwards to ``forward``, thinning idle telemetry.

    ``heartbeat_s`` is the longest silence while nothing changes; 0 passes every sample.
    """

    def __init__(self, forward: Output, clock: Clock, heartbeat_s: float = 30.0) -> None:
        self.forward = forward
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.passed = 0
        self.held = 0
        self._last: dict[str, Any] | None = None
        self._last_at = 0.0
        self._connected: object = None

    def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "state" and payload.get("connected") != self._connected:
            self._connected = payload.get("connected")
            self._last = None  # the treadmill is back (or gone): its next sample is news
        elif kind == "telemetry" and self.heartbeat_s > 0:
            now = self.clock.monotonic()
            if not self._news(payload, now):
                self.held += 1
                return
            self._last = payload
            self._last_at = now
            self.passed += 1
        self.forward(kind, payload)

    def resend(self) -> None:
        """Let the next sample through whatever it says (e.g. the broker is back)."""
        self._last = None

    def _news(self, payload: dict[str, Any], now: float) -> bool:
        last = self._last
        if last is None or payload.get("session_id") is not None:
            return True
        if (payload.get("speed_kmh") or 0) > 0 or now - self._last_at >= self.heartbeat_s:
            return True
        if last.get("session_id") is not None:
            return True  # the first sample after a session: the values at rest
        if any(payload.get(key) != last.get(key) for key in _EXACT):
            return True
        bpm, was = payload.get("heart_rate_bpm"), last.get("heart_rate_bpm")
        if bpm is None or was is None:
            return bpm != was
        return bool(abs(bpm - was) >= HEART_RATE_STEP_BPM)
