"""The GATT-level face of a simulated peripheral, shared by the in-process link and fake BlueZ.

A peripheral is a synchronous object: reads and writes are answered (or refused with an
AttError) at once, and everything the peripheral sends by itself (notifications and
indications) goes to the ``sink`` given at ``connect``. The peripheral's own clock task
calls the sink from the event loop thread; a sink must not block or raise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from retrotread.errors import RetrotreadError

Property = Literal["read", "write", "write-without-response", "notify", "indicate"]
Subscription = Literal["off", "notify", "indicate"]

NotifySink = Callable[[str, bytes], None]
"""Called with (characteristic UUID, value) for every notification or indication."""

DisconnectSink = Callable[[str], None]
"""Called with a reason when the peripheral drops the link by itself."""


class ConnectRefused(RetrotreadError):
    """The peripheral refused or failed a connection attempt (link-level fault knob)."""


@dataclass(frozen=True)
class GattCharacteristic:
    """One characteristic: full 128-bit UUID (lower case) and its declared properties."""

    uuid: str
    properties: tuple[Property, ...]


@dataclass(frozen=True)
class GattService:
    """One primary service and its characteristics, in handle order."""

    uuid: str
    characteristics: tuple[GattCharacteristic, ...]
    primary: bool = True


@dataclass
class Advertisement:
    """What the peripheral advertises: name, service UUIDs, service data, signal."""

    local_name: str
    service_uuids: list[str]
    service_data: dict[str, bytes] = field(default_factory=dict)
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    rssi: int = -60
    tx_power: int | None = None


class Peripheral(Protocol):
    """A simulated BLE peripheral as a GATT server."""

    @property
    def address(self) -> str: ...

    @property
    def services(self) -> tuple[GattService, ...]: ...

    def advertisement(self) -> Advertisement | None:
        """The current advertisement, or None while not advertising."""
        ...

    @property
    def connected(self) -> bool: ...

    def connect(self, sink: NotifySink, on_disconnect: DisconnectSink) -> None:
        """Accept a central; raises ConnectRefused when a fault knob says so."""
        ...

    def disconnect(self) -> None:
        """The central disconnects (no callback to on_disconnect)."""
        ...

    def read(self, uuid: str) -> bytes:
        """Read a characteristic value; raises AttError."""
        ...

    def write(self, uuid: str, data: bytes, with_response: bool = True) -> None:
        """Write a characteristic value; raises AttError (e.g. 0xFD, 0xFE)."""
        ...

    def subscribe(self, uuid: str, mode: Subscription) -> None:
        """Write the characteristic's CCCD (off / notify / indicate); raises AttError."""
        ...
