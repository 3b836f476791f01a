"""Treadmill switched on -> daemon connected -> first telemetry on MQTT, through the fake BlueZ.

switched on: the simulated treadmill is switched off (the link drops, it stops
advertising) for a random time, then on again; measured from the moment it advertises
again (the fake BlueZ repeats an advertisement every 0.5 s, as a unit does every 0.1-1 s)
to the daemon connected, and to the first telemetry message a subscriber receives. link
drop: the link drops while the treadmill keeps advertising (a radio glitch); measured from
the drop. The real bleak, a real Mosquitto, the daemon's default timeouts (scan 10 s,
backoff up to 60 s), one daemon for all trials. ``--long N`` adds N trials after 150-240 s
off, when a retry schedule would have reached its longest wait (~3 min each).

Run: .venv/bin/python bench/connect.py [--trials 20] [--off-max 60] [--long 0] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import tempfile
import time
from pathlib import Path

import _common
from retrotread.clock import RealClock
from retrotread.config import Config, MqttConfig, SessionsConfig
from retrotread.link.bleak_transport import BleakTransport
from retrotread.mqtt.client import mqtt_client
from retrotread.servers import free_port, mosquitto
from retrotread.service.app import Daemon
from retrotread.service.supervisor import LinkState
from retrotread.sim.bluez import FakeBlueZ
from retrotread.sim.dbus_bus import PrivateBus
from retrotread.sim.treadmill import SimConfig, SimTreadmill

Rows = dict[str, list[float]]


async def run(trials: int, long_trials: int, off_max: float, seed: int, tmp: Path) -> Rows:
    from retrotread.cli.demo import environment

    rng = random.Random(seed)
    out: Rows = {f"{c}_{w}": [] for c in ("on", "long", "drop") for w in ("conn", "tele")}
    async with contextlib.AsyncExitStack() as stack:
        port = free_port()
        stack.enter_context(mosquitto(tmp, port))
        bus = stack.enter_context(PrivateBus())
        stack.enter_context(environment(bus.environ()))  # this process's bleak: that bus
        sim = SimTreadmill(SimConfig(pre_workout_s=0.2))
        fake = FakeBlueZ(bus_address=bus.address)
        fake.add_peripheral(sim)
        await stack.enter_async_context(fake)
        config = Config(
            mqtt=MqttConfig(host="127.0.0.1", port=port, device_id="bench"),
            sessions=SessionsConfig(dir=tmp / "sessions"),
        )
        transport = BleakTransport(
            address=sim.address, scan_timeout_s=config.treadmill.scan_timeout_s
        )
        daemon = Daemon(config, transport, RealClock(), sim=sim)
        connected: list[float] = []
        daemon.supervisor.add_state_listener(
            lambda s: connected.append(time.perf_counter()) if s == LinkState.CONNECTED else None
        )
        stop = asyncio.Event()
        serving = asyncio.create_task(daemon.run(stop))
        stack.push_async_callback(lambda: serving)
        stack.callback(stop.set)
        telemetry: list[float] = []

        async def listen() -> None:
            async with mqtt_client("127.0.0.1", port) as watcher:
                await watcher.subscribe(f"{config.mqtt.effective_base_topic}/telemetry")
                async for _ in watcher.messages:
                    telemetry.append(time.perf_counter())

        listener = asyncio.create_task(listen())
        stack.push_async_callback(asyncio.gather, listener, return_exceptions=True)
        stack.callback(listener.cancel)

        async def back_after(t0: float) -> tuple[float, float]:
            async with asyncio.timeout(300):
                while not (connected and connected[-1] > t0 and telemetry[-1] > connected[-1]):
                    await asyncio.sleep(0.005)
            first = next(t for t in telemetry if t > connected[-1])  # none from before the drop
            return connected[-1] - t0, first - t0

        async with asyncio.timeout(60):
            while not (daemon.supervisor.state == LinkState.CONNECTED and telemetry):
                await asyncio.sleep(0.01)

        async def switched_on_after(off: float) -> None:
            sim.go_out_of_reach()
            while daemon.supervisor.state == LinkState.CONNECTED:
                await asyncio.sleep(0.01)
            await asyncio.sleep(off)
            t0 = time.perf_counter()
            sim.come_back()
            conn, tele = await back_after(t0)
            key = "long" if off > off_max else "on"
            out[f"{key}_conn"].append(conn)
            out[f"{key}_tele"].append(tele)
            print(f"switched on after {off:5.1f} s off: connected in {conn:5.2f} s", flush=True)

        for _ in range(trials):
            await switched_on_after(rng.uniform(1.0, off_max))
        for _ in range(long_trials):
            # Long enough for a retry schedule to have reached its longest wait (60 s).
            await switched_on_after(rng.uniform(150.0, 240.0))
        for _ in range(trials):
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            t0 = time.perf_counter()
            fake.drop_link(sim.address)
            conn, tele = await back_after(t0)
            out["drop_conn"].append(conn)
            out["drop_tele"].append(tele)
    return out


async def main(trials: int, long_trials: int, off_max: float, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = await run(trials, long_trials, off_max, seed, Path(tmp))
    _common.table(
        f"Treadmill switched on after 1-{off_max:g} s off: advertising again -> ...",
        [
            ("connected (s)", rows["on_conn"], ""),
            ("first telemetry on MQTT (s)", rows["on_tele"], ""),
        ],
    )
    if long_trials:
        _common.table(
            "Treadmill switched on after 150-240 s off: advertising again -> ...",
            [
                ("connected (s)", rows["long_conn"], ""),
                ("first telemetry on MQTT (s)", rows["long_tele"], ""),
            ],
        )
    _common.table(
        "Link dropped, treadmill still advertising: drop -> ...",
        [
            ("connected (s)", rows["drop_conn"], ""),
            ("first telemetry on MQTT (s)", rows["drop_tele"], ""),
        ],
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # "link lost" at every trial is the point
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--off-max", type=float, default=60.0)
    ap.add_argument("--long", type=int, default=0, help="trials after 150-240 s off")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    asyncio.run(main(a.trials, a.long, a.off_max, a.seed))
