"""Fitness Machine Control Point (0x2AD9): requests and Response Code indications, both ways.

FTMS.md §8. The daemon encodes requests and decodes responses; the simulator does the
reverse, so both directions share one table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from retrotread.errors import DecodeError, UnsupportedOpCode
from retrotread.ftms.fields import EncodeError, Field, Layout, ReservedCode, Value, enum, u
from retrotread.ftms.status import STATUS_PARAMS

CHAR = "2ad9"
RESPONSE_CODE = 0x80


class ControlOp(IntEnum):
    REQUEST_CONTROL = 0x00
    RESET = 0x01
    SET_TARGET_SPEED = 0x02
    SET_TARGET_INCLINATION = 0x03
    SET_TARGET_RESISTANCE = 0x04
    SET_TARGET_POWER = 0x05
    SET_TARGET_HEART_RATE = 0x06
    START_OR_RESUME = 0x07
    STOP_OR_PAUSE = 0x08
    SET_TARGETED_EXPENDED_ENERGY = 0x09
    SET_TARGETED_STEPS = 0x0A
    SET_TARGETED_STRIDES = 0x0B
    SET_TARGETED_DISTANCE = 0x0C
    SET_TARGETED_TRAINING_TIME = 0x0D
    SET_TARGETED_TIME_TWO_HR_ZONES = 0x0E
    SET_TARGETED_TIME_THREE_HR_ZONES = 0x0F
    SET_TARGETED_TIME_FIVE_HR_ZONES = 0x10
    SET_INDOOR_BIKE_SIMULATION = 0x11
    SET_WHEEL_CIRCUMFERENCE = 0x12
    SPIN_DOWN_CONTROL = 0x13
    SET_TARGETED_CADENCE = 0x14


class ResultCode(IntEnum):
    SUCCESS = 0x01
    OP_CODE_NOT_SUPPORTED = 0x02
    INVALID_PARAMETER = 0x03
    OPERATION_FAILED = 0x04
    CONTROL_NOT_PERMITTED = 0x05


def result_name(code: int) -> str:
    try:
        return ResultCode(code).name.lower()
    except ValueError:
        return "reserved"


def op_name(op: int) -> str:
    try:
        return ControlOp(op).name.lower()
    except ValueError:
        return "reserved"


SPIN_DOWN_CONTROL_VALUES = {1: "start", 2: "ignore"}

# Parameters of each request op, in wire order; most mirror the matching status frame.
REQUEST_PARAMS: dict[int, tuple[Field, ...]] = {
    0x00: (),
    0x01: (),
    0x02: STATUS_PARAMS[0x05],
    0x03: STATUS_PARAMS[0x06],
    0x04: (u("target_resistance", "u8", 10),),
    0x05: STATUS_PARAMS[0x08],
    0x06: STATUS_PARAMS[0x09],
    0x07: (),
    0x08: STATUS_PARAMS[0x02],
    0x09: STATUS_PARAMS[0x0A],
    0x0A: STATUS_PARAMS[0x0B],
    0x0B: STATUS_PARAMS[0x0C],
    0x0C: STATUS_PARAMS[0x0D],
    0x0D: STATUS_PARAMS[0x0E],
    0x0E: STATUS_PARAMS[0x0F],
    0x0F: STATUS_PARAMS[0x10],
    0x10: STATUS_PARAMS[0x11],
    0x11: STATUS_PARAMS[0x12],
    0x12: STATUS_PARAMS[0x13],
    0x13: (enum("spin_down", SPIN_DOWN_CONTROL_VALUES),),
    0x14: STATUS_PARAMS[0x15],
}
_LAYOUTS = {op: Layout(params) for op, params in REQUEST_PARAMS.items()}


@dataclass(frozen=True)
class ControlRequest:
    """One Control Point write: op code and its parameters by name."""

    op: ControlOp
    values: dict[str, Value] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.op.name.lower()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "request", "op_code": f"0x{self.op:02x}", "op": self.name}
        out.update(self.values)
        return out


def decode_control_request(data: bytes) -> ControlRequest:
    """Decode a write. Unknown op → UnsupportedOpCode; wrong length or value → DecodeError."""
    data = bytes(data)
    if not data:
        raise DecodeError(CHAR, data, "empty Control Point write")
    op = data[0]
    layout = _LAYOUTS.get(op)
    if layout is None:
        raise UnsupportedOpCode(CHAR, data, op)
    need = 1 + layout.size
    if len(data) != need:
        raise DecodeError(CHAR, data, f"{op_name(op)} takes {need} bytes, got {len(data)}")
    try:
        values = layout.read(data, 1, strict=True)
    except ReservedCode as exc:  # a reserved Stop/Spin Down parameter: the server answers 0x03
        raise DecodeError(
            CHAR, data, f"{op_name(op)} parameter 0x{exc.raw:02x} is reserved"
        ) from None
    return ControlRequest(ControlOp(op), values)


def encode_control_request(op: int, values: dict[str, Any] | None = None) -> bytes:
    layout = _LAYOUTS.get(op)
    if layout is None:
        raise EncodeError(f"control op 0x{op:02x} is reserved")
    return bytes([op]) + layout.write(values or {}, op_name(op))


def request_control() -> bytes:
    return encode_control_request(ControlOp.REQUEST_CONTROL)


def reset() -> bytes:
    return encode_control_request(ControlOp.RESET)


def set_target_speed(kmh: float) -> bytes:
    """``02 lo hi`` with raw = round(kmh * 100): 1.13 km/h is 113, never 112."""
    return encode_control_request(ControlOp.SET_TARGET_SPEED, {"target_speed_kmh": kmh})


def set_target_incline(pct: float) -> bytes:
    return encode_control_request(ControlOp.SET_TARGET_INCLINATION, {"target_incline_pct": pct})


def start_or_resume() -> bytes:
    return encode_control_request(ControlOp.START_OR_RESUME)


def stop() -> bytes:
    return encode_control_request(ControlOp.STOP_OR_PAUSE, {"control": "stop"})


def pause() -> bytes:
    return encode_control_request(ControlOp.STOP_OR_PAUSE, {"control": "pause"})


@dataclass(frozen=True)
class ControlResponse:
    """A Response Code indication: the request op it answers, the result, any parameter."""

    request_op: int
    result: int
    parameter: bytes = b""

    @property
    def ok(self) -> bool:
        return self.result == ResultCode.SUCCESS

    @property
    def result_name(self) -> str:
        return result_name(self.result)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "response",
            "request_op_code": f"0x{self.request_op:02x}",
            "request_op": op_name(self.request_op),
            "result_code": f"0x{self.result:02x}",
            "result": self.result_name,
        }
        if self.parameter:
            if self.request_op == ControlOp.SPIN_DOWN_CONTROL and len(self.parameter) >= 4:
                out["target_speed_low_kmh"] = int.from_bytes(self.parameter[0:2], "little") / 100
                out["target_speed_high_kmh"] = int.from_bytes(self.parameter[2:4], "little") / 100
            else:
                out["parameter_hex"] = self.parameter.hex()
        return out


def decode_control_response(data: bytes) -> ControlResponse:
    data = bytes(data)
    if len(data) < 3:
        raise DecodeError(CHAR, data, f"a response indication needs 3 bytes, got {len(data)}")
    if data[0] != RESPONSE_CODE:
        raise DecodeError(CHAR, data, f"not a response indication (op 0x{data[0]:02x}, want 0x80)")
    return ControlResponse(data[1], data[2], data[3:])


def encode_control_response(request_op: int, result: int, parameter: bytes = b"") -> bytes:
    if not (0 <= request_op <= 0xFF and 0 <= result <= 0xFF):
        raise EncodeError(f"bad response op 0x{request_op:x} result 0x{result:x}")
    if len(parameter) > 17:
        raise EncodeError("a response parameter is at most 17 bytes")
    return bytes([RESPONSE_CODE, request_op, result]) + parameter
