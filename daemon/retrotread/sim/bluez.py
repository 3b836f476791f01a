"""The fake BlueZ: BlueZ's D-Bus face on a private bus, serving simulated peripherals.

bleak's Linux backend talks to BlueZ only over D-Bus (BLESIM.md), so answering its calls
with the objects BlueZ exports makes a simulated peripheral (``sim.gatt.Peripheral``) a BLE
device as far as bleak, and the daemon's real BLE code, can tell.

Served, as BlueZ 5.66+ does: the ObjectManager at ``/``; ``org.bluez.Adapter1`` at
``/org/bluez/hci0`` (per-client discovery sessions and filters); per peripheral a
``Device1`` (exported when a scan first sees it), and while it is connected its
``GattService1``/``GattCharacteristic1``/``GattDescriptor1`` objects (the CCCD, 0x2902);
ReadValue, WriteValue, StartNotify/StopNotify, AcquireNotify; link loss; BlueZ's error
names and texts. Not served: pairing (Pair only connects), MTU exchange, AcquireWrite,
advertisement monitors, BR/EDR, the GATT cache, passive scanning.

Usage::

    fake = FakeBlueZ()
    fake.add_peripheral(toy)
    await fake.start(bus.address)      # or: async with FakeBlueZ(bus_address=...) as fake
    ...
    fake.drop_link(toy.address)        # link-level knobs: set_advertising, fail_next_connect,
                                       # hold_connection (a dead process's connection)
    await fake.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from dbus_fast import (
    BusType,
    DBusError,
    Message,
    MessageType,
    NameFlag,
    PropertyAccess,
    RequestNameReply,
    Variant,
)
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import (
    DBusBool,
    DBusBytes,
    DBusDict,
    DBusInt16,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
    DBusUInt16,
    DBusUInt32,
)
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from retrotread.errors import AttError, RetrotreadError
from retrotread.ftms import uuids
from retrotread.sim.gatt import (
    Advertisement,
    ConnectRefused,
    GattCharacteristic,
    GattService,
    Peripheral,
    Subscription,
)

log = logging.getLogger(__name__)

BLUEZ_SERVICE = "org.bluez"
ADAPTER_PATH = "/org/bluez/hci0"
ADAPTER_IFACE = "org.bluez.Adapter1"
DEVICE_IFACE = "org.bluez.Device1"
SERVICE_IFACE = "org.bluez.GattService1"
CHAR_IFACE = "org.bluez.GattCharacteristic1"
DESC_IFACE = "org.bluez.GattDescriptor1"
PROPS_IFACE = "org.freedesktop.DBus.Properties"
ERROR = "org.bluez.Error."
ERROR_FAILED = ERROR + "Failed"
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"

# Device1.Connect failure reasons as BlueZ words them (src/error.h). bleak treats the
# first specially: BlueZ had connected, so bleak waits for Connected to go false, then retries.
LE_ABORT_BY_LOCAL = "le-connection-abort-by-local"
LE_ABORT_BY_REMOTE = "le-connection-abort-by-remote"
LE_TIMEOUT = "le-connection-timeout"

DEFAULT_ADAPTER_ADDRESS = "00:1A:7D:DA:71:13"
ABSENT_POLL_S = 0.02
# Announcements soon after StartDiscovery, before the steady interval: a real radio hears
# a device many times a second, and bleak's find_device_by_*() start listening only after
# the StartDiscovery reply.
QUICK_REPEATS_S = (0.02, 0.05, 0.1)

DBusStrList = Annotated[list[str], DBusSignature("as")]
DBusPathList = Annotated[list[str], DBusSignature("ao")]
DBusByteKeyedData = Annotated[dict[int, Variant], DBusSignature("a{qv}")]
DBusFdAndMtu = Annotated[list[int], DBusSignature("hq")]
# A method with no reply values: under PEP 563 a bare "-> None" reads as signature None.
DBusVoid = Annotated[None, DBusSignature("")]

AddressType = Literal["public", "random"]


def device_path(address: str) -> str:
    """BlueZ's object path for a device: ``/org/bluez/hci0/dev_C0_FF_EE_00_00_01``."""
    return f"{ADAPTER_PATH}/dev_{address.upper().replace(':', '_')}"


def att_error_reply(code: int) -> DBusError:
    """The D-Bus error BlueZ answers a GATT request with when the peer sent ATT error ``code``.

    Mirrors ``create_gatt_dbus_error()`` in BlueZ's src/gatt-client.c. bleak 3.1 turns all
    but "Not paired" back into ``BleakGATTProtocolError`` with the code (``.code``); codes
    without a name of their own, 0xFD and 0xFE among them, travel as text in ``Failed``.
    """
    if code == 0x02:
        return DBusError(ERROR + "NotPermitted", "Read not permitted")
    if code == 0x03:
        return DBusError(ERROR + "NotPermitted", "Write not permitted")
    if code in (0x05, 0x0C, 0x0F):
        return DBusError(ERROR + "NotPermitted", "Not paired")
    if code == 0x07:
        return DBusError(ERROR + "InvalidArguments", "Invalid offset")
    if code == 0x0D:
        return DBusError(ERROR + "InvalidArguments", "Invalid Length")
    if code == 0x08:
        return DBusError(ERROR + "NotAuthorized", "Operation Not Authorized")
    if code == 0x06:
        return DBusError(ERROR + "NotSupported", "Operation is not supported")
    if code == 0:
        return DBusError(ERROR_FAILED, "Operation failed")
    return DBusError(ERROR_FAILED, f"Operation failed with ATT error: 0x{code:02x}")


