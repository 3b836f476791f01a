"""Stop latency and telemetry latency through a real Mosquitto.

stop: from the `stop` command published to the broker to the Stop op code (08 01) arriving
at the treadmill's control point, with the in-process simulator and through the fake
BlueZ (real bleak). telemetry: from a Treadmill Data notification leaving the treadmill to
the MQTT telemetry message reaching a subscriber. command round trip: a phone publishes a
command and waits for its `cmd/result`, one at a time: `pause` while idle (refused by the
runner: the daemon's own path, MQTT in and out) and `stop` with the belt at rest (all the
way to the treadmill, whose simulated response lag is 50 ms); next to them a bare echo
through the same broker, the floor on this machine.

Full garbage collections (generation 2) during each case are timed too: the event loop
stands still while one runs.

``--broker-nagle`` runs the broker as Mosquitto is installed, without
``set_tcp_nodelay true``: what a user's own broker gives until they set it.

Run: .venv/bin/python bench/latency.py [--trials 25] [--broker-nagle]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

import _common
from retrotread.clock import RealClock
from retrotread.config import Config, MqttConfig, SessionsConfig
from retrotread.ftms.treadmill_data import TreadmillData
from retrotread.mqtt.client import mqtt_client
from retrotread.servers import free_port, mosquitto
from retrotread.service.app import Daemon
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import SimConfig, SimTreadmill


class StampedSim(SimTreadmill):
    """Records when Stop arrives and numbers every Treadmill Data record it sends."""

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.stop_at: list[float] = []
        self.sent_at: dict[int, float] = {}
        self.seq = 0

    def write(self, uuid: str, data: bytes, with_response: bool = True) -> None:
        if data == b"\x08\x01":
            self.stop_at.append(time.perf_counter())
        super().write(uuid, data, with_response)

    def current_record(self) -> TreadmillData:
        rec = super().current_record()
        self.seq = (self.seq + 1) % 65000
        self.sent_at[self.seq] = time.perf_counter()
        # The energy field carries a sequence number so each MQTT message can be matched.
        return TreadmillData(**{**rec.__dict__, "energy_kcal": self.seq})


async def _transport(sim: SimTreadmill, ble: bool, stack: contextlib.AsyncExitStack) -> Any:
    if not ble:
        return InProcessTransport(sim)
    from retrotread.cli.demo import environment
    from retrotread.link.bleak_transport import BleakTransport
    from retrotread.sim.bluez import FakeBlueZ
    from retrotread.sim.dbus_bus import PrivateBus

    bus = stack.enter_context(PrivateBus())
    stack.enter_context(environment(bus.environ()))  # this process's bleak talks to that bus
    fake = FakeBlueZ(bus_address=bus.address)
    fake.add_peripheral(sim)
    await stack.enter_async_context(fake)
    return BleakTransport(address=sim.address, scan_timeout_s=5.0)


Samples = dict[str, list[float]]


class FullCollections:
    """Times every generation-2 collection while in use."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._began) * 1000)

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


async def run_case(ble: bool, trials: int, tmp: Path, broker_nagle: bool) -> Samples:
    with FullCollections() as collections:
        out = await _run_case(ble, trials, tmp, broker_nagle)
    # The first is the daemon's own, at start-up, before it serves anything.
    out["gc"] = collections.pauses_ms[1:]
    return out


