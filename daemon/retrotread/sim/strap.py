"""The simulated heart-rate strap: the Heart Rate Service bytes of a simulated walker's heart.

A GATT peripheral (``retrotread.sim.gatt.Peripheral``) like the simulated treadmill, so it
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

import asyncio
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from retrotread.clock import Clock
from retrotread.errors import (
    ATT_ATTRIBUTE_NOT_FOUND,
    ATT_READ_NOT_PERMITTED,
    ATT_REQUEST_NOT_SUPPORTED,
    ATT_WRITE_NOT_PERMITTED,
    AttError,
)
from retrotread.ftms import uuids
from retrotread.ftms.heart_rate import (
    HeartRateMeasurement,
    encode_body_sensor_location,
    encode_heart_rate_measurement,
    fit_rr_intervals,
)
from retrotread.sim.gatt import (
    Advertisement,
    ConnectRefused,
    DisconnectSink,
    GattCharacteristic,
    GattService,
    NotifySink,
    Subscription,
)
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


class SimStrap:
    """A GATT-level heart-rate strap (implements ``retrotread.sim.gatt.Peripheral``)."""

    def __init__(
        self,
        walker: Walker | None = None,
        config: StrapConfig | None = None,
        faults: StrapFaults | None = None,
    ) -> None:
        self.walker = walker or Walker()
        self.config = config or StrapConfig()
        self.faults = faults or StrapFaults()
        self._services = _build_services()
        self._props = {ch.uuid: ch.properties for s in self._services for ch in s.characteristics}
        self.now = 0.0
        self._sink: NotifySink | None = None
        self._on_disconnect: DisconnectSink | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self._next_notify = 0.0
        self._beats = _Beats(random.Random(self.config.seed))
        self._noise = random.Random(self.config.seed + 1)
        self._energy_kj = 0.0
        self._last_frame: bytes | None = None
        self._kick: asyncio.Event | None = None
        self.sent: list[tuple[float, bytes]] = []
        """Every measurement notification sent, with its time (for tests)."""
        self.connects = 0

    # ------------------------------------------------------------------ GATT face

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def services(self) -> tuple[GattService, ...]:
        return self._services

    @property
    def connected(self) -> bool:
        return self._sink is not None

    def advertisement(self) -> Advertisement | None:
        if not self.faults.advertising or self.connected:
            return None
        return Advertisement(
            local_name=self.config.name,
            service_uuids=[uuids.HEART_RATE_SERVICE],
            rssi=self.config.rssi,
        )

    def connect(self, sink: NotifySink, on_disconnect: DisconnectSink) -> None:
        if self.faults.refuse_connect:
            raise ConnectRefused(self.faults.refuse_connect)
        if self.connected:
            raise ConnectRefused("already connected to another central")
        self._sink = sink
        self._on_disconnect = on_disconnect
        self._next_notify = self.now + self.config.interval_s
        self.connects += 1

    def disconnect(self) -> None:
        self._link_down()

    def read(self, uuid: str) -> bytes:
        self._require_connected()
        uuid = uuid.lower()
        if "read" not in self._props.get(uuid, ()):
            raise AttError(ATT_READ_NOT_PERMITTED, f"{uuids.short_name(uuid)} is not readable")
        if uuid == uuids.BODY_SENSOR_LOCATION:
            return encode_body_sensor_location(self.config.location)
        info = {
            uuids.MANUFACTURER_NAME: self.config.manufacturer,
            uuids.MODEL_NUMBER: self.config.model,
        }
        if uuid in info:
            return info[uuid].encode()
        raise AttError(ATT_ATTRIBUTE_NOT_FOUND, f"{uuids.short_name(uuid)} has no value")

    def write(self, uuid: str, data: bytes, with_response: bool = True) -> None:
        self._require_connected()
        raise AttError(ATT_WRITE_NOT_PERMITTED, f"{uuids.short_name(uuid)} is not writable")

    def subscribe(self, uuid: str, mode: Subscription) -> None:
        self._require_connected()
        uuid = uuid.lower()
        props = self._props.get(uuid, ())
        if mode != "off" and mode not in props:
            raise AttError(ATT_REQUEST_NOT_SUPPORTED, f"{uuids.short_name(uuid)} cannot {mode}")
        if mode == "off":
            self.subscriptions.pop(uuid, None)
        else:
            self.subscriptions[uuid] = mode

    # ------------------------------------------------------------------ time

    async def run(self, clock: Clock, tick_s: float = 0.25) -> None:
        """Drive the strap on ``clock`` until cancelled."""
        self.now = max(self.now, clock.monotonic())
        self._beats.next_at = self.now
        self._kick = asyncio.Event()
        while True:
            delay = min(tick_s, max(0.0, self.next_deadline() - clock.monotonic()))
            sleeper = asyncio.ensure_future(clock.sleep(delay))
            kicker = asyncio.ensure_future(self._kick.wait())
            try:
                await asyncio.wait({sleeper, kicker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                kicker.cancel()
            self._kick.clear()
            self.advance_to(clock.monotonic())

    def next_deadline(self) -> float:
        times = [self.now + 1.0]
        if self.connected:
            times.append(self._next_notify)
        if self.faults.drop_link_at is not None:
            times.append(self.faults.drop_link_at)
        return min(times)

    def advance_to(self, t: float) -> None:
        """Count the beats up to ``t`` and send every measurement due, in time order."""
        while True:
            due = self._next_notify if self.connected else t
            drop = self.faults.drop_link_at
            step_to = min(t, due, drop if drop is not None else t)
            self._beat_until(step_to)
            self.now = max(self.now, step_to)
            if drop is not None and self.now >= drop:
                self.faults.drop_link_at = None
                if self.connected:
                    self.drop_link("link dropped by the simulated strap")
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

    def drop_link(self, reason: str = "link lost") -> None:
        """The strap drops the connection (out of range, battery, taken off)."""
        callback = self._on_disconnect
        self._link_down()
        if callback is not None:
            callback(reason)

    def go_out_of_reach(self) -> None:
        """Out of range (or asleep): the link drops and nothing connects."""
        self.faults.advertising = False
        self.faults.refuse_connect = "the strap is out of reach"
        if self.connected:
            self.drop_link("the strap went out of reach")

    def come_back(self) -> None:
        self.faults.advertising = True
        self.faults.refuse_connect = None
        if self._kick is not None:
            self._kick.set()

    # ------------------------------------------------------------------ internals

    def _require_connected(self) -> None:
        if not self.connected:
            raise AttError(0x0E, "not connected")

    def _link_down(self) -> None:
        self._sink = None
        self._on_disconnect = None
        self.subscriptions.clear()
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
