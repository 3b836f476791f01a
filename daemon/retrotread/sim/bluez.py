"""The fake BlueZ: BlueZ's D-Bus face on a private bus, serving simulated peripherals.

bleak's Linux backend talks to BlueZ only over D-Bus (BLESIM.md), so answering its calls
with the objects BlueZ would export makes a simulated treadmill a BLE peripheral as far as
bleak, and the daemon's real BLE code, can tell. Served here: ObjectManager, Properties,
Adapter1 (discovery), Device1 (connect, disconnect), GattService1, GattCharacteristic1
(read, write, StartNotify/StopNotify) and GattDescriptor1. Not served: AcquireNotify,
pairing, MTU exchange, advertisement monitors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from retrotread.errors import AttError
from retrotread.ftms import uuids
from retrotread.sim.gatt import Advertisement, ConnectRefused, Peripheral, Subscription

log = logging.getLogger(__name__)

ADAPTER_PATH = "/org/bluez/hci0"
OM = "org.freedesktop.DBus.ObjectManager"
PROPS = "org.freedesktop.DBus.Properties"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
SERVICE = "org.bluez.GattService1"
CHAR = "org.bluez.GattCharacteristic1"
DESC = "org.bluez.GattDescriptor1"
ERR = "org.bluez.Error."

Props = dict[str, Variant]


def device_path(address: str) -> str:
    return f"{ADAPTER_PATH}/dev_{address.upper().replace(':', '_')}"


def _att_error(exc: AttError) -> tuple[str, str]:
    """The error BlueZ sends for an ATT error (what bleak's assert_gatt_reply expects)."""
    if exc.code == 0xFD:
        return ERR + "ImproperlyConfigured", "CCC Improperly Configured"
    if exc.code == 0x02:
        return ERR + "NotPermitted", "Read not permitted"
    if exc.code == 0x03:
        return ERR + "NotPermitted", "Write not permitted"
    if exc.code == 0x06:
        return ERR + "NotSupported", "Request not supported"
    return ERR + "Failed", f"Operation failed with ATT error: 0x{exc.code:02x}"


@dataclass
class _Char:
    path: str
    uuid: str
    flags: list[str]
    notifying: bool = False
    value: bytes = b""


@dataclass
class _Device:
    peripheral: Peripheral
    path: str
    exported: bool = False
    connected: bool = False
    chars: dict[str, _Char] = field(default_factory=dict)  # by path
    gatt_paths: list[str] = field(default_factory=list)
    fail_next_connect: str | None = None
    rssi_tick: int = 0


class FakeBlueZ:
    """Owns ``org.bluez`` on a bus and serves the peripherals added to it."""

    def __init__(self, adapter_address: str = "00:1A:7D:DA:71:13") -> None:
        self.adapter_address = adapter_address
        self.bus: MessageBus | None = None
        self.discovering = False
        self.devices: dict[str, _Device] = {}  # by address
        self._objects: dict[str, dict[str, Props]] = {}
        self._announcer: asyncio.Task[None] | None = None
        self.calls: list[str] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self, bus_address: str) -> None:
        self.bus = await MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
        self.bus.add_message_handler(self._handle)
        self._objects[ADAPTER_PATH] = {
            ADAPTER: {
                "Address": Variant("s", self.adapter_address),
                "AddressType": Variant("s", "public"),
                "Name": Variant("s", "retrotread-fake-hci0"),
                "Alias": Variant("s", "retrotread-fake-hci0"),
                "Class": Variant("u", 0),
                "Powered": Variant("b", True),
                "Discoverable": Variant("b", False),
                "Pairable": Variant("b", False),
                "Discovering": Variant("b", False),
                "UUIDs": Variant("as", []),
                "Roles": Variant("as", ["central", "peripheral"]),
            }
        }
        await self.bus.request_name("org.bluez")

    async def stop(self) -> None:
        if self._announcer is not None:
            self._announcer.cancel()
            await asyncio.gather(self._announcer, return_exceptions=True)
            self._announcer = None
        for dev in self.devices.values():
            if dev.connected:
                with contextlib.suppress(Exception):
                    dev.peripheral.disconnect()
                dev.connected = False
        if self.bus is not None:
            self.bus.disconnect()
            with contextlib.suppress(Exception):
                await self.bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
            self.bus = None

    async def __aenter__(self) -> FakeBlueZ:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ peripherals

    def add_peripheral(self, peripheral: Peripheral) -> None:
        self.devices[peripheral.address.upper()] = _Device(
            peripheral, device_path(peripheral.address)
        )

    def set_advertising(self, address: str, advertising: bool) -> None:
        """Link-level knob for peripherals whose advertising is not their own business."""
        p = self.devices[address.upper()].peripheral
        faults = getattr(p, "faults", None)
        if faults is not None and hasattr(faults, "advertising"):
            faults.advertising = advertising

    def fail_next_connect(
        self, address: str, reason: str = "Software caused connection abort"
    ) -> None:
        self.devices[address.upper()].fail_next_connect = reason

    def drop_link(self, address: str) -> None:
        dev = self.devices[address.upper()]
        drop = getattr(dev.peripheral, "drop_link", None)
        if callable(drop):
            drop("link dropped (fake BlueZ)")
        else:
            dev.peripheral.disconnect()
            self._link_down(dev)

    # ------------------------------------------------------------------ D-Bus plumbing

    def _send(self, msg: Message) -> None:
        if self.bus is not None and self.bus.connected:
            self.bus.send(msg)

    def _props_changed(self, path: str, interface: str, changed: Props) -> None:
        self._objects.get(path, {}).get(interface, {}).update(changed)
        self._send(
            Message.new_signal(
                path, PROPS, "PropertiesChanged", "sa{sv}as", [interface, changed, []]
            )
        )

    def _export(self, path: str, interfaces: dict[str, Props]) -> None:
        self._objects[path] = interfaces
        self._send(Message.new_signal("/", OM, "InterfacesAdded", "oa{sa{sv}}", [path, interfaces]))

    def _unexport(self, path: str) -> None:
        interfaces = self._objects.pop(path, None)
        if interfaces is not None:
            self._send(
                Message.new_signal("/", OM, "InterfacesRemoved", "oas", [path, list(interfaces)])
            )

    def _handle(self, msg: Message) -> Message | bool | None:
        if msg.message_type != MessageType.METHOD_CALL:
            return None
        self.calls.append(f"{msg.interface}.{msg.member}")
        try:
            return self._dispatch(msg)
        except _Reply as r:
            return Message.new_error(msg, r.name, r.text)
        except Exception as exc:  # never let a bug kill the bus connection
            log.exception("fake BlueZ: %s.%s failed", msg.interface, msg.member)
            return Message.new_error(msg, ERR + "Failed", str(exc))

    def _dispatch(self, msg: Message) -> Message | bool | None:
        iface, member, path = msg.interface, msg.member, msg.path or "/"
        if iface == OM and member == "GetManagedObjects":
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [self._objects])
        if iface == PROPS:
            return self._properties(msg)
        if iface == "org.freedesktop.DBus.Introspectable":
            return Message.new_method_return(msg, "s", ["<node/>"])
        if iface == ADAPTER:
            return self._adapter(msg, member)
        dev = self._device_at(path)
        if dev is None:
            raise _Reply("org.freedesktop.DBus.Error.UnknownObject", f"no object at {path}")
        if iface == DEVICE:
            return self._device(msg, member, dev)
        if iface == CHAR:
            return self._char(msg, member, dev, path)
        if iface == DESC and member == "ReadValue":
            char = dev.chars.get(path.rsplit("/", 1)[0])
            value = b"\x00\x00" if char is None or not char.notifying else b"\x01\x00"
            return Message.new_method_return(msg, "ay", [value])
        raise _Reply(ERR + "NotSupported", f"{iface}.{member} is not supported by the fake BlueZ")

    def _properties(self, msg: Message) -> Message:
        path = msg.path or "/"
        obj = self._objects.get(path)
        if obj is None:
            raise _Reply("org.freedesktop.DBus.Error.UnknownObject", f"no object at {path}")
        if msg.member == "GetAll":
            return Message.new_method_return(msg, "a{sv}", [obj.get(msg.body[0], {})])
        if msg.member == "Get":
            iface, name = msg.body
            try:
                return Message.new_method_return(msg, "v", [obj[iface][name]])
            except KeyError:
                raise _Reply(
                    "org.freedesktop.DBus.Error.InvalidArgs", f"no property {name}"
                ) from None
        if msg.member == "Set":
            iface, name, value = msg.body
            self._props_changed(path, iface, {name: value})
            return Message.new_method_return(msg)
        raise _Reply(ERR + "NotSupported", str(msg.member))

    # ------------------------------------------------------------------ Adapter1

    def _adapter(self, msg: Message, member: str | None) -> Message:
        if member == "SetDiscoveryFilter":
            return Message.new_method_return(msg)
        if member == "GetDiscoveryFilters":
            return Message.new_method_return(
                msg, "as", [["UUIDs", "RSSI", "Transport", "DuplicateData"]]
            )
        if member == "StartDiscovery":
            self.discovering = True
            self._props_changed(ADAPTER_PATH, ADAPTER, {"Discovering": Variant("b", True)})
            self._announce()
            if self._announcer is None or self._announcer.done():
                self._announcer = asyncio.get_running_loop().create_task(self._announce_loop())
            return Message.new_method_return(msg)
        if member == "StopDiscovery":
            self.discovering = False
            self._props_changed(ADAPTER_PATH, ADAPTER, {"Discovering": Variant("b", False)})
            return Message.new_method_return(msg)
        if member == "RemoveDevice":
            path = msg.body[0]
            for dev in self.devices.values():
                if dev.path == path and not dev.connected:
                    self._unexport(path)
                    dev.exported = False
            return Message.new_method_return(msg)
        raise _Reply(ERR + "NotSupported", f"Adapter1.{member}")

    async def _announce_loop(self) -> None:
        # A device shows up in a scan only through signals that arrive while scanning
        # (BLESIM.md), so keep announcing: a treadmill switched on mid-scan is found.
        while self.discovering:
            await asyncio.sleep(0.2)
            self._announce()

    def _announce(self) -> None:
        if not self.discovering:
            return
        for dev in self.devices.values():
            adv = dev.peripheral.advertisement()
            if adv is None:
                continue
            if not dev.exported:
                self._export(dev.path, {DEVICE: self._device_props(dev, adv)})
                dev.exported = True
            else:
                dev.rssi_tick ^= 1  # a fresh RSSI reading, as a radio would give
                self._props_changed(
                    dev.path, DEVICE, {"RSSI": Variant("n", adv.rssi - dev.rssi_tick)}
                )

    def _device_props(self, dev: _Device, adv: Advertisement) -> Props:
        address = dev.peripheral.address.upper()
        props: Props = {
            "Address": Variant("s", address),
            "AddressType": Variant("s", "random"),
            "Name": Variant("s", adv.local_name),
            "Alias": Variant("s", adv.local_name),
            "Adapter": Variant("o", ADAPTER_PATH),
            "Paired": Variant("b", False),
            "Bonded": Variant("b", False),
            "Trusted": Variant("b", False),
            "Blocked": Variant("b", False),
            "LegacyPairing": Variant("b", False),
            "Connected": Variant("b", dev.connected),
            "ServicesResolved": Variant("b", dev.connected),
            "UUIDs": Variant("as", [u.lower() for u in adv.service_uuids]),
            "RSSI": Variant("n", adv.rssi),
            "ManufacturerData": Variant(
                "a{qv}", {k: Variant("ay", v) for k, v in adv.manufacturer_data.items()}
            ),
            "ServiceData": Variant(
                "a{sv}", {k.lower(): Variant("ay", v) for k, v in adv.service_data.items()}
            ),
        }
        if adv.tx_power is not None:
            props["TxPower"] = Variant("n", adv.tx_power)
        return props

    # ------------------------------------------------------------------ Device1

    def _device_at(self, path: str) -> _Device | None:
        for dev in self.devices.values():
            if path == dev.path or path.startswith(dev.path + "/"):
                return dev
        return None

    def _device(self, msg: Message, member: str | None, dev: _Device) -> Message:
        if member == "Connect":
            if dev.connected:
                return Message.new_method_return(msg)
            if dev.fail_next_connect is not None:
                reason, dev.fail_next_connect = dev.fail_next_connect, None
                raise _Reply(ERR + "Failed", reason)
            if dev.peripheral.advertisement() is None:
                # An absent device: what BlueZ answers when the connection cannot be made.
                raise _Reply(ERR + "Failed", "Software caused connection abort")
            try:
                dev.peripheral.connect(
                    self._sink_for(dev), lambda reason: self._dropped(dev, reason)
                )
            except ConnectRefused as exc:
                raise _Reply(ERR + "Failed", str(exc)) from None
            dev.connected = True
            self._export_gatt(dev)
            self._props_changed(dev.path, DEVICE, {"Connected": Variant("b", True)})
            self._props_changed(dev.path, DEVICE, {"ServicesResolved": Variant("b", True)})
            return Message.new_method_return(msg)
        if member == "Disconnect":
            if dev.connected:
                dev.peripheral.disconnect()
                self._link_down(dev)
            return Message.new_method_return(msg)
        if member in ("Pair", "CancelPairing"):
            return Message.new_method_return(msg)
        raise _Reply(ERR + "NotSupported", f"Device1.{member}")

    def _sink_for(self, dev: _Device) -> Callable[[str, bytes], None]:
        by_uuid: dict[str, _Char] = {}

        def sink(uuid: str, value: bytes) -> None:
            if not by_uuid:
                by_uuid.update({c.uuid: c for c in dev.chars.values()})
            char = by_uuid.get(uuid.lower())
            if char is None or not char.notifying or not dev.connected:
                return
            char.value = bytes(value)
            self._props_changed(char.path, CHAR, {"Value": Variant("ay", bytes(value))})

        return sink

    def _dropped(self, dev: _Device, reason: str) -> None:
        log.debug("fake BlueZ: %s dropped the link: %s", dev.path, reason)
        self._link_down(dev)

    def _link_down(self, dev: _Device) -> None:
        if not dev.connected:
            return
        dev.connected = False
        for path in reversed(dev.gatt_paths):
            self._unexport(path)
        dev.gatt_paths.clear()
        dev.chars.clear()
        self._props_changed(
            dev.path,
            DEVICE,
            {"ServicesResolved": Variant("b", False), "Connected": Variant("b", False)},
        )

    def _export_gatt(self, dev: _Device) -> None:
        if not dev.exported:
            adv = dev.peripheral.advertisement() or Advertisement(dev.peripheral.address, [])
            self._export(dev.path, {DEVICE: self._device_props(dev, adv)})
            dev.exported = True
        handle = 0x0001
        for service in dev.peripheral.services:
            spath = f"{dev.path}/service{handle:04x}"
            handle += 1
            self._export(
                spath,
                {
                    SERVICE: {
                        "UUID": Variant("s", service.uuid.lower()),
                        "Primary": Variant("b", service.primary),
                        "Device": Variant("o", dev.path),
                        "Includes": Variant("ao", []),
                    }
                },
            )
            dev.gatt_paths.append(spath)
            for ch in service.characteristics:
                cpath = f"{spath}/char{handle:04x}"
                handle += 2  # declaration + value
                char = _Char(cpath, ch.uuid.lower(), list(ch.properties))
                dev.chars[cpath] = char
                self._export(
                    cpath,
                    {
                        CHAR: {
                            "UUID": Variant("s", char.uuid),
                            "Service": Variant("o", spath),
                            "Value": Variant("ay", b""),
                            "Notifying": Variant("b", False),
                            "NotifyAcquired": Variant("b", False),
                            "WriteAcquired": Variant("b", False),
                            "Flags": Variant("as", char.flags),
                            "MTU": Variant("q", 247),
                        }
                    },
                )
                dev.gatt_paths.append(cpath)
                if "notify" in char.flags or "indicate" in char.flags:
                    dpath = f"{cpath}/desc{handle:04x}"
                    handle += 1
                    self._export(
                        dpath,
                        {
                            DESC: {
                                "UUID": Variant("s", uuids.CCCD),
                                "Characteristic": Variant("o", cpath),
                                "Value": Variant("ay", b""),
                            }
                        },
                    )
                    dev.gatt_paths.append(dpath)

    # ------------------------------------------------------------------ GattCharacteristic1

    def _char(self, msg: Message, member: str | None, dev: _Device, path: str) -> Message:
        char = dev.chars.get(path)
        if char is None or not dev.connected:
            raise _Reply(ERR + "Failed", "Not connected")
        p = dev.peripheral
        try:
            if member == "ReadValue":
                value = bytes(p.read(char.uuid))
                char.value = value
                if char.notifying:
                    # Real BlueZ also signals a read value as a change (BLESIM.md).
                    self._props_changed(path, CHAR, {"Value": Variant("ay", value)})
                return Message.new_method_return(msg, "ay", [value])
            if member == "WriteValue":
                data, options = msg.body
                kind = options.get("type").value if "type" in options else "request"
                p.write(char.uuid, bytes(data), kind != "command")
                return Message.new_method_return(msg)
            if member == "StartNotify":
                if char.notifying:
                    return Message.new_method_return(msg)
                mode: Subscription = "notify" if "notify" in char.flags else "indicate"
                if mode not in char.flags:
                    raise _Reply(ERR + "NotSupported", "Operation is not supported")
                p.subscribe(char.uuid, mode)
                char.notifying = True
                self._props_changed(path, CHAR, {"Notifying": Variant("b", True)})
                return Message.new_method_return(msg)
            if member == "StopNotify":
                if char.notifying:
                    p.subscribe(char.uuid, "off")
                    char.notifying = False
                    self._props_changed(path, CHAR, {"Notifying": Variant("b", False)})
                return Message.new_method_return(msg)
        except AttError as exc:
            raise _Reply(*_att_error(exc)) from None
        raise _Reply(ERR + "NotSupported", f"GattCharacteristic1.{member}")


class _Reply(Exception):
    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text


async def serve_for_demo(peripheral: Peripheral, stack: contextlib.AsyncExitStack) -> Any:
    """A private bus + fake BlueZ serving ``peripheral``; returns a bleak transport to it.

    Points this process's bleak at the private bus (DBUS_SYSTEM_BUS_ADDRESS).
    """
    from retrotread.link.bleak_transport import BleakTransport
    from retrotread.sim.dbus_bus import PrivateBus

    bus = await stack.enter_async_context(PrivateBus())
    for key, value in bus.environ().items():
        previous = os.environ.get(key)
        os.environ[key] = value
        stack.callback(_restore_env, key, previous)
    fake = FakeBlueZ()
    fake.add_peripheral(peripheral)
    await fake.start(bus.address)
    stack.push_async_callback(fake.stop)
    return BleakTransport(address=peripheral.address, scan_timeout_s=5.0)


def _restore_env(key: str, previous: str | None) -> None:
    if previous is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = previous
