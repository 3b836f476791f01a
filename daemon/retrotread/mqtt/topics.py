"""The MQTT topic names of SPEC.md §3, derived from one base topic."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    base: str

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def event(self) -> str:
        return f"{self.base}/event"

    @property
    def profiles(self) -> str:
        return f"{self.base}/profiles"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"

    @property
    def cmd_result(self) -> str:
        return f"{self.base}/cmd/result"

    @property
    def walker_current(self) -> str:
        """The current walker's status (docs/plans.md §7): what HA's walker entities read."""
        return f"{self.base}/walker"

    def walker(self, name: str) -> str:
        return f"{self.base}/walker/{name}"
