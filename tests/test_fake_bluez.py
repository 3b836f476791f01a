"""The fake BlueZ with the REAL bleak: scan, connect, GATT, errors, link loss (BLESIM.md).

Each test gets a fresh private dbus-daemon, a fake BlueZ serving the toy peripheral
(tests/toy_peripheral.py) and a fresh event loop, so bleak's per-loop BlueZ manager starts
clean. ResourceWarning is an error (pyproject): a bus or socket left open fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import (
    BleakDBusError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from retrotread.sim import bluez_server
from retrotread.sim.bluez import (
    ADAPTER_PATH,
    LE_ABORT_BY_LOCAL,
    LE_ABORT_BY_REMOTE,
    LE_TIMEOUT,
    FakeBlueZ,
    FakeBlueZError,
    device_path,
)
from retrotread.sim.dbus_bus import DBusUnavailable, PrivateBus, bluetoothctl_stub
from tests import toy_peripheral as toy_mod
from tests.blehelpers import private_bus
from tests.toy_peripheral import (
    COMMAND,
    CONTROL,
    LOCKED,
    NOTIFY,
    READ,
    STORE,
    TOY_ADDRESS,
    TOY_NAME,
    TOY_SERVICE,
    Toy,
)

__all__ = ["private_bus"]  # the fixture

ROOT = Path(__file__).resolve().parents[1]
CCCD = "00002902-0000-1000-8000-00805f9b34fb"
Notes = asyncio.Queue[bytes]


# ---------------------------------------------------------------------------- fixtures


@dataclass
class Rig:
    bus: PrivateBus
    fake: FakeBlueZ
    toy: Toy


@pytest.fixture
async def rig(private_bus: PrivateBus) -> AsyncIterator[Rig]:
    toy = Toy()
    fake = FakeBlueZ(bus_address=private_bus.address, absent_connect_timeout_s=0.3)
    fake.add_peripheral(toy)
    async with fake:
        yield Rig(private_bus, fake, toy)


def open_sockets() -> set[tuple[int, int]]:
    """This process's open sockets as (fd, inode): a closed one leaves, a reused fd differs."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(f"/proc/self/fd/{name}")
            if stat.S_ISSOCK(st.st_mode):
                out.add((int(name), st.st_ino))
    return out


async def found(timeout: float = 2.0) -> BLEDevice:
    device = await BleakScanner.find_device_by_address(TOY_ADDRESS, timeout=timeout)
    assert device is not None
    return device


def collector() -> tuple[Notes, Callable[[Any, bytearray], None]]:
    queue: Notes = asyncio.Queue()
    return queue, lambda _char, data: queue.put_nowait(bytes(data))


async def next_value(queue: Notes, timeout: float = 2.0) -> bytes:
    async with asyncio.timeout(timeout):
        return await queue.get()


async def wait_until(pred: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)


async def call(address: str, path: str, interface: str, member: str) -> Message:
    """One method call to org.bluez from a fresh D-Bus client; the reply, error or not."""
    client = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    try:
        reply = await client.call(
            Message(destination="org.bluez", path=path, interface=interface, member=member)
        )
    finally:
        client.disconnect()
        await client.wait_for_disconnect()  # type: ignore[no-untyped-call]
    assert reply is not None
    return reply


async def managed_objects(address: str) -> dict[str, dict[str, dict[str, Any]]]:
    """What BlueZ's ObjectManager exports, as a fresh client sees it (values unpacked)."""
    reply = await call(address, "/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects")
    assert reply.message_type == MessageType.METHOD_RETURN
    return {
        path: {iface: {k: v.value for k, v in props.items()} for iface, props in ifaces.items()}
        for path, ifaces in reply.body[0].items()
    }


# ---------------------------------------------------------------------------- the bus


