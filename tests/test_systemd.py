"""The home service as systemd sees it: the notify protocol and the unit file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from retrotread.clock import VirtualClock
from retrotread.service.notify import SystemdNotifier

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "retrotread.service"


def test_notify_ready_status_watchdog_stopping(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
    env.pop("RETROTREAD_CONFIG", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "retrotread.cli",
            "run",
            "--simulate",
            "--no-mqtt",
            "--sessions-dir",
            str(tmp_path / "s"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lines: list[str] = []

    def drain_until(done: Callable[[], bool], limit_s: float = 60.0) -> None:
        # limit_s only keeps a broken daemon from hanging the test; nothing is timed.
        end = time.monotonic() + limit_s
        while not done() and time.monotonic() < end and proc.poll() is None:
            with contextlib.suppress(TimeoutError):
                lines.extend(sock.recv(4096).decode().splitlines())

    try:
        drain_until(
            lambda: (
                "STATUS=connected to RETRO-SIM, idle" in lines and lines.count("WATCHDOG=1") >= 3
            )
        )
        proc.send_signal(signal.SIGTERM)
        drain_until(lambda: "STOPPING=1" in lines)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    assert "READY=1" in lines
    statuses = [line.removeprefix("STATUS=") for line in lines if line.startswith("STATUS=")]
    assert "connected to RETRO-SIM, idle" in statuses
    assert statuses[-1] == "stopping"
    assert lines.index("READY=1") < lines.index("WATCHDOG=1") < lines.index("STOPPING=1")
    assert lines.count("WATCHDOG=1") >= 3  # it keeps pinging, not once


async def test_watchdog_pings_at_half_the_interval(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.setblocking(False)
        notifier = SystemdNotifier(str(sock_path), watchdog_usec=30_000_000)
        clock = VirtualClock()
        pinging = asyncio.create_task(notifier.watchdog_loop(clock))
        await clock.advance(60.0)  # four intervals of 15 s after the first ping
        pinging.cancel()
        await asyncio.gather(pinging, return_exceptions=True)
        notifier.close()
        got = []
        with contextlib.suppress(BlockingIOError):
            while True:
                got.append(sock.recv(4096))
    assert got == [b"WATCHDOG=1"] * 5


def test_no_watchdog_without_systemd() -> None:
    notifier = SystemdNotifier(None, None)
    assert notifier.watchdog_s is None
    asyncio.run(notifier.watchdog_loop(VirtualClock()))  # returns at once: nothing to ping


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_verifies_cleanly() -> None:
    p = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True)
    assert p.returncode == 0
    assert p.stderr == ""  # verify exits 0 even for unknown keys: the output is the verdict


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_exposure_is_low() -> None:
    p = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True, text=True
    )
    m = re.search(r"Overall exposure level for retrotread.service: ([0-9.]+)", p.stdout + p.stderr)
    assert m is not None, p.stdout + p.stderr
    assert float(m.group(1)) <= 2.0


def test_unit_runs_the_documented_command() -> None:
    text = UNIT.read_text()
    assert "Type=notify" in text
    assert re.search(r"^ExecStart=.*retrotread run -c /etc/retrotread/config\.toml$", text, re.M)
    assert "Restart=on-failure" in text
    assert "StateDirectory=retrotread" in text
