"""Issue 11 findings 4, 6 and 8 through the whole daemon: a read-only sessions directory
answers ``start`` in one line, trouble shows in the systemd STATUS, retention runs."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from retrotread.backoff import Backoff
from retrotread.clock import ScaledClock
from retrotread.config import Config, MqttConfig, SessionsConfig
from retrotread.service.app import Daemon
from retrotread.session.log import SessionLogWriter, list_sessions, read_session
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import SimConfig, SimTreadmill
from tests.broker import Broker, free_port
from tests.fshelpers import small_fs
from tests.test_daemon_mqtt import Phone, daemon_rig, until

ROOT = Path(__file__).resolve().parents[1]


async def test_a_read_only_sessions_directory_refuses_start_in_one_line(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with small_fs(tmp_path / "fs") as fs:
        (fs.path / "sessions").mkdir()
        fs.read_only(True)
        try:
            async with daemon_rig(broker, fs.path) as r, Phone(broker.port) as phone:
                res = await phone.command({"action": "start", "profile": "first-steps"})
                assert r.daemon.runner.session is None
                assert r.sim.writes == []  # the belt was never asked to move
                health = r.daemon.health.status_line()
        finally:
            fs.read_only(False)
    assert res == {
        "id": res["id"],
        "action": "start",
        "ok": False,
        "error": f"cannot record the session in {fs.path / 'sessions'}: "
        "it is on a read-only file system",
    }
    assert health.endswith(
        f"; sessions directory {fs.path / 'sessions'} is not writable: "
        "it is on a read-only file system"
    )
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert [rec.getMessage() for rec in errors] == [
        f"sessions directory {fs.path / 'sessions'} is not writable: "
        "it is on a read-only file system"
    ]
    assert all(rec.exc_info is None for rec in caplog.records)  # no traceback anywhere


def test_status_tells_broker_retries_and_directory_trouble(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    (tmp_path / "blocker").write_text("a file where the sessions directory should be")
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\ndevice_id = "t1"\n'
        f'[sessions]\ndir = "{tmp_path / "blocker" / "sessions"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROTREAD_")}
    env["NOTIFY_SOCKET"] = str(sock_path)
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "retrotread.cli", "run", "--simulate", "-c", str(cfg)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    statuses: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            any("MQTT retrying in" in s for s in statuses)
            and any("cannot be made" in s for s in statuses)
        ):
            try:
                data = sock.recv(4096).decode()
            except TimeoutError:
                continue
            statuses += [x.removeprefix("STATUS=") for x in data.splitlines() if "STATUS=" in x]
    finally:
        proc.terminate()
        proc.wait(20)
        sock.close()
    last = statuses[-1]
    assert "; MQTT retrying in " in last, statuses
    assert "Connection refused" in last
    assert last.endswith(
        f"; sessions directory {tmp_path / 'blocker' / 'sessions'} cannot be made: "
        f"{tmp_path / 'blocker'} is not a directory"
    )
    stderr = log_path.read_text()
    assert "Traceback" not in stderr
    retries = [line for line in stderr.splitlines() if "retrying in" in line]
    assert retries and retries[0].startswith("WARNING retrotread.mqtt.bridge: MQTT broker ")


async def test_retention_runs_at_start_up_and_says_so(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="retrotread.service.app")
    sessions = tmp_path / "sessions"
    now = datetime.now(UTC)
    paths = []
    for age in (400, 90, 1):
        started = now - timedelta(days=age)
        w = SessionLogWriter.create(sessions, started, "first-steps", t0=0.0)
        w.header(session_id=str(age), started_at=started.isoformat(), profile={})
        w.footer("completed", {}, wall=started.timestamp())
        paths.append(w.path)
    async with daemon_rig(broker, tmp_path, retention_days=30) as r:
        await until(lambda: len(list_sessions(sessions)) == 1)
        assert r.daemon.bridge is not None
    assert list_sessions(sessions) == [paths[2]]
    said = [rec.getMessage() for rec in caplog.records if "retention" in rec.getMessage()]
    assert said == [f"retention (30 days): removed 2 session log(s) from {sessions}, kept 1"]


async def test_disk_full_mid_session_is_said_on_mqtt_and_in_status(
    broker: Broker, tmp_path: Path
) -> None:
    with small_fs(tmp_path / "fs", size=8 * 1024 * 1024) as fs:
        async with daemon_rig(broker, fs.path) as r, Phone(broker.port) as phone:
            assert (await phone.command({"action": "start", "profile": "first-steps"}))["ok"]
            await until(lambda: r.sim.speed_kmh > 0.3, 30)
            fs.fill()
            await until(lambda: any(s.get("recording") is False for s in phone.on("state")), 30)
            status = r.daemon.health.status_line()
            await asyncio.sleep(0.5)  # more samples lost
            fs.free()
            await until(lambda: any(e["type"] == "recording_gap" for e in phone.on("event")), 30)
            await until(lambda: phone.on("state")[-1].get("recording") is True, 10)
            status_after = r.daemon.health.status_line()
            assert (await phone.command({"action": "stop"}))["ok"]
            await until(lambda: r.daemon.runner.session is None, 20)
            log = read_session(r.daemon.runner.last_log)  # type: ignore[arg-type]
    lost = next(e for e in phone.on("event") if e.get("reason") == "recording")
    assert lost["type"] == "error"
    assert lost["message"].startswith("Not recording: No space left on device.")
    assert status.endswith("; NOT RECORDING: No space left on device")
    assert "NOT RECORDING" not in status_after
    gap_events = [e for e in phone.on("event") if e["type"] == "recording_gap"]
    assert [(e["from"], e["to"], e["lost"]) for e in gap_events] == [
        (g["from"], g["to"], g["lost"]) for g in log.gaps
    ]
    assert sum(g["lost"] for g in log.gaps) > 0
    assert log.outcome == "stopped"
    assert not log.cut_tail


class BuggyDaemon(Daemon):
    """The daemon with a bug planted where the MQTT bridge reads it on every reconnect."""

    broken = False

    def profiles(self) -> list[dict[str, Any]]:
        if self.broken:
            raise KeyError("a bug of ours")
        return super().profiles()


async def test_a_part_failing_stops_the_belt_and_says_offline(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = Config(
        mqtt=MqttConfig(host="127.0.0.1", port=broker.port, device_id="t1"),
        sessions=SessionsConfig(dir=tmp_path / "sessions"),
    )
    sim = SimTreadmill(SimConfig(pre_workout_s=1.0))
    daemon = BuggyDaemon(config, InProcessTransport(sim), ScaledClock(10.0), sim=sim)
    assert daemon.bridge is not None
    daemon.bridge.backoff = Backoff(0.05, 0.1)
    stop = asyncio.Event()
    serving = asyncio.create_task(daemon.run(stop))
    try:
        await until(lambda: daemon.treadmill.is_connected and daemon.bridge.connected, 10)
        await daemon.start_profile("first-steps")
        await until(lambda: sim.speed_kmh > 0.3, 30)
        daemon.broken = True
        broker.stop()  # the bridge reconnects, announces, and meets the bug
        broker.start()
        with pytest.raises(KeyError, match="a bug of ours"):
            await asyncio.wait_for(serving, 30)
    finally:
        stop.set()
        if not serving.done():
            await asyncio.wait_for(serving, 30)
    assert sim.state in ("stopped", "idle")  # the belt was stopped, as on SIGTERM
    log = read_session(daemon.runner.last_log)  # type: ignore[arg-type]
    assert log.outcome == "stopped"
    assert "mqtt failed (KeyError: 'a bug of ours'): stopping the belt" in caplog.text
    async with Phone(broker.port) as later:
        await until(lambda: bool(later.on("availability")))
        assert later.on("availability") == ["offline"]