def test_bluetoothctl_stub_prints_a_bluez_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    bin_dir = bluetoothctl_stub(tmp_path / "bin")
    assert bin_dir == tmp_path / "bin"
    out = subprocess.run(
        [str(bin_dir / "bluetoothctl"), "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "5.66"
    # with a bluetoothctl on PATH, nothing is written
    monkeypatch.setenv("PATH", str(bin_dir))
    assert bluetoothctl_stub(tmp_path / "other") is None
    assert not (tmp_path / "other").exists()


def test_missing_dbus_daemon_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        DBusUnavailable, match=r"dbus-daemon is not installed \(Debian package: dbus\)"
    ):
        PrivateBus().start()


async def test_private_bus_async_context_manager() -> None:
    async with PrivateBus() as private:
        socket_path = Path(private.address.removeprefix("unix:path=").split(",")[0])
        assert await asyncio.to_thread(socket_path.exists)
        assert private.environ()["DBUS_SYSTEM_BUS_ADDRESS"] == private.address
    assert not await asyncio.to_thread(socket_path.exists)
    assert private.address == ""


async def test_adapter_exported_and_no_device_before_a_scan(rig: Rig) -> None:
    objects = await managed_objects(rig.bus.address)
    assert list(objects) == [ADAPTER_PATH]
    adapter = objects[ADAPTER_PATH]["org.bluez.Adapter1"]
    assert adapter["Powered"] is True
    assert "central" in adapter["Roles"]
    assert adapter["Discovering"] is False


async def test_a_second_fake_on_the_same_bus_is_refused(rig: Rig) -> None:
    with pytest.raises(FakeBlueZError, match=r"cannot own org\.bluez"):
        await FakeBlueZ().start(rig.bus.address)
    assert [d.address for d in await BleakScanner.discover(timeout=0.1)] == [TOY_ADDRESS]


# ---------------------------------------------------------------------------- scanning


async def test_discover_reports_the_advertisement(rig: Rig) -> None:
    seen = await BleakScanner.discover(timeout=0.3, return_adv=True)
    assert len(seen) == 1
    device, adv = next(iter(seen.values()))
    assert (device.address, device.name) == (TOY_ADDRESS, TOY_NAME)
    assert device.details["path"] == device_path(TOY_ADDRESS)
    assert adv.local_name == TOY_NAME
    assert adv.rssi == toy_mod.RSSI
    assert adv.tx_power == toy_mod.TX_POWER
    assert adv.service_uuids == [TOY_SERVICE]
    assert adv.service_data == {TOY_SERVICE: toy_mod.SERVICE_DATA}
    assert adv.manufacturer_data == {toy_mod.MANUFACTURER_ID: toy_mod.MANUFACTURER_DATA}
    # the scan is over: the adapter says so, the device object stays
    objects = await managed_objects(rig.bus.address)
    assert objects[ADAPTER_PATH]["org.bluez.Adapter1"]["Discovering"] is False
    assert objects[device_path(TOY_ADDRESS)]["org.bluez.Device1"]["Connected"] is False


async def test_find_by_address_and_by_filter_are_quick(rig: Rig) -> None:
    start = time.monotonic()
    device = await BleakScanner.find_device_by_address(TOY_ADDRESS, timeout=3)
    assert device is not None and device.name == TOY_NAME
    # found from the quick repeats after StartDiscovery, not after the 0.5 s interval
    assert time.monotonic() - start < 0.4
    device = await BleakScanner.find_device_by_filter(
        lambda d, adv: adv.local_name == TOY_NAME, timeout=3
    )
    assert device is not None and device.address == TOY_ADDRESS


async def test_discovery_filter_on_service_uuids(rig: Rig) -> None:
    other = "0000feed-0000-1000-8000-00805f9b34fb"
    assert await BleakScanner.discover(timeout=0.2, service_uuids=[other]) == []
    # the fake itself filtered: the device was never announced, so never exported
    assert device_path(TOY_ADDRESS) not in await managed_objects(rig.bus.address)
    assert [
        d.address for d in await BleakScanner.discover(timeout=0.2, service_uuids=[TOY_SERVICE])
    ] == [TOY_ADDRESS]


@pytest.mark.parametrize("how", ["peripheral", "knob"])
async def test_not_advertising_is_not_found(rig: Rig, how: str) -> None:
    if how == "peripheral":
        rig.toy.advertising = False
    else:
        rig.fake.set_advertising(TOY_ADDRESS, False)
    assert await BleakScanner.find_device_by_address(TOY_ADDRESS, timeout=0.3) is None
    assert await BleakScanner.discover(timeout=0.2) == []


async def test_starts_advertising_mid_scan_and_is_found(rig: Rig) -> None:
    rig.toy.advertising = False
    search = asyncio.create_task(BleakScanner.find_device_by_address(TOY_ADDRESS, timeout=3))
    await asyncio.sleep(0.3)
    assert not search.done()
    rig.toy.advertising = True
    switched_on = time.monotonic()
    device = await search
    assert device is not None and device.name == TOY_NAME
    assert time.monotonic() - switched_on < rig.fake.announce_interval_s + 0.3


async def test_a_second_scan_from_the_same_client_is_refused_like_bluez(rig: Rig) -> None:
    # BlueZ allows one discovery session per D-Bus client, and bleak uses one bus per
    # event loop for scanning: two overlapping scans in one process fail with InProgress.
    async with BleakScanner():
        with pytest.raises(BleakDBusError) as caught:
            async with BleakScanner():
                pass
    assert caught.value.dbus_error == "org.bluez.Error.InProgress"
    assert await BleakScanner.discover(timeout=0.1)  # sessions were released


async def test_a_client_that_goes_away_ends_its_discovery(rig: Rig) -> None:
    client = await MessageBus(bus_address=rig.bus.address, bus_type=BusType.SYSTEM).connect()
    try:
        reply = await client.call(
            Message(
                destination="org.bluez",
                path=ADAPTER_PATH,
                interface="org.bluez.Adapter1",
                member="StartDiscovery",
            )
        )
        assert reply is not None and reply.message_type == MessageType.METHOD_RETURN
        assert rig.fake.discovering
    finally:
        client.disconnect()
        await client.wait_for_disconnect()  # type: ignore[no-untyped-call]
    # BlueZ watches its discovery clients; one that leaves the bus stops its session
    await wait_until(lambda: not rig.fake.discovering)


# ---------------------------------------------------------------------------- GATT


async def test_services_characteristics_descriptors(rig: Rig) -> None:
    async with BleakClient(await found()) as client:
        services = {s.uuid: s for s in client.services}
        assert set(services) == {TOY_SERVICE, toy_mod.DEVICE_INFORMATION}
        chars = {c.uuid: c for c in services[TOY_SERVICE].characteristics}
        assert {u: sorted(c.properties) for u, c in chars.items()} == {
            READ: ["read"],
            NOTIFY: ["notify", "read"],
            CONTROL: ["indicate", "write"],
            STORE: ["read", "write"],
            COMMAND: ["write-without-response"],
            LOCKED: ["read", "write"],
        }
        for uuid, char in chars.items():
            expected = [CCCD] if uuid in (NOTIFY, CONTROL) else []
            assert [d.uuid for d in char.descriptors] == expected
            assert char.handle > services[TOY_SERVICE].handle
            assert all(d.handle > char.handle for d in char.descriptors)
        handles = [s.handle for s in client.services]
        handles += [c.handle for s in client.services for c in s.characteristics]
        handles += [
            d.handle for s in client.services for c in s.characteristics for d in c.descriptors
        ]
        assert len(handles) == len(set(handles))
        # MTU is the fake's: no exchange happens (BLESIM.md fidelity limits)
        assert chars[COMMAND].max_write_without_response_size == rig.fake.mtu - 3


async def test_read_and_writes(rig: Rig) -> None:
    async with BleakClient(await found()) as client:
        assert await client.read_gatt_char(READ) == toy_mod.READ_VALUE
        assert await client.read_gatt_char(toy_mod.MANUFACTURER_NAME) == b"retrotread"
        await client.write_gatt_char(STORE, b"\x01\x02\x03", response=True)
        assert await client.read_gatt_char(STORE) == b"\x01\x02\x03"
        await client.write_gatt_char(COMMAND, b"\x09", response=False)
        assert rig.toy.writes == [(STORE, b"\x01\x02\x03", True), (COMMAND, b"\x09", False)]


async def test_notifications_and_the_read_quirk(rig: Rig) -> None:
    async with BleakClient(await found()) as client:
        notes, callback = collector()
        await client.start_notify(NOTIFY, callback)
        assert rig.toy.subscriptions == {NOTIFY: "notify"}
        notify_char = client.services.get_characteristic(NOTIFY)
        assert notify_char is not None
        cccd = notify_char.descriptors[0]
        assert await client.read_gatt_descriptor(cccd.handle) == b"\x01\x00"
        assert rig.toy.notify(b"\x05\x00")
        assert await next_value(notes) == b"\x05\x00"
        # BlueZ signals a read value as a change: a notifying char read is also "notified"
        rig.toy.counter = 7
        assert await client.read_gatt_char(NOTIFY) == b"\x07\x00"
        assert await next_value(notes) == b"\x07\x00"
        await client.stop_notify(NOTIFY)
        assert rig.toy.subscriptions == {}
        assert not rig.toy.notify(b"\x06\x00")
        assert await client.read_gatt_descriptor(cccd.handle) == b"\x00\x00"
        assert notes.empty()


async def test_indication_answers_a_control_point_write(rig: Rig) -> None:
    async with BleakClient(await found()) as client:
        notes, callback = collector()
        await client.start_notify(CONTROL, callback)
        assert rig.toy.subscriptions == {CONTROL: "indicate"}
        await client.write_gatt_char(CONTROL, b"\x07", response=True)
        assert await next_value(notes) == b"\x80\x07\x01"


async def test_att_errors_surface_with_their_code(rig: Rig) -> None:
    async with BleakClient(await found()) as client:
        # the control point refuses a write while its indications are off (FTMS 4.16.1)
        with pytest.raises(BleakGATTProtocolError) as caught:
            await client.write_gatt_char(CONTROL, b"\x00", response=True)
        assert caught.value.code == BleakGATTProtocolErrorCode.CCCD_IMPROPERLY_CONFIGURED
        assert int(caught.value.code) == 0xFD  # what the control-point client compares
        with pytest.raises(BleakGATTProtocolError) as caught:
            await client.write_gatt_char(LOCKED, b"\x00", response=True)
        assert caught.value.code == BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED
        with pytest.raises(BleakGATTProtocolError) as caught:
            await client.read_gatt_char(LOCKED)
        assert caught.value.code == 0x80
        # BlueZ checks the write type against the properties before sending anything
        with pytest.raises(BleakGATTProtocolError) as caught:
            await client.write_gatt_char(READ, b"\x00", response=False)
        assert caught.value.code == BleakGATTProtocolErrorCode.REQUEST_NOT_SUPPORTED
        # StartNotify on a char that cannot is a D-Bus error, not a GATT one, in bleak
        with pytest.raises(BleakDBusError) as dbus_caught:
            await client.start_notify(READ, lambda *_: None)
        assert dbus_caught.value.dbus_error == "org.bluez.Error.NotSupported"
        assert rig.toy.writes == []
        assert client.is_connected


async def test_acquire_notify_path(rig: Rig) -> None:
    async with BleakClient(await found()) as client:
        notes, callback = collector()
        await client.start_notify(NOTIFY, callback, bluez={"use_start_notify": False})
        assert rig.fake.calls["GattCharacteristic1.AcquireNotify"] == 1
        assert rig.fake.calls["GattCharacteristic1.StartNotify"] == 0
        assert rig.toy.subscriptions == {NOTIFY: "notify"}
        assert rig.toy.notify(b"\x2a\x00")
        assert await next_value(notes) == b"\x2a\x00"
        # no duplicate on read through the socket (why bleak would prefer AcquireNotify)
        await client.read_gatt_char(NOTIFY)
        await asyncio.sleep(0.05)
        assert notes.empty()
        await client.stop_notify(NOTIFY)  # bleak closes its fd; the fake sees the EOF
        await wait_until(lambda: NOTIFY not in rig.toy.subscriptions)


async def test_acquired_notify_socket_closes_on_link_loss(rig: Rig) -> None:
    async with BleakClient(await found()) as client:
        _, callback = collector()
        before = open_sockets()
        await client.start_notify(NOTIFY, callback, bluez={"use_start_notify": False})
        acquired = open_sockets() - before  # what AcquireNotify passed to bleak
        assert acquired
        rig.fake.drop_link(TOY_ADDRESS)
        # bleak's fd reader sees the socket end and closes it
        await wait_until(lambda: not acquired & open_sockets())


# ---------------------------------------------------------------------------- connections


async def test_connect_error_knob(rig: Rig) -> None:
    device = await found()
    rig.fake.fail_next_connect(TOY_ADDRESS)
    with pytest.raises(BleakDBusError) as caught:
        await BleakClient(device).connect()
    assert (caught.value.dbus_error, caught.value.dbus_error_details) == (
        "org.bluez.Error.Failed",
        LE_ABORT_BY_REMOTE,
    )
    assert rig.toy.connects == 0
    async with BleakClient(device) as client:  # only the next one failed
        assert client.is_connected


async def test_refused_by_the_peripheral(rig: Rig) -> None:
    device = await found()
    rig.toy.refuse_connect = "the toy says no"
    with pytest.raises(BleakDBusError) as caught:
        await BleakClient(device).connect()
    assert (caught.value.dbus_error, caught.value.dbus_error_details) == (
        "org.bluez.Error.Failed",
        "the toy says no",
    )


async def test_abort_by_local_is_retried_by_bleak(rig: Rig) -> None:
    device = await found()
    rig.fake.fail_next_connect(TOY_ADDRESS, LE_ABORT_BY_LOCAL)
    dropped: list[BleakClient] = []
    client = BleakClient(device, disconnected_callback=dropped.append)
    await client.connect()
    try:
        assert client.is_connected
        assert rig.fake.calls["Device1.Connect"] == 2
        # bleak reports the aborted first attempt through the disconnected callback
        assert dropped == [client]
    finally:
        await client.disconnect()


async def test_connect_to_a_peripheral_gone_silent(rig: Rig) -> None:
    device = await found()
    rig.toy.advertising = False
    start = time.monotonic()
    with pytest.raises(BleakDBusError) as caught:
        await BleakClient(device, timeout=5).connect()
    assert caught.value.dbus_error_details == LE_TIMEOUT
    assert 0.25 < time.monotonic() - start < 2


async def test_connect_waits_for_a_peripheral_that_comes_back(rig: Rig) -> None:
    device = await found()
    rig.toy.advertising = False
    rig.fake.absent_connect_timeout_s = 5
    asyncio.get_running_loop().call_later(0.2, setattr, rig.toy, "advertising", True)
    async with BleakClient(device, timeout=3) as client:
        assert client.is_connected


async def test_bleak_timeout_cancels_a_pending_connect(rig: Rig) -> None:
    device = await found()
    rig.toy.advertising = False
    rig.fake.absent_connect_timeout_s = 30
    with pytest.raises(TimeoutError):
        await BleakClient(device, timeout=0.3).connect()
    # bleak's cleanup called Disconnect, which cancelled the attempt
    await wait_until(lambda: rig.fake.calls["Device1.Disconnect"] == 1)
    rig.toy.advertising = True
    async with BleakClient(device) as client:
        assert client.is_connected


async def test_pair_connects_and_reports_bonded(rig: Rig) -> None:
    # bleak's pair=True sets Trusted (a writable property) and calls Pair instead of Connect
    async with BleakClient(await found(), pair=True) as client:
        assert client.is_connected
        assert rig.fake.calls["Device1.Pair"] == 1
        assert rig.fake.calls["Device1.Connect"] == 0
        props = (await managed_objects(rig.bus.address))[device_path(TOY_ADDRESS)]
        device = props["org.bluez.Device1"]
        assert (device["Trusted"], device["Paired"], device["Bonded"]) == (True, True, True)


async def test_removed_device_is_not_found(rig: Rig) -> None:
    device = await found()
    rig.fake.remove_peripheral(TOY_ADDRESS)
    # bleak saw InterfacesRemoved and refuses from its own cache...
    with pytest.raises(BleakError, match="dev_7E_57_00_00_00_01' not found"):
        await BleakClient(device).connect()
    # ...and a client that missed it gets what libdbus answers for a gone object, which
    # bleak turns into BleakDeviceNotFoundError on Connect
    reply = await call(rig.bus.address, device_path(TOY_ADDRESS), "org.bluez.Device1", "Connect")
    assert reply.error_name == "org.freedesktop.DBus.Error.UnknownObject"
    assert await BleakScanner.discover(timeout=0.2) == []


@pytest.mark.parametrize("who", ["radio", "peripheral"])
async def test_link_loss_is_seen_by_bleak(rig: Rig, who: str) -> None:
    lost = asyncio.Event()
    client = BleakClient(await found(), disconnected_callback=lambda _c: lost.set())
    await client.connect()
    try:
        await client.start_notify(NOTIFY, lambda *_: None)
        if who == "radio":
            rig.fake.drop_link(TOY_ADDRESS)
        else:
            rig.toy.drop()
        async with asyncio.timeout(2):
            await lost.wait()
        assert not client.is_connected
        assert not rig.toy.connected
        assert not rig.fake.is_connected(TOY_ADDRESS)
        # the GATT objects went with the link, the device object stayed
        objects = await managed_objects(rig.bus.address)
        dev = device_path(TOY_ADDRESS)
        assert [p for p in objects if p.startswith(dev)] == [dev]
        assert objects[dev]["org.bluez.Device1"]["ServicesResolved"] is False
    finally:
        await client.disconnect()  # frees bleak's per-connection bus; must not raise
    # and the toy can be reached again
    async with BleakClient(await found()) as again:
        assert await again.read_gatt_char(READ) == toy_mod.READ_VALUE


async def test_disconnect_tells_the_peripheral_and_removes_gatt(rig: Rig) -> None:
    async with BleakClient(await found()) as client:
        await client.start_notify(CONTROL, lambda *_: None)
        assert rig.toy.connected
    assert (rig.toy.connects, rig.toy.disconnects) == (1, 1)
    assert not rig.toy.connected
    objects = await managed_objects(rig.bus.address)
    assert [p for p in objects if p.startswith(device_path(TOY_ADDRESS))] == [
        device_path(TOY_ADDRESS)
    ]


async def test_requests_after_link_loss_fail_cleanly(rig: Rig) -> None:
    client = BleakClient(await found())
    await client.connect()
    try:
        char = client.services.get_characteristic(READ)
        assert char is not None
        rig.fake.drop_link(TOY_ADDRESS)
        await wait_until(lambda: not client.is_connected)
        # bleak drops its services on the loss, so even a held characteristic object
        # fails with this text rather than "Not connected"
        for target in (char, READ):
            with pytest.raises(BleakError, match="Service Discovery has not been performed yet"):
                await client.read_gatt_char(target)
    finally:
        await client.disconnect()


async def test_fake_stop_disconnects_clients(rig: Rig) -> None:
    lost = asyncio.Event()
    client = BleakClient(await found(), disconnected_callback=lambda _c: lost.set())
    await client.connect()
    try:
        await rig.fake.stop()
        async with asyncio.timeout(2):
            await lost.wait()
        assert not rig.toy.connected
    finally:
        await client.disconnect()


# ---------------------------------------------------------------------------- the server


async def test_bluez_server_subprocess_serves_the_toy(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "retrotread.sim.bluez_server",
        "tests.toy_peripheral:make",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert server.stdout is not None and server.stderr is not None
    try:
        async with asyncio.timeout(10):
            first = (await server.stdout.readline()).decode().strip()
            second = (await server.stdout.readline()).decode().strip()
        key, _, address = first.partition("=")
        assert key == "DBUS_SYSTEM_BUS_ADDRESS" and address.startswith("unix:path=")
        prefix = second.removeprefix("PATH_PREFIX=")
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        if prefix:
            monkeypatch.setenv("PATH", prefix + os.pathsep + os.environ["PATH"])
        device = await BleakScanner.find_device_by_address(TOY_ADDRESS, timeout=3)
        assert device is not None and device.name == TOY_NAME
        async with BleakClient(device) as client:
            notes, callback = collector()
            await client.start_notify(NOTIFY, callback)
            # the server runs the toy's own driver: its counter arrives by itself
            first_tick = int.from_bytes(await next_value(notes), "little")
            assert int.from_bytes(await next_value(notes), "little") == first_tick + 1
    finally:
        if server.returncode is None:
            server.terminate()
        async with asyncio.timeout(10):
            _, err = await server.communicate()
    assert server.returncode == 0, err.decode()
    assert f"serving {TOY_ADDRESS} {TOY_NAME}" in err.decode()


def test_bluez_server_bad_factory_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert bluez_server.main(["tests.toy_peripheral:nothing_here"]) == 2
    assert capsys.readouterr().err == (
        "bluez_server: error: tests.toy_peripheral:nothing_here is not a callable\n"
    )
    assert bluez_server.main(["no-colon"]) == 2
    assert "factory must be MODULE:CALLABLE" in capsys.readouterr().err
