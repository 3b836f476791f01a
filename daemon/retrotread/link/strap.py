"""A heart-rate strap (Heart Rate Service 0x180D) over any GATT transport.

The second link of the daemon, beside the treadmill's and independent of it: its own
transport, its own supervisor (backoff, silence watchdog), its own events. A strap that
drops, loses skin contact or sends bytes that do not decode never touches the treadmill
link; the session runner only hears about it as heart-rate messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from retrotread.clock import Clock
from retrotread.errors import AttError, DecodeError, WrongDevice
from retrotread.ftms import uuids
from retrotread.ftms.heart_rate import (
    HeartRateMeasurement,
    decode_body_sensor_location,
    decode_heart_rate_measurement,
)
from retrotread.link.events import BadFrame, LinkDown, RawFrame
from retrotread.link.transport import GattTransport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StrapInfo:
    """What the connected strap is (read once after each connect)."""

    name: str | None
    address: str
    location: str | None = None
    device_info: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "location": self.location,
            "device_info": dict(self.device_info),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class StrapUp:
    """The strap is connected and notifying."""

    info: StrapInfo
    t: float


@dataclass(frozen=True)
class HeartRateSample:
    """One Heart Rate Measurement notification, decoded."""

    measurement: HeartRateMeasurement
    t: float


StrapEvent = StrapUp | HeartRateSample | LinkDown | RawFrame | BadFrame
StrapListener = Callable[[StrapEvent], None]


class HeartRateStrap:
    """A heart-rate strap reached through a GATT transport.

    The same lifecycle surface as the treadmill client (``connect``, ``disconnect``,
    ``is_connected``, ``last_data_at``, ``declare_lost``, ``add_listener``), so the same
    supervisor keeps it up. Listeners get every event synchronously; they must only hand
    it on, never block or raise.
    """

    def __init__(self, transport: GattTransport, clock: Clock) -> None:
        self.transport = transport
        self.clock = clock
        self.info: StrapInfo | None = None
        self.last_data_at: float | None = None
        self._listeners: list[StrapListener] = []
        self._up = False

    def add_listener(self, listener: StrapListener) -> Callable[[], None]:
        """Register ``listener``; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: StrapEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a listener bug must not break the link
                log.exception("strap listener failed on %s", type(event).__name__)

    @property
    def is_connected(self) -> bool:
        return self._up and self.transport.is_connected

    async def connect(self) -> StrapInfo:
        """Connect, read what the strap is, subscribe to its measurements."""
        self.transport.set_disconnected_callback(self._on_transport_down)
        await self.transport.connect()
        try:
            chars = self.transport.characteristics()
            if uuids.HEART_RATE_MEASUREMENT not in chars:
                raise WrongDevice(
                    f"{self.transport.address} has no Heart Rate Measurement (0x2A37): "
                    "not a heart-rate strap"
                )
            info = await self._read_info(chars)
            await self.transport.start_notify(uuids.HEART_RATE_MEASUREMENT, self._on_notify)
        except BaseException:
            await self.transport.disconnect()
            raise
        self.info = info
        self._up = True
        self.last_data_at = self.clock.monotonic()
        self._emit(StrapUp(info, self.clock.monotonic()))
        return info

    async def disconnect(self) -> None:
        """Release the link (always call after a loss: bleak otherwise leaks its bus socket)."""
        was_up = self._up
        self._up = False
        await self.transport.disconnect()
        if was_up:
            self._emit(LinkDown("disconnected by retrotread", self.clock.monotonic()))

    def declare_lost(self, reason: str) -> None:
        """Mark the link dead without waiting for the transport (silence watchdog)."""
        if self._up:
            self._up = False
            self._emit(LinkDown(reason, self.clock.monotonic()))

    def _on_transport_down(self, reason: str) -> None:
        if self._up:
            self._up = False
            self._emit(LinkDown(reason, self.clock.monotonic()))

    async def _read_info(self, chars: dict[str, tuple[str, ...]]) -> StrapInfo:
        warnings: list[str] = []
        location: str | None = None

        async def read(uuid: str) -> bytes | None:
            if uuid not in chars or "read" not in chars[uuid]:
                return None
            try:
                data = await self.transport.read(uuid)
            except AttError as exc:
                warnings.append(f"{uuids.short_name(uuid)}: {exc}")
                return None
            self._emit(RawFrame("rx", uuids.short_name(uuid), data, self.clock.monotonic()))
            return data

        raw = await read(uuids.BODY_SENSOR_LOCATION)
        if raw is not None:
            try:
                location = decode_body_sensor_location(raw).name
            except DecodeError as exc:
                warnings.append(f"2a38: {exc}")
        info: dict[str, str] = {}
        for uuid, key in uuids.DEVICE_INFORMATION_FIELDS.items():
            value = await read(uuid)
            text = value.decode("utf-8", errors="replace").strip("\x00 ") if value else ""
            if text:
                info[key] = text
        return StrapInfo(
            self.transport.name, self.transport.address, location, info, tuple(warnings)
        )

    def _on_notify(self, uuid: str, value: bytes) -> None:
        now = self.clock.monotonic()
        data = bytes(value)
        self._emit(RawFrame("rx", uuids.short_name(uuid), data, now))
        if uuid != uuids.HEART_RATE_MEASUREMENT:
            return
        self.last_data_at = now
        try:
            measurement = decode_heart_rate_measurement(data)
        except DecodeError as exc:
            log.debug("undecodable heart-rate frame: %s", exc)
            self._emit(BadFrame(exc, now))
            return
        self._emit(HeartRateSample(measurement, now))
