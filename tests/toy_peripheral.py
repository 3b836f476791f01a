"""A small simulated BLE peripheral for the fake BlueZ tests (the ``sim.gatt.Peripheral`` face).

One custom service and a Device Information service. The toy's characteristics:

- READ: read-only, a fixed value.
- NOTIFY: read + notify; ``notify()`` (or ``run()``) sends values while subscribed.
- CONTROL: write + indicate, like a control point: every accepted write is answered with an
  indication ``80 <first byte> 01``; a write while indications are off is refused with ATT
  error 0xFD (CCCD improperly configured).
- STORE: read + write, holds what was written.
- COMMAND: write-without-response, records what it gets.
- LOCKED: read + write, both refused (ATT 0x80 on read, 0x03 on write).

``python -m retrotread.sim.bluez_server tests.toy_peripheral:make`` serves one.
"""

from __future__ import annotations

import asyncio

from retrotread.errors import (
    ATT_APPLICATION_ERROR,
    ATT_CCCD_IMPROPERLY_CONFIGURED,
    ATT_READ_NOT_PERMITTED,
    ATT_REQUEST_NOT_SUPPORTED,
    ATT_UNLIKELY_ERROR,
    ATT_WRITE_NOT_PERMITTED,
    AttError,
)
from retrotread.sim.gatt import (
    Advertisement,
    ConnectRefused,
    DisconnectSink,
    GattCharacteristic,
    GattService,
    NotifySink,
    Property,
    Subscription,
)


def toy_uuid(n: int) -> str:
    return f"7e57{n:04x}-1b2c-4d5e-8f90-0123456789ab"


TOY_ADDRESS = "7E:57:00:00:00:01"
TOY_NAME = "TOY-1"
TOY_SERVICE = toy_uuid(1)
READ = toy_uuid(2)
NOTIFY = toy_uuid(3)
CONTROL = toy_uuid(4)
STORE = toy_uuid(5)
COMMAND = toy_uuid(6)
LOCKED = toy_uuid(7)
DEVICE_INFORMATION = "0000180a-0000-1000-8000-00805f9b34fb"
MANUFACTURER_NAME = "00002a29-0000-1000-8000-00805f9b34fb"

READ_VALUE = b"toy-v1"
SERVICE_DATA = b"\x01\x02"
MANUFACTURER_ID = 0xFFFF
MANUFACTURER_DATA = b"toy"
RSSI = -42
TX_POWER = 4


def _char(uuid: str, *props: Property) -> GattCharacteristic:
    return GattCharacteristic(uuid, props)


SERVICES = (
    GattService(
        TOY_SERVICE,
        (
            _char(READ, "read"),
            _char(NOTIFY, "read", "notify"),
            _char(CONTROL, "write", "indicate"),
            _char(STORE, "read", "write"),
            _char(COMMAND, "write-without-response"),
            _char(LOCKED, "read", "write"),
        ),
    ),
    GattService(DEVICE_INFORMATION, (_char(MANUFACTURER_NAME, "read"),)),
)


class Toy:
    """The toy peripheral; its attributes are the knobs and records tests look at."""

    def __init__(self, address: str = TOY_ADDRESS, name: str = TOY_NAME) -> None:
        self._address = address
        self.name = name
        self.advertising = True
        self.refuse_connect: str | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.writes: list[tuple[str, bytes, bool]] = []
        self.connects = 0
        self.disconnects = 0
        self.counter = 0
        self._stored = b""
        self._sink: NotifySink | None = None
        self._on_disconnect: DisconnectSink | None = None

    # -- the Peripheral face

    @property
    def address(self) -> str:
        return self._address

    @property
    def services(self) -> tuple[GattService, ...]:
        return SERVICES

    @property
    def connected(self) -> bool:
        return self._sink is not None

    def advertisement(self) -> Advertisement | None:
        if not self.advertising or self.connected:
            return None
        return Advertisement(
            local_name=self.name,
            service_uuids=[TOY_SERVICE],
            service_data={TOY_SERVICE: SERVICE_DATA},
            manufacturer_data={MANUFACTURER_ID: MANUFACTURER_DATA},
            rssi=RSSI,
            tx_power=TX_POWER,
        )

    def connect(self, sink: NotifySink, on_disconnect: DisconnectSink) -> None:
        if self.refuse_connect is not None:
            raise ConnectRefused(self.refuse_connect)
        self._sink = sink
        self._on_disconnect = on_disconnect
        self.connects += 1

    def disconnect(self) -> None:
        self._sink = None
        self._on_disconnect = None
        self.subscriptions.clear()
        self.disconnects += 1

    def read(self, uuid: str) -> bytes:
        self._require_connected()
        if uuid == READ:
            return READ_VALUE
        if uuid == NOTIFY:
            return self.counter.to_bytes(2, "little")
        if uuid == STORE:
            return self._stored
        if uuid == MANUFACTURER_NAME:
            return b"retrotread"
        if uuid == LOCKED:
            raise AttError(ATT_APPLICATION_ERROR, "locked")
        raise AttError(ATT_READ_NOT_PERMITTED, f"{uuid} is not readable")

    def write(self, uuid: str, data: bytes, with_response: bool = True) -> None:
        self._require_connected()
        if uuid == CONTROL:
            if self.subscriptions.get(CONTROL) != "indicate":
                raise AttError(ATT_CCCD_IMPROPERLY_CONFIGURED, "indications are off")
            self.writes.append((uuid, data, with_response))
            self._send(CONTROL, bytes([0x80, data[0] if data else 0, 0x01]))
            return
        if uuid in (STORE, COMMAND):
            self.writes.append((uuid, data, with_response))
            if uuid == STORE:
                self._stored = data
            return
        raise AttError(ATT_WRITE_NOT_PERMITTED, f"{uuid} is not writable")

    def subscribe(self, uuid: str, mode: Subscription) -> None:
        self._require_connected()
        props = next(
            (c.properties for s in SERVICES for c in s.characteristics if c.uuid == uuid), ()
        )
        if mode == "off":
            self.subscriptions.pop(uuid, None)
        elif mode in props:
            self.subscriptions[uuid] = mode
        else:
            raise AttError(ATT_REQUEST_NOT_SUPPORTED, f"{uuid} cannot {mode}")

    # -- what the toy does by itself

    def notify(self, value: bytes) -> bool:
        """Send a NOTIFY value if the central subscribed; True when it was sent."""
        if self.subscriptions.get(NOTIFY) != "notify":
            return False
        self._send(NOTIFY, value)
        return True

    def drop(self, reason: str = "toy switched off") -> None:
        """The toy drops the link itself (out of range, switched off)."""
        callback = self._on_disconnect
        self.disconnect()
        if callback is not None:
            callback(reason)

    async def run(self, interval_s: float = 0.05) -> None:
        """The toy's own driver: a counter on NOTIFY while subscribed, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.counter = (self.counter + 1) & 0xFFFF
            self.notify(self.counter.to_bytes(2, "little"))

    def _send(self, uuid: str, value: bytes) -> None:
        if self._sink is not None:
            self._sink(uuid, value)

    def _require_connected(self) -> None:
        if not self.connected:
            raise AttError(ATT_UNLIKELY_ERROR, "not connected")


def make() -> Toy:
    """Factory for ``python -m retrotread.sim.bluez_server tests.toy_peripheral:make``."""
    return Toy()
