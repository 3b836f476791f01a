"""The simulated walker's heart: heart rate follows effort, with a lag and noise.

Pure and deterministic for a seed: ``step(dt, speed, incline)`` integrates, ``reading()``
is what a sensor shows. One ``Walker`` is the person on the simulated belt; the simulated
treadmill moves them (its own heart-rate field reads them, as a hand-grip or a paired
console would) and a simulated strap reads the same heart.

The model, from published walking physiology:

- Effort is the oxygen cost of walking, ACSM's walking equation (ACSM's Guidelines for
  Exercise Testing and Prescription): VO2 = 3.5 + 0.1 v + 1.8 v grade, in ml/kg/min with
  v in m/min. Backward walking costs clearly more than forward at the same speed and
  grade (Flynn et al. 1994; Hooper et al. 2004): the walking part is multiplied by
  ``backward_cost`` (1.45 by default).
- The steady-state heart rate rises linearly with VO2 from rest to the maximum at the
  walker's VO2max (the heart-rate reserve tracks the VO2 reserve: Swain & Leutholtz 1997).
- The heart gets there with a first-order lag: faster going up (``tau_up_s``, about 30 s
  for moderate walking) than coming down (``tau_down_s``).

Measurement noise belongs to a sensor, not to the heart: the simulated strap adds its own
(``sim/strap.py``); the treadmill's field reads the heart as it is, in whole beats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def walking_vo2(
    speed_kmh: float, incline_pct: float, *, backward: bool, backward_cost: float
) -> float:
    """Oxygen cost in ml/kg/min of walking at ``speed_kmh`` up ``incline_pct`` (ACSM)."""
    if speed_kmh <= 0:
        return 3.5
    v = speed_kmh * 1000 / 60
    moving = 0.1 * v + 1.8 * v * max(incline_pct, 0.0) / 100
    return 3.5 + moving * (backward_cost if backward else 1.0)


@dataclass
class Walker:
    """One simulated person. ``backward`` is which way they face (they follow the cues)."""

    rest_bpm: float = 65.0
    max_bpm: float = 160.0  # about 208 - 0.7 x 68 years (Tanaka et al. 2001)
    vo2max: float = 24.0  # ml/kg/min: an untrained walker in their sixties
    backward_cost: float = 1.45
    tau_up_s: float = 30.0
    tau_down_s: float = 45.0
    backward: bool = False
    heart_rate_bpm: float = 70.0  # just arrived: a little above rest, settling

    def steady_bpm(self, speed_kmh: float, incline_pct: float) -> float:
        """Where the heart rate settles after a few minutes of this effort."""
        vo2 = walking_vo2(
            speed_kmh, incline_pct, backward=self.backward, backward_cost=self.backward_cost
        )
        reserve = min(1.0, max(0.0, (vo2 - 3.5) / (self.vo2max - 3.5)))
        return self.rest_bpm + (self.max_bpm - self.rest_bpm) * reserve

    def step(self, dt: float, speed_kmh: float, incline_pct: float) -> None:
        """Live ``dt`` seconds at this effort."""
        if dt <= 0:
            return
        goal = self.steady_bpm(speed_kmh, incline_pct)
        tau = self.tau_up_s if goal > self.heart_rate_bpm else self.tau_down_s
        self.heart_rate_bpm += (goal - self.heart_rate_bpm) * (1 - math.exp(-dt / tau))

    def reading(self, noise_bpm: float = 0.0) -> int:
        """The heart rate in whole beats per minute, give or take ``noise_bpm`` of a sensor's
        own error (already drawn by the sensor)."""
        return max(30, round(self.heart_rate_bpm + noise_bpm))
