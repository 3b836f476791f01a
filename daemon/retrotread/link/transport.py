"""The GATT transport under the FTMS client: bleak in the field, the simulator in-process.

Everything FTMS (capabilities, control point, telemetry) is written once on top of this
small surface, so the BLE path and the in-process simulator share all protocol logic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from retrotread.errors import LinkError

NotifyCallback = Callable[[str, bytes], None]
"""Called with (characteristic UUID, value); must not block or raise."""

DisconnectCallback = Callable[[str], None]
"""Called with a reason when the link drops without us asking."""


class NotAdvertising(LinkError):
    """The treadmill was not heard advertising: switched off, out of range, or taken."""


@runtime_checkable
class Listening(Protocol):
    """A transport that can hear its peripheral advertise (the BLE one can)."""

    async def wait_until_advertising(self) -> None:
        """Listen until the peripheral advertises; the next ``connect`` goes straight to it.

        Raises LinkError when it cannot listen (no Bluetooth, the scan failed).
        """
        ...


class GattTransport(Protocol):
    """A connected-or-not GATT client to one peripheral."""

    @property
    def address(self) -> str: ...

    @property
    def name(self) -> str | None: ...

    @property
    def is_connected(self) -> bool: ...

    def set_disconnected_callback(self, callback: DisconnectCallback | None) -> None: ...

    async def connect(self) -> None:
        """Connect and discover services; raises LinkError."""
        ...

    async def disconnect(self) -> None:
        """Release the link and every resource it holds; safe to call when already down."""
        ...

    def characteristics(self) -> dict[str, tuple[str, ...]]:
        """Discovered characteristic UUIDs (lower case) and their properties."""
        ...

    async def read(self, uuid: str) -> bytes:
        """Read a value; raises AttError (the server refused) or LinkError."""
        ...

    async def write(self, uuid: str, data: bytes, response: bool = True) -> None:
        """Write a value; raises AttError (e.g. 0xFD, 0xFE) or LinkError."""
        ...

    async def start_notify(self, uuid: str, callback: NotifyCallback) -> None:
        """Enable notifications or indications (whichever the characteristic has)."""
        ...

    async def stop_notify(self, uuid: str) -> None: ...
