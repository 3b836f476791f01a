"""The simulated FTMS treadmill: belt and incline physics behind the real FTMS bytes.

SPEC.md §8, FTMS.md §8.3 and §10. The model is synchronous and time-driven: ``advance_to``
integrates the physics up to a point in time and delivers every notification and
indication that is due, in time order, to the connected central's sink. ``run(clock)`` is
the async driver that does so on an injected clock, so tests compress time at will.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

from retrotread.errors import (
    ATT_CCCD_IMPROPERLY_CONFIGURED,
    ATT_PROCEDURE_IN_PROGRESS,
    ATT_WRITE_NOT_PERMITTED,
    AttError,
    DecodeError,
    UnsupportedOpCode,
)
from retrotread.ftms import control as cp
from retrotread.ftms import uuids
from retrotread.ftms.features import (
    INCLINE_RANGE,
    SPEED_RANGE,
    Features,
    MachineFeature,
    SupportedRange,
    TargetFeature,
    encode_features,
    encode_range,
)
from retrotread.ftms.status import StatusOp, TrainingStatus, encode_machine_status
from retrotread.ftms.status import encode_training_status as _encode_training
from retrotread.ftms.treadmill_data import (
    TreadmillData,
    encode_treadmill_data,
    split_treadmill_data,
)
from retrotread.sim.gatt import GattCharacteristic, GattService
from retrotread.sim.peripheral import SimPeripheral
from retrotread.sim.physiology import Walker

BeltState = Literal["idle", "pre_workout", "running", "paused", "stopped"]


@dataclass
class SimConfig:
    """Static description of the simulated unit (what a real treadmill would be built as)."""

    name: str = "RETRO-SIM"
    address: str = "C0:FF:EE:00:00:01"
    speed_min_kmh: float = 0.5
    speed_max_kmh: float = 8.0
    speed_increment_kmh: float = 0.1
    incline_min_pct: float = 0.0
    incline_max_pct: float = 12.0
    incline_increment_pct: float = 0.5
    incline_supported: bool = True
    accel_kmh_per_s: float = 0.5
    decel_kmh_per_s: float = 0.5
    incline_rate_pct_per_s: float = 0.5
    response_lag_s: float = 0.05
    data_interval_s: float = 0.25
    pre_workout_s: float = 3.0
    lenient: bool = False
    echo_status: bool = True
    heart_rate: bool = True
    rssi: int = -58
    manufacturer: str = "retrotread"
    model: str = "SIM-1"
    serial: str = "0001"
    firmware: str = "1.0.0"


@dataclass
class Faults:
    """Fault knobs, changeable while the simulation runs (SPEC.md §8)."""

    refuse_control: bool = False
    refuse_control_result: int = cp.ResultCode.CONTROL_NOT_PERMITTED
    speed_locked: bool = False
    silent: bool = False
    truncate_at: int | None = None
    mtu: int | None = None
    pad_status_to: int = 0
    vendor_extension: bool = False
    advertising: bool = True
    refuse_connect: str | None = None
    drop_link_at: float | None = None
    drop_control_replies: int = 0
    """The next N Control Point indications are never sent: the procedure stays in progress
    on the treadmill (later writes get ATT 0xFE) until the link drops."""
    control_reply_delay_s: float = 0.0
    """Extra time before every Control Point indication (a slow controller)."""


@dataclass(frozen=True)
class AcceptedWrite:
    """A Control Point write the treadmill accepted, with its state just before it acted."""

    t: float
    data: bytes
    belt: str
    target_speed_kmh: float
    target_incline_pct: float
    speed_kmh: float
    result: int | None = None
    """Its Result Code (None: not answered, e.g. a reply dropped by a fault knob)."""


@dataclass(order=True)
class _Out:
    due: float
    seq: int
    uuid: str = field(compare=False)
    value: bytes = field(compare=False)
    ends_procedure: bool = field(default=False, compare=False)


class SimTreadmill(SimPeripheral[SimConfig, Faults]):
    """A GATT-level FTMS treadmill."""

    kind = "treadmill"
    advertised_service = uuids.FITNESS_MACHINE_SERVICE

    def __init__(
        self,
        config: SimConfig | None = None,
        faults: Faults | None = None,
        walker: Walker | None = None,
    ) -> None:
        config = config or SimConfig()
        super().__init__(config, faults or Faults(), _build_services(config))
        self.walker = walker or Walker()
        """The person on the belt: the belt moves them, the heart-rate field reads them."""
        c = self.config
        self.speed_range = _range(
            SPEED_RANGE.minimum.div, c.speed_min_kmh, c.speed_max_kmh, c.speed_increment_kmh, "kmh"
        )
        self.incline_range = _range(
            10, c.incline_min_pct, c.incline_max_pct, c.incline_increment_pct, "pct"
        )
        target = TargetFeature.SPEED_TARGET
        if c.incline_supported:
            target |= TargetFeature.INCLINATION_TARGET
        machine = (
            MachineFeature.TOTAL_DISTANCE
            | MachineFeature.ELEVATION_GAIN
            | MachineFeature.EXPENDED_ENERGY
            | MachineFeature.ELAPSED_TIME
        )
        if c.incline_supported:
            machine |= MachineFeature.INCLINATION
        if c.heart_rate:
            machine |= MachineFeature.HEART_RATE_MEASUREMENT
        self.features = Features(machine, target)

        self.has_control = False
        self.procedure_pending = False
        self._outbox: list[_Out] = []
        self._seq = itertools.count()
        self._next_data = 0.0

        self.state: BeltState = "idle"
        self.training_status = TrainingStatus.IDLE
        self._pre_workout_until = 0.0
        self.target_speed_kmh = 0.0
        self.target_incline_pct = 0.0
        self.speed_kmh = 0.0
        self.incline_pct = 0.0
        self.distance_m = 0.0
        self.elapsed_s = 0.0
        self.energy_kcal = 0.0
        self.elevation_gain_m = 0.0
        self.steps = 0.0
        self._kcal_per_min = 0.0
        self.writes: list[bytes] = []
        """Every Control Point write accepted at ATT level, for tests and benchmarks."""
        self.write_times: list[float] = []
        self.accepted: list[AcceptedWrite] = []
        """The same writes with the treadmill's state before each (for safety checkers)."""
        self.link_downs: list[float] = []
        """When each connection ended, whoever ended it (for safety checkers)."""
        self.link_ups: list[float] = []
        self.status_sent: list[tuple[float, bytes]] = []
        """Fitness Machine Status notifications as delivered (for safety checkers)."""

    @property
    def heart_rate_bpm(self) -> float:
        """The walker's heart rate, as the treadmill's heart-rate field reads it."""
        return self.walker.heart_rate_bpm

    # ------------------------------------------------------------------ GATT values

    def _service_data(self) -> dict[str, bytes]:
        # FTMS.md §2: flags bit 0 = available, machine type bit 0 = treadmill.
        return {uuids.FITNESS_MACHINE_SERVICE: bytes([0x01, 0x01, 0x00])}

    def _link_up(self) -> None:
        self.link_ups.append(self._clock.monotonic() if self._clock else self.now)
        self._next_data = self.now

    def _write(self, uuid: str, data: bytes) -> None:
        if uuid != uuids.CONTROL_POINT:
            raise AttError(ATT_WRITE_NOT_PERMITTED, f"{uuids.short_name(uuid)} is not writable")
        # FTMS 4.16.1 / FTMS.md §8.3 rule 1 and 3: checked before anything executes.
        if self.subscriptions.get(uuid) != "indicate":
            raise AttError(ATT_CCCD_IMPROPERLY_CONFIGURED, "Control Point indications are off")
        self._catch_up()
        if self.procedure_pending:
            raise AttError(ATT_PROCEDURE_IN_PROGRESS, "a Control Point procedure is in progress")
        self.writes.append(data)
        self.write_times.append(self.now)
        self.accepted.append(
            AcceptedWrite(
                self.now,
                data,
                self.state,
                self.target_speed_kmh,
                self.target_incline_pct,
                self.speed_kmh,
            )
        )
        self.procedure_pending = True
        result = self._handle_control(data)
        self.accepted[-1] = dataclasses.replace(self.accepted[-1], result=result)

    # ------------------------------------------------------------------ time

    def _due_times(self) -> list[float]:
        times = []
        if self._outbox:
            times.append(self._outbox[0].due)
        if self.connected:
            times.append(self._next_data)
        if self.state == "pre_workout":
            times.append(self._pre_workout_until)
        return times

    def advance_to(self, t: float) -> None:
        """Integrate physics up to ``t`` and deliver everything due, in time order."""
        while self.now < t:
            next_event = min(
                [t, self.now + 0.05]
                + ([self._outbox[0].due] if self._outbox else [])
                + ([self._next_data] if self.connected else [])
                + ([self.faults.drop_link_at] if self.faults.drop_link_at is not None else [])
            )
            self._physics(max(0.0, next_event - self.now))
            self.now = max(self.now, next_event)
            self._deliver_due()
        self._deliver_due()

    def _deliver_due(self) -> None:
        self._drop_if_due()
        while self._outbox and self._outbox[0].due <= self.now:
            out = heapq.heappop(self._outbox)
            if out.ends_procedure:
                self.procedure_pending = False
            self._send(out.uuid, out.value)
        if self.connected and self.now >= self._next_data:
            self._next_data = self.now + self.config.data_interval_s
            self._send_treadmill_data()

    # ------------------------------------------------------------------ fault knobs

    def pull_safety_key(self) -> None:
        self._catch_up()  # the walker acts now, not at the model's last tick
        self.state = "stopped"
        self.target_speed_kmh = 0.0
        self.speed_kmh = 0.0
        self._status(StatusOp.STOPPED_BY_SAFETY_KEY)
        self._training(TrainingStatus.POST_WORKOUT)

    def stop_at_console(self) -> None:
        self._catch_up()  # the walker acts now, not at the model's last tick
        self.state = "stopped"
        self.target_speed_kmh = 0.0
        self._status(StatusOp.STOPPED_OR_PAUSED_BY_USER, {"control": "stop"})
        self._training(TrainingStatus.POST_WORKOUT)

    def pause_at_console(self) -> None:
        self._catch_up()  # the walker acts now, not at the model's last tick
        self.state = "paused"
        self._status(StatusOp.STOPPED_OR_PAUSED_BY_USER, {"control": "pause"})

    def start_at_console(self) -> None:
        self._catch_up()  # the walker acts now, not at the model's last tick
        self._begin_start()
        self._status(StatusOp.STARTED_OR_RESUMED_BY_USER)

    def set_speed_at_console(self, kmh: float) -> None:
        self._catch_up()
        self.target_speed_kmh = self.speed_range.snap(kmh)
        self._status(StatusOp.TARGET_SPEED_CHANGED, {"target_speed_kmh": self.target_speed_kmh})

    def set_incline_at_console(self, pct: float) -> None:
        self._catch_up()
        self.target_incline_pct = self.incline_range.snap(pct)
        self._status(
            StatusOp.TARGET_INCLINE_CHANGED, {"target_incline_pct": self.target_incline_pct}
        )

    def revoke_control(self) -> None:
        """Another client or the console took control: status 0xFF (FTMS.md §9)."""
        self._catch_up()  # the walker acts now, not at the model's last tick
        self.has_control = False
        self._status(StatusOp.CONTROL_PERMISSION_LOST)

    # ------------------------------------------------------------------ internals

    def _catch_up(self) -> None:
        """Bring the model up to the clock before acting on a request (run() may be asleep)."""
        if self._clock is not None:
            self.advance_to(self._clock.monotonic())

    def _link_down(self) -> None:
        if self._sink is not None:
            self.link_downs.append(self._clock.monotonic() if self._clock else self.now)
        super()._link_down()
        # FTMS 4.16.1: control lasts until disconnection; a pending procedure dies with it.
        self.has_control = False
        self.procedure_pending = False
        self._outbox.clear()

    def _send(self, uuid: str, value: bytes) -> None:
        if self._sink is None or uuid not in self.subscriptions:
            return
        if uuid == uuids.MACHINE_STATUS:
            self.status_sent.append((self.now, value))
        self._sink(uuid, value)

    def _queue(self, uuid: str, value: bytes, delay: float, ends_procedure: bool = False) -> None:
        heapq.heappush(
            self._outbox, _Out(self.now + delay, next(self._seq), uuid, value, ends_procedure)
        )
        self._wake()

    def _status(self, op: StatusOp, values: dict[str, object] | None = None) -> None:
        frame = encode_machine_status(op, values, pad_to=self.faults.pad_status_to)
        self._queue(uuids.MACHINE_STATUS, frame, self.config.response_lag_s / 2)

    def _training(self, status: TrainingStatus) -> None:
        if status == self.training_status:
            return
        self.training_status = status
        self._queue(uuids.TRAINING_STATUS, _encode_training(status), self.config.response_lag_s / 2)

    def _respond(self, op: int, result: int) -> None:
        if self.faults.drop_control_replies > 0:
            self.faults.drop_control_replies -= 1
            return  # procedure_pending stays set: the procedure never ends
        self._queue(
            uuids.CONTROL_POINT,
            cp.encode_control_response(op, result),
            self.config.response_lag_s + self.faults.control_reply_delay_s,
            ends_procedure=True,
        )

    def _handle_control(self, data: bytes) -> int:
        """Carry out one write; its Result Code."""
        try:
            req = cp.decode_control_request(data)
        except UnsupportedOpCode as exc:
            self._respond(exc.op_code, cp.ResultCode.OP_CODE_NOT_SUPPORTED)
            return cp.ResultCode.OP_CODE_NOT_SUPPORTED
        except DecodeError:
            self._respond(data[0], cp.ResultCode.INVALID_PARAMETER)
            return cp.ResultCode.INVALID_PARAMETER
        result = self._execute(req)
        self._respond(req.op, result)
        return result

    def _execute(self, req: cp.ControlRequest) -> int:
        op = req.op
        R = cp.ResultCode
        if op == cp.ControlOp.REQUEST_CONTROL:
            if self.faults.refuse_control:
                return self.faults.refuse_control_result
            self.has_control = True
            return R.SUCCESS
        if op not in (
            cp.ControlOp.RESET,
            cp.ControlOp.SET_TARGET_SPEED,
            cp.ControlOp.SET_TARGET_INCLINATION,
            cp.ControlOp.START_OR_RESUME,
            cp.ControlOp.STOP_OR_PAUSE,
        ):
            return R.OP_CODE_NOT_SUPPORTED
        if op == cp.ControlOp.SET_TARGET_INCLINATION and not self.config.incline_supported:
            return R.OP_CODE_NOT_SUPPORTED
        if not self.has_control:
            return R.CONTROL_NOT_PERMITTED
        if op == cp.ControlOp.RESET:
            self.target_speed_kmh = 0.0
            self.target_incline_pct = 0.0
            self.state = "idle"
            self.elapsed_s = 0.0
            self.has_control = False
            self._training(TrainingStatus.IDLE)
            return R.SUCCESS
        if op == cp.ControlOp.SET_TARGET_SPEED:
            kmh = float(req.values["target_speed_kmh"] or 0.0)
            if not self.speed_range.on_grid(kmh) and kmh != 0.0:
                return R.INVALID_PARAMETER
            if not self.faults.speed_locked:
                self.target_speed_kmh = kmh
            if self.config.echo_status:
                self._status(StatusOp.TARGET_SPEED_CHANGED, {"target_speed_kmh": kmh})
            return R.SUCCESS
        if op == cp.ControlOp.SET_TARGET_INCLINATION:
            pct = float(req.values["target_incline_pct"] or 0.0)
            if not self.incline_range.on_grid(pct):
                return R.INVALID_PARAMETER
            self.target_incline_pct = pct
            if self.config.echo_status:
                self._status(StatusOp.TARGET_INCLINE_CHANGED, {"target_incline_pct": pct})
            return R.SUCCESS
        if op == cp.ControlOp.START_OR_RESUME:
            if self.state in ("running", "pre_workout"):
                return R.SUCCESS if self.config.lenient else R.OPERATION_FAILED
            self._begin_start()
            if self.config.echo_status:
                self._status(StatusOp.STARTED_OR_RESUMED_BY_USER)
            return R.SUCCESS
        # STOP_OR_PAUSE
        action = req.values["control"]
        if self.state in ("idle", "stopped") or (action == "pause" and self.state == "paused"):
            return R.SUCCESS if self.config.lenient else R.OPERATION_FAILED
        if action == "stop":
            self.state = "stopped"
            self.target_speed_kmh = 0.0
            self._training(TrainingStatus.POST_WORKOUT)
        else:
            self.state = "paused"
        if self.config.echo_status:
            self._status(StatusOp.STOPPED_OR_PAUSED_BY_USER, {"control": action})
        return R.SUCCESS

    def _begin_start(self) -> None:
        if self.state == "paused":
            self.state = "running"
            return
        if self.state == "stopped":
            # A new session after a stop: counters restart (as consoles do).
            self.elapsed_s = self.distance_m = self.energy_kcal = self.elevation_gain_m = 0.0
        self.state = "pre_workout"
        self._pre_workout_until = self.now + self.config.pre_workout_s
        self._training(TrainingStatus.PRE_WORKOUT)

    def _physics(self, dt: float) -> None:
        if self.state == "pre_workout" and self.now >= self._pre_workout_until:
            self.state = "running"
            self._training(TrainingStatus.MANUAL_MODE)
        if dt <= 0:
            return
        if self.state == "running":
            # The belt cannot run below the range minimum (FTMS.md §12 #29).
            goal = min(
                max(self.target_speed_kmh, self.speed_range.minimum), self.speed_range.maximum
            )
        else:
            goal = 0.0
        if self.speed_kmh < goal:
            self.speed_kmh = min(goal, self.speed_kmh + self.config.accel_kmh_per_s * dt)
        elif self.speed_kmh > goal:
            self.speed_kmh = max(goal, self.speed_kmh - self.config.decel_kmh_per_s * dt)
        rate = self.config.incline_rate_pct_per_s * dt
        if self.incline_pct < self.target_incline_pct:
            self.incline_pct = min(self.target_incline_pct, self.incline_pct + rate)
        elif self.incline_pct > self.target_incline_pct:
            self.incline_pct = max(self.target_incline_pct, self.incline_pct - rate)
        metres = self.speed_kmh / 3.6 * dt
        self.distance_m += metres
        if self.incline_pct > 0:
            self.elevation_gain_m += metres * self.incline_pct / 100
        if self.state == "running":
            self.elapsed_s += dt
        # Walking costs ~ (0.1 * speed_m_per_min + 1.8 * speed * grade) ml O2/kg/min (ACSM);
        # a 75 kg walker, 5 kcal per litre of O2.
        v = self.speed_kmh * 1000 / 60
        vo2 = (
            3.5 + 0.1 * v + 1.8 * v * max(self.incline_pct, 0.0) / 100
            if self.speed_kmh > 0
            else 3.5
        )
        # Counted during a workout only, as consoles do: a treadmill left on overnight
        # with nobody on it burns nothing.
        self._kcal_per_min = vo2 * 75 / 1000 * 5 if self.state == "running" else 0.0
        self.energy_kcal += self._kcal_per_min * dt / 60
        self.walker.step(dt, self.speed_kmh, self.incline_pct)
        self.steps += self.speed_kmh / 3.6 / 0.6 * dt

    def current_record(self) -> TreadmillData:
        """The Treadmill Data record as the unit would sample it now."""
        c = self.config
        kcal_min = self._kcal_per_min
        return TreadmillData(
            speed_kmh=round(self.speed_kmh, 2),
            distance_m=int(self.distance_m),
            incline_pct=round(self.incline_pct, 1) if c.incline_supported else None,
            ramp_angle_deg=round(math.degrees(math.atan(self.incline_pct / 100)), 1)
            if c.incline_supported
            else None,
            elevation_gain_m=round(self.elevation_gain_m, 1) if c.incline_supported else None,
            negative_elevation_gain_m=0.0 if c.incline_supported else None,
            energy_kcal=int(self.energy_kcal),
            energy_per_hour_kcal=int(kcal_min * 60),
            energy_per_minute_kcal=min(254, int(kcal_min)),
            heart_rate_bpm=self.walker.reading() if c.heart_rate else None,
            elapsed_s=int(self.elapsed_s),
        )

    def _send_treadmill_data(self) -> None:
        if self.faults.silent or uuids.TREADMILL_DATA not in self.subscriptions:
            return
        record = self.current_record()
        if self.faults.mtu is not None:
            frames = split_treadmill_data(record, max_len=self.faults.mtu - 3)
        else:
            vendor = self.faults.vendor_extension
            frames = [
                encode_treadmill_data(
                    record,
                    vendor_bits=0x2000 if vendor else 0,
                    vendor_bytes=int(self.steps).to_bytes(2, "little") + b"\x00" if vendor else b"",
                )
            ]
        for frame in frames:
            if self.faults.truncate_at is not None:
                frame = frame[: self.faults.truncate_at]
            self._send(uuids.TREADMILL_DATA, frame)

    def _read_value(self, uuid: str) -> bytes:
        if uuid == uuids.FEATURE:
            return encode_features(self.features)
        if uuid == uuids.SPEED_RANGE:
            r = self.speed_range
            return encode_range(SPEED_RANGE, r.minimum, r.maximum, r.increment)
        if uuid == uuids.INCLINE_RANGE:
            r = self.incline_range
            return encode_range(INCLINE_RANGE, r.minimum, r.maximum, r.increment)
        if uuid == uuids.TRAINING_STATUS:
            return _encode_training(self.training_status)
        if uuid == uuids.TREADMILL_DATA:
            return encode_treadmill_data(self.current_record())
        return super()._read_value(uuid)

    def _device_information(self) -> dict[str, str]:
        c = self.config
        return {
            uuids.MANUFACTURER_NAME: c.manufacturer,
            uuids.MODEL_NUMBER: c.model,
            uuids.SERIAL_NUMBER: c.serial,
            uuids.FIRMWARE_REVISION: c.firmware,
        }