async def _run_case(ble: bool, trials: int, tmp: Path, broker_nagle: bool) -> Samples:
    out: Samples = {"stop": [], "telemetry": [], "pause": [], "stop_rt": [], "echo": []}
    async with contextlib.AsyncExitStack() as stack:
        port = free_port()
        # A broker as installed: Mosquitto keeps Nagle's algorithm unless told otherwise.
        extra = ["set_tcp_nodelay false"] if broker_nagle else []
        stack.enter_context(mosquitto(tmp, port, extra))
        sim = StampedSim(SimConfig(pre_workout_s=0.2, data_interval_s=0.05, accel_kmh_per_s=5.0))
        transport = await _transport(sim, ble, stack)
        config = Config(
            mqtt=MqttConfig(host="127.0.0.1", port=port, device_id="bench"),
            sessions=SessionsConfig(dir=tmp / "sessions"),
        )
        daemon = Daemon(config, transport, RealClock(), sim=sim)
        stop = asyncio.Event()
        serving = asyncio.create_task(daemon.run(stop))
        base = config.mqtt.effective_base_topic
        received: list[tuple[float, int]] = []

        async def listen() -> None:
            async with mqtt_client("127.0.0.1", port) as watcher:
                await watcher.subscribe(f"{base}/telemetry")
                async for m in watcher.messages:
                    now = time.perf_counter()
                    payload = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                    if payload.get("energy_kcal") is not None:
                        received.append((now, int(payload["energy_kcal"])))

        listener = asyncio.create_task(listen())
        start = b'{"action": "start", "profile": "first-steps"}'
        answers: dict[str, float] = {}
        answered = asyncio.Event()

        async def answers_in(phone: aiomqtt.Client) -> None:
            async for m in phone.messages:
                now = time.perf_counter()
                if str(m.topic) == "bench/echo":
                    answers[bytes(m.payload).decode()] = now  # type: ignore[arg-type]
                else:
                    answers[str(json.loads(bytes(m.payload)).get("id"))] = now  # type: ignore[arg-type]
                answered.set()

        async def round_trips(topic: str, payload: dict[str, Any], n: int) -> list[float]:
            """``n`` publishes of ``payload`` with a fresh id, each waiting for its answer."""
            times = []
            for i in range(n):
                key = f"{payload.get('action', 'echo')}-{i}"
                data = json.dumps({**payload, "id": key}).encode() if payload else key.encode()
                answered.clear()
                t0 = time.perf_counter()
                await asyncio.wait_for(phone.publish(topic, data, qos=1), 5)
                while key not in answers:
                    await asyncio.wait_for(answered.wait(), 5)
                    answered.clear()
                times.append((answers[key] - t0) * 1000)
                await asyncio.sleep(0.02)
            return times

        async with mqtt_client("127.0.0.1", port) as phone:
            await phone.subscribe(f"{base}/cmd/result", qos=1)
            await phone.subscribe("bench/echo", qos=1)
            reader = asyncio.create_task(answers_in(phone))
            while not (daemon.treadmill.is_connected and daemon.bridge.connected):
                await asyncio.sleep(0.01)
            for _ in range(trials):
                await asyncio.wait_for(phone.publish(f"{base}/cmd", start, qos=1), 5)
                while not (sim.state == "running" and sim.speed_kmh >= 0.5):
                    await asyncio.sleep(0.005)
                await asyncio.sleep(0.3)  # mid-ramp: setpoints are being written
                n = len(sim.stop_at)
                t0 = time.perf_counter()
                await asyncio.wait_for(
                    phone.publish(f"{base}/cmd", b'{"action": "stop"}', qos=1), 5
                )
                while len(sim.stop_at) == n:
                    await asyncio.sleep(0.0005)
                out["stop"].append((sim.stop_at[-1] - t0) * 1000)
                # The next start waits for the belt at rest: one still coasting is refused.
                while not (
                    daemon.runner.session is None
                    and sim.speed_kmh == 0
                    and daemon.runner.belt == "stopped"
                ):
                    await asyncio.sleep(0.005)
            await asyncio.sleep(0.5)  # the belt at rest, the ramp's writes answered
            cmd = f"{base}/cmd"
            out["pause"] = await round_trips(cmd, {"action": "pause"}, 4 * trials)
            out["stop_rt"] = await round_trips(cmd, {"action": "stop"}, 4 * trials)
            out["echo"] = await round_trips("bench/echo", {}, 4 * trials)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        for t_recv, seq in received:
            t_sent = sim.sent_at.get(seq)
            if t_sent is not None and 0 <= t_recv - t_sent < 5:
                out["telemetry"].append((t_recv - t_sent) * 1000)
        stop.set()
        await serving
    return out


def _finished(payload: bytes) -> bool:
    try:
        return bool(json.loads(payload).get("type") == "session_finished")
    except ValueError:
        return False


