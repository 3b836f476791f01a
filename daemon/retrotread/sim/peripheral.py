"""What the simulated peripherals share: the GATT face a central sees, and the link fault knobs.

``SimPeripheral`` implements ``retrotread.sim.gatt.Peripheral`` for a subclass that brings
its services, the service it advertises, the values it reads, what a write does and what it
does in time (``advance_to``). It holds one central's connection and answers the ATT rules
every peripheral keeps (not connected, not readable, not writable, cannot notify). The link
knobs are common too: stop advertising, refuse connections, drop the link now or at a time,
go out of reach and come back. The simulated treadmill and the strap are its subclasses.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import ClassVar, Generic, Protocol, TypeVar

from retrotread.clock import Clock
from retrotread.errors import (
    ATT_ATTRIBUTE_NOT_FOUND,
    ATT_READ_NOT_PERMITTED,
    ATT_REQUEST_NOT_SUPPORTED,
    ATT_WRITE_NOT_PERMITTED,
    AttError,
)
from retrotread.ftms import uuids
from retrotread.sim.gatt import (
    Advertisement,
    ConnectRefused,
    DisconnectSink,
    GattService,
    NotifySink,
    Subscription,
)


class PeripheralConfig(Protocol):
    """The part of a peripheral's configuration the shared face reads."""

    name: str
    address: str
    rssi: int


class LinkFaults(Protocol):
    """The link fault knobs every simulated peripheral has (changeable while it runs)."""

    advertising: bool
    refuse_connect: str | None
    """Refuse every connection attempt with this reason."""
    drop_link_at: float | None
    """Drop the link when the peripheral's time reaches this, once."""


ConfigT = TypeVar("ConfigT", bound=PeripheralConfig)
FaultsT = TypeVar("FaultsT", bound=LinkFaults)


class SimPeripheral(ABC, Generic[ConfigT, FaultsT]):
    """A simulated GATT peripheral serving one central at a time (``sim.gatt.Peripheral``)."""

    kind: ClassVar[str]
    """What it is, in the reasons it gives ("the treadmill went out of reach")."""
    advertised_service: ClassVar[str]
    """The service UUID in its advertisement."""

    def __init__(self, config: ConfigT, faults: FaultsT, services: tuple[GattService, ...]) -> None:
        self.config = config
        self.faults = faults
        self._services = services
        self._props = {ch.uuid: ch.properties for s in services for ch in s.characteristics}
        self.now = 0.0
        """The peripheral's time: everything up to it has happened."""
        self.subscriptions: dict[str, Subscription] = {}
        self._sink: NotifySink | None = None
        self._on_disconnect: DisconnectSink | None = None
        self._clock: Clock | None = None
        self._kick: asyncio.Event | None = None

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
            service_uuids=[self.advertised_service],
            service_data=self._service_data(),
            rssi=self.config.rssi,
        )

    def connect(self, sink: NotifySink, on_disconnect: DisconnectSink) -> None:
        if self.faults.refuse_connect:
            raise ConnectRefused(self.faults.refuse_connect)
        if self.connected:
            raise ConnectRefused("already connected to another central")
        self._sink = sink
        self._on_disconnect = on_disconnect
        self._link_up()

    def disconnect(self) -> None:
        self._link_down()

    def read(self, uuid: str) -> bytes:
        self._require_connected()
        uuid = uuid.lower()
        if "read" not in self._props.get(uuid, ()):
            raise AttError(ATT_READ_NOT_PERMITTED, f"{uuids.short_name(uuid)} is not readable")
        return self._read_value(uuid)

    def write(self, uuid: str, data: bytes, with_response: bool = True) -> None:
        self._require_connected()
        uuid = uuid.lower()
        props = self._props.get(uuid, ())
        if "write" not in props and "write-without-response" not in props:
            raise AttError(ATT_WRITE_NOT_PERMITTED, f"{uuids.short_name(uuid)} is not writable")
        self._write(uuid, bytes(data))

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
        """Drive the peripheral on ``clock`` until cancelled.

        Event-driven: it sleeps until the next thing due (a notification, a response, a
        fault) or at most ``tick_s``, and a kick wakes it at once, so a compressed clock
        costs a few wake-ups per simulated second, not thousands.
        """
        self.now = max(self.now, clock.monotonic())
        self._clock = clock
        self._starting()
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
        """When something is next due to be sent or to happen."""
        times = [self.now + 1.0, *self._due_times()]
        if self.faults.drop_link_at is not None:
            times.append(self.faults.drop_link_at)
        return min(times)

    @abstractmethod
    def advance_to(self, t: float) -> None:
        """Bring the peripheral up to time ``t``, sending everything due, in time order."""

    # ------------------------------------------------------------------ link fault knobs

    def drop_link(self, reason: str = "link lost") -> None:
        """The peripheral drops the connection (out of range, powered off, taken off)."""
        callback = self._on_disconnect
        self._link_down()
        if callback is not None:
            callback(reason)

    def go_out_of_reach(self) -> None:
        """Out of radio range (or powered off): the link drops and nothing connects."""
        self.faults.advertising = False
        self.faults.refuse_connect = f"the {self.kind} is out of reach"
        if self.connected:
            self.drop_link(f"the {self.kind} went out of reach")

    def come_back(self) -> None:
        """Back in range: advertising and connectable again."""
        self.faults.advertising = True
        self.faults.refuse_connect = None

    def _drop_if_due(self) -> bool:
        """Carry out ``faults.drop_link_at`` once ``now`` has reached it; whether it did."""
        at = self.faults.drop_link_at
        if at is None or self.now < at:
            return False
        self.faults.drop_link_at = None
        if self.connected:
            self.drop_link(f"link dropped by the simulated {self.kind}")
        return True

    # ------------------------------------------------------------------ for subclasses

    def _service_data(self) -> dict[str, bytes]:
        """The advertisement's service data (none unless a subclass says)."""
        return {}

    @abstractmethod
    def _device_information(self) -> dict[str, str]:
        """The Device Information strings it reads, by characteristic UUID."""

    def _read_value(self, uuid: str) -> bytes:
        """The value of a readable characteristic (here, the Device Information strings)."""
        info = self._device_information()
        if uuid in info:
            return info[uuid].encode()
        raise AttError(ATT_ATTRIBUTE_NOT_FOUND, f"{uuids.short_name(uuid)} has no value")

    def _write(self, uuid: str, data: bytes) -> None:
        """Act on a write to a writable characteristic (none takes one unless a subclass says)."""
        raise AttError(ATT_WRITE_NOT_PERMITTED, f"{uuids.short_name(uuid)} is not writable")

    def _due_times(self) -> list[float]:
        """When the subclass has something due (besides a scheduled drop)."""
        return []

    def _starting(self) -> None:
        """``run`` begins: ``now`` has caught up with the clock."""

    def _link_up(self) -> None:
        """A central has just connected."""

    def _link_down(self) -> None:
        """The link is gone, whoever ended it: subscriptions end with it."""
        self._sink = None
        self._on_disconnect = None
        self.subscriptions.clear()

    def _wake(self) -> None:
        """Wake ``run`` now (something is due sooner than it planned)."""
        if self._kick is not None:
            self._kick.set()

    def _require_connected(self) -> None:
        if not self.connected:
            raise AttError(0x0E, "not connected")
