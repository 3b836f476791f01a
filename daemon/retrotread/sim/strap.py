"""The simulated heart-rate strap: the Heart Rate Service bytes of a simulated walker's heart.

A simulated GATT peripheral (``sim/peripheral.py``) like the simulated treadmill, so it
is reached in-process or behind the fake BlueZ through the real bleak. It notifies a Heart
Rate Measurement (0x2A37) once a second with the walker's heart rate and the beat-to-beat
(RR) intervals since the last one; Body Sensor Location (0x2A38) reads "chest".

It reads a ``Walker`` (``sim/physiology.py``) and never moves it: the simulated treadmill
does, so a strap and a treadmill given the same walker measure the same heart (the strap
with its own measurement noise). Fault
knobs (``StrapFaults``, changeable while it runs): drop the link, out of reach, skin
contact lost, a frozen value (the same frame again and again), 8- or 16-bit heart rate,
RR intervals on or off, energy expended, silence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retrotread.ftms import uuids
from retrotread.ftms.heart_rate import (
    HeartRateMeasurement,
    encode_body_sensor_location,
    encode_heart_rate_measurement,
    fit_rr_intervals,
)
from retrotread.sim.gatt import GattCharacteristic, GattService
from retrotread.sim.peripheral import SimPeripheral
from retrotread.sim.physiology import Walker

if TYPE_CHECKING:
    from retrotread.sim.treadmill import SimTreadmill


@dataclass
class StrapConfig:
    """What the simulated strap is."""

    name: str = "RETRO-HR"
    address: str = "C0:FF:EE:00:00:02"
    interval_s: float = 1.0
    location: str = "chest"
    rssi: int = -62
    manufacturer: str = "retrotread"
    model: str = "SIM-HR"
    noise_bpm: float = 1.0  # the strap's own measurement error (standard deviation)
    seed: int = 7  # for the beat-to-beat variability and the noise


@dataclass
class StrapFaults:
    """Fault knobs, changeable while the strap runs."""

    contact_lost: bool = False
    """No skin contact: the flags say so and the heart rate is 0 (a dry or loose strap)."""
    frozen: bool = False
    """The same measurement, byte for byte, at every notification (stuck firmware)."""
    wide: bool = False
    """The heart rate as a uint16 (flags bit 0), as some straps always send it."""
    rr: bool = True
    energy: bool = False
    silent: bool = False
    """Connected, notifications on, nothing sent."""
    advertising: bool = True
    refuse_connect: str | None = None
    drop_link_at: float | None = None


@dataclass
class _Beats:
    """The walker's beats in time: when the next one falls."""

    rng: random.Random
    next_at: float = 0.0
    pending: list[float] = field(default_factory=list)  # RR intervals not yet sent (s)
    last_at: float | None = None