def _build_services(config: SimConfig) -> tuple[GattService, ...]:
    def ch(uuid: str, *props: str) -> GattCharacteristic:
        return GattCharacteristic(uuid, props)  # type: ignore[arg-type]

    ftms = [
        ch(uuids.FEATURE, "read"),
        ch(uuids.TREADMILL_DATA, "notify"),
        ch(uuids.TRAINING_STATUS, "read", "notify"),
        ch(uuids.SPEED_RANGE, "read"),
    ]
    if config.incline_supported:
        ftms.append(ch(uuids.INCLINE_RANGE, "read"))
    ftms += [ch(uuids.CONTROL_POINT, "write", "indicate"), ch(uuids.MACHINE_STATUS, "notify")]
    dis = tuple(
        ch(u, "read")
        for u in (
            uuids.MANUFACTURER_NAME,
            uuids.MODEL_NUMBER,
            uuids.SERIAL_NUMBER,
            uuids.FIRMWARE_REVISION,
        )
    )
    return (
        GattService(uuids.DEVICE_INFORMATION_SERVICE, dis),
        GattService(uuids.FITNESS_MACHINE_SERVICE, tuple(ftms)),
    )


def _range(div: int, lo: float, hi: float, inc: float, unit: str) -> SupportedRange:
    return SupportedRange(round(lo * div), round(hi * div), round(inc * div), div, unit)


def default_peripheral() -> SimTreadmill:
    """The demo's treadmill: 0.5-8 km/h by 0.1, 0-12 % by 0.5, 4 Hz data."""
    return SimTreadmill()
