"""Heart Rate Service (0x180D): Heart Rate Measurement (0x2A37), Body Sensor Location (0x2A38).

Heart Rate Service 1.0 and the GATT Specification Supplement (Heart Rate Measurement). The
flags byte selects the fields, in wire order: the heart rate (uint8, or uint16 with bit 0),
Energy Expended (uint16 kJ, bit 3), then RR intervals (uint16 in 1/1024 s, bit 4) filling
the rest of the value, oldest first. Bits 1-2 are the sensor contact status. A chest strap
is an untrusted device like a treadmill: odd bytes give a DecodeError or are set aside,
never a crash.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any

from retrotread.errors import DecodeError
from retrotread.ftms.fields import Layout, enum, u

MEASUREMENT_CHAR = "2a37"
LOCATION_CHAR = "2a38"

WIDE = 0x01  # the heart rate is a uint16
CONTACT_DETECTED = 0x02
CONTACT_SUPPORTED = 0x04
ENERGY = 0x08
RR = 0x10
RFU_MASK = 0xE0

# The fields, one table entry each. RR intervals are kept in seconds: 1/1024 s is exact in
# binary, so raw -> seconds -> milliseconds never rounds.
HEART_RATE = {False: u("heart_rate_bpm", "u8"), True: u("heart_rate_bpm", "u16")}
ENERGY_EXPENDED = u("energy_expended_kj", "u16")
RR_INTERVAL = u("rr_interval_s", "u16", 1024)

# The fixed part of a measurement per (wide, energy): the heart rate alone, and with energy.
_FIXED = {
    (wide, energy): (
        Layout([HEART_RATE[wide]]),
        Layout([HEART_RATE[wide], ENERGY_EXPENDED]) if energy else None,
    )
    for wide in (False, True)
    for energy in (False, True)
}


@functools.lru_cache(maxsize=32)
def _rr_layout(count: int) -> Layout:
    """``count`` RR intervals in a row (a 20-byte notification holds at most 9)."""
    return Layout([RR_INTERVAL] * count)


@dataclass(frozen=True)
class HeartRateMeasurement:
    """One Heart Rate Measurement notification.

    ``sensor_contact`` is None when the strap does not report contact, else whether it has
    skin contact. ``rr_intervals_s`` are the beat-to-beat intervals since the previous
    notification, oldest first (none when no beat fell in between). ``wide`` says the heart
    rate travels as a uint16. ``missing`` names an announced Energy Expended the value was
    too short for; ``extra`` holds octets no flag accounts for (an odd byte after the RR
    intervals, or bytes after an unannounced end), which a client must ignore.
    """

    heart_rate_bpm: int
    sensor_contact: bool | None = None
    energy_expended_kj: int | None = None
    rr_intervals_s: tuple[float, ...] = ()
    wide: bool = False
    flags: int = 0
    missing: tuple[str, ...] = ()
    extra: bytes = field(default=b"", repr=False)

    @property
    def rr_intervals_ms(self) -> tuple[float, ...]:
        return tuple(s * 1000 for s in self.rr_intervals_s)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: bpm, contact (null: not reported), energy in kJ, RR in ms."""
        out: dict[str, Any] = {
            "flags": f"0x{self.flags:02x}",
            "heart_rate_bpm": self.heart_rate_bpm,
            "sensor_contact": self.sensor_contact,
            "energy_expended_kj": self.energy_expended_kj,
            "rr_intervals_ms": list(self.rr_intervals_ms),
        }
        if self.missing:
            out["missing"] = list(self.missing)
        if self.flags & RFU_MASK:
            out["rfu_flags"] = f"0x{self.flags & RFU_MASK:02x}"
        if self.extra:
            out["extra_hex"] = self.extra.hex()
        return out


