"""The BLE link with the real bleak, through the fake BlueZ on a private D-Bus (BLESIM.md).

ResourceWarning is an error (pyproject), so a bus socket bleak leaks after a link loss
fails the test that caused it.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from retrotread.backoff import Backoff
from retrotread.errors import ControlError
from retrotread.ftms.status import StatusOp
from retrotread.link.bleak_transport import BleakTransport, BluetoothUnavailable, scan
from retrotread.link.events import BadFrame, LinkDown, RawFrame, StatusChanged, Telemetry
from retrotread.link.ftms_client import ControlRefused, Superseded
from retrotread.service.supervisor import LinkState, Supervisor
from retrotread.sim.bluez import FakeBlueZ
from retrotread.sim.dbus_bus import PrivateBus
from retrotread.sim.treadmill import Faults
from tests.blehelpers import ble_rig, private_bus, wait_until

__all__ = ["private_bus"]


async def test_scan_finds_the_treadmill(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus, connect=False):
        found = await scan(1.0)
        assert [(f.name, f.address, f.is_treadmill) for f in found] == [
            ("RETRO-SIM", "C0:FF:EE:00:00:01", True)
        ]
        assert found[0].rssi is not None
        assert -70 <= found[0].rssi <= -50


async def test_capabilities_through_bleak(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus) as r:
        caps = r.treadmill.capabilities
        assert caps is not None
        assert caps.name == "RETRO-SIM"
        assert caps.address == "C0:FF:EE:00:00:01"
        assert caps.speed_range is not None
        assert (caps.speed_range.minimum, caps.speed_range.maximum, caps.speed_range.increment) == (
            0.5,
            8.0,
            0.1,
        )
        assert caps.can_set_incline
        assert caps.device_info == {
            "manufacturer": "retrotread",
            "model": "SIM-1",
            "serial": "0001",
            "firmware_revision": "1.0.0",
        }


async def test_find_by_name_and_by_service(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus, connect=False) as r:
        for transport in (
            BleakTransport(name="RETRO-SIM", scan_timeout_s=3),
            BleakTransport(scan_timeout_s=3),
        ):
            await transport.connect()
            try:
                assert transport.address == r.sim.address
                assert "00002acd-0000-1000-8000-00805f9b34fb" in transport.characteristics()
            finally:
                await transport.disconnect()


async def test_speed_and_incline_seen_in_telemetry(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus, speedup=10) as r:
        await r.treadmill.start()
        await wait_until(lambda: r.sim.state == "running", 5)
        await r.treadmill.set_speed(2.5)
        await r.treadmill.set_incline(3.0)
        await wait_until(
            lambda: any(
                e.record.speed_kmh == 2.5 and e.record.incline_pct == 3.0 for e in r.of(Telemetry)
            ),
            10,
        )
        tx = [e.data for e in r.of(RawFrame) if e.direction == "tx"]
        assert tx == [b"\x00", b"\x07", b"\x02\xfa\x00", b"\x03\x1e\x00"]
        await r.treadmill.stop()


async def test_stop_gets_through_while_a_ramp_is_pending(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus, speedup=10) as r:
        await r.treadmill.start()
        await wait_until(lambda: r.sim.state == "running", 5)
        ramp = [asyncio.ensure_future(r.treadmill.set_speed(1.0 + i / 10)) for i in range(8)]
        await asyncio.sleep(0)
        await asyncio.wait_for(r.treadmill.stop(), 5)
        results = await asyncio.gather(*ramp, return_exceptions=True)
        assert sum(isinstance(x, Superseded) for x in results) >= 6
        assert r.sim.writes[-1] == b"\x08\x01"
        await wait_until(lambda: r.sim.state == "stopped", 5)


async def test_refused_control(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus, faults=Faults(refuse_control=True)) as r:
        with pytest.raises(ControlRefused):
            await r.treadmill.start()
        assert r.sim.state == "idle"


async def test_cccd_error_surfaces_with_its_att_code(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus) as r:
        await r.transport.stop_notify("00002ad9-0000-1000-8000-00805f9b34fb")
        with pytest.raises(ControlError, match="indications are not enabled"):
            await r.treadmill.request_control()


async def test_padded_status_and_truncated_data(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus, faults=Faults(pad_status_to=3, truncate_at=20), speedup=5) as r:
        await r.treadmill.start()
        await wait_until(lambda: bool(r.of(StatusChanged)), 5)
        status = r.of(StatusChanged)[0].status
        assert (status.op, status.extra) == (StatusOp.STARTED_OR_RESUMED_BY_USER, b"\x00\x00")
        await wait_until(lambda: len(r.of(Telemetry)) >= 3, 5)
        rec = r.of(Telemetry)[-1].record
        assert max(len(e.data) for e in r.of(RawFrame) if e.char == "2acd") == 20
        assert rec.speed_kmh is not None
        assert "elapsed_s" in rec.missing
        assert not r.of(BadFrame)
        await r.treadmill.stop()


async def test_drop_mid_session_and_reconnect_with_backoff(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus, connect=False) as r:
        sup = Supervisor(
            r.treadmill, r.clock, silence_timeout_s=2.0, backoff=Backoff(0.2, 1.0, random.Random(3))
        )
        task = asyncio.create_task(sup.run())
        await wait_until(lambda: sup.state == LinkState.CONNECTED, 10)
        await r.treadmill.start()
        r.fake.drop_link(r.sim.address)
        await wait_until(lambda: bool(r.of(LinkDown)), 5)
        assert r.of(LinkDown)[0].reason == "the treadmill dropped the Bluetooth link"
        await wait_until(lambda: sup.state == LinkState.CONNECTED and sup.losses == 1, 15)
        # Control is asked for again after the reconnect (FTMS.md §8.4 step 8).
        n = len(r.sim.writes)
        await r.treadmill.set_speed(1.0)
        assert r.sim.writes[n:] == [b"\x00", b"\x02\x64\x00"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_absent_then_appears_is_connected_at_once(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus, connect=False, faults=Faults(advertising=False)) as r:
        r.transport.scan_timeout_s = 0.5
        # A backoff far longer than the waits below: only listening can connect in time.
        sup = Supervisor(r.treadmill, r.clock, backoff=Backoff(60.0, 120.0, random.Random(1)))
        states: list[LinkState] = []
        sup.add_state_listener(states.append)
        task = asyncio.create_task(sup.run())
        await wait_until(lambda: sup.state == LinkState.SEARCHING, 10)
        assert "not found" in (sup.last_error or "")
        await asyncio.sleep(1.0)  # two of the fake's announcement intervals: nothing heard
        assert sup.state == LinkState.SEARCHING
        assert sup.attempts == 1  # one scan that goes on, not attempts over and over
        assert r.fake.discovering
        r.sim.faults.advertising = True
        await wait_until(lambda: sup.state == LinkState.CONNECTED, 10)
        # Heard, then connected: no backoff in between.
        assert states == [
            LinkState.CONNECTING,
            LinkState.SEARCHING,
            LinkState.CONNECTING,
            LinkState.CONNECTED,
        ]
        assert sup.attempts == 2
        assert not r.fake.discovering  # the scan ended once it was heard
        assert r.fake.calls["Device1.Connect"] == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_absent_again_after_a_loss_is_listened_for(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus, connect=False) as r:
        r.transport.scan_timeout_s = 0.5
        sup = Supervisor(r.treadmill, r.clock, backoff=Backoff(0.2, 0.4, random.Random(2)))
        task = asyncio.create_task(sup.run())
        await wait_until(lambda: sup.state == LinkState.CONNECTED, 10)
        r.sim.go_out_of_reach()  # switched off: the link drops, no more advertisements
        await wait_until(lambda: sup.state == LinkState.SEARCHING, 10)
        assert sup.losses == 1
        r.sim.come_back()
        await wait_until(lambda: sup.state == LinkState.CONNECTED, 10)
        await wait_until(lambda: len(r.of(Telemetry)) >= 2, 5)  # data flows again
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_connect_error_is_retried_by_the_supervisor(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus, connect=False) as r:
        # One bleak attempt per supervisor attempt: bleak-retry-connector's own retry
        # inside a single connect() would otherwise hide whether the supervisor retries.
        r.transport.connect_attempts = 1
        r.fake.fail_next_connect(r.sim.address)
        sup = Supervisor(r.treadmill, r.clock, backoff=Backoff(0.1, 0.3, random.Random(1)))
        task = asyncio.create_task(sup.run())
        states: list[LinkState] = []
        sup.add_state_listener(states.append)
        await wait_until(lambda: sup.state == LinkState.CONNECTED, 15)
        assert sup.attempts == 2  # the refused one, then the supervisor's retry
        assert r.fake.calls["Device1.Connect"] == 2
        # It advertises but refuses: that is what the backoff is for, not listening.
        assert LinkState.BACKOFF in states and LinkState.SEARCHING not in states
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_adapter_switched_off_is_said_so(private_bus: PrivateBus) -> None:
    fake = FakeBlueZ(bus_address=private_bus.address, powered=False)
    async with fake:
        with pytest.raises(BluetoothUnavailable) as caught:
            await scan(0.5)
    assert str(caught.value).startswith("Bluetooth is not available (powered off): ")


async def test_no_bluez_on_the_bus_is_said_so(private_bus: PrivateBus) -> None:
    with pytest.raises(BluetoothUnavailable) as caught:
        await BleakTransport(address="C0:FF:EE:00:00:01", scan_timeout_s=0.5).connect()
    assert str(caught.value).startswith("Bluetooth is not available (is bluetoothd running?): ")