def _bluez_error(name: str, text: str) -> DBusError:
    return DBusError(ERROR + name, text)


def _not_connected() -> DBusError:
    return _bluez_error("NotConnected", "Not Connected")


class FakeBlueZError(RetrotreadError):
    """The fake BlueZ could not be served (e.g. ``org.bluez`` is already owned on the bus)."""


@dataclass(frozen=True)
class _Filter:
    """One client's discovery filter (Adapter1.SetDiscoveryFilter): UUIDs and RSSI only."""

    uuids: frozenset[str] | None = None
    rssi: int | None = None

    @staticmethod
    def parse(options: dict[str, Variant]) -> _Filter:
        uuid_list = options.get("UUIDs")
        rssi = options.get("RSSI")
        return _Filter(
            frozenset(str(u).lower() for u in uuid_list.value) if uuid_list is not None else None,
            int(rssi.value) if rssi is not None else None,
        )

    def accepts(self, adv: Advertisement) -> bool:
        if self.uuids is not None and self.uuids.isdisjoint(u.lower() for u in adv.service_uuids):
            return False
        return self.rssi is None or adv.rssi >= self.rssi


class _Props(ServiceInterface):
    """A ServiceInterface whose D-Bus property values live in ``values``, keyed by name."""

    def __init__(self, name: str, path: str, values: dict[str, Any]) -> None:
        super().__init__(name)
        self.path = path
        self.values = values

    def update(self, changes: dict[str, Any], *, always: bool = False) -> None:
        """Set values and signal PropertiesChanged for those that changed (all if ``always``)."""
        changed = {k: v for k, v in changes.items() if always or self.values.get(k) != v}
        self.values.update(changes)
        if changed:
            self.emit_properties_changed(changed)


# ---------------------------------------------------------------------------- Adapter1


class _Adapter(_Props):
    def __init__(self, fake: FakeBlueZ) -> None:
        super().__init__(
            ADAPTER_IFACE,
            ADAPTER_PATH,
            {
                "Address": fake.adapter_address,
                "Name": "retrotread-fake",
                "Discovering": False,
                "Powered": fake.powered,
            },
        )
        self._fake = fake

    @dbus_property(PropertyAccess.READ, name="Address")
    def address(self) -> DBusStr:
        return str(self.values["Address"])

    @dbus_property(PropertyAccess.READ, name="AddressType")
    def address_type(self) -> DBusStr:
        return "public"

    @dbus_property(PropertyAccess.READ, name="Name")
    def name_(self) -> DBusStr:
        return str(self.values["Name"])

    @dbus_property(PropertyAccess.READ, name="Alias")
    def alias(self) -> DBusStr:
        return str(self.values["Name"])

    @dbus_property(PropertyAccess.READ, name="Class")
    def class_(self) -> DBusUInt32:
        return 0

    @dbus_property(PropertyAccess.READ, name="Powered")
    def powered(self) -> DBusBool:
        return bool(self.values["Powered"])

    @dbus_property(PropertyAccess.READ, name="Discoverable")
    def discoverable(self) -> DBusBool:
        return False

    @dbus_property(PropertyAccess.READ, name="Pairable")
    def pairable(self) -> DBusBool:
        return False

    @dbus_property(PropertyAccess.READ, name="Discovering")
    def discovering(self) -> DBusBool:
        return bool(self.values["Discovering"])

    @dbus_property(PropertyAccess.READ, name="UUIDs")
    def uuids(self) -> DBusStrList:
        return []

    # bleak picks the first adapter whose Roles has "central" and that is Powered; a
    # missing Roles is a KeyError inside bleak (BLESIM.md).
    @dbus_property(PropertyAccess.READ, name="Roles")
    def roles(self) -> DBusStrList:
        return ["central", "peripheral"]

    @dbus_method(name="SetDiscoveryFilter")
    def set_discovery_filter(self, options: DBusDict) -> DBusVoid:
        self._fake._set_discovery_filter(options)

    @dbus_method(name="StartDiscovery")
    def start_discovery(self) -> DBusVoid:
        self._fake._start_discovery()

    @dbus_method(name="StopDiscovery")
    def stop_discovery(self) -> DBusVoid:
        self._fake._stop_discovery()

    @dbus_method(name="RemoveDevice")
    def remove_device(self, device: DBusObjectPath) -> DBusVoid:
        self._fake._remove_device(device)

    @dbus_method(name="GetDiscoveryFilters")
    def get_discovery_filters(self) -> DBusStrList:
        return ["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable"]


# ---------------------------------------------------------------------------- Device1


def _advertised_values(address: str, adv: Advertisement) -> dict[str, Any]:
    # Without a name BlueZ makes the Alias from the address; bleak maps that back to None.
    name = adv.local_name
    return {
        "Name": name,
        "Alias": name or address.replace(":", "-"),
        "UUIDs": [u.lower() for u in adv.service_uuids],
        "RSSI": adv.rssi,
        "TxPower": adv.tx_power if adv.tx_power is not None else 0,
        "ManufacturerData": {k: Variant("ay", bytes(v)) for k, v in adv.manufacturer_data.items()},
        "ServiceData": {k.lower(): Variant("ay", bytes(v)) for k, v in adv.service_data.items()},
    }


