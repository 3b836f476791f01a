"""What a session adds up to: distance, time each way, peaks, heart rate (typed, bounded)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retrotread.ftms.treadmill_data import TreadmillData
from retrotread.profiles.model import Direction
from retrotread.service.heart_rate import Reading

MAX_SAMPLE_GAP_S = 5.0
"""A longer gap between samples (a link loss) is not counted as walking."""


@dataclass
class SessionStats:
    """Running totals from Treadmill Data samples; memory does not grow with the session."""

    distance_m: float = 0.0
    backward_s: float = 0.0
    forward_s: float = 0.0
    max_speed_kmh: float = 0.0
    max_incline_pct: float = 0.0
    energy_kcal: int | None = None
    overrides: int = 0
    interruptions: int = 0
    heart_rate_sum: int = 0
    heart_rate_samples: int = 0
    max_heart_rate_bpm: int | None = None
    heart_rate_from_strap: int = 0  # samples whose heart rate came from the strap
    hr_cap_episodes: int = 0
    _last_t: float | None = None
    _device_distance: float | None = None
    _distance_offset: float = 0.0

    def add(
        self,
        t: float,
        record: TreadmillData,
        direction: Direction | None,
        heart: Reading | None = None,
    ) -> None:
        """Account one sample taken at ``t`` while walking ``direction``.

        ``heart`` is the heart rate in use (strap or treadmill); None: the record's own.
        """
        if record.distance_m is not None:
            d = float(record.distance_m)
            if self._device_distance is None:
                self._distance_offset = -d  # the console's counter started before us
            elif d < self._device_distance:  # the console reset its counter
                self._distance_offset += self._device_distance
            self._device_distance = d
            self.distance_m = max(self.distance_m, d + self._distance_offset)
        speed = record.speed_kmh or 0.0
        if self._last_t is not None and speed > 0:
            dt = min(t - self._last_t, MAX_SAMPLE_GAP_S)
            if record.distance_m is None:
                self.distance_m += speed / 3.6 * dt
            if direction == "backward":
                self.backward_s += dt
            else:
                self.forward_s += dt
        self._last_t = t
        self.max_speed_kmh = max(self.max_speed_kmh, speed)
        self.max_incline_pct = max(self.max_incline_pct, record.incline_pct or 0.0)
        if record.energy_kcal is not None:
            self.energy_kcal = record.energy_kcal
        bpm = record.heart_rate_bpm if heart is None else heart.bpm
        if bpm:
            self.heart_rate_sum += bpm
            self.heart_rate_samples += 1
            self.max_heart_rate_bpm = max(self.max_heart_rate_bpm or 0, bpm)
            if heart is not None and heart.source == "strap":
                self.heart_rate_from_strap += 1

    @property
    def mean_heart_rate_bpm(self) -> int | None:
        if not self.heart_rate_samples:
            return None
        return round(self.heart_rate_sum / self.heart_rate_samples)

    @property
    def heart_rate_source(self) -> str | None:
        """Where the session's heart rate came from: strap, treadmill, or both in turn."""
        if not self.heart_rate_samples:
            return None
        if self.heart_rate_from_strap == self.heart_rate_samples:
            return "strap"
        return "treadmill" if not self.heart_rate_from_strap else "strap+treadmill"

    def summary(self, duration_s: float, phases_reached: int, message: str) -> dict[str, Any]:
        """The footer's ``summary`` (SPEC.md §5)."""
        return {
            "duration_s": round(duration_s, 1),
            "distance_m": round(self.distance_m, 1),
            "backward_s": round(self.backward_s, 1),
            "forward_s": round(self.forward_s, 1),
            "max_speed_kmh": round(self.max_speed_kmh, 2),
            "max_incline_pct": round(self.max_incline_pct, 1),
            "energy_kcal": self.energy_kcal,
            "mean_heart_rate_bpm": self.mean_heart_rate_bpm,
            "max_heart_rate_bpm": self.max_heart_rate_bpm,
            "heart_rate_source": self.heart_rate_source,
            "hr_cap_episodes": self.hr_cap_episodes,
            "phases_reached": phases_reached,
            "overrides": self.overrides,
            "interruptions": self.interruptions,
            "message": message,
        }
