"""GATT UUIDs of the Fitness Machine Service, the Heart Rate Service and their neighbours.

FTMS.md §1; Heart Rate Service 1.0.
"""

from __future__ import annotations

import functools

BASE = "0000{:04x}-0000-1000-8000-00805f9b34fb"


def uuid16(short: int) -> str:
    """The full 128-bit UUID string for a 16-bit SIG UUID."""
    return BASE.format(short)


_BASE_TAIL = BASE.format(0)[8:]


@functools.lru_cache(maxsize=64)
def short_name(uuid: str) -> str:
    """'00002acd-0000-1000-8000-00805f9b34fb' -> '2acd'; other UUIDs are returned lower-cased."""
    u = uuid.lower()
    if len(u) == 36 and u.startswith("0000") and u[8:] == _BASE_TAIL:
        return u[4:8]
    return u


def parse_char(text: str) -> str:
    """Accept '2acd', '0x2ACD', '2ACD' or a full UUID; return the 4-hex short name."""
    t = text.strip().lower()
    if t.startswith("0x"):
        t = t[2:]
    if len(t) == 36:
        return short_name(t)
    if len(t) == 4 and all(c in "0123456789abcdef" for c in t):
        return t
    raise ValueError(f"not a characteristic UUID: {text!r} (expected e.g. 2acd or 0x2ACD)")


FITNESS_MACHINE_SERVICE = uuid16(0x1826)
DEVICE_INFORMATION_SERVICE = uuid16(0x180A)

FEATURE = uuid16(0x2ACC)
TREADMILL_DATA = uuid16(0x2ACD)
TRAINING_STATUS = uuid16(0x2AD3)
SPEED_RANGE = uuid16(0x2AD4)
INCLINE_RANGE = uuid16(0x2AD5)
HEART_RATE_RANGE = uuid16(0x2AD7)
CONTROL_POINT = uuid16(0x2AD9)
MACHINE_STATUS = uuid16(0x2ADA)

HEART_RATE_SERVICE = uuid16(0x180D)
HEART_RATE_MEASUREMENT = uuid16(0x2A37)
BODY_SENSOR_LOCATION = uuid16(0x2A38)
HEART_RATE_CONTROL_POINT = uuid16(0x2A39)

MANUFACTURER_NAME = uuid16(0x2A29)
MODEL_NUMBER = uuid16(0x2A24)
SERIAL_NUMBER = uuid16(0x2A25)
HARDWARE_REVISION = uuid16(0x2A27)
FIRMWARE_REVISION = uuid16(0x2A26)
SOFTWARE_REVISION = uuid16(0x2A28)

DEVICE_INFORMATION_FIELDS: dict[str, str] = {
    MANUFACTURER_NAME: "manufacturer",
    MODEL_NUMBER: "model",
    SERIAL_NUMBER: "serial",
    HARDWARE_REVISION: "hardware_revision",
    FIRMWARE_REVISION: "firmware_revision",
    SOFTWARE_REVISION: "software_revision",
}

CCCD = uuid16(0x2902)