class _Device(_Props):
    def __init__(self, link: _Link, adv: Advertisement) -> None:
        values = {
            "Address": link.address,
            "AddressType": link.address_type,
            "Paired": False,
            "Bonded": False,
            "Trusted": False,
            "Connected": False,
            "ServicesResolved": False,
            **_advertised_values(link.address, adv),
        }
        super().__init__(DEVICE_IFACE, link.path, values)
        self._link = link

    def advertised(self, adv: Advertisement) -> None:
        """A fresh advertisement: changed fields are signalled, RSSI always (a new reading)."""
        values = _advertised_values(self._link.address, adv)
        rssi = values.pop("RSSI")
        self.update(values)
        self.update({"RSSI": rssi}, always=True)

    @dbus_property(PropertyAccess.READ, name="Address")
    def address(self) -> DBusStr:
        return str(self.values["Address"])

    @dbus_property(PropertyAccess.READ, name="AddressType")
    def address_type(self) -> DBusStr:
        return str(self.values["AddressType"])

    @dbus_property(PropertyAccess.READ, name="Name")
    def name_(self) -> DBusStr:
        return str(self.values["Name"])

    @dbus_property(PropertyAccess.READ, name="Alias")
    def alias(self) -> DBusStr:
        return str(self.values["Alias"])

    @dbus_property(PropertyAccess.READ, name="Adapter")
    def adapter(self) -> DBusObjectPath:
        return ADAPTER_PATH

    @dbus_property(PropertyAccess.READ, name="Paired")
    def paired(self) -> DBusBool:
        return bool(self.values["Paired"])

    @dbus_property(PropertyAccess.READ, name="Bonded")
    def bonded(self) -> DBusBool:
        return bool(self.values["Bonded"])

    # Writable: bleak's connect(pair=True) sets Trusted before calling Pair.
    @dbus_property(name="Trusted")
    def trusted(self) -> DBusBool:
        return bool(self.values["Trusted"])

    @trusted.setter
    def _set_trusted(self, value: DBusBool) -> None:
        self.update({"Trusted": bool(value)})

    @dbus_property(PropertyAccess.READ, name="Blocked")
    def blocked(self) -> DBusBool:
        return False

    @dbus_property(PropertyAccess.READ, name="LegacyPairing")
    def legacy_pairing(self) -> DBusBool:
        return False

    @dbus_property(PropertyAccess.READ, name="Connected")
    def connected(self) -> DBusBool:
        return bool(self.values["Connected"])

    @dbus_property(PropertyAccess.READ, name="ServicesResolved")
    def services_resolved(self) -> DBusBool:
        return bool(self.values["ServicesResolved"])

    @dbus_property(PropertyAccess.READ, name="UUIDs")
    def uuids(self) -> DBusStrList:
        return list(self.values["UUIDs"])

    @dbus_property(PropertyAccess.READ, name="RSSI")
    def rssi(self) -> DBusInt16:
        return int(self.values["RSSI"])

    @dbus_property(PropertyAccess.READ, name="ManufacturerData")
    def manufacturer_data(self) -> DBusByteKeyedData:
        return dict(self.values["ManufacturerData"])

    @dbus_property(PropertyAccess.READ, name="ServiceData")
    def service_data(self) -> DBusDict:
        return dict(self.values["ServiceData"])

    @dbus_method(name="Connect")
    async def connect(self) -> DBusVoid:
        await self._link.connect()

    @dbus_method(name="Disconnect")
    def disconnect(self) -> DBusVoid:
        self._link.disconnect()

    @dbus_method(name="Pair")
    async def pair(self) -> DBusVoid:
        # No pairing here (BLESIM.md fidelity limits): Pair connects, as BlueZ's does first,
        # and reports the device bonded.
        await self._link.connect()
        self.update({"Paired": True, "Bonded": True})

    @dbus_method(name="CancelPairing")
    def cancel_pairing(self) -> DBusVoid:
        raise _bluez_error("DoesNotExist", "Does Not Exist")


class _DeviceWithTxPower(_Device):
    """BlueZ has TxPower only when the advertisement carried it; bleak reads it as None else."""

    @dbus_property(PropertyAccess.READ, name="TxPower")
    def tx_power(self) -> DBusInt16:
        return int(self.values["TxPower"])


# ---------------------------------------------------------------------------- GATT


class _GattService(_Props):
    def __init__(self, path: str, service: GattService, device: str, handle: int) -> None:
        super().__init__(
            SERVICE_IFACE,
            path,
            {"UUID": service.uuid.lower(), "Primary": service.primary, "Device": device},
        )
        self.handle = handle

    @dbus_property(PropertyAccess.READ, name="UUID")
    def uuid(self) -> DBusStr:
        return str(self.values["UUID"])

    @dbus_property(PropertyAccess.READ, name="Primary")
    def primary(self) -> DBusBool:
        return bool(self.values["Primary"])

    @dbus_property(PropertyAccess.READ, name="Device")
    def device(self) -> DBusObjectPath:
        return str(self.values["Device"])

    @dbus_property(PropertyAccess.READ, name="Includes")
    def includes(self) -> DBusPathList:
        return []

    @dbus_property(PropertyAccess.READ, name="Handle")
    def handle_(self) -> DBusUInt16:
        return self.handle


