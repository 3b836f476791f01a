"""Stop latency with spoken cues: no ``[cues]``, a quick cue command, a cue command that hangs.

Each trial starts first-steps over MQTT (its warm-up cue runs the command), waits until the
belt moves, then publishes ``stop`` and times it to the Stop op code (08 01) arriving at the
in-process simulator, as ``latency.py`` does. The hung command never returns (600 s timeout),
so later cues pile up behind it and are dropped: the stop must not notice.

Run: .venv/bin/python bench/cue_stop.py [--trials 15]   (~12 s a trial: see stop_trial)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

import _common
from latency import StampedSim
from retrotread.clock import RealClock
from retrotread.config import Config, CuesConfig, MqttConfig, SessionsConfig
from retrotread.servers import free_port, mosquitto
from retrotread.service.app import Daemon
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import SimConfig


def _python(code: str) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {{text}}"


CASES = {
    "no cue command": None,
    "cue command that returns at once": _python("pass"),
    "cue command that hangs": _python("import time; time.sleep(3600)"),
}


async def stop_trial(phone: aiomqtt.Client, base: str, sim: StampedSim, daemon: Daemon) -> float:
    """Start first-steps, stop it mid-ramp: ms from ``stop`` published to 08 01 at ``sim``.

    Then waits until the belt is at rest and the runner knows it: it refuses a start before.
    """
    start = b'{"action": "start", "profile": "first-steps"}'
    await asyncio.wait_for(phone.publish(f"{base}/cmd", start, qos=1), 5)
    try:
        async with asyncio.timeout(30):
            while not (sim.state == "running" and sim.speed_kmh >= 0.5):
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise RuntimeError(f"the belt did not start ({daemon.runner.state_name()})") from None
    await asyncio.sleep(0.3)  # mid-ramp: setpoints are being written
    n = len(sim.stop_at)
    t0 = time.perf_counter()
    await asyncio.wait_for(phone.publish(f"{base}/cmd", b'{"action": "stop"}', qos=1), 5)
    while len(sim.stop_at) == n:
        await asyncio.sleep(0.0005)
    r = daemon.runner
    while r.session is not None or sim.speed_kmh > 0 or r.belt != "stopped":
        await asyncio.sleep(0.005)
    return (sim.stop_at[n] - t0) * 1000


async def run_case(command: str | None, trials: int, tmp: Path) -> tuple[list[float], int]:
    stop_ms: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        port = free_port()
        stack.enter_context(mosquitto(tmp, port))
        sim = StampedSim(SimConfig(pre_workout_s=0.2, data_interval_s=0.05, accel_kmh_per_s=5.0))
        config = Config(
            mqtt=MqttConfig(host="127.0.0.1", port=port, device_id="bench"),
            sessions=SessionsConfig(dir=tmp / "sessions"),
            cues=CuesConfig(command=command, timeout_s=600),
        )
        daemon = Daemon(config, InProcessTransport(sim), RealClock(), sim=sim)
        stop = asyncio.Event()
        serving = asyncio.create_task(daemon.run(stop))
        base = config.mqtt.effective_base_topic
        async with aiomqtt.Client("127.0.0.1", port) as phone:
            while not (daemon.treadmill.is_connected and daemon.bridge.connected):
                await asyncio.sleep(0.01)
            for _ in range(trials):
                stop_ms.append(await stop_trial(phone, base, sim, daemon))
        dropped = daemon.cues.dropped if daemon.cues is not None else 0
        stop.set()
        await serving
    return stop_ms, dropped


async def main(trials: int) -> None:
    rows = []
    for label, command in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            values, dropped = await run_case(command, trials, Path(tmp))
            rows.append((f"{label} (ms)", values, ""))
            if command is not None:
                print(f"{label}: {dropped} cues dropped")
    _common.table("Stop latency with spoken cues: `stop` published -> 08 01 at the treadmill", rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=15)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main(ap.parse_args().trials))
