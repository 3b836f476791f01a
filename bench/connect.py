"""Treadmill switched on -> daemon connected -> first telemetry on MQTT, through the fake BlueZ.

switched on: the simulated treadmill is switched off (the link drops, it stops
advertising) for a random time, then on again; measured from the moment it advertises
again (the fake BlueZ repeats an advertisement every 0.5 s, as a unit does every 0.1-1 s)
to the daemon connected, and to the first telemetry message a subscriber receives. link
drop: the link drops while the treadmill keeps advertising (a radio glitch); measured from
the drop. The real bleak, a real Mosquitto, the daemon's default timeouts (scan 10 s,
backoff up to 60 s), one daemon for all trials.

Run: .venv/bin/python bench/connect.py [--trials 20] [--off-max 60] [--seed 1]
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


async def run(trials: int, off_max: float, seed: int, tmp: Path) -> Rows:
    from retrotread.cli.demo import environment

    rng = random.Random(seed)
    out: Rows = {"on_conn": [], "on_tele": [], "drop_conn": [], "drop_tele": []}
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
                while not (connected and connected[-1] > t0 and telemetry[-1:] > [t0]):
                    await asyncio.sleep(0.005)
            first = next(t for t in telemetry if t > t0)
            return connected[-1] - t0, first - t0

        async with asyncio.timeout(60):
            while not (daemon.supervisor.state == LinkState.CONNECTED and telemetry):
                await asyncio.sleep(0.01)
        for _ in range(trials):
            off = rng.uniform(1.0, off_max)
            sim.go_out_of_reach()
            while daemon.supervisor.state == LinkState.CONNECTED:
                await asyncio.sleep(0.01)
            await asyncio.sleep(off)
            t0 = time.perf_counter()
            sim.come_back()
            conn, tele = await back_after(t0)
            out["on_conn"].append(conn)
            out["on_tele"].append(tele)
            print(f"switched on after {off:4.1f} s off: connected in {conn:5.2f} s", flush=True)
        for _ in range(trials):
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            t0 = time.perf_counter()
            fake.drop_link(sim.address)
            conn, tele = await back_after(t0)
            out["drop_conn"].append(conn)
            out["drop_tele"].append(tele)
    return out


async def main(trials: int, off_max: float, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = await run(trials, off_max, seed, Path(tmp))
    _common.table(
        f"Treadmill switched on after 1-{off_max:g} s off: advertising again -> ...",
        [
            ("connected (s)", rows["on_conn"], ""),
            ("first telemetry on MQTT (s)", rows["on_tele"], ""),
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
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    asyncio.run(main(a.trials, a.off_max, a.seed))
