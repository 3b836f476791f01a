"""Capped exponential backoff for reconnect loops (treadmill link, MQTT broker)."""

from __future__ import annotations

import random


class Backoff:
    """Capped exponential backoff with jitter: a delay drawn uniformly from [cap/2, cap].

    The cap doubles per attempt from ``initial_s`` up to ``max_s``. Half of it is kept so
    that a retry never comes at once (this is "equal jitter", not "full jitter", which
    would draw from [0, cap]); the other half spreads daemons restarted together.
    """

    def __init__(
        self, initial_s: float = 1.0, max_s: float = 60.0, rng: random.Random | None = None
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        cap = min(self.max_s, self.initial_s * 2 ** max(0, attempt - 1))
        return self.rng.uniform(cap / 2, cap)
