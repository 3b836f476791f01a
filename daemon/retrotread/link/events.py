"""What a treadmill link reports: raw frames, decoded telemetry and status, link loss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from retrotread.errors import DecodeError
from retrotread.ftms.features import Features, SupportedRange
from retrotread.ftms.status import MachineStatus, TrainingStatusFrame
from retrotread.ftms.treadmill_data import TreadmillData


@dataclass(frozen=True)
class Capabilities:
    """What the connected treadmill is and can do (read once after each connect)."""

    name: str | None
    address: str
    features: Features | None
    speed_range: SupportedRange | None
    incline_range: SupportedRange | None
    device_info: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def can_set_speed(self) -> bool:
        return bool(self.features and self.features.speed_target and self.speed_range)

    @property
    def can_set_incline(self) -> bool:
        return bool(self.features and self.features.incline_target and self.incline_range)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "speed_range": _range_list(self.speed_range),
            "incline_range": _range_list(self.incline_range),
            "can_set_speed": self.can_set_speed,
            "can_set_incline": self.can_set_incline,
            "features": self.features.to_dict() if self.features else None,
            "device_info": dict(self.device_info),
            "warnings": list(self.warnings),
        }


def _range_list(r: SupportedRange | None) -> list[float] | None:
    return [r.minimum, r.maximum, r.increment] if r else None


@dataclass(frozen=True)
class RawFrame:
    """Bytes on the wire: ``rx`` received from the treadmill, ``tx`` written to it."""

    direction: Literal["rx", "tx"]
    char: str
    data: bytes
    t: float


@dataclass(frozen=True)
class Telemetry:
    """One complete Treadmill Data record (fragments already merged)."""

    record: TreadmillData
    t: float


@dataclass(frozen=True)
class StatusChanged:
    """A Fitness Machine Status notification."""

    status: MachineStatus
    t: float


@dataclass(frozen=True)
class TrainingChanged:
    """A Training Status notification."""

    training: TrainingStatusFrame
    t: float


@dataclass(frozen=True)
class BadFrame:
    """Bytes from the treadmill that did not decode; logged, never fatal."""

    error: DecodeError
    t: float


@dataclass(frozen=True)
class LinkDown:
    """The link dropped (or the silence watchdog declared it dead)."""

    reason: str
    t: float


@dataclass(frozen=True)
class LinkUp:
    """The link is up and the treadmill's capabilities are known."""

    capabilities: Capabilities
    t: float


LinkEvent = RawFrame | Telemetry | StatusChanged | TrainingChanged | BadFrame | LinkDown | LinkUp
Listener = Callable[[LinkEvent], None]
