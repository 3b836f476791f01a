"""How many simulated treadmills one daemon process sustains at 4 Hz, on one broker.

N daemons (each its own simulated treadmill, runner and MQTT client, distinct device_id)
share one process and event loop; each runs a profile. A subscriber times every device's
telemetry; a missed deadline is a gap over 0.5 s (two 4 Hz periods).
Run: .venv/bin/python bench/scale.py [--counts 1 10 50 100 200] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import _common
from retrotread.clock import RealClock
from retrotread.config import Config, MqttConfig, SessionsConfig
from retrotread.mqtt.client import mqtt_client
from retrotread.servers import free_port, mosquitto
from retrotread.service.app import Daemon
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import SimConfig, SimTreadmill


async def run(n: int, seconds: float, tmp: Path, port: int) -> tuple[list[float], int, int]:
    daemons = []
    for i in range(n):
        cfg = Config(
            mqtt=MqttConfig(host="127.0.0.1", port=port, device_id=f"tm{i}", discovery=False),
            sessions=SessionsConfig(dir=tmp / f"s{i}"),
        )
        sim = SimTreadmill(
            SimConfig(address=f"C0:FF:EE:00:{i // 256:02X}:{i % 256:02X}", pre_workout_s=0.5)
        )
        daemons.append(Daemon(cfg, InProcessTransport(sim), RealClock(), sim=sim))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(d.run(stop)) for d in daemons]
    arrivals: dict[str, list[float]] = defaultdict(list)

    async def listen() -> None:
        async with mqtt_client("127.0.0.1", port) as c:
            await c.subscribe("retrotread/+/telemetry")
            async for m in c.messages:
                arrivals[str(m.topic).split("/")[1]].append(time.perf_counter())

    listener = asyncio.create_task(listen())
    while not all(d.treadmill.is_connected and d.bridge.connected for d in daemons):
        await asyncio.sleep(0.05)
    for d in daemons:
        await d.start_profile("build-up")
    await asyncio.sleep(2)  # belts started
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    t1 = time.perf_counter()
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    stop.set()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    gaps, missed, samples = [], 0, 0
    for i in range(n):
        times = [t for t in arrivals[f"tm{i}"] if t0 <= t <= t1]
        samples += len(times)
        for a, b in itertools.pairwise(times):
            gaps.append((b - a) * 1000)
            missed += (b - a) > 0.5
        if len(times) < 2:
            missed += int(seconds / 0.25)
    return gaps, missed, samples


async def main(counts: list[int], seconds: float) -> None:
    rows = []
    summary = []
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            with mosquitto(Path(tmp), port):
                gaps, missed, samples = await run(n, seconds, Path(tmp), port)
        rows.append((f"{n:>3} treadmills: telemetry interval (ms)", gaps, ""))
        expected = n * seconds * 4
        summary.append((n, missed, samples, expected))
    _common.table(f"Scale: N daemons in one process, one broker, {seconds:g} s each", rows)
    print(f"\n{'treadmills':>10} {'missed deadlines':>17} {'samples':>9} {'expected':>9}")
    for n, missed, samples, expected in summary:
        print(f"{n:>10} {missed:>17} {samples:>9} {expected:>9.0f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 10, 50, 100, 200])
    ap.add_argument("--seconds", type=float, default=8.0)
    a = ap.parse_args()
    asyncio.run(main(a.counts, a.seconds))
