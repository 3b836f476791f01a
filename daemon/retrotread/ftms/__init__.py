"""FTMS and Heart Rate Service bytes <-> typed values. Pure: no asyncio, no bleak (FTMS.md)."""

from __future__ import annotations

from retrotread.ftms.control import (
    ControlOp,
    ControlRequest,
    ControlResponse,
    ResultCode,
    decode_control_request,
    decode_control_response,
    encode_control_request,
    encode_control_response,
)
from retrotread.ftms.features import (
    Features,
    MachineFeature,
    SupportedRange,
    TargetFeature,
    decode_features,
    decode_incline_range,
    decode_speed_range,
    encode_features,
)
from retrotread.ftms.fields import EncodeError
from retrotread.ftms.frames import decode_to_dict
from retrotread.ftms.heart_rate import (
    BodySensorLocation,
    HeartRateMeasurement,
    SensorLocation,
    decode_body_sensor_location,
    decode_heart_rate_measurement,
    encode_body_sensor_location,
    encode_heart_rate_measurement,
    fit_rr_intervals,
)
from retrotread.ftms.status import (
    MachineStatus,
    StatusOp,
    TrainingStatus,
    TrainingStatusFrame,
    decode_machine_status,
    decode_training_status,
    encode_machine_status,
    encode_training_status,
)
from retrotread.ftms.treadmill_data import (
    TreadmillData,
    TreadmillDataAssembler,
    decode_treadmill_data,
    encode_treadmill_data,
    split_treadmill_data,
)

__all__ = [
    "BodySensorLocation",
    "ControlOp",
    "ControlRequest",
    "ControlResponse",
    "EncodeError",
    "Features",
    "HeartRateMeasurement",
    "MachineFeature",
    "MachineStatus",
    "ResultCode",
    "SensorLocation",
    "StatusOp",
    "SupportedRange",
    "TargetFeature",
    "TrainingStatus",
    "TrainingStatusFrame",
    "TreadmillData",
    "TreadmillDataAssembler",
    "decode_body_sensor_location",
    "decode_control_request",
    "decode_control_response",
    "decode_features",
    "decode_heart_rate_measurement",
    "decode_incline_range",
    "decode_machine_status",
    "decode_speed_range",
    "decode_to_dict",
    "decode_training_status",
    "decode_treadmill_data",
    "encode_body_sensor_location",
    "encode_control_request",
    "encode_control_response",
    "encode_features",
    "encode_heart_rate_measurement",
    "encode_machine_status",
    "encode_training_status",
    "encode_treadmill_data",
    "fit_rr_intervals",
    "split_treadmill_data",
]
