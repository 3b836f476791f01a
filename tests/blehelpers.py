"""The real bleak against the simulator behind the fake BlueZ on a private D-Bus."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import pytest

from retrotread.clock import Clock, ScaledClock
from retrotread.link.bleak_transport import BleakTransport
from retrotread.link.events import LinkEvent
from retrotread.link.ftms_client import FtmsTreadmill
from retrotread.sim.bluez import FakeBlueZ
from retrotread.sim.dbus_bus import PrivateBus
from retrotread.sim.treadmill import Faults, SimConfig, SimTreadmill
from tests.clihelpers import ROOT, run_cli


@contextmanager
def bluez_server(*args: str) -> Iterator[dict[str, str]]:
    """``python -m retrotread.sim.bluez_server ARGS`` in another process: the environment
    (bus address, PATH) another process's bleak needs to find its peripherals."""
    server = subprocess.Popen(
        [sys.executable, "-m", "retrotread.sim.bluez_server", *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert server.stdout is not None
    address = server.stdout.readline().strip().split("=", 1)[1]
    prefix = server.stdout.readline().strip().split("=", 1)[1]
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address}
    if prefix:
        env["PATH"] = prefix + os.pathsep + env["PATH"]
    try:
        yield env
    finally:
        server.terminate()
        server.wait(10)
        server.stdout.close()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``retrotread ARGS`` in a subprocess whose bleak sees ``bluez_server``'s bus."""
    return run_cli(*args, env=env, timeout=60)


@pytest.fixture
def private_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateBus]:
    with PrivateBus() as bus:
        for key, value in bus.environ().items():
            monkeypatch.setenv(key, value)
        yield bus


@dataclass
class BleRig:
    bus: PrivateBus
    fake: FakeBlueZ
    sim: SimTreadmill
    clock: Clock
    treadmill: FtmsTreadmill
    transport: BleakTransport
    events: list[LinkEvent] = field(default_factory=list)

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events if isinstance(e, kind)]


async def wait_until(pred: object, timeout: float = 10.0, step: float = 0.01) -> None:
    assert callable(pred)
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(step)


@asynccontextmanager
async def ble_rig(
    bus: PrivateBus,
    *,
    config: SimConfig | None = None,
    faults: Faults | None = None,
    speedup: float = 1.0,
    connect: bool = True,
) -> AsyncIterator[BleRig]:
    clock = ScaledClock(speedup)
    sim = SimTreadmill(config or SimConfig(pre_workout_s=0.5), faults)
    fake = FakeBlueZ()
    fake.add_peripheral(sim)
    await fake.start(bus.address)
    sim_task = asyncio.create_task(sim.run(clock, tick_s=0.05))
    transport = BleakTransport(address=sim.address, scan_timeout_s=3.0)
    treadmill = FtmsTreadmill(transport, clock)
    rig = BleRig(bus, fake, sim, clock, treadmill, transport)
    treadmill.add_listener(rig.events.append)
    try:
        if connect:
            await treadmill.connect()
        yield rig
    finally:
        await treadmill.disconnect()
        sim_task.cancel()
        await asyncio.gather(sim_task, return_exceptions=True)
        await fake.stop()
