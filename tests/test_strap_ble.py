"""The daemon with two BLE links at once: a simulated treadmill and a simulated strap behind
the fake BlueZ, through the real bleak (the wiring ``run --simulate`` over BlueZ uses)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from retrotread.clock import ScaledClock
from retrotread.config import Config, HeartRateConfig, MqttConfig, SessionsConfig, TreadmillConfig
from retrotread.ftms.heart_rate import decode_heart_rate_measurement
from retrotread.service.app import Daemon, daemon_for
from retrotread.service.supervisor import LinkState
from retrotread.session.log import read_session
from retrotread.sim.dbus_bus import PrivateBus
from tests.blehelpers import private_bus, wait_until
from tests.runhelpers import phase, profile

__all__ = ["private_bus"]

SPEEDUP = 20.0
WALK = profile(
    phase("warm", 1.5, duration=80, ramp=20),
    phase("up", 1.5, duration=80, ramp=20, incline=2.0),
    name="walk",
)


Output = list[tuple[str, dict[str, Any]]]


@asynccontextmanager
async def serving(
    bus: PrivateBus, tmp_path: Path, *, strap_worn: bool = True, outputs: Output | None = None
) -> AsyncIterator[Daemon]:
    """The daemon with a simulated treadmill and strap behind the fake BlueZ, running; on exit
    it is stopped and what it held released. ``strap_worn=False``: the strap is out of reach
    (not advertising) before the daemon first looks. ``outputs`` gets all the runner says."""
    # At 20x, one real second is 20 clock seconds: the watchdogs and staleness stay at one
    # real second or more (a loaded machine is not a silent device).
    config = Config(
        treadmill=TreadmillConfig(silence_timeout_s=20.0),
        heart_rate=HeartRateConfig(silence_timeout_s=20.0, stale_after_s=20.0),
        mqtt=MqttConfig(enabled=False),
        sessions=SessionsConfig(dir=tmp_path),
    )
    clock = ScaledClock(SPEEDUP)
    async with daemon_for(
        config, clock, "simulator-over-bluez", mqtt=False, bus_address=bus.address
    ) as daemon:
        assert daemon.sim is not None and daemon.sim_strap is not None
        assert daemon.strap is not None and daemon.strap_supervisor is not None
        if not strap_worn:
            daemon.sim_strap.go_out_of_reach()
        if outputs is not None:
            daemon.runner.add_listener(lambda k, p: outputs.append((k, p)))
        stop = asyncio.Event()
        running = asyncio.create_task(daemon.run(stop))
        try:
            yield daemon
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)


async def test_a_treadmill_and_a_strap_at_once_and_the_strap_drops_alone(
    private_bus: PrivateBus, tmp_path: Path
) -> None:
    out: Output = []
    async with serving(private_bus, tmp_path, outputs=out) as daemon:
        assert daemon.strap_supervisor is not None and daemon.sim_strap is not None
        await wait_until(
            lambda: (
                daemon.supervisor.state == LinkState.CONNECTED
                and daemon.strap_supervisor is not None
                and daemon.strap_supervisor.state == LinkState.CONNECTED
            ),
            20,
        )
        assert daemon.health.strap == "connected"
        # Both found on their first attempt: the two links' scans took turns (BlueZ
        # refuses a second discovery from one client with InProgress).
        assert (daemon.supervisor.attempts, daemon.strap_supervisor.attempts) == (1, 1)
        # The runner hears of it through its inbox, a moment after the supervisor.
        await wait_until(lambda: daemon.runner.state()["heart_rate"]["strap"] == "connected")
        await daemon.runner.start(WALK)

        def strap_rates() -> list[dict[str, Any]]:
            return [
                p
                for k, p in out
                if k == "telemetry" and p["session_id"] and p["heart_rate_source"] == "strap"
            ]

        await wait_until(lambda: len(strap_rates()) >= 3, 10)
        # Telemetry shows values the strap sent, through bleak and the fake BlueZ.
        sent = {decode_heart_rate_measurement(b).heart_rate_bpm for _, b in daemon.sim_strap.sent}
        assert {p["heart_rate_bpm"] for p in strap_rates()} <= sent
        assert all(60 <= p["heart_rate_bpm"] <= 160 for p in strap_rates())

        daemon.sim_strap.drop_link("the strap slipped off")
        await wait_until(
            lambda: daemon.strap_supervisor is not None and daemon.strap_supervisor.losses == 1,
            10,
        )
        n = len(strap_rates())
        await wait_until(lambda: len(strap_rates()) > n + 2, 20)  # back, through bleak
        assert daemon.sim_strap.connects == 2

        await wait_until(lambda: daemon.runner.session is None, 40)
    # The treadmill's session never noticed the strap come and go.
    assert daemon.runner.last_outcome == "completed"
    assert daemon.supervisor.losses == 0
    events = [p["type"] for k, p in out if k == "event"]
    assert "link_lost" not in events and "link_restored" not in events
    assert daemon.sim is not None
    pauses = [w for w in daemon.sim.accepted if w.data == b"\x08\x02"]
    assert pauses == []
    assert daemon.runner.last_log is not None
    log = read_session(daemon.runner.last_log)
    assert log.outcome == "completed"
    assert any(x["char"] == "2a37" for x in log.of("rx"))
    links = [e for e in log.of("event") if e.get("event") == "strap_link"]
    assert [e["up"] for e in links] == [False, True]


async def test_a_strap_that_is_not_there_never_keeps_the_treadmill_from_connecting(
    private_bus: PrivateBus, tmp_path: Path
) -> None:
    async with serving(private_bus, tmp_path, strap_worn=False) as daemon:
        assert daemon.sim_strap is not None
        await wait_until(lambda: daemon.supervisor.state == LinkState.CONNECTED, 20)
        await wait_until(
            lambda: daemon.strap_supervisor is not None and daemon.strap_supervisor.attempts >= 2,
            20,
        )
        assert daemon.health.strap != "connected"
        await daemon.runner.start(WALK)  # a session without a strap: no cap, no hold
        await wait_until(lambda: daemon.sim is not None and daemon.sim.speed_kmh > 1.0, 20)
        daemon.sim_strap.come_back()  # put on
        await wait_until(lambda: daemon.health.strap == "connected", 30)
        assert daemon.supervisor.losses == 0
        await daemon.runner.stop()
