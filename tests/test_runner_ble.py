"""The runner's main flows over the real BLE path (bleak -> fake BlueZ -> simulator)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from retrotread.config import SafetyConfig
from retrotread.service.runner import SessionRunner
from retrotread.service.supervisor import Backoff, LinkState, Supervisor
from retrotread.session.log import read_session
from retrotread.sim.dbus_bus import PrivateBus
from tests.blehelpers import BleRig, ble_rig, private_bus, wait_until
from tests.runhelpers import phase, profile

__all__ = ["private_bus"]

SPEEDUP = 20.0
SHORT = profile(
    phase("warm", 1.5, duration=40, ramp=20), phase("up", 1.5, duration=30, ramp=20, incline=2.0)
)


@asynccontextmanager
async def runner_rig(
    bus: PrivateBus, tmp_path: Path
) -> AsyncIterator[tuple[BleRig, SessionRunner, list[Any]]]:
    async with ble_rig(bus, connect=False, speedup=SPEEDUP) as r:
        limits = SafetyConfig()
        sup = Supervisor(
            r.treadmill,
            r.clock,
            silence_timeout_s=20.0,
            backoff=Backoff(0.5, 2.0, random.Random(2)),
        )

        runner = SessionRunner(r.treadmill, r.clock, safety=limits, sessions_dir=tmp_path)
        out: list[Any] = []
        runner.add_listener(lambda k, p: out.append((k, p)))
        runner_task = asyncio.create_task(runner.run(), name="session-runner")
        task = asyncio.create_task(sup.run())
        await wait_until(lambda: sup.state == LinkState.CONNECTED, 10)
        try:
            yield r, runner, out
        finally:
            await runner.shutdown(5)
            task.cancel()
            runner_task.cancel()
            await asyncio.gather(task, runner_task, return_exceptions=True)


def events(out: list[Any], kind: str) -> list[dict[str, Any]]:
    return [p for k, p in out if k == "event" and p["type"] == kind]


async def test_full_profile_over_ble(private_bus: PrivateBus, tmp_path: Path) -> None:
    async with runner_rig(private_bus, tmp_path) as (r, runner, _out):
        await runner.start(SHORT)
        await wait_until(lambda: runner.session is None, 30)
        assert runner.last_outcome == "completed"
        log = read_session(runner.last_log)  # type: ignore[arg-type]
        assert log.outcome == "completed"
        assert any(x["char"] == "2acd" for x in log.of("rx"))
        assert r.sim.incline_pct == 2.0


async def test_stop_mid_ramp_over_ble(private_bus: PrivateBus, tmp_path: Path) -> None:
    async with runner_rig(private_bus, tmp_path) as (r, runner, _out):
        await runner.start(SHORT)
        await wait_until(lambda: r.sim.speed_kmh >= 0.9, 20)
        await asyncio.wait_for(runner.stop(), 3)
        assert r.sim.writes[-1] == b"\x08\x01"
        await wait_until(lambda: runner.session is None, 5)
        assert runner.last_outcome == "stopped"


async def test_link_drop_and_reconnect_over_ble(private_bus: PrivateBus, tmp_path: Path) -> None:
    async with runner_rig(private_bus, tmp_path) as (r, runner, out):
        await runner.start(SHORT)
        await wait_until(lambda: r.sim.speed_kmh >= 0.9, 20)
        r.fake.drop_link(r.sim.address)
        await wait_until(lambda: bool(events(out, "link_restored")), 15)
        n = len(r.sim.writes)
        await asyncio.sleep(1.0)
        assert all(w[0] not in (0x02, 0x07) for w in r.sim.writes[n:])  # paused, waiting
        assert runner.state_name() == "paused"
        await runner.resume()
        await wait_until(lambda: runner.session is None, 40)
        assert runner.last_outcome == "completed"


async def test_console_override_over_ble(private_bus: PrivateBus, tmp_path: Path) -> None:
    async with runner_rig(private_bus, tmp_path) as (r, runner, out):
        await runner.start(SHORT)
        await wait_until(lambda: r.sim.speed_kmh >= 0.9, 20)
        r.sim.set_speed_at_console(2.8)
        await wait_until(lambda: bool(events(out, "override")), 5)
        assert events(out, "override")[0]["value"] == 2.8
        await asyncio.sleep(0.5)
        assert r.sim.target_speed_kmh == 2.8  # left alone
        await runner.stop()


async def test_safety_key_over_ble(private_bus: PrivateBus, tmp_path: Path) -> None:
    async with runner_rig(private_bus, tmp_path) as (r, runner, _out):
        await runner.start(SHORT)
        await wait_until(lambda: r.sim.speed_kmh >= 0.9, 20)
        n = len(r.sim.writes)
        r.sim.pull_safety_key()
        await wait_until(lambda: runner.session is None, 5)
        assert runner.last_outcome == "stopped_by_treadmill"
        await asyncio.sleep(0.5)
        assert r.sim.writes[n:] == []


async def test_speed_locked_over_ble(private_bus: PrivateBus, tmp_path: Path) -> None:
    async with runner_rig(private_bus, tmp_path) as (r, runner, out):
        r.sim.faults.speed_locked = True
        await runner.start(SHORT)
        await wait_until(lambda: runner.session is None, 30)
        assert runner.last_outcome == "error"
        assert "speed-locked" in events(out, "error")[0]["message"]
