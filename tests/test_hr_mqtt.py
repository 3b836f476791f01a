"""Heart rate and the cap on MQTT and in Home Assistant: a daemon with a simulated treadmill
and a simulated strap, a real Mosquitto, the discovery templates rendered as HA does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from retrotread.clock import ScaledClock
from retrotread.config import Config, HeartRateConfig, MqttConfig, SafetyConfig, SessionsConfig
from retrotread.service.app import Daemon
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.strap import SimStrap
from retrotread.sim.treadmill import SimConfig, SimTreadmill
from tests.broker import Broker
from tests.test_daemon_mqtt import Phone, until
from tests.test_ha_discovery import CONFIG_TOPIC, discovery, event_fires, sensor_shows


@asynccontextmanager
async def strap_daemon(broker: Broker, tmp_path: Path, cap: int) -> AsyncIterator[Daemon]:
    config = Config(
        mqtt=MqttConfig(host="127.0.0.1", port=broker.port, device_id="t1"),
        sessions=SessionsConfig(dir=tmp_path / "sessions"),
        safety=SafetyConfig(max_heart_rate_bpm=cap),
        heart_rate=HeartRateConfig(silence_timeout_s=20.0, stale_after_s=20.0),
    )
    sim = SimTreadmill(SimConfig(pre_workout_s=1.0))
    strap = SimStrap(sim.walker)
    daemon = Daemon(
        config,
        InProcessTransport(sim),
        ScaledClock(10.0),
        sim=sim,
        strap=InProcessTransport(strap),
        sim_strap=strap,
    )
    daemon.bridge.backoff.initial_s = 0.1
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        await until(
            lambda: (
                daemon.treadmill.is_connected
                and daemon.strap is not None
                and daemon.strap.is_connected
                and daemon.bridge.connected
            ),
            10,
        )
        yield daemon
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def test_heart_rate_source_cap_and_strap_in_mqtt_and_home_assistant(
    broker: Broker, tmp_path: Path
) -> None:
    # A cap the warm-up itself reaches: the walker's resting heart is 68.
    async with strap_daemon(broker, tmp_path, cap=76) as daemon, Phone(broker.port) as phone:
        await until(lambda: any(t == CONFIG_TOPIC for t, _, _ in phone.got))
        c = discovery(phone)["cmps"]
        for key in ("heart_rate_source", "hr_cap_state", "hr_cap", "strap"):
            assert c[key]["default_entity_id"] == f"{c[key]['p']}.t1_{key}"
        assert (await phone.command({"action": "start", "profile": "first-steps"}))["ok"]

        def caps() -> list[dict[str, Any]]:
            return [e for e in phone.on("event") if e["type"] == "hr_cap"]

        await until(lambda: bool(caps()), 30)
        hold = caps()[0]
        assert (hold["state"], hold["cap_bpm"]) == ("holding", 76)
        assert hold["heart_rate_bpm"] > 76
        event_type, attributes = event_fires(c["events"], hold)  # HA takes the new type
        assert event_type == "hr_cap" and attributes["state"] == "holding"

        tele = [t for t in phone.on("telemetry") if t["session_id"]]
        assert tele[-1]["heart_rate_source"] == "strap"
        assert sensor_shows(c["heart_rate_source"], tele[-1]) == "strap"
        await until(lambda: phone.on("state")[-1]["heart_rate"]["cap_state"] != "ok", 5)
        state = phone.on("state")[-1]
        assert state["heart_rate"]["strap"] == "connected"
        assert sensor_shows(c["hr_cap"], state) == "76"
        assert sensor_shows(c["hr_cap_state"], state) in ("holding", "stepping_down")
        assert sensor_shows(c["strap"], state) == "ON"

        # The strap goes: the sensor says so, the cap holds, the treadmill's field fills in.
        assert daemon.sim_strap is not None
        daemon.sim_strap.go_out_of_reach()
        await until(lambda: phone.on("state")[-1]["heart_rate"]["strap"] == "disconnected", 10)
        assert sensor_shows(c["strap"], phone.on("state")[-1]) == "OFF"
        await until(lambda: phone.on("telemetry")[-1]["heart_rate_source"] == "treadmill", 10)
        await phone.command({"action": "stop"})
        await until(lambda: daemon.runner.session is None)
        idle = phone.on("state")[-1]
        assert sensor_shows(c["hr_cap"], idle) is None  # no session, no cap shown
        assert sensor_shows(c["hr_cap_state"], idle) == "off"
        # A state from before the heart-rate block still renders (HA keeps working).
        old = {k: v for k, v in idle.items() if k != "heart_rate"}
        assert sensor_shows(c["hr_cap_state"], old) == "off"
        assert sensor_shows(c["strap"], old) == "OFF"