class SimStrap(SimPeripheral[StrapConfig, StrapFaults]):
    """A GATT-level heart-rate strap."""

    kind = "strap"
    advertised_service = uuids.HEART_RATE_SERVICE

    def __init__(
        self,
        walker: Walker | None = None,
        config: StrapConfig | None = None,
        faults: StrapFaults | None = None,
    ) -> None:
        super().__init__(config or StrapConfig(), faults or StrapFaults(), _build_services())
        self.walker = walker or Walker()
        self._next_notify = 0.0
        self._beats = _Beats(random.Random(self.config.seed))
        self._noise = random.Random(self.config.seed + 1)
        self._energy_kj = 0.0
        self._last_frame: bytes | None = None
        self.sent: list[tuple[float, bytes]] = []
        """Every measurement notification sent, with its time (for tests)."""
        self.connects = 0

    # ------------------------------------------------------------------ GATT values

    def _link_up(self) -> None:
        self._next_notify = self.now + self.config.interval_s
        self.connects += 1

    def _read_value(self, uuid: str) -> bytes:
        if uuid == uuids.BODY_SENSOR_LOCATION:
            return encode_body_sensor_location(self.config.location)
        return super()._read_value(uuid)

    def _device_information(self) -> dict[str, str]:
        return {
            uuids.MANUFACTURER_NAME: self.config.manufacturer,
            uuids.MODEL_NUMBER: self.config.model,
        }

    # ------------------------------------------------------------------ time

    def _starting(self) -> None:
        self._beats.next_at = self.now

    def _due_times(self) -> list[float]:
        return [self._next_notify] if self.connected else []

    def advance_to(self, t: float) -> None:
        """Count the beats up to ``t`` and send every measurement due, in time order."""
        while True:
            due = self._next_notify if self.connected else t
            drop = self.faults.drop_link_at
            step_to = min(t, due, drop if drop is not None else t)
            self._beat_until(step_to)
            self.now = max(self.now, step_to)
            if self._drop_if_due():
                continue
            if self.connected and self.now >= self._next_notify:
                self._next_notify = self.now + self.config.interval_s
                self._notify()
                continue
            if self.now >= t:
                return

    def _beat_until(self, t: float) -> None:
        """The walker's heart beats between now and ``t``: their intervals wait to be sent."""
        b = self._beats
        bpm = max(30.0, self.walker.heart_rate_bpm)
        while b.next_at <= t:
            if b.last_at is not None:
                b.pending.append(b.next_at - b.last_at)
            b.last_at = b.next_at
            # Beat-to-beat variability of a few percent, as a resting or walking heart has.
            b.next_at += 60.0 / bpm * (1 + b.rng.gauss(0.0, 0.02))
        if len(b.pending) > 30:  # nobody listening for a while: keep the latest only
            del b.pending[:-30]
        self._energy_kj += max(0.0, t - self.now) * bpm / 600

    def _notify(self) -> None:
        f = self.faults
        if f.silent or uuids.HEART_RATE_MEASUREMENT not in self.subscriptions:
            return
        if f.frozen and self._last_frame is not None:
            self._send(self._last_frame)
            return
        rr = tuple(self._beats.pending) if f.rr and not f.contact_lost else ()
        record = HeartRateMeasurement(
            heart_rate_bpm=0 if f.contact_lost else self.walker.reading(self._error()),
            sensor_contact=not f.contact_lost,
            energy_expended_kj=min(0xFFFF, int(self._energy_kj)) if f.energy else None,
            rr_intervals_s=rr,
            wide=f.wide,
        )
        record, rest = fit_rr_intervals(record)
        self._beats.pending = list(rest)
        frame = encode_heart_rate_measurement(record)
        self._last_frame = frame
        self._send(frame)

    def _error(self) -> float:
        """This notification's measurement error."""
        sd = self.config.noise_bpm
        return self._noise.gauss(0.0, sd) if sd > 0 else 0.0

    def _send(self, frame: bytes) -> None:
        if self._sink is None:
            return
        self.sent.append((self.now, frame))
        self._sink(uuids.HEART_RATE_MEASUREMENT, frame)

    # ------------------------------------------------------------------ fault knobs

    def come_back(self) -> None:
        """Back in range (put on again): advertising and connectable, and ``run`` wakes."""
        super().come_back()
        self._wake()

    # ------------------------------------------------------------------ internals

    def _link_down(self) -> None:
        super()._link_down()
        self._last_frame = None


def _build_services() -> tuple[GattService, ...]:
    def ch(uuid: str, *props: str) -> GattCharacteristic:
        return GattCharacteristic(uuid, props)  # type: ignore[arg-type]

    return (
        GattService(
            uuids.DEVICE_INFORMATION_SERVICE,
            (ch(uuids.MANUFACTURER_NAME, "read"), ch(uuids.MODEL_NUMBER, "read")),
        ),
        GattService(
            uuids.HEART_RATE_SERVICE,
            (ch(uuids.HEART_RATE_MEASUREMENT, "notify"), ch(uuids.BODY_SENSOR_LOCATION, "read")),
        ),
    )


def treadmill_and_strap() -> list[SimTreadmill | SimStrap]:
    """A simulated treadmill and a strap on its walker (``sim.bluez_server`` factory)."""
    from retrotread.sim.treadmill import SimConfig, SimTreadmill

    treadmill = SimTreadmill(SimConfig(pre_workout_s=1.0))
    return [treadmill, SimStrap(treadmill.walker)]