class _GattChar(_Props):
    def __init__(
        self, link: _Link, path: str, char: GattCharacteristic, service: str, handle: int
    ) -> None:
        super().__init__(
            CHAR_IFACE,
            path,
            {
                "UUID": char.uuid.lower(),
                "Service": service,
                "Value": b"",
                "Notifying": False,
                "NotifyAcquired": False,
                "Flags": list(char.properties),
            },
        )
        self.link = link
        self.uuid_ = char.uuid.lower()
        self.flags = frozenset(char.properties)
        self.handle = handle
        self.sessions: set[str] = set()  # D-Bus clients that called StartNotify
        self.acquired: socket.socket | None = None  # our end of an AcquireNotify socket

    @property
    def mode(self) -> Subscription:
        """What StartNotify writes to the CCCD: notify when the char can, else indicate."""
        return "notify" if "notify" in self.flags else "indicate"

    @property
    def subscription(self) -> Subscription:
        return self.mode if self.sessions or self.acquired is not None else "off"

    def deliver(self, value: bytes) -> None:
        """A notification or indication from the peripheral, to whoever subscribed."""
        if self.acquired is not None:
            try:
                self.acquired.send(value)
            except BlockingIOError:
                log.debug("fake BlueZ: %s: AcquireNotify socket full, value dropped", self.path)
            except OSError:
                self.release_acquired(unsubscribe=True)
        if self.sessions:
            self.update({"Value": bytes(value)}, always=True)

    # -- D-Bus surface

    @dbus_property(PropertyAccess.READ, name="UUID")
    def uuid(self) -> DBusStr:
        return str(self.values["UUID"])

    @dbus_property(PropertyAccess.READ, name="Service")
    def service(self) -> DBusObjectPath:
        return str(self.values["Service"])

    @dbus_property(PropertyAccess.READ, name="Value")
    def value(self) -> DBusBytes:
        return bytes(self.values["Value"])

    @dbus_property(PropertyAccess.READ, name="Notifying")
    def notifying(self) -> DBusBool:
        return bool(self.values["Notifying"])

    @dbus_property(PropertyAccess.READ, name="Flags")
    def flags_(self) -> DBusStrList:
        return list(self.values["Flags"])

    @dbus_property(PropertyAccess.READ, name="MTU")
    def mtu(self) -> DBusUInt16:
        return self.link.fake.mtu

    @dbus_property(PropertyAccess.READ, name="Handle")
    def handle_(self) -> DBusUInt16:
        return self.handle

    @dbus_method(name="ReadValue")
    def read_value(self, options: DBusDict) -> DBusBytes:
        link = self.link.require_connected()
        try:
            value = bytes(link.peripheral.read(self.uuid_))
        except AttError as exc:
            raise att_error_reply(exc.code) from None
        # BlueZ stores every value read and signals it as a change, so a read of a
        # characteristic the client has StartNotify'd on reaches bleak's notification
        # callback too (BLESIM.md: the real quirk, reproduced).
        self.update({"Value": value}, always=True)
        return value

    @dbus_method(name="WriteValue")
    def write_value(self, value: DBusBytes, options: DBusDict) -> DBusVoid:
        link = self.link.require_connected()
        kind = options["type"].value if "type" in options else None
        # BlueZ: a write request needs "write", a command "write-without-response";
        # with no type it prefers the request (gatt-client.c characteristic_write_value).
        if kind in (None, "request", "reliable") and "write" in self.flags:
            with_response = True
        elif kind in (None, "command") and "write-without-response" in self.flags:
            with_response = False
        else:
            raise _bluez_error("NotSupported", "Operation is not supported")
        try:
            link.peripheral.write(self.uuid_, bytes(value), with_response)
        except AttError as exc:
            if with_response:
                raise att_error_reply(exc.code) from None
            # A Write Command has no ATT response: the error never reaches the client.
            log.debug("fake BlueZ: write command to %s refused: %s", self.uuid_, exc)

    @dbus_method(name="StartNotify")
    def start_notify(self) -> DBusVoid:
        link = self.link.require_connected()
        if "notify" not in self.flags and "indicate" not in self.flags:
            raise _bluez_error("NotSupported", "Operation is not supported")
        if self.acquired is not None:
            raise _bluez_error("NotPermitted", "Notify acquired")
        sender = link.fake.caller
        if not self.sessions:
            link.subscribe(self.uuid_, self.mode)
        self.sessions.add(sender)
        self.update({"Notifying": True})

    @dbus_method(name="StopNotify")
    def stop_notify(self) -> DBusVoid:
        self.link.require_connected()
        sender = self.link.fake.caller
        if sender not in self.sessions:
            raise _bluez_error("Failed", "No notify session started")
        self.end_session(sender)

    def end_session(self, sender: str) -> None:
        """One client's StartNotify ends; the CCCD is written off when it was the last."""
        self.sessions.discard(sender)
        if not self.sessions:
            if self.acquired is None and self.link.connected:
                self.link.unsubscribe(self.uuid_)
            self.update({"Notifying": False})

    def release_acquired(self, *, unsubscribe: bool) -> None:
        """Close our end of the AcquireNotify socket (the central's read sees EOF)."""
        sock, self.acquired = self.acquired, None
        if sock is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            asyncio.get_running_loop().remove_reader(sock.fileno())
        sock.close()
        if unsubscribe:
            if not self.sessions and self.link.connected:
                self.link.unsubscribe(self.uuid_)
            self.update({"NotifyAcquired": False})


