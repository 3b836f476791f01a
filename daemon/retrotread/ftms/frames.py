"""Decode any FTMS or Heart Rate characteristic value by UUID: one entry point for logs and CLI."""

from __future__ import annotations

from typing import Any

from retrotread.errors import DecodeError
from retrotread.ftms import uuids
from retrotread.ftms.control import RESPONSE_CODE, decode_control_request, decode_control_response
from retrotread.ftms.features import (
    HEART_RATE_RANGE,
    INCLINE_RANGE,
    SPEED_RANGE,
    decode_features,
    decode_range,
)
from retrotread.ftms.heart_rate import decode_body_sensor_location, decode_heart_rate_measurement
from retrotread.ftms.status import decode_machine_status, decode_training_status
from retrotread.ftms.treadmill_data import decode_treadmill_data

DECODABLE = ("2a37", "2a38", "2acc", "2acd", "2ad3", "2ad4", "2ad5", "2ad7", "2ad9", "2ada")


def decode_to_dict(char: str, data: bytes, pace_width: int = 1) -> dict[str, Any]:
    """Decode ``data`` of characteristic ``char`` (short or full UUID) to a JSON-ready dict.

    Raises DecodeError for undecodable bytes and for characteristics this codec does not
    cover. Control Point values decode as a response when they start with 0x80, else as a
    request.
    """
    short = uuids.parse_char(char)
    data = bytes(data)
    body: dict[str, Any]
    if short == "2a37":
        body = decode_heart_rate_measurement(data).to_dict()
    elif short == "2a38":
        body = decode_body_sensor_location(data).to_dict()
    elif short == "2acc":
        body = decode_features(data).to_dict()
    elif short == "2acd":
        body = decode_treadmill_data(data, pace_width).to_dict()
    elif short == "2ad3":
        body = decode_training_status(data).to_dict()
    elif short == "2ad4":
        body = decode_range(SPEED_RANGE, data).to_dict()
    elif short == "2ad5":
        body = decode_range(INCLINE_RANGE, data).to_dict()
    elif short == "2ad7":
        body = decode_range(HEART_RATE_RANGE, data).to_dict()
    elif short == "2ad9":
        if data[:1] == bytes([RESPONSE_CODE]):
            body = decode_control_response(data).to_dict()
        else:
            body = decode_control_request(data).to_dict()
    elif short == "2ada":
        body = decode_machine_status(data).to_dict()
    else:
        raise DecodeError(
            short,
            data,
            f"characteristic {short} is not one this decoder covers ({', '.join(DECODABLE)})",
        )
    return {"char": short, **body}
