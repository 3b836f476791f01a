"""Issue 11 finding 5, the Bluetooth side: after a crash the treadmill is found among the
devices BlueZ already holds (a connected treadmill does not advertise), and the stale
connection is taken over, or closed when that fails. Real bleak, fake BlueZ."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

from retrotread.backoff import Backoff
from retrotread.clock import ScaledClock
from retrotread.config import Config, MqttConfig, SessionsConfig
from retrotread.link.bleak_transport import BleakTransport, scan
from retrotread.link.ftms_client import FtmsTreadmill
from retrotread.service.app import Daemon
from retrotread.service.supervisor import LinkState, Supervisor
from retrotread.sim.dbus_bus import PrivateBus
from tests.blehelpers import ble_rig, private_bus, wait_until

__all__ = ["private_bus"]

ROOT = Path(__file__).resolve().parents[1]


async def until_connected(sup: Supervisor) -> Supervisor:
    """Run the supervisor until it has the treadmill connected; then stop it."""
    task = asyncio.create_task(sup.run())
    try:
        await wait_until(lambda: sup.state == LinkState.CONNECTED, 20)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return sup


async def test_a_connection_left_by_a_dead_process_is_taken_over(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus, connect=False) as r:
        await r.fake.hold_connection(r.sim.address)
        assert await scan(0.5) == []  # connected, it does not advertise
        scans = r.fake.calls["Adapter1.StartDiscovery"]
        await r.treadmill.connect()
        assert r.transport.is_connected
        assert r.fake.calls["Adapter1.StartDiscovery"] == scans  # found without a scan
        assert r.fake.calls["Device1.Connect"] == 0  # BlueZ's connection, taken over
        caps = r.treadmill.capabilities
        assert caps is not None and caps.name == "RETRO-SIM"
        await r.treadmill.start()  # control is asked for again and granted
        await r.treadmill.set_speed(1.5)
        await wait_until(lambda: r.sim.speed_kmh > 0.5, 10)


async def test_found_by_service_when_no_address_is_configured(private_bus: PrivateBus) -> None:
    async with ble_rig(private_bus, connect=False) as r:
        await r.fake.hold_connection(r.sim.address)
        transport = BleakTransport(scan_timeout_s=1.0)
        treadmill = FtmsTreadmill(transport, r.clock)
        try:
            held = await transport.held_by_bluez()
            assert held is not None and held.address == r.sim.address
            await treadmill.connect()
            assert transport.address == r.sim.address
            assert r.fake.calls["Device1.Connect"] == 0
        finally:
            await treadmill.disconnect()
        named = BleakTransport(name="SOMETHING-ELSE", scan_timeout_s=0.3)
        assert await named.held_by_bluez() is None


async def test_a_stuck_stale_connection_is_closed_and_the_treadmill_found_again(
    private_bus: PrivateBus,
) -> None:
    async with ble_rig(private_bus, connect=False) as r:
        await r.fake.hold_connection(r.sim.address, services_resolved=False)
        sup = await until_connected(
            Supervisor(r.treadmill, r.clock, connect_timeout_s=1.5, backoff=Backoff(0.1, 0.2))
        )
        assert sup.attempts >= 2  # the takeover timed out; the next attempt got through
        assert r.fake.calls["Device1.Disconnect"] >= 1  # the stale connection was closed
        assert r.fake.calls["Device1.Connect"] >= 1  # and a fresh one made


DEAD_DAEMON = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from retrotread.clock import RealClock
    from retrotread.link.bleak_transport import BleakTransport
    from retrotread.link.ftms_client import FtmsTreadmill

    async def main():
        t = FtmsTreadmill(BleakTransport(address=sys.argv[1], scan_timeout_s=5.0), RealClock())
        await t.connect()
        await t.start()
        await t.set_speed(2.0)
        print("running", flush=True)
        await asyncio.sleep(1.0)
        os.kill(os.getpid(), signal.SIGKILL)  # no disconnect, no stop: a crash

    asyncio.run(main())
    """
)


async def test_after_kill_9_the_restarted_daemon_reconnects_at_once(
    private_bus: PrivateBus,
) -> None:
    async with ble_rig(private_bus, connect=False) as r:
        await _crash_with_the_belt_running(r.sim.address)
        assert r.fake.is_connected(r.sim.address)  # BlueZ kept the dead process's link
        assert r.sim.speed_kmh > 0  # and the belt runs with nobody in charge
        assert await scan(0.5) == []
        sup = await until_connected(Supervisor(r.treadmill, r.clock, backoff=Backoff(0.1, 0.2)))
        assert sup.attempts == 1  # found and taken over on the first try
        assert r.treadmill.last_data_at is not None  # telemetry flows to the new process


async def test_after_kill_9_the_daemon_takes_over_and_pauses_the_orphaned_belt(
    private_bus: PrivateBus, tmp_path: Path
) -> None:
    """Finding 5 end to end: the whole daemon, restarted after a crash mid-session."""
    async with ble_rig(private_bus, connect=False) as r:
        await _crash_with_the_belt_running(r.sim.address)
        assert r.sim.state == "running"
        config = Config(mqtt=MqttConfig(enabled=False), sessions=SessionsConfig(dir=tmp_path))
        daemon = Daemon(config, r.transport, ScaledClock(1.0), mqtt=False)
        events: list[dict[str, Any]] = []
        daemon.runner.add_listener(lambda kind, p: events.append(p) if kind == "event" else None)
        stop = asyncio.Event()
        serving = asyncio.create_task(daemon.run(stop))
        try:
            await wait_until(lambda: r.sim.state == "paused", 20)
        finally:
            stop.set()
            await asyncio.wait_for(serving, 30)
        assert daemon.supervisor.attempts == 1  # taken over, not scanned for in vain
        found = [e for e in events if e.get("reason") == "found_running"]
        assert [e["type"] for e in found] == ["cue"]
        assert "running with no session" in found[0]["message"]


async def _crash_with_the_belt_running(address: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DEAD_DAEMON,
        address,
        cwd=ROOT,
        env={**os.environ},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    assert out.decode().strip() == "running"