def decode_heart_rate_measurement(data: bytes) -> HeartRateMeasurement:
    """Decode one notification; no room for the heart rate itself is a DecodeError."""
    data = bytes(data)
    if not data:
        raise DecodeError(MEASUREMENT_CHAR, data, "empty Heart Rate Measurement")
    flags = data[0]
    rate_only, with_energy = _FIXED[bool(flags & WIDE), bool(flags & ENERGY)]
    layout = with_energy if with_energy is not None else rate_only
    missing: tuple[str, ...] = ()
    if len(data) < 1 + layout.size:
        if len(data) < 1 + rate_only.size:
            raise DecodeError(
                MEASUREMENT_CHAR,
                data,
                f"{len(data)} bytes cannot hold the flags and a {rate_only.size}-byte heart rate",
            )
        layout, missing = rate_only, ("energy_expended_kj",)  # cut short: keep what fits
    values = layout.read(data, 1)
    energy = values.get("energy_expended_kj")
    offset = 1 + layout.size
    rr: tuple[float, ...] = ()
    if flags & RR and not missing:
        count = (len(data) - offset) // 2  # every whole uint16 left is an RR interval
        rr = tuple(raw / 1024 for raw in _rr_layout(count).unpack(data, offset))
        offset += 2 * count
    contact = flags & (CONTACT_SUPPORTED | CONTACT_DETECTED)
    return HeartRateMeasurement(
        heart_rate_bpm=int(values["heart_rate_bpm"] or 0),
        # Bits 1-2: 0b10 supported, no contact; 0b11 contact; 0b00 and 0b01 not supported.
        sensor_contact=bool(contact & CONTACT_DETECTED) if contact & CONTACT_SUPPORTED else None,
        energy_expended_kj=None if energy is None else int(energy),
        rr_intervals_s=rr,
        wide=bool(flags & WIDE),
        flags=flags,
        missing=missing,
        extra=data[offset:] if not missing else b"",
    )


def encode_heart_rate_measurement(record: HeartRateMeasurement) -> bytes:
    """Encode one notification: fields present by value, the heart rate width by ``wide``."""
    flags = (WIDE if record.wide else 0) | (RR if record.rr_intervals_s else 0)
    if record.sensor_contact is not None:
        flags |= CONTACT_SUPPORTED | (CONTACT_DETECTED if record.sensor_contact else 0)
    if record.energy_expended_kj is not None:
        flags |= ENERGY
    rr = record.rr_intervals_s
    body = _fixed_layout(record).write(vars(record), "Heart Rate Measurement")
    return bytes([flags]) + body + _rr_layout(len(rr)).pack([RR_INTERVAL.to_raw(s) for s in rr])


def _fixed_layout(record: HeartRateMeasurement) -> Layout:
    rate_only, with_energy = _FIXED[bool(record.wide), record.energy_expended_kj is not None]
    return with_energy if with_energy is not None else rate_only


def fit_rr_intervals(
    record: HeartRateMeasurement, max_len: int = 20
) -> tuple[HeartRateMeasurement, tuple[float, ...]]:
    """Split off the RR intervals that do not fit a ``max_len``-byte notification.

    Returns the record with the oldest intervals that fit, and the rest, which a strap
    sends with its next notification (20 bytes is the value room of the default ATT MTU).
    """
    room = max(0, (max_len - 1 - _fixed_layout(record).size) // 2)
    rr = record.rr_intervals_s
    return replace(record, rr_intervals_s=rr[:room]), rr[room:]


class BodySensorLocation(IntEnum):
    OTHER = 0
    CHEST = 1
    WRIST = 2
    FINGER = 3
    HAND = 4
    EAR_LOBE = 5
    FOOT = 6


LOCATION = enum("body_sensor_location", {m.value: m.name.lower() for m in BodySensorLocation})
_LOCATION = Layout([LOCATION])


@dataclass(frozen=True)
class SensorLocation:
    """A Body Sensor Location value: its code (7-255 are reserved, not errors)."""

    code: int

    @property
    def name(self) -> str:
        return str(_LOCATION.read(bytes([self.code]))["body_sensor_location"])

    def to_dict(self) -> dict[str, Any]:
        return {"body_sensor_location": self.name, "code": self.code}


def decode_body_sensor_location(data: bytes) -> SensorLocation:
    """Decode the one-byte location; bytes after it are ignored."""
    data = bytes(data)
    if not data:
        raise DecodeError(LOCATION_CHAR, data, "empty Body Sensor Location")
    return SensorLocation(int(_LOCATION.unpack(data)[0]))


def encode_body_sensor_location(location: str | int) -> bytes:
    """Encode a location by name ("chest") or code."""
    return _LOCATION.write({"body_sensor_location": location}, "Body Sensor Location")
