"""The GATT transport over bleak (BlueZ on Linux): the daemon's path to a real treadmill.

The only module that imports bleak. Bleak's exceptions are converted here, at the
boundary: GATT protocol errors become ``AttError`` with the ATT code (the control point
client needs 0xFD/0xFE), everything else becomes ``LinkError`` with a readable reason.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from typing import Any, Literal

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakDBusError,
    BleakError,
    BleakGATTProtocolError,
)
from bleak_retry_connector import close_stale_connections, establish_connection
from bluetooth_adapters import get_dbus_managed_objects, load_history_from_managed_objects

from retrotread.errors import AttError, LinkError
from retrotread.ftms import uuids
from retrotread.link.transport import DisconnectCallback, NotAdvertising, NotifyCallback

log = logging.getLogger(__name__)


class BluetoothUnavailable(LinkError):
    """No usable Bluetooth stack (no BlueZ on the system bus, no adapter, no permission)."""


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


# D-Bus errors that mean "no BlueZ answers on the system bus" (bluetoothd not running).
_NO_BLUEZ = frozenset(
    {"org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NoReply"}
)


def _unavailable(exc: BaseException) -> BluetoothUnavailable | None:
    """Recognise 'there is no Bluetooth here' among bleak's and D-Bus's failures."""
    if isinstance(exc, BleakBluetoothNotAvailableError):
        why = exc.reason.name.lower().replace("_", " ")
        return BluetoothUnavailable(f"Bluetooth is not available ({why}): {_describe(exc)}")
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return BluetoothUnavailable(
            f"Bluetooth is not available (no D-Bus system bus): {_describe(exc)}"
        )
    if isinstance(exc, BleakDBusError) and exc.dbus_error in _NO_BLUEZ:
        return BluetoothUnavailable(
            f"Bluetooth is not available (is bluetoothd running?): {_describe(exc)}"
        )
    return None


def _bluez_kwargs(adapter: str | None) -> dict[str, Any]:
    return {"bluez": {"adapter": adapter}} if adapter else {}


@dataclass(frozen=True)
class Found:
    """One advertising FTMS machine or heart-rate strap seen in a scan."""

    device: BLEDevice
    name: str | None
    address: str
    rssi: int | None
    is_treadmill: bool | None
    kind: Literal["treadmill", "strap"] = "treadmill"


def _ftms_advert(adv: AdvertisementData) -> tuple[bool, bool | None]:
    """(looks like FTMS, is a treadmill or None when the advert does not say)."""
    service = uuids.FITNESS_MACHINE_SERVICE
    data = adv.service_data.get(service)
    listed = service in [u.lower() for u in adv.service_uuids]
    if data is not None and len(data) >= 2:
        # FTMS.md §2: flags then machine type; some units send one byte or swap them,
        # so OR the type bytes together (a treadmill is bit 0).
        machine_type = 0
        for b in data[1:3]:
            machine_type |= b
        return True, bool(machine_type & 0x01)
    return listed or data is not None, None


def _heart_rate_advert(adv: AdvertisementData) -> bool:
    """Advertises the Heart Rate Service (0x180D): a strap, a watch in broadcast mode."""
    return uuids.HEART_RATE_SERVICE in [u.lower() for u in adv.service_uuids]


_SCAN_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str | None, asyncio.Lock]]
_SCAN_TURNS = weakref.WeakKeyDictionary()


def _scan_turn(adapter: str | None) -> asyncio.Lock:
    """This process's scans on ``adapter`` take turns.

    BlueZ gives each D-Bus client one discovery session per adapter (a second StartDiscovery
    is ``org.bluez.Error.InProgress``), and bleak is one client per process: the treadmill's
    link and the strap's, looking at the same time, would fail each other.
    """
    locks = _SCAN_TURNS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(adapter, asyncio.Lock())


async def scan(timeout_s: float, adapter: str | None = None) -> list[Found]:
    """Advertising FTMS machines (service UUID or service data) and heart-rate straps
    (``kind`` says which), strongest first."""
    try:
        async with _scan_turn(adapter):
            seen = await BleakScanner.discover(
                timeout=timeout_s, return_adv=True, **_bluez_kwargs(adapter)
            )
    except (BleakError, OSError) as exc:
        raise _unavailable(exc) or LinkError(f"scan failed: {_describe(exc)}") from exc
    out = []
    for device, adv in seen.values():
        ftms, treadmill = _ftms_advert(adv)
        name = adv.local_name or device.name
        if ftms:
            out.append(Found(device, name, device.address, adv.rssi, treadmill))
        elif _heart_rate_advert(adv):
            out.append(Found(device, name, device.address, adv.rssi, False, "strap"))
    out.sort(key=lambda f: -(f.rssi if f.rssi is not None else -999))
    return out


class BleakTransport:
    """GATT client to one treadmill through bleak, found by address, name or FTMS service."""

    def __init__(
        self,
        *,
        address: str | None = None,
        name: str | None = None,
        adapter: str | None = None,
        scan_timeout_s: float = 10.0,
        connect_attempts: int = 2,
        kind: Literal["treadmill", "strap"] = "treadmill",
    ) -> None:
        self.kind = kind
        self.want_address = address
        self.want_name = name
        self.adapter = adapter
        self.scan_timeout_s = scan_timeout_s
        self.connect_attempts = connect_attempts
        self._client: BleakClient | None = None
        self._device: BLEDevice | None = None
        self._on_disconnect: DisconnectCallback | None = None
        self._expect_disconnect = False
        self._chars: dict[str, tuple[str, ...]] = {}
        self._taking_over = False
        self._takeover_failed = False
        self._heard: BLEDevice | None = None  # advertising just now: connect to it

    @property
    def address(self) -> str:
        if self._device is not None:
            return self._device.address
        return self.want_address or "(unknown)"

    @property
    def name(self) -> str | None:
        if self._device is not None and self._device.name:
            return self._device.name
        return self.want_name

    @property
    def is_connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    def set_disconnected_callback(self, callback: DisconnectCallback | None) -> None:
        self._on_disconnect = callback

    def describe_target(self) -> str:
        what = "heart-rate strap" if self.kind == "strap" else "treadmill"
        if self.want_address:
            return f"{what} {self.want_address}"
        if self.want_name:
            return f"{what} named {self.want_name!r}"
        return "a heart-rate strap" if self.kind == "strap" else "an FTMS treadmill"

    def _is_ours(self, d: BLEDevice, adv: AdvertisementData) -> bool:
        """The configured device: by address, else by name, else any FTMS treadmill (a
        strap is never taken at random: the app only makes one with an address or name)."""
        if self.want_address:
            return d.address.upper() == self.want_address.upper()
        if self.want_name:
            return (adv.local_name or d.name) == self.want_name
        if self.kind == "strap":
            return _heart_rate_advert(adv)
        ftms, treadmill = _ftms_advert(adv)
        return ftms and treadmill is not False

    async def held_by_bluez(self) -> BLEDevice | None:
        """The treadmill, if BlueZ already holds a connection to it.

        After a crash of the daemon (kill -9) BlueZ keeps the dead process's connection,
        and a connected treadmill does not advertise, so no scan finds it; BlueZ's own
        object tree still lists it, marked Connected.
        """
        try:
            objects = await get_dbus_managed_objects()
        except Exception as exc:  # no BlueZ at all: the scan says so, in its own words
            log.debug("cannot list BlueZ's devices: %s", _describe(exc))
            return None
        for seen in load_history_from_managed_objects(objects, self.adapter).values():
            details = seen.device.details
            props = details.get("props", {}) if isinstance(details, dict) else {}
            if props.get("Connected") and self._is_ours(seen.device, seen.advertisement_data):
                return seen.device
        return None

    async def find(self) -> BLEDevice:
        """The configured treadmill: held by BlueZ already, else found advertising.

        LinkError if it is neither. A held connection is taken over; if that failed last
        time, it is closed first so that the treadmill advertises again.
        """
        held = await self.held_by_bluez()
        if held is not None and not self._takeover_failed:
            log.warning(
                "%s is still connected in BlueZ (a previous run ended without letting go): "
                "taking the connection over",
                held.address,
            )
            self._taking_over = True
            return held
        if held is not None:
            log.warning("closing the connection BlueZ keeps to %s, then scanning", held.address)
            await close_stale_connections(held)
        self._takeover_failed = False
        kwargs = _bluez_kwargs(self.adapter)
        try:
            async with _scan_turn(self.adapter):
                if self.want_address:
                    device = await BleakScanner.find_device_by_address(
                        self.want_address, timeout=self.scan_timeout_s, **kwargs
                    )
                else:
                    device = await BleakScanner.find_device_by_filter(
                        self._is_ours, timeout=self.scan_timeout_s, **kwargs
                    )
        except (BleakError, OSError) as exc:
            raise _unavailable(exc) or LinkError(f"scan failed: {_describe(exc)}") from exc
        if device is None:
            hint = (
                "is it worn (straps sleep when dry) and not connected to another app?"
                if self.kind == "strap"
                else "is it on and not connected to another app?"
            )
            raise NotAdvertising(f"{self.describe_target()} not found ({hint})")
        return device

    async def wait_until_advertising(self) -> None:
        """Scan until the configured treadmill advertises; ``connect`` then goes straight to it.

        One scan for as long as it takes, with a detection callback: the treadmill is
        connected to within one advertising interval of being switched on, instead of at
        the next retry. LinkError when there is no scanning (no Bluetooth, no adapter).
        """
        heard: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()

        def detected(device: BLEDevice, adv: AdvertisementData) -> None:
            if not heard.done() and self._is_ours(device, adv):
                heard.set_result(device)

        try:
            async with BleakScanner(detected, **_bluez_kwargs(self.adapter)):
                device = await heard
        except (BleakError, OSError) as exc:
            raise _unavailable(exc) or LinkError(f"scan failed: {_describe(exc)}") from exc
        log.info("%s is advertising", device.address)
        self._heard = device

    async def connect(self) -> None:
        if self._client is not None:
            await self.disconnect()
        self._taking_over = False
        heard, self._heard = self._heard, None
        device = heard or await self.find()
        self._device = device
        self._expect_disconnect = False
        # Cancelled or failed, a takeover is not tried again: the stale link is closed.
        self._takeover_failed = self._taking_over
        try:
            client = await establish_connection(
                BleakClient,
                device,
                device.name or device.address,
                disconnected_callback=self._disconnected,
                max_attempts=self.connect_attempts,
            )
        except (BleakError, OSError, TimeoutError) as exc:
            raise _unavailable(exc) or LinkError(
                f"cannot connect to {device.address}: {_describe(exc)}"
            ) from exc
        self._takeover_failed = False
        self._client = client
        self._chars = {
            ch.uuid.lower(): tuple(ch.properties)
            for service in client.services
            for ch in service.characteristics
        }

    def _disconnected(self, client: BleakClient) -> None:
        if self._expect_disconnect or client is not self._client:
            return
        if self._on_disconnect is not None:
            self._on_disconnect(f"the {self.kind} dropped the Bluetooth link")

    async def disconnect(self) -> None:
        """Always safe; frees bleak's per-connection bus socket even after a drop."""
        client, self._client = self._client, None
        self._chars = {}
        if client is None:
            return
        self._expect_disconnect = True
        try:
            async with asyncio.timeout(10):
                await client.disconnect()
        except (BleakError, OSError, TimeoutError, EOFError) as exc:
            log.debug("disconnect from %s: %s", self.address, _describe(exc))

    def characteristics(self) -> dict[str, tuple[str, ...]]:
        return dict(self._chars)

    def _require(self) -> BleakClient:
        if self._client is None or not self._client.is_connected:
            raise LinkError(f"not connected to {self.address}")
        return self._client

    async def read(self, uuid: str) -> bytes:
        client = self._require()
        try:
            return bytes(await client.read_gatt_char(uuid))
        except BleakGATTProtocolError as exc:
            raise AttError(int(exc.code), _describe(exc)) from exc
        except (BleakError, OSError, EOFError) as exc:
            raise LinkError(f"read {uuids.short_name(uuid)}: {_describe(exc)}") from exc

    async def write(self, uuid: str, data: bytes, response: bool = True) -> None:
        client = self._require()
        try:
            await client.write_gatt_char(uuid, bytes(data), response=response)
        except BleakGATTProtocolError as exc:
            raise AttError(int(exc.code), _describe(exc)) from exc
        except (BleakError, OSError, EOFError) as exc:
            raise LinkError(f"write {uuids.short_name(uuid)}: {_describe(exc)}") from exc

    async def start_notify(self, uuid: str, callback: NotifyCallback) -> None:
        client = self._require()
        key = uuid.lower()

        def forward(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            callback(key, bytes(data))

        try:
            await client.start_notify(uuid, forward)
        except BleakGATTProtocolError as exc:
            raise AttError(int(exc.code), _describe(exc)) from exc
        except (BleakError, OSError, EOFError) as exc:
            raise LinkError(f"subscribe {uuids.short_name(uuid)}: {_describe(exc)}") from exc

    async def stop_notify(self, uuid: str) -> None:
        client = self._require()
        try:
            await client.stop_notify(uuid)
        except (BleakError, OSError, EOFError) as exc:
            raise LinkError(f"unsubscribe {uuids.short_name(uuid)}: {_describe(exc)}") from exc
