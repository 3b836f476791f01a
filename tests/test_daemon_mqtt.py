"""The daemon as a phone sees it: a real Mosquitto, the MQTT contract of SPEC.md §3."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import signal
import subprocess
import sys
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from retrotread.clock import ScaledClock
from retrotread.config import Config, MqttConfig, SessionsConfig
from retrotread.mqtt.client import mqtt_client
from retrotread.service.app import Daemon
from retrotread.session.log import read_session
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import SimConfig, SimTreadmill
from tests.broker import Broker

ROOT = Path(__file__).resolve().parents[1]
BASE = "retrotread/t1"


class Phone:
    """An MQTT client that sends commands and remembers everything it hears."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.got: list[tuple[str, Any, bool]] = []
        self.client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._n = 0

    async def _run(self) -> None:
        async with mqtt_client("127.0.0.1", self.port) as c:
            self.client = c
            await c.subscribe(f"{BASE}/#", qos=1)
            await c.subscribe("homeassistant/device/#", qos=1)
            self._ready.set()
            async for m in c.messages:
                raw = m.payload
                data = bytes(raw) if isinstance(raw, bytes | bytearray) else b""
                try:
                    value: Any = json.loads(data) if data else None
                except (ValueError, RecursionError):  # it hears the commands it sends too
                    value = data.decode()
                self.got.append((str(m.topic), value, bool(m.retain)))

    async def __aenter__(self) -> Phone:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def on(self, topic: str) -> list[Any]:
        return [v for t, v, _ in self.got if t == f"{BASE}/{topic}"]

    async def send(self, payload: bytes | dict[str, Any]) -> None:
        assert self.client is not None
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await self.client.publish(f"{BASE}/cmd", data, qos=1)

    async def command(self, payload: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        self._n += 1
        cid = f"c{self._n}"
        await self.send({**payload, "id": cid})
        await until(lambda: any(r["id"] == cid for r in self.on("cmd/result")), timeout)
        return next(r for r in self.on("cmd/result") if r["id"] == cid)


async def until(pred: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.01)


@dataclass
class Rig:
    daemon: Daemon
    sim: SimTreadmill
    broker: Broker
    stop: asyncio.Event


@asynccontextmanager
async def daemon_rig(
    broker: Broker,
    tmp_path: Path,
    speedup: float = 10.0,
    retention_days: int | None = None,
    **mqtt: Any,
) -> AsyncIterator[Rig]:
    config = Config(
        mqtt=MqttConfig(host="127.0.0.1", port=broker.port, device_id="t1", **mqtt),
        sessions=SessionsConfig(dir=tmp_path / "sessions", retention_days=retention_days),
    )
    clock = ScaledClock(speedup)
    sim = SimTreadmill(SimConfig(pre_workout_s=1.0))
    daemon = Daemon(config, InProcessTransport(sim), clock, sim=sim)
    if daemon.bridge is not None:
        daemon.bridge.backoff.initial_s = 0.1
        daemon.bridge.backoff.max_s = 0.3
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    rig = Rig(daemon, sim, broker, stop)
    try:
        await until(lambda: daemon.treadmill.is_connected and daemon.bridge.connected, 10)
        yield rig
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def test_phone_flow_start_telemetry_pause_resume_stop(broker: Broker, tmp_path: Path) -> None:
    async with daemon_rig(broker, tmp_path) as r, Phone(broker.port) as phone:
        await until(lambda: phone.on("availability") == ["online"])
        assert (await phone.command({"action": "start", "profile": "first-steps"}))["ok"] is True
        await until(lambda: any((t["speed_kmh"] or 0) >= 1.0 for t in phone.on("telemetry")), 20)
        t = phone.on("telemetry")[-1]
        assert set(t) == {
            "ts",
            "session_id",
            "elapsed_s",
            "speed_kmh",
            "incline_pct",
            "distance_m",
            "target_speed_kmh",
            "target_incline_pct",
            "phase",
            "direction",
            "heart_rate_bpm",
            "energy_kcal",
            "heart_rate_source",
            "hr_cap_state",
        }
        assert t["phase"] == "warm-up"
        assert t["direction"] == "forward"
        assert t["session_id"] == phone.on("state")[-1]["session_id"]
        assert (await phone.command({"action": "pause"})) == {
            "id": "c2",
            "action": "pause",
            "ok": True,
            "error": None,
        }
        await until(lambda: phone.on("state")[-1]["state"] == "paused")
        await until(lambda: r.sim.speed_kmh == 0.0, 10)
        assert (await phone.command({"action": "resume"}))["ok"] is True
        await until(lambda: phone.on("state")[-1]["state"] == "running")
        await until(lambda: r.sim.speed_kmh > 0.4, 10)
        assert (await phone.command({"action": "stop"}))["ok"] is True
        await until(lambda: phone.on("state")[-1]["state"] == "stopped")
        assert r.sim.writes[-1] == b"\x08\x01"
        finished = [e for e in phone.on("event") if e["type"] == "session_finished"]
        assert finished[0]["outcome"] == "stopped"
        log = read_session(r.daemon.runner.last_log)  # type: ignore[arg-type]
        assert [c["action"] for c in log.of("cmd")] == ["pause", "resume", "stop"]


async def test_every_bad_input_gets_an_answer_and_changes_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    async with daemon_rig(broker, tmp_path) as r, Phone(broker.port) as phone:
        await until(lambda: bool(phone.on("state")))
        cases: list[tuple[bytes | dict[str, Any], str]] = [
            (b"{not json", "payload is not JSON"),
            (b"[1, 2]", "payload must be a JSON object"),
            ({"action": "dance"}, "unknown action 'dance'"),
            ({"action": "start", "profile": "moonwalk"}, "unknown profile 'moonwalk'"),
            ({"action": "start", "profile": 7}, "profile: input should be a valid string"),
            ({"action": "set", "speed_kmh": "fast"}, "speed_kmh: input should be a valid number"),
            ({"action": "resume"}, "nothing to resume: no session is running"),
            ({"action": "pause"}, "nothing to pause: no session is running"),
            (b"x" * 5000, "over the 4096-byte limit"),
        ]
        for payload, needle in cases:
            before = len(phone.on("cmd/result"))
            await phone.send(payload)
            await until(lambda b=before: len(phone.on("cmd/result")) > b)
            res = phone.on("cmd/result")[-1]
            assert res["ok"] is False, payload
            assert needle in res["error"], (payload, res)
        assert r.daemon.runner.state_name() == "idle"
        assert r.sim.writes == []  # nothing reached the treadmill
        # Out of limits and start-while-running, with a session going:
        assert (await phone.command({"action": "start", "profile": "first-steps"}))["ok"]
        res = await phone.command({"action": "set", "speed_kmh": 7.5})
        assert res["ok"] is False
        assert "above the safety limit of 5" in res["error"]
        res = await phone.command({"action": "start", "profile": "build-up"})
        assert res["ok"] is False
        assert "already running (first-steps)" in res["error"]
        assert r.daemon.runner.session is not None
        assert (await phone.command({"action": "stop"}))["ok"]


async def test_commands_while_treadmill_disconnected(broker: Broker, tmp_path: Path) -> None:
    async with daemon_rig(broker, tmp_path) as r, Phone(broker.port) as phone:
        r.sim.faults.refuse_connect = "powered off"
        r.sim.drop_link("powered off")
        await until(lambda: phone.on("state") and phone.on("state")[-1]["connected"] is False)
        assert phone.on("state")[-1]["state"] == "disconnected"
        for cmd, needle in (
            ({"action": "start", "profile": "first-steps"}, "not connected"),
            ({"action": "pause"}, "no session"),
            ({"action": "stop"}, "not reachable: use its stop button"),
        ):
            res = await phone.command(cmd)
            assert res["ok"] is False
            assert needle in res["error"]
        assert r.sim.writes == []
        assert phone.on("state")[-1]["stop_pending"] is True
        # The stop is kept (SPEC.md §2 "Stop is latched"): it goes first when the treadmill
        # is back, and nothing else does.
        r.sim.faults.refuse_connect = None
        await until(lambda: b"\x08\x01" in r.sim.writes, 20)
        assert r.sim.writes == [b"\x00", b"\x08\x01"]
        await until(lambda: phone.on("state")[-1]["stop_pending"] is False)


async def test_a_full_collection_walks_only_what_came_after_start(
    broker: Broker, tmp_path: Path
) -> None:
    """What start-up and the first connect built is frozen out of the collector's reach
    (a full collection of it stood the event loop still for ~49 ms)."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    async with daemon_rig(broker, tmp_path) as r:
        await asyncio.sleep(0.1)  # the freeze after the first connect is queued, not done
        frozen, walked = gc.get_freeze_count(), len(gc.get_objects())
        print(f"frozen {frozen}, still walked by a full collection {walked}")
        assert r.daemon.treadmill.is_connected
        assert frozen > 3 * walked
    assert gc.get_freeze_count() == 0  # unfrozen as it ended: the daemon can be collected


async def test_a_finished_daemon_is_collected(broker: Broker, tmp_path: Path) -> None:
    """Daemon.run freezes the heap, and unfreezes it as it ends: a Daemon that has run is
    freed once only its own cycles hold it (found in review: every test that ran one kept
    it, its simulator and loop objects for the rest of the process)."""
    gc.unfreeze()
    async with daemon_rig(broker, tmp_path) as r:
        ref = weakref.ref(r.daemon)
        del r
    gc.collect()
    assert ref() is None, f"frozen: {gc.get_freeze_count()}"
    gc.unfreeze()


async def test_broker_restart_mid_session(broker: Broker, tmp_path: Path) -> None:
    async with daemon_rig(broker, tmp_path) as r:
        async with Phone(broker.port) as phone:
            assert (await phone.command({"action": "start", "profile": "first-steps"}))["ok"]
            await until(lambda: r.sim.speed_kmh > 0.6, 20)
        broker.stop()
        await until(lambda: not r.daemon.bridge.connected)
        speed_during_outage = r.sim.speed_kmh
        await asyncio.sleep(1.0)  # 10 s of session time with no broker
        assert r.daemon.runner.session is not None  # the profile carries on
        assert r.sim.speed_kmh > speed_during_outage
        broker.start()
        await until(lambda: r.daemon.bridge.connected, 10)
        async with Phone(broker.port) as phone:
            await until(lambda: bool(phone.on("state")))
            retained = [v for t, v, ret in phone.got if t == f"{BASE}/state" and ret]
            assert retained
            assert retained[0]["state"] == "running"
            assert retained[0]["profile"] == "first-steps"
            assert [v for t, v, ret in phone.got if t == f"{BASE}/availability"] == ["online"]
            await phone.command({"action": "stop"})
        log = read_session(r.daemon.runner.last_log)  # type: ignore[arg-type]
        times = [rec["t"] for rec in log.of("telemetry")]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # 4 Hz telemetry kept going to the log through the outage (a gap of a few samples
        # is a busy event loop at 10x speed, not a loss).
        assert max(gaps) < 2.5
        assert len(times) >= 4 * (times[-1] - times[0]) * 0.8


async def test_on_broker_loss_pause(broker: Broker, tmp_path: Path) -> None:
    async with daemon_rig(broker, tmp_path, on_broker_loss="pause") as r:
        async with Phone(broker.port) as phone:
            assert (await phone.command({"action": "start", "profile": "first-steps"}))["ok"]
            await until(lambda: r.sim.speed_kmh > 0.6, 20)
        broker.stop()
        await until(lambda: r.daemon.runner.state_name() == "paused", 10)
        await until(lambda: r.sim.state == "paused", 10)
        broker.start()


async def test_discovery_payload_field_by_field(broker: Broker, tmp_path: Path) -> None:
    async with daemon_rig(broker, tmp_path), Phone(broker.port) as phone:
        await until(lambda: any(t == "homeassistant/device/t1/config" for t, _, _ in phone.got))
        cfg = next(v for t, v, _ in phone.got if t == "homeassistant/device/t1/config")
        assert cfg["dev"]["ids"] == ["retrotread_t1"]
        assert cfg["dev"]["name"] == "RETRO-SIM"
        assert cfg["o"]["name"] == "retrotread"
        assert cfg["availability_topic"] == f"{BASE}/availability"
        c = cfg["cmps"]
        assert len({x["unique_id"] for x in c.values()}) == len(c)
        assert (c["speed"]["p"], c["speed"]["unit_of_measurement"], c["speed"]["device_class"]) == (
            "sensor",
            "km/h",
            "speed",
        )
        assert c["speed"]["state_topic"] == f"{BASE}/telemetry"
        assert c["speed"]["value_template"] == "{{ value_json.speed_kmh }}"
        assert (c["incline"]["unit_of_measurement"], c["incline"]["state_class"]) == (
            "%",
            "measurement",
        )
        assert (c["distance"]["unit_of_measurement"], c["distance"]["state_class"]) == (
            "m",
            "total_increasing",
        )
        assert (c["elapsed"]["unit_of_measurement"], c["elapsed"]["device_class"]) == (
            "s",
            "duration",
        )
        assert c["heart_rate"]["unit_of_measurement"] == "bpm"
        assert (c["energy"]["unit_of_measurement"], c["energy"]["state_class"]) == (
            "kcal",
            "total_increasing",
        )
        assert c["state"]["device_class"] == "enum"
        assert c["state"]["options"] == [
            "disconnected",
            "idle",
            "running",
            "paused",
            "turning",
            "finishing",
            "stopped",
            "error",
        ]
        assert c["phase"]["state_topic"] == f"{BASE}/state"
        assert c["profile"]["p"] == "select"
        assert c["profile"]["options"] == ["build-up", "first-steps", "hill-intro", "knee-gentle"]
        assert c["profile"]["command_topic"] == f"{BASE}/cmd"
        assert json.loads(
            c["profile"]["command_template"].replace("{{ value }}", "hill-intro")
        ) == {"action": "start", "profile": "hill-intro"}
        for action in ("start", "stop", "pause", "resume", "finish", "skip"):
            assert c[action]["p"] == "button"
            assert json.loads(c[action]["payload_press"]) == {"action": action}
            assert c[action]["command_topic"] == f"{BASE}/cmd"
        assert (c["link"]["p"], c["link"]["device_class"]) == ("binary_sensor", "connectivity")
        for comp in c.values():
            assert "treadmill" not in comp["name"].lower() or comp["p"] == "binary_sensor"
        # HA restarts: it asks again with homeassistant/status = online.
        n = sum(1 for t, _, _ in phone.got if t == "homeassistant/device/t1/config")
        assert phone.client is not None
        await phone.client.publish("homeassistant/status", b"online")
        await until(
            lambda: sum(1 for t, _, _ in phone.got if t == "homeassistant/device/t1/config") > n
        )


async def test_stop_wins_while_ramping_and_flooded(broker: Broker, tmp_path: Path) -> None:
    async with daemon_rig(broker, tmp_path, speedup=5) as r, Phone(broker.port) as phone:
        assert (await phone.command({"action": "start", "profile": "build-up"}))["ok"]
        await until(lambda: r.sim.speed_kmh > 0.7, 20)
        assert phone.client is not None
        flood = json.dumps({"action": "set", "speed_kmh": 3.0}).encode()
        for _ in range(3000):
            await phone.client.publish(f"{BASE}/cmd", flood, qos=0)
        await phone.send({"action": "stop", "id": "STOP"})
        await until(lambda: b"\x08\x01" in r.sim.writes, 10)
        results_when_stopped = len(phone.on("cmd/result"))
        assert results_when_stopped < 3000  # stop did not wait for the flood to drain
        await until(lambda: any(x["id"] == "STOP" for x in phone.on("cmd/result")), 30)
        assert next(x for x in phone.on("cmd/result") if x["id"] == "STOP")["ok"] is True
        await until(lambda: r.daemon.runner.session is None, 10)
        assert r.daemon.runner.last_outcome == "stopped"


def test_last_will_on_kill_and_offline_on_sigterm(broker: Broker, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ndevice_id = "t1"\nkeepalive_s = 5\n'
        f'[sessions]\ndir = "{tmp_path / "s"}"\n'
    )

    daemon_log = tmp_path / "daemon.log"

    def start() -> subprocess.Popen[bytes]:
        with open(daemon_log, "ab") as err:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "retrotread.cli",
                    "--log-level",
                    "INFO",
                    "run",
                    "--simulate",
                    "-c",
                    str(cfg),
                ],
                cwd=ROOT,
                env={**os.environ},
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    async def availability_after(action: str) -> list[str]:
        seen: list[str] = []
        async with mqtt_client("127.0.0.1", broker.port) as c:
            await c.subscribe(f"{BASE}/availability", qos=1)
            proc = start()
            try:
                async with asyncio.timeout(20):
                    killed = False
                    async for m in c.messages:
                        seen.append(bytes(m.payload).decode())  # type: ignore[arg-type]
                        if seen[-1] == "online" and not killed:
                            killed = True
                            os.kill(
                                proc.pid, signal.SIGKILL if action == "kill" else signal.SIGTERM
                            )
                        elif seen[-1] == "offline" and killed:
                            break
            finally:
                try:
                    code = proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise AssertionError(daemon_log.read_text()) from None
            if action == "term":
                assert code == 0
        return seen

    seen = asyncio.run(availability_after("kill"))
    assert seen[-2:] == ["online", "offline"]  # the broker published the last will
    seen = asyncio.run(availability_after("term"))
    assert seen[-2:] == ["online", "offline"]  # published by the daemon itself