class _NotifyingChar(_GattChar):
    """A characteristic that can notify or indicate: it also has AcquireNotify.

    BlueZ has the NotifyAcquired property only on such characteristics, and bleak offers
    AcquireNotify (``bluez={"use_start_notify": False}``) only when the property is there.
    """

    @dbus_property(PropertyAccess.READ, name="NotifyAcquired")
    def notify_acquired(self) -> DBusBool:
        return bool(self.values["NotifyAcquired"])

    @dbus_method(name="AcquireNotify")
    def acquire_notify(self, options: DBusDict) -> DBusFdAndMtu:
        link = self.link.require_connected()
        if self.acquired is not None:
            raise _bluez_error("NotPermitted", "Notify acquired")
        if self.sessions:
            raise _bluez_error("InProgress", "In Progress")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            link.subscribe(self.uuid_, self.mode)
        except BaseException:
            ours.close()
            theirs.close()
            raise
        ours.setblocking(False)
        self.acquired = ours
        loop = asyncio.get_running_loop()
        loop.add_reader(ours.fileno(), self._acquired_readable)
        # dbus-fast writes the reply (and passes the fd) later, from its writer; our copy
        # of the central's end may only be closed after that (BLESIM.md), see below.
        loop.call_soon(self._after_acquire_reply, theirs)
        return [theirs.fileno(), link.fake.mtu]

    def _after_acquire_reply(self, theirs: socket.socket) -> None:
        # The reply was queued before this ran and dbus-fast writes in order, so once this
        # NotifyAcquired signal is written the fd has gone out with the reply. (If the
        # link went down in between, the signal says so rather than True.)
        acquired = self.acquired is not None
        self.values["NotifyAcquired"] = acquired
        signal = Message.new_signal(
            self.path,
            PROPS_IFACE,
            "PropertiesChanged",
            "sa{sv}as",
            [CHAR_IFACE, {"NotifyAcquired": Variant("b", acquired)}, []],
        )
        sent = self.link.fake.send(signal)
        if sent is None:
            theirs.close()
        else:
            sent.add_done_callback(lambda _: theirs.close())

    def _acquired_readable(self) -> None:
        # The central never writes on this socket: readable means it closed its end
        # (bleak's stop_notify closes the fd), which BlueZ takes as "notifications off".
        sock = self.acquired
        if sock is None:
            return
        try:
            data = sock.recv(1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.release_acquired(unsubscribe=True)


class _GattDescriptor(_Props):
    """The Client Characteristic Configuration descriptor (0x2902) of a notifying char."""

    def __init__(self, char: _GattChar, path: str, handle: int) -> None:
        super().__init__(
            DESC_IFACE,
            path,
            {"UUID": uuids.CCCD, "Characteristic": char.path, "Value": b""},
        )
        self._char = char
        self.handle = handle

    @dbus_property(PropertyAccess.READ, name="UUID")
    def uuid(self) -> DBusStr:
        return str(self.values["UUID"])

    @dbus_property(PropertyAccess.READ, name="Characteristic")
    def characteristic(self) -> DBusObjectPath:
        return str(self.values["Characteristic"])

    @dbus_property(PropertyAccess.READ, name="Value")
    def value(self) -> DBusBytes:
        return bytes(self.values["Value"])

    @dbus_property(PropertyAccess.READ, name="Handle")
    def handle_(self) -> DBusUInt16:
        return self.handle

    @dbus_method(name="ReadValue")
    def read_value(self, options: DBusDict) -> DBusBytes:
        self._char.link.require_connected()
        bits = {"off": 0, "notify": 1, "indicate": 2}[self._char.subscription]
        value = bytes([bits, 0])
        self.update({"Value": value}, always=True)
        return value

    @dbus_method(name="WriteValue")
    def write_value(self, value: DBusBytes, options: DBusDict) -> DBusVoid:
        # BlueZ refuses CCCD writes over D-Bus: StartNotify/StopNotify own the CCCD.
        raise _bluez_error("NotPermitted", "Write not permitted")


# ---------------------------------------------------------------------------- one link


class _Link:
    """One peripheral as BlueZ sees it: its Device1 object and, while connected, its GATT."""

    def __init__(self, fake: FakeBlueZ, peripheral: Peripheral, address_type: AddressType) -> None:
        self.fake = fake
        self.peripheral = peripheral
        self.address = peripheral.address.upper()
        self.address_type: AddressType = address_type
        self.path = device_path(self.address)
        self.device: _Device | None = None  # exported once a scan has seen it
        self.connected = False
        self.in_range = True  # link-level knob: set_advertising()
        self.fail_next: tuple[str, str] | None = None
        self.connect_task: asyncio.Task[Any] | None = None  # a Connect waiting for the device
        self.chars: list[_GattChar] = []
        self.by_uuid: dict[str, _GattChar] = {}
        self.gatt: list[_Props] = []
        self.generation = 0  # which connection a peripheral's sink belongs to

    def advertisement(self) -> Advertisement | None:
        return self.peripheral.advertisement() if self.in_range else None

    def require_connected(self) -> _Link:
        if not self.connected:
            raise _not_connected()
        return self

    def subscribe(self, uuid: str, mode: Subscription) -> None:
        try:
            self.peripheral.subscribe(uuid, mode)
        except AttError as exc:
            raise att_error_reply(exc.code) from None

    def unsubscribe(self, uuid: str) -> None:
        try:
            self.peripheral.subscribe(uuid, "off")
        except AttError as exc:
            log.debug("fake BlueZ: %s: CCCD off refused: %s", uuid, exc)

    # -- discovery

    def announce(self, adv: Advertisement) -> None:
        if self.device is None:
            cls = _DeviceWithTxPower if adv.tx_power is not None else _Device
            self.device = cls(self, adv)
            self.fake.export(self.device)  # InterfacesAdded: what a scanner reports
        else:
            self.device.advertised(adv)

    def forget(self) -> None:
        """Adapter1.RemoveDevice / remove_peripheral: disconnect, then drop the object."""
        self.disconnect()
        if self.device is not None:
            self.fake.unexport(self.device)
            self.device = None

    # -- connection

    async def connect(self) -> None:
        if self.connected:
            return
        if self.connect_task is not None:
            raise _bluez_error("InProgress", "In Progress")
        device = self.device
        assert device is not None  # calls to unexported paths never get here
        if self.fail_next is not None:
            (name, text), self.fail_next = self.fail_next, None
            if name == ERROR_FAILED and text == LE_ABORT_BY_LOCAL:
                # BlueZ had connected when this happens, so bleak waits for Connected to
                # go false before it retries (bleak's BlueZ client): give it both edges.
                device.update({"Connected": True})
                device.update({"Connected": False})
            raise DBusError(name, text)
        if self.advertisement() is None:
            self.connect_task = asyncio.current_task()
            try:
                await self._wait_until_advertising()
            finally:
                self.connect_task = None
        self.generation += 1
        generation = self.generation
        try:
            self.peripheral.connect(
                lambda uuid, value: self._sink(generation, uuid, value),
                lambda reason: self._dropped(generation, reason),
            )
        except ConnectRefused as exc:
            raise DBusError(ERROR_FAILED, str(exc)) from None
        self.connected = True
        device.update({"Connected": True})
        self._export_gatt()
        # bleak's connect waits for this; without it, connect hangs to its timeout.
        device.update({"ServicesResolved": True})

    async def _wait_until_advertising(self) -> None:
        # A central keeps trying to reach a device that is not there; BlueZ answers only
        # when the controller gives up. bleak's own timeout usually fires first and its
        # cleanup calls Disconnect, which cancels this wait (see disconnect()).
        try:
            async with asyncio.timeout(self.fake.absent_connect_timeout_s):
                # Polled: a peripheral's advertisement() has no change signal.
                while self.advertisement() is None:  # noqa: ASYNC110
                    await asyncio.sleep(ABSENT_POLL_S)
        except TimeoutError:
            raise DBusError(ERROR_FAILED, LE_TIMEOUT) from None
        except asyncio.CancelledError:
            raise DBusError(ERROR_FAILED, LE_ABORT_BY_LOCAL) from None

    def disconnect(self) -> None:
        """Device1.Disconnect: cancels a pending Connect or ends the connection."""
        if self.connect_task is not None:
            self.connect_task.cancel()
        self.drop()

    def drop(self) -> None:
        """End the connection from this side: the peripheral is told, the central sees it."""
        if self.connected:
            self._peripheral_disconnect()
            self.link_down()

    def _peripheral_disconnect(self) -> None:
        try:
            self.peripheral.disconnect()
        except Exception:  # a broken simulator must not keep the link up
            log.exception("fake BlueZ: %s: peripheral.disconnect() failed", self.address)

    def _dropped(self, generation: int, reason: str) -> None:
        if generation == self.generation:
            log.debug("fake BlueZ: %s dropped the link: %s", self.address, reason)
            self.link_down()

    def link_down(self) -> None:
        """The link is gone: ServicesResolved and Connected go false, GATT objects go away."""
        if not self.connected:
            return
        self.connected = False
        self.generation += 1
        for char in self.chars:
            char.release_acquired(unsubscribe=False)
            char.sessions.clear()
        if self.device is not None:
            self.device.update({"ServicesResolved": False})
        for obj in reversed(self.gatt):
            self.fake.unexport(obj)
        self.gatt.clear()
        self.chars.clear()
        self.by_uuid.clear()
        if self.device is not None:
            self.device.update({"Connected": False})

    def _sink(self, generation: int, uuid: str, value: bytes) -> None:
        if generation != self.generation or not self.connected:
            return  # a peripheral still holding the sink of an earlier connection
        char = self.by_uuid.get(uuid.lower())
        if char is not None:
            char.deliver(bytes(value))

    def _export_gatt(self) -> None:
        # Handles as a GATT server lays them out: service declaration, then per
        # characteristic its declaration and value, then its CCCD. bleak reads the handle
        # from the last four hex digits of each path (BLESIM.md).
        handle = 0x0001
        for service in self.peripheral.services:
            spath = f"{self.path}/service{handle:04x}"
            self._add(_GattService(spath, service, self.path, handle))
            handle += 1
            for ch in service.characteristics:
                cpath = f"{spath}/char{handle:04x}"
                notifying = "notify" in ch.properties or "indicate" in ch.properties
                cls = _NotifyingChar if notifying else _GattChar
                char = cls(self, cpath, ch, spath, handle)
                handle += 2
                self._add(char)
                self.chars.append(char)
                self.by_uuid.setdefault(char.uuid_, char)
                if notifying:
                    self._add(_GattDescriptor(char, f"{cpath}/desc{handle:04x}", handle))
                    handle += 1

    def _add(self, obj: _Props) -> None:
        self.gatt.append(obj)
        self.fake.export(obj)


# ---------------------------------------------------------------------------- FakeBlueZ


class FakeBlueZ:
    """Owns ``org.bluez`` on a bus and serves the peripherals added to it.

    Devices are announced only while some client is discovering (InterfacesAdded on first
    sight, then an RSSI change every ``announce_interval_s``), so a scan finds exactly the
    peripherals advertising during it. A Connect to a peripheral that is not advertising
    waits up to ``absent_connect_timeout_s`` for it to appear, then fails with
    ``org.bluez.Error.Failed: le-connection-timeout``. ``mtu`` is what the
    characteristics' MTU property and AcquireNotify report; ``powered`` is the adapter's
    Powered property (False: the radio is switched off).
    """

    def __init__(
        self,
        adapter_address: str = DEFAULT_ADAPTER_ADDRESS,
        *,
        bus_address: str | None = None,
        announce_interval_s: float = 0.5,
        absent_connect_timeout_s: float = 5.0,
        mtu: int = 247,
        powered: bool = True,
    ) -> None:
        self.adapter_address = adapter_address.upper()
        self.bus_address = bus_address
        self.announce_interval_s = announce_interval_s
        self.absent_connect_timeout_s = absent_connect_timeout_s
        self.mtu = mtu
        self.powered = powered
        self.calls: Counter[str] = Counter()
        """Method calls received, by ``Interface.Member`` without ``org.bluez.``."""
        self.caller = ""
        """The D-Bus unique name of the client whose method call is being served."""
        self._links: dict[str, _Link] = {}
        self._bus: MessageBus | None = None
        self._adapter: _Adapter | None = None
        self._paths: set[str] = set()
        self._filters: dict[str, _Filter] = {}  # per client, as SetDiscoveryFilter left it
        self._discovery: set[str] = set()  # clients with a discovery session
        self._announcer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ peripherals

    def add_peripheral(
        self, peripheral: Peripheral, *, address_type: AddressType = "random"
    ) -> None:
        """Serve ``peripheral``; it shows up in the next scan it advertises during."""
        address = peripheral.address.upper()
        if address in self._links:
            raise ValueError(f"a peripheral with address {address} is already served")
        self._links[address] = _Link(self, peripheral, address_type)

    def remove_peripheral(self, address: str) -> None:
        """Stop serving a peripheral: its link drops and its Device1 object goes away."""
        self._link(address).forget()
        del self._links[address.upper()]

    @property
    def peripherals(self) -> list[Peripheral]:
        return [link.peripheral for link in self._links.values()]

    @property
    def discovering(self) -> bool:
        return bool(self._discovery)

    def is_connected(self, address: str) -> bool:
        return self._link(address).connected

    # ------------------------------------------------------------------ link-level knobs

    def set_advertising(self, address: str, advertising: bool) -> None:
        """Bring a peripheral into or out of radio range (its own advertisement aside)."""
        self._link(address).in_range = advertising

    def fail_next_connect(
        self, address: str, error: str = LE_ABORT_BY_REMOTE, *, error_name: str = ERROR_FAILED
    ) -> None:
        """Make the next Device1.Connect fail with ``error_name`` and text ``error``.

        ``le-connection-abort-by-local`` is played as BlueZ does (Connected goes true then
        false before the error), which makes bleak retry within the same connect call.
        """
        self._link(address).fail_next = (error_name, error)

    def drop_link(self, address: str) -> None:
        """The radio link is lost: the peripheral is told, then the central sees it go."""
        self._link(address).drop()

    async def hold_connection(self, address: str, *, services_resolved: bool = True) -> None:
        """Connect the peripheral for a central process that then died (kill -9).

        BlueZ keeps such a connection: Device1 stays Connected with its GATT objects, and
        the peripheral, being connected, stops advertising, so a scan no longer finds it.
        Only GetManagedObjects shows it; Device1.Disconnect or a link loss ends it.
        ``services_resolved=False`` leaves it stuck in service discovery (a central that
        waits for ServicesResolved waits in vain).
        """
        link = self._link(address)
        adv = link.advertisement()
        if adv is None:
            raise FakeBlueZError(f"{address} is not advertising: nothing could have connected")
        link.announce(adv)
        await link.connect()
        if not services_resolved and link.device is not None:
            link.device.update({"ServicesResolved": False})

    def _link(self, address: str) -> _Link:
        try:
            return self._links[address.upper()]
        except KeyError:
            raise KeyError(f"no peripheral with address {address} is served") from None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, bus_address: str | None = None) -> None:
        """Connect to the bus at ``bus_address`` and own ``org.bluez`` on it."""
        address = bus_address or self.bus_address
        if not address:
            raise FakeBlueZError("no bus address to serve the fake BlueZ on")
        if self._bus is not None:
            raise FakeBlueZError("the fake BlueZ is already started")
        self.bus_address = address
        bus = MessageBus(bus_address=address, bus_type=BusType.SYSTEM, negotiate_unix_fd=True)
        try:
            await bus.connect()
            bus.add_message_handler(self._observe)
            # Clients that go away end their discovery and notify sessions, as in BlueZ.
            rule = (
                "type='signal',sender='org.freedesktop.DBus',"
                "interface='org.freedesktop.DBus',member='NameOwnerChanged'"
            )
            await bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="AddMatch",
                    signature="s",
                    body=[rule],
                )
            )
            # Own the name before exporting anything: bleak's signal matches do not check
            # the sender, so a loser's InterfacesAdded would reach its object cache.
            reply = await bus.request_name(BLUEZ_SERVICE, NameFlag.DO_NOT_QUEUE)
            if reply != RequestNameReply.PRIMARY_OWNER:
                raise FakeBlueZError(f"cannot own {BLUEZ_SERVICE} on {address}: {reply.name}")
            self._bus = bus
            self._adapter = _Adapter(self)
            self.export(self._adapter)
        except BaseException:
            self._bus = None
            self._paths.clear()
            bus.disconnect()  # dbus-fast needs this even when connect() failed
            with contextlib.suppress(Exception):
                await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
            raise

    async def stop(self) -> None:
        """Drop every link (clients see the disconnects), then leave the bus."""
        if self._announcer is not None:
            self._announcer.cancel()
            await asyncio.gather(self._announcer, return_exceptions=True)
            self._announcer = None
        pending = [link.connect_task for link in self._links.values() if link.connect_task]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for link in self._links.values():
            link.drop()
            link.device = None
        self._discovery.clear()
        self._filters.clear()
        self._paths.clear()
        self._adapter = None
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()
            with contextlib.suppress(Exception):
                await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> FakeBlueZ:
        if self._bus is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ bus plumbing

    def export(self, obj: _Props) -> None:
        if self._bus is not None:
            self._bus.export(obj.path, obj)
            self._paths.add(obj.path)

    def unexport(self, obj: _Props) -> None:
        if self._bus is not None:
            self._bus.unexport(obj.path, obj)
        self._paths.discard(obj.path)

    def send(self, msg: Message) -> asyncio.Future[None] | None:
        """Send a message; the future resolves once it is written (None: not on a bus)."""
        if self._bus is None or not self._bus.connected:
            return None
        sent: asyncio.Future[None] = self._bus.send(msg)
        return sent

    def _observe(self, msg: Message) -> Message | None:
        """Runs before dbus-fast dispatches a message to the exported interfaces."""
        if msg.message_type == MessageType.METHOD_CALL:
            # Synchronous methods run inside this dispatch, so they can read the caller.
            self.caller = msg.sender or ""
            iface = msg.interface or ""
            if iface.startswith("org.bluez."):
                self.calls[f"{iface.removeprefix('org.bluez.')}.{msg.member}"] += 1
                if msg.path not in self._paths:
                    # What libdbus answers for a path with no object: bleak maps it to
                    # BleakDeviceNotFoundError on Connect.
                    return Message.new_error(
                        msg, UNKNOWN_OBJECT, f"No such object path '{msg.path}'"
                    )
        elif (
            msg.message_type == MessageType.SIGNAL
            and msg.member == "NameOwnerChanged"
            and msg.sender == "org.freedesktop.DBus"
        ):
            name, _old, new = msg.body
            if not new and str(name).startswith(":"):
                self._client_gone(str(name))
        return None

    def _client_gone(self, client: str) -> None:
        self._filters.pop(client, None)
        if client in self._discovery:
            self._discovery.discard(client)
            if not self._discovery:
                self._discovery_ended()
        for link in self._links.values():
            for char in list(link.chars):
                if client in char.sessions:
                    char.end_session(client)

    # ------------------------------------------------------------------ discovery

    def _set_discovery_filter(self, options: dict[str, Variant]) -> None:
        self._filters[self.caller] = _Filter.parse(options)

    def _start_discovery(self) -> None:
        client = self.caller
        if client in self._discovery:
            raise _bluez_error("InProgress", "Operation already in progress")
        first = not self._discovery
        self._discovery.add(client)
        if first and self._adapter is not None:
            self._adapter.update({"Discovering": True})
        # bleak's scanner registers its callback before StartDiscovery, so devices
        # announced now, ahead of the reply, are seen by discover(). find_device_by_*()
        # only listen once start() has returned, hence the quick repeats of the announcer.
        self._announce_all()
        if self._announcer is not None:
            self._announcer.cancel()  # restart its schedule for this session
        self._announcer = asyncio.get_running_loop().create_task(
            self._announce_loop(), name="fake-bluez-announcer"
        )

    def _stop_discovery(self) -> None:
        client = self.caller
        if client not in self._discovery:
            raise _bluez_error("Failed", "No discovery started")
        self._discovery.discard(client)
        if not self._discovery:
            self._discovery_ended()

    def _discovery_ended(self) -> None:
        if self._adapter is not None:
            self._adapter.update({"Discovering": False})
        # The announcer sees no session left and ends by itself. BlueZ invalidates the
        # readings of a finished scan (bleak removes its callbacks before StopDiscovery
        # for this very reason).
        for link in self._links.values():
            if link.device is not None and not link.connected:
                link.device.emit_properties_changed({}, ["RSSI", "TxPower"])

    async def _announce_loop(self) -> None:
        # A device is reported only through signals that arrive while scanning (BLESIM.md),
        # so keep announcing: a peripheral switched on mid-scan is found within one interval.
        for delay in itertools.chain(QUICK_REPEATS_S, itertools.repeat(self.announce_interval_s)):
            await asyncio.sleep(delay)
            if not self._discovery:
                return
            self._announce_all()

    def _announce_all(self) -> None:
        filters = [self._filters.get(client, _Filter()) for client in self._discovery]
        for link in list(self._links.values()):
            if link.connected:
                continue  # a connected peripheral does not advertise (one central at a time)
            adv = link.advertisement()
            if adv is not None and any(f.accepts(adv) for f in filters):
                link.announce(adv)

    def _remove_device(self, path: str) -> None:
        for link in self._links.values():
            if link.path == path and link.device is not None:
                link.forget()
                return
        raise _bluez_error("DoesNotExist", "Does Not Exist")


__all__ = [
    "ADAPTER_PATH",
    "LE_ABORT_BY_LOCAL",
    "LE_ABORT_BY_REMOTE",
    "LE_TIMEOUT",
    "FakeBlueZ",
    "FakeBlueZError",
    "att_error_reply",
    "device_path",
]
