"""The FTMS client over any GATT transport: capabilities, telemetry, the control point.

This is the treadmill port's one implementation for live devices. The transport decides
whether bytes travel through bleak/BlueZ or straight into the in-process simulator; every
protocol rule lives here once (FTMS.md §8.3, §8.4).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from retrotread.clock import Clock
from retrotread.errors import AttError, ControlError, DecodeError, WrongDevice
from retrotread.ftms import control as cp
from retrotread.ftms import uuids
from retrotread.ftms.features import (
    Features,
    SupportedRange,
    decode_features,
    decode_incline_range,
    decode_speed_range,
)
from retrotread.ftms.status import (
    StatusOp,
    TrainingStatusFrame,
    decode_machine_status,
    decode_training_status,
)
from retrotread.ftms.treadmill_data import TreadmillDataAssembler, decode_treadmill_data
from retrotread.link.control_point import (
    CommandTimeout,
    ControlPoint,
    ControlRefused,
    Superseded,
)
from retrotread.link.events import (
    BadFrame,
    Capabilities,
    LinkDown,
    LinkEvent,
    LinkUp,
    Listener,
    RawFrame,
    StatusChanged,
    Telemetry,
    TrainingChanged,
)
from retrotread.link.transport import GattTransport

log = logging.getLogger(__name__)

__all__ = ["CommandTimeout", "ControlRefused", "FtmsTreadmill", "Superseded"]


class FtmsTreadmill:
    """A treadmill reached through a GATT transport.

    Listeners get every event synchronously from the transport's callbacks; they must only
    hand the event on (queue, future), never block or raise.
    """

    def __init__(
        self,
        transport: GattTransport,
        clock: Clock,
        *,
        pace_width: int = 1,
        command_timeout_s: float = 5.0,
        stop_wait_s: float = 1.5,
        cccd_stagger_s: float = 0.0,
    ) -> None:
        self.transport = transport
        self.clock = clock
        self.pace_width = pace_width
        self.command_timeout_s = command_timeout_s
        self.cccd_stagger_s = cccd_stagger_s
        self.capabilities: Capabilities | None = None
        self.last_data_at: float | None = None
        self._listeners: list[Listener] = []
        self._assembler = TreadmillDataAssembler()
        self._up = False
        self._connecting = False
        self.control = ControlPoint(
            self._write_control,
            clock,
            timeout_s=command_timeout_s,
            urgent_wait_s=stop_wait_s,
            on_broken=self._control_broken,
            on_write=self._log_control_write,
        )

    @property
    def has_control(self) -> bool:
        return self.control.has_control

    # ------------------------------------------------------------------ events

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Register ``listener``; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: LinkEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a listener bug must not break the link
                log.exception("link listener failed on %s", type(event).__name__)

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_connected(self) -> bool:
        return self._up and self.transport.is_connected

    async def connect(self) -> Capabilities:
        """Connect, read capabilities, subscribe (FTMS.md §8.4 steps 1-3)."""
        self.transport.set_disconnected_callback(self._on_transport_down)
        self._connecting = True
        await self.transport.connect()
        try:
            caps = await self._read_capabilities()
            chars = self.transport.characteristics()
            for uuid in (uuids.TREADMILL_DATA, uuids.MACHINE_STATUS, uuids.TRAINING_STATUS):
                if uuid in chars:
                    await self.transport.start_notify(uuid, self._on_notify)
                    if self.cccd_stagger_s:
                        await self.clock.sleep(self.cccd_stagger_s)
            if uuids.CONTROL_POINT in chars:
                await self.transport.start_notify(uuids.CONTROL_POINT, self._on_notify)
            training = await self._read_training_status()
        except BaseException:
            self._connecting = False
            await self.transport.disconnect()
            raise
        self._connecting = False
        self.capabilities = caps
        self._assembler.reset()
        self.control.open()
        self._up = True
        self.last_data_at = self.clock.monotonic()
        self._emit(LinkUp(caps, self.clock.monotonic()))
        if training is not None:
            # What the belt is doing now (stopped while we were away?), right after LinkUp.
            self._emit(TrainingChanged(training, self.clock.monotonic()))
        return caps

    async def _read_training_status(self) -> TrainingStatusFrame | None:
        props = self.transport.characteristics().get(uuids.TRAINING_STATUS, ())
        if "read" not in props:
            return None
        try:
            data = await self.transport.read(uuids.TRAINING_STATUS)
            self._emit(RawFrame("rx", "2ad3", data, self.clock.monotonic()))
            return decode_training_status(data)
        except (AttError, DecodeError) as exc:
            log.debug("training status not readable: %s", exc)
            return None

    async def disconnect(self) -> None:
        """Release the link (always call after a loss: bleak otherwise leaks its bus socket)."""
        was_up = self._up
        self._down("disconnected by retrotread")
        await self.transport.disconnect()
        if was_up:
            self._emit(LinkDown("disconnected by retrotread", self.clock.monotonic()))

    def declare_lost(self, reason: str) -> None:
        """Mark the link dead without waiting for the transport (silence watchdog)."""
        if self._up:
            self._down(reason)
            self._emit(LinkDown(reason, self.clock.monotonic()))

    def _down(self, reason: str = "disconnected") -> None:
        self._up = False
        self._assembler.reset()
        self.control.close(reason)

    def _on_transport_down(self, reason: str) -> None:
        if self._up:
            self._down(reason)
            self._emit(LinkDown(reason, self.clock.monotonic()))

    def _control_broken(self, reason: str) -> None:
        """FTMS.md §8.3 rule 4: a control point timeout means disconnect and reconnect.

        Declared lost like a silent link: the supervisor disconnects and reconnects.
        """
        self.declare_lost(f"the control point stopped answering ({reason})")

    def _log_control_write(self, request: bytes) -> None:
        self._emit(RawFrame("tx", "2ad9", request, self.clock.monotonic()))

    async def _write_control(self, request: bytes) -> None:
        await self.transport.write(uuids.CONTROL_POINT, request, response=True)

    async def _read_capabilities(self) -> Capabilities:
        chars = self.transport.characteristics()
        warnings: list[str] = []

        async def read(uuid: str, decode: Callable[[bytes], object]) -> object | None:
            if uuid not in chars or "read" not in chars[uuid]:
                return None
            try:
                data = await self.transport.read(uuid)
                self._emit(RawFrame("rx", uuids.short_name(uuid), data, self.clock.monotonic()))
                return decode(data)
            except (AttError, DecodeError) as exc:
                warnings.append(f"{uuids.short_name(uuid)}: {exc}")
                return None

        if uuids.FEATURE not in chars:
            raise WrongDevice(f"{self.transport.address} has no Fitness Machine Feature (0x2ACC)")
        features = await read(uuids.FEATURE, decode_features)
        speed = await read(uuids.SPEED_RANGE, decode_speed_range)
        incline = await read(uuids.INCLINE_RANGE, decode_incline_range)
        assert features is None or isinstance(features, Features)
        assert speed is None or isinstance(speed, SupportedRange)
        assert incline is None or isinstance(incline, SupportedRange)
        if features and features.incline_target and incline is None:
            # FTMS.md §12 #22: claims incline targets but has no range characteristic.
            warnings.append("inclination target claimed but no 0x2AD5 range: incline disabled")
        info: dict[str, str] = {}
        for uuid, key in uuids.DEVICE_INFORMATION_FIELDS.items():
            value = await read(uuid, lambda b: b.decode("utf-8", errors="replace").strip("\x00 "))
            if isinstance(value, str) and value:
                info[key] = value
        return Capabilities(
            name=self.transport.name,
            address=self.transport.address,
            features=features,
            speed_range=speed,
            incline_range=incline,
            device_info=info,
            warnings=tuple(warnings),
        )

    # ------------------------------------------------------------------ inbound

    def _on_notify(self, uuid: str, value: bytes) -> None:
        now = self.clock.monotonic()
        data = bytes(value)
        short = uuids.short_name(uuid)
        self._emit(RawFrame("rx", short, data, now))
        if self._connecting and uuid != uuids.CONTROL_POINT:
            # Notifications flow while connect() still reads and subscribes: they belong
            # to no link yet (LinkUp comes first), and a stale status replayed on subscribe
            # (FTMS.md §12 #17) is one of them. (After a loss they still tell what the
            # treadmill did, until the transport is gone.)
            return
        try:
            if uuid == uuids.TREADMILL_DATA:
                self.last_data_at = now
                frame = decode_treadmill_data(data, self.pace_width)
                record = self._assembler.feed(frame, now)
                if record is not None:
                    self._emit(Telemetry(record, now))
            elif uuid == uuids.MACHINE_STATUS:
                status = decode_machine_status(data)
                if status.op in (StatusOp.CONTROL_PERMISSION_LOST, StatusOp.RESET):
                    self.control.control_lost()
                self._emit(StatusChanged(status, now))
            elif uuid == uuids.TRAINING_STATUS:
                self._emit(TrainingChanged(decode_training_status(data), now))
            elif uuid == uuids.CONTROL_POINT:
                self.control.indication(cp.decode_control_response(data))
        except DecodeError as exc:
            log.debug("undecodable frame: %s", exc)
            self._emit(BadFrame(exc, now))

    # ------------------------------------------------------------------ control point

    def submit(self, request: bytes, *, urgent: bool = False) -> asyncio.Future[cp.ControlResponse]:
        """Queue one Control Point request; see ``ControlPoint.submit``."""
        return self.control.submit(request, urgent=urgent)

    def withdraw(self, future: asyncio.Future[cp.ControlResponse], why: str) -> bool:
        """Take back one request not yet on the wire; see ``ControlPoint.withdraw``."""
        return self.control.withdraw(future, why)

    def cancel_queued(self, why: str) -> None:
        """Drop every Control Point request still waiting; see ``ControlPoint``."""
        self.control.cancel_queued(why)

    async def _run(self, request: bytes, *, urgent: bool = False) -> None:
        response = await self.submit(request, urgent=urgent)
        if not response.ok:
            name = cp.op_name(request[0])
            raise ControlError(name, f"treadmill answered {response.result_name}", response.result)

    async def request_control(self) -> None:
        """Write Request Control and await its result; raises ControlRefused if refused."""
        response = await self.submit(cp.request_control())
        if not response.ok:
            raise ControlRefused(
                "request_control",
                f"treadmill refused control ({response.result_name})",
                response.result,
            )
        self.control.has_control = True

    async def set_speed(self, kmh: float) -> None:
        await self._run(cp.set_target_speed(kmh))

    async def set_incline(self, pct: float) -> None:
        await self._run(cp.set_target_incline(pct))

    async def start(self) -> None:
        await self._run(cp.start_or_resume())

    async def pause(self) -> None:
        """FTMS Pause, ahead of every waiting setpoint."""
        await self._run(cp.pause(), urgent=True)

    async def reset(self) -> None:
        await self._run(cp.reset())
        self.control.control_lost()

    async def stop(self) -> None:
        """FTMS Stop, ahead of everything waiting (SPEC.md §2 "Stop wins")."""
        await self._run(cp.stop(), urgent=True)