async def run_service_case(trials: int, tmp: Path) -> Samples:
    """The daemon as the service runs (``retrotread run``, its own process, its own event
    loop), the simulator and the fake BlueZ here as the radio and bluetoothd would be."""
    from _daemon import connected, daemon_over_bluez

    out: Samples = {"stop": [], "telemetry": [], "pause": [], "stop_rt": [], "echo": [], "gc": []}
    sim = StampedSim(SimConfig(pre_workout_s=0.2, data_interval_s=0.05, accel_kmh_per_s=5.0))
    async with daemon_over_bluez(tmp, [sim], sim.address) as daemon:
        await daemon.wait_for("state", connected)
        base, cmd = daemon.base, f"{daemon.base}/cmd"
        start = b'{"action": "start", "profile": "first-steps"}'
        async with mqtt_client("127.0.0.1", daemon.port) as phone:
            for _ in range(trials):
                async with asyncio.timeout(60):
                    while not (sim.state == "running" and sim.speed_kmh >= 0.5):
                        await phone.publish(cmd, start, qos=1)  # again if it came too soon
                        for _ in range(300):
                            if sim.state == "running" and sim.speed_kmh >= 0.5:
                                break
                            await asyncio.sleep(0.01)
                await asyncio.sleep(0.3)  # mid-ramp: setpoints are being written
                n = len(sim.stop_at)
                t0 = time.perf_counter()
                since = time.monotonic()
                await phone.publish(cmd, b'{"action": "stop"}', qos=1)
                async with asyncio.timeout(10):
                    while len(sim.stop_at) == n:
                        await asyncio.sleep(0.0005)
                out["stop"].append((sim.stop_at[-1] - t0) * 1000)
                await daemon.wait_for("event", _finished, since=since, timeout=30)
                async with asyncio.timeout(30):
                    while sim.speed_kmh > 0:
                        await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        answered: dict[str, float] = {}
        waiting = asyncio.Event()
        async with mqtt_client("127.0.0.1", daemon.port) as phone:
            await phone.subscribe(f"{base}/cmd/result", qos=1)

            async def answers_in() -> None:
                async for m in phone.messages:
                    key = json.loads(bytes(m.payload)).get("id")  # type: ignore[arg-type]
                    answered[str(key)] = time.perf_counter()
                    waiting.set()

            reader = asyncio.create_task(answers_in())
            for i in range(4 * trials):
                key = f"pause-{i}"
                waiting.clear()
                t0 = time.perf_counter()
                await phone.publish(cmd, json.dumps({"action": "pause", "id": key}).encode(), 1)
                async with asyncio.timeout(5):
                    while key not in answered:
                        await waiting.wait()
                        waiting.clear()
                out["pause"].append((answered[key] - t0) * 1000)
                await asyncio.sleep(0.02)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        for m in daemon.messages:
            if m.topic != f"{base}/telemetry":
                continue
            seq = json.loads(m.payload).get("energy_kcal")
            t_sent = sim.sent_at.get(int(seq)) if seq is not None else None
            # The listener stamps with time.monotonic(); the simulator with perf_counter().
            t_recv = m.at - time.monotonic() + time.perf_counter()
            if t_sent is not None and 0 <= t_recv - t_sent < 5:
                out["telemetry"].append((t_recv - t_sent) * 1000)
    return out


async def main(trials: int, broker_nagle: bool) -> None:
    cases = []
    for ble in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            label = "fake BlueZ" if ble else "in-process"
            cases.append((label, await run_case(ble, trials, Path(tmp), broker_nagle)))
    if not broker_nagle:
        with tempfile.TemporaryDirectory() as tmp:
            label = "daemon process, fake BlueZ"
            cases.append((label, await run_service_case(trials, Path(tmp))))
    if broker_nagle:
        print("\n(the broker without set_tcp_nodelay: Nagle's algorithm on its side)")

    def rows(key: str, what: str) -> list[tuple[str, list[float], str]]:
        return [(f"{what}, {label} (ms)", samples[key], "") for label, samples in cases]

    _common.table("Stop latency: `stop` published -> 08 01 at the treadmill", rows("stop", "stop"))
    _common.table(
        "Telemetry latency: Treadmill Data sent -> MQTT message received",
        rows("telemetry", "telemetry"),
    )
    _common.table(
        "Command round trip, one at a time: `cmd` published -> its `cmd/result` received",
        rows("pause", "pause, idle (refused)")
        + rows("stop_rt", "stop, idle (sim lag 50 ms)")
        + rows("echo", "bare MQTT echo"),
    )
    _common.table(
        "Full garbage collections while serving (the event loop stands still)",
        rows("gc", "generation 2"),
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=25)
    ap.add_argument(
        "--broker-nagle",
        action="store_true",
        help="run the broker without set_tcp_nodelay (as Mosquitto is installed)",
    )
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    a = ap.parse_args()
    asyncio.run(main(a.trials, a.broker_nagle))
