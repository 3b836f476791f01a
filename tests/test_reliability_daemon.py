"""Issue 11 findings 4, 6 and 8 through the whole daemon: a read-only sessions directory
answers ``start`` in one line, trouble shows in the systemd STATUS, retention runs."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retrotread.session.log import SessionLogWriter, list_sessions
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
