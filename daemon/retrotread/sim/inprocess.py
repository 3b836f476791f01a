"""A GattTransport straight onto a simulated peripheral in the same event loop."""

from __future__ import annotations

import asyncio

from retrotread.errors import AttError, LinkError
from retrotread.link.transport import DisconnectCallback, NotifyCallback
from retrotread.sim.gatt import ConnectRefused, Peripheral, Subscription


class InProcessTransport:
    """GATT client to an in-process ``Peripheral`` (the simulator); no radio, no D-Bus."""

    def __init__(self, peripheral: Peripheral, name: str | None = None) -> None:
        self._p = peripheral
        self._name = name
        self._connected = False
        self._callbacks: dict[str, NotifyCallback] = {}
        self._on_disconnect: DisconnectCallback | None = None

    @property
    def address(self) -> str:
        return self._p.address

    @property
    def name(self) -> str | None:
        if self._name is not None:
            return self._name
        adv = self._p.advertisement()
        return adv.local_name if adv else getattr(self._p, "name", None)

    @property
    def is_connected(self) -> bool:
        return self._connected

    def set_disconnected_callback(self, callback: DisconnectCallback | None) -> None:
        self._on_disconnect = callback

    async def connect(self) -> None:
        await asyncio.sleep(0)
        if self._name is None:
            self._name = self.name
        try:
            self._p.connect(self._sink, self._dropped)
        except ConnectRefused as exc:
            raise LinkError(f"cannot connect to {self.address}: {exc}") from exc
        self._connected = True

    async def disconnect(self) -> None:
        if self._connected:
            self._connected = False
            self._callbacks.clear()
            self._p.disconnect()
        await asyncio.sleep(0)

    def characteristics(self) -> dict[str, tuple[str, ...]]:
        return {c.uuid: tuple(c.properties) for s in self._p.services for c in s.characteristics}

    async def read(self, uuid: str) -> bytes:
        self._check()
        await asyncio.sleep(0)
        return self._p.read(uuid)

    async def write(self, uuid: str, data: bytes, response: bool = True) -> None:
        self._check()
        # The peripheral has it the moment it is sent; the write response comes after.
        self._p.write(uuid, bytes(data), response)
        await asyncio.sleep(0)

    async def start_notify(self, uuid: str, callback: NotifyCallback) -> None:
        self._check()
        props = self.characteristics().get(uuid.lower(), ())
        mode: Subscription = "notify" if "notify" in props else "indicate"
        self._callbacks[uuid.lower()] = callback
        try:
            self._p.subscribe(uuid, mode)
        except AttError:
            self._callbacks.pop(uuid.lower(), None)
            raise
        await asyncio.sleep(0)

    async def stop_notify(self, uuid: str) -> None:
        self._callbacks.pop(uuid.lower(), None)
        if self._connected:
            self._p.subscribe(uuid, "off")
        await asyncio.sleep(0)

    def _check(self) -> None:
        if not self._connected:
            raise LinkError(f"not connected to {self.address}")

    def _sink(self, uuid: str, value: bytes) -> None:
        callback = self._callbacks.get(uuid)
        if callback is not None:
            callback(uuid, value)

    def _dropped(self, reason: str) -> None:
        self._connected = False
        self._callbacks.clear()
        if self._on_disconnect is not None:
            self._on_disconnect(reason)
