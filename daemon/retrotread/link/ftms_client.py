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
from retrotread.errors import AttError, ControlError, DecodeError, LinkError
from retrotread.ftms import control as cp
from retrotread.ftms import uuids
from retrotread.ftms.features import (
    Features,
    SupportedRange,
    decode_features,
    decode_incline_range,
    decode_speed_range,
)
from retrotread.ftms.status import StatusOp, decode_machine_status, decode_training_status
from retrotread.ftms.treadmill_data import TreadmillDataAssembler, decode_treadmill_data
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

ATT_PROCEDURE_IN_PROGRESS = 0xFE
ATT_CCCD_IMPROPERLY_CONFIGURED = 0xFD


class ControlRefused(ControlError):
    """The treadmill does not let us take control (result 0x05, or Request Control refused)."""


class CommandTimeout(ControlError):
    """No Response Code indication arrived in time (FTMS.md §8.3 rule 4)."""


class Superseded(ControlError):
    """A queued command dropped because a Stop came first."""


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
        cccd_stagger_s: float = 0.0,
    ) -> None:
        self.transport = transport
        self.clock = clock
        self.pace_width = pace_width
        self.command_timeout_s = command_timeout_s
        self.cccd_stagger_s = cccd_stagger_s
        self.capabilities: Capabilities | None = None
        self.has_control = False
        self.last_data_at: float | None = None
        self._listeners: list[Listener] = []
        self._assembler = TreadmillDataAssembler()
        self._lock = asyncio.Lock()
        self._stops_waiting = 0
        self._pending: dict[int, asyncio.Future[cp.ControlResponse]] = {}
        self._up = False

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
        except BaseException:
            await self.transport.disconnect()
            raise
        self.capabilities = caps
        self.has_control = False
        self._assembler.reset()
        self._up = True
        self.last_data_at = self.clock.monotonic()
        self._emit(LinkUp(caps, self.clock.monotonic()))
        return caps

    async def disconnect(self) -> None:
        """Release the link (always call after a loss: bleak otherwise leaks its bus socket)."""
        was_up = self._up
        self._down()
        await self.transport.disconnect()
        if was_up:
            self._emit(LinkDown("disconnected by retrotread", self.clock.monotonic()))

    def declare_lost(self, reason: str) -> None:
        """Mark the link dead without waiting for the transport (silence watchdog)."""
        if self._up:
            self._down()
            self._emit(LinkDown(reason, self.clock.monotonic()))

    def _down(self) -> None:
        self._up = False
        self.has_control = False
        self._assembler.reset()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(LinkError("link lost while waiting for the treadmill"))
        self._pending.clear()

    def _on_transport_down(self, reason: str) -> None:
        if self._up:
            self._down()
            self._emit(LinkDown(reason, self.clock.monotonic()))

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
            raise LinkError(f"{self.transport.address} has no Fitness Machine Feature (0x2ACC)")
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
                    self.has_control = False
                self._emit(StatusChanged(status, now))
            elif uuid == uuids.TRAINING_STATUS:
                self._emit(TrainingChanged(decode_training_status(data), now))
            elif uuid == uuids.CONTROL_POINT:
                response = cp.decode_control_response(data)
                fut = self._pending.get(response.request_op)
                if fut is not None and not fut.done():
                    fut.set_result(response)
                else:
                    log.debug("unexpected control point indication %s", data.hex())
        except DecodeError as exc:
            log.debug("undecodable frame: %s", exc)
            self._emit(BadFrame(exc, now))

    # ------------------------------------------------------------------ control point

    async def request_control(self) -> None:
        """Write Request Control and await its result; raises ControlRefused if refused."""
        async with self._lock:
            await self._request_control_locked()

    async def _request_control_locked(self) -> None:
        response = await self._procedure(cp.request_control())
        if not response.ok:
            raise ControlRefused(
                "request_control",
                f"treadmill refused control ({response.result_name})",
                response.result,
            )
        self.has_control = True

    async def set_speed(self, kmh: float) -> None:
        await self._command(cp.set_target_speed(kmh))

    async def set_incline(self, pct: float) -> None:
        await self._command(cp.set_target_incline(pct))

    async def start(self) -> None:
        await self._command(cp.start_or_resume())

    async def pause(self) -> None:
        await self._command(cp.pause())

    async def reset(self) -> None:
        await self._command(cp.reset())
        self.has_control = False

    async def stop(self) -> None:
        """FTMS Stop, ahead of every queued command (SPEC.md §2 "Stop wins").

        Commands already waiting for the lock give up (Superseded); Stop waits only for a
        procedure already on the wire, whose indication is bounded by the command timeout.
        """
        self._stops_waiting += 1
        acquired = False
        try:
            await self._lock.acquire()
            acquired = True
            self._stops_waiting -= 1
            await self._run_with_control(cp.stop())
        finally:
            if acquired:
                self._lock.release()
            else:
                self._stops_waiting -= 1

    async def _command(self, request: bytes) -> None:
        async with self._lock:
            if self._stops_waiting:
                raise Superseded(cp.op_name(request[0]), "superseded by stop")
            await self._run_with_control(request)

    async def _run_with_control(self, request: bytes) -> None:
        name = cp.op_name(request[0])
        if not self.is_connected:
            # SPEC.md §2: commands are never queued while disconnected.
            raise LinkError(f"{name}: treadmill not connected")
        refused: ControlRefused | None = None
        if not self.has_control:
            try:
                await self._request_control_locked()
            except ControlRefused as exc:
                # FTMS.md §12 #12/#16: some units refuse Request Control yet obey commands.
                refused = exc
        response = await self._procedure(request)
        if response.result == cp.ResultCode.CONTROL_NOT_PERMITTED and refused is None:
            # Control lost without a 0xFF status (FTMS.md §8.4 step 8): ask again once.
            self.has_control = False
            await self._request_control_locked()
            response = await self._procedure(request)
        if response.result == cp.ResultCode.CONTROL_NOT_PERMITTED:
            self.has_control = False
            raise ControlRefused(name, "the treadmill does not give us control", response.result)
        if not response.ok:
            raise ControlError(name, f"treadmill answered {response.result_name}", response.result)

    async def _procedure(self, request: bytes) -> cp.ControlResponse:
        """One write + its Response Code indication; the lock is held by the caller."""
        op = request[0]
        name = cp.op_name(op)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[cp.ControlResponse] = loop.create_future()
        self._pending[op] = fut
        try:
            await self._write_cp(request)
            try:
                async with asyncio.timeout(self.command_timeout_s):
                    return await fut
            except TimeoutError:
                raise CommandTimeout(
                    name, f"no response within {self.command_timeout_s:g} s"
                ) from None
        finally:
            if self._pending.get(op) is fut:
                del self._pending[op]

    async def _write_cp(self, request: bytes) -> None:
        name = cp.op_name(request[0])
        self._emit(RawFrame("tx", "2ad9", request, self.clock.monotonic()))
        try:
            await self.transport.write(uuids.CONTROL_POINT, request, response=True)
        except AttError as exc:
            if exc.code == ATT_CCCD_IMPROPERLY_CONFIGURED:
                raise ControlError(name, "control point indications are not enabled") from exc
            if exc.code == ATT_PROCEDURE_IN_PROGRESS:
                raise ControlError(name, "another control procedure is in progress") from exc
            raise ControlError(name, str(exc)) from exc
