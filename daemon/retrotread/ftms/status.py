"""Training Status (0x2AD3) and Fitness Machine Status (0x2ADA) (FTMS.md §6, §9)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from retrotread.errors import DecodeError
from retrotread.ftms.fields import EncodeError, Field, Layout, Value, enum, u

TRAINING_CHAR = "2ad3"
STATUS_CHAR = "2ada"


class TrainingStatus(IntEnum):
    OTHER = 0x00
    IDLE = 0x01
    WARMING_UP = 0x02
    LOW_INTENSITY_INTERVAL = 0x03
    HIGH_INTENSITY_INTERVAL = 0x04
    RECOVERY_INTERVAL = 0x05
    ISOMETRIC = 0x06
    HEART_RATE_CONTROL = 0x07
    FITNESS_TEST = 0x08
    SPEED_OUTSIDE_CONTROL_REGION_LOW = 0x09
    SPEED_OUTSIDE_CONTROL_REGION_HIGH = 0x0A
    COOL_DOWN = 0x0B
    WATT_CONTROL = 0x0C
    MANUAL_MODE = 0x0D
    PRE_WORKOUT = 0x0E
    POST_WORKOUT = 0x0F


@dataclass(frozen=True)
class TrainingStatusFrame:
    """Status code (kept as int: RFU codes are not errors) and the optional string."""

    status: int
    text: str | None = None
    extended: bool = False

    @property
    def name(self) -> str:
        try:
            return TrainingStatus(self.status).name.lower()
        except ValueError:
            return "reserved"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "status_name": self.name, "text": self.text}


def decode_training_status(data: bytes) -> TrainingStatusFrame:
    """Decode; a string flag with an empty string means "no string" (FTMS.md §12 #11)."""
    data = bytes(data)
    if len(data) < 2:
        raise DecodeError(TRAINING_CHAR, data, f"needs at least 2 bytes, got {len(data)}")
    flags, status = data[0], data[1]
    text = None
    if flags & 0x01 and len(data) > 2:
        text = data[2:].decode("utf-8", errors="replace").rstrip("\x00") or None
    return TrainingStatusFrame(status, text, extended=bool(flags & 0x02))


def encode_training_status(status: int, text: str | None = None) -> bytes:
    if not 0 <= status <= 0xFF:
        raise EncodeError(f"training status {status} out of range")
    if text is None:
        return bytes([0x00, status])
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates have no UTF-8 form
        raise EncodeError(f"training status text {text!r} is not valid Unicode") from exc
    return bytes([0x01, status]) + encoded


class StatusOp(IntEnum):
    RESET = 0x01
    STOPPED_OR_PAUSED_BY_USER = 0x02
    STOPPED_BY_SAFETY_KEY = 0x03
    STARTED_OR_RESUMED_BY_USER = 0x04
    TARGET_SPEED_CHANGED = 0x05
    TARGET_INCLINE_CHANGED = 0x06
    TARGET_RESISTANCE_CHANGED = 0x07
    TARGET_POWER_CHANGED = 0x08
    TARGET_HEART_RATE_CHANGED = 0x09
    TARGETED_EXPENDED_ENERGY_CHANGED = 0x0A
    TARGETED_STEPS_CHANGED = 0x0B
    TARGETED_STRIDES_CHANGED = 0x0C
    TARGETED_DISTANCE_CHANGED = 0x0D
    TARGETED_TRAINING_TIME_CHANGED = 0x0E
    TARGETED_TIME_TWO_HR_ZONES_CHANGED = 0x0F
    TARGETED_TIME_THREE_HR_ZONES_CHANGED = 0x10
    TARGETED_TIME_FIVE_HR_ZONES_CHANGED = 0x11
    INDOOR_BIKE_SIMULATION_CHANGED = 0x12
    WHEEL_CIRCUMFERENCE_CHANGED = 0x13
    SPIN_DOWN_STATUS = 0x14
    TARGETED_CADENCE_CHANGED = 0x15
    CONTROL_PERMISSION_LOST = 0xFF


# Parameter of the stop/pause status and of Control Point op 0x08.
STOP_PAUSE_VALUES = {1: "stop", 2: "pause"}
SPIN_DOWN_VALUES = {1: "requested", 2: "success", 3: "error", 4: "stop_pedalling"}

STATUS_PARAMS: dict[int, tuple[Field, ...]] = {
    0x01: (),
    0x02: (enum("control", STOP_PAUSE_VALUES),),
    0x03: (),
    0x04: (),
    0x05: (u("target_speed_kmh", "u16", 100),),
    0x06: (u("target_incline_pct", "s16", 10),),
    # 0x07: v1.0 uint8, v1.0.1 sint16 - chosen by frame length in decode_machine_status.
    0x07: (u("target_resistance", "s16", 10),),
    0x08: (u("target_power_w", "s16"),),
    0x09: (u("target_heart_rate_bpm", "u8"),),
    0x0A: (u("targeted_energy_kcal", "u16"),),
    0x0B: (u("targeted_steps", "u16"),),
    0x0C: (u("targeted_strides", "u16"),),
    0x0D: (u("targeted_distance_m", "u24"),),
    0x0E: (u("targeted_time_s", "u16"),),
    0x0F: (u("fat_burn_s", "u16"), u("fitness_s", "u16")),
    0x10: (u("light_s", "u16"), u("moderate_s", "u16"), u("hard_s", "u16")),
    0x11: (
        u("very_light_s", "u16"),
        u("light_s", "u16"),
        u("moderate_s", "u16"),
        u("hard_s", "u16"),
        u("maximum_s", "u16"),
    ),
    0x12: (
        u("wind_speed_mps", "s16", 1000),
        u("grade_pct", "s16", 100),
        u("crr", "u8", 10000),
        u("cw_kg_per_m", "u8", 100),
    ),
    0x13: (u("wheel_circumference_mm", "u16", 10),),
    0x14: (enum("spin_down", SPIN_DOWN_VALUES),),
    0x15: (u("targeted_cadence_per_min", "u16", 2),),
    0xFF: (),
}
_LAYOUTS = {op: Layout(params) for op, params in STATUS_PARAMS.items()}
_RESISTANCE_V10 = Layout([u("target_resistance", "u8", 10)])


@dataclass(frozen=True)
class MachineStatus:
    """One Fitness Machine Status notification: op code, its parameters by name, padding."""

    op: int
    values: dict[str, Value] = field(default_factory=dict)
    extra: bytes = field(default=b"", repr=False)

    @property
    def name(self) -> str:
        try:
            return StatusOp(self.op).name.lower()
        except ValueError:
            return "reserved"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op_code": f"0x{self.op:02x}", "op": self.name}
        out.update(self.values)
        if self.extra:
            out["extra_hex"] = self.extra.hex()
        return out


def decode_machine_status(data: bytes) -> MachineStatus:
    """Decode by op code; trailing padding is kept aside, never an error (FTMS.md §12 #5).

    A reserved op code decodes to a status named "reserved" with its bytes in ``extra``.
    """
    data = bytes(data)
    if not data:
        raise DecodeError(STATUS_CHAR, data, "empty status frame")
    op = data[0]
    layout = _LAYOUTS.get(op)
    if layout is None:
        return MachineStatus(op, {}, data[1:])
    if op == 0x07 and len(data) == 2:
        layout = _RESISTANCE_V10
    need = 1 + layout.size
    if len(data) < need:
        raise DecodeError(STATUS_CHAR, data, f"op 0x{op:02x} needs {need} bytes, got {len(data)}")
    # An unnamed stop/pause or spin-down code reads as "reserved", not an error.
    return MachineStatus(op, layout.read(data, 1), data[need:])


def encode_machine_status(op: int, values: dict[str, Any] | None = None, pad_to: int = 0) -> bytes:
    """Encode a status frame; ``pad_to`` zero-pads like the CS-WP8 does (FTMS.md §12 #5)."""
    layout = _LAYOUTS.get(op)
    if layout is None:
        raise EncodeError(f"status op 0x{op:02x} is reserved")
    frame = bytes([op]) + layout.write(values or {}, f"status op 0x{op:02x}")
    return frame.ljust(pad_to, b"\x00")
