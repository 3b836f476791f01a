"""The home service as systemd sees it: the notify protocol and the unit file."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
    got: list[tuple[float, str]] = []

    def drain(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                got.append((time.monotonic(), line))

    try:
        drain(3.0)
        proc.send_signal(signal.SIGTERM)
        drain(1.5)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    lines = [line for _, line in got]
    assert "READY=1" in lines
    statuses = [line.removeprefix("STATUS=") for line in lines if line.startswith("STATUS=")]
    assert "connected to RETRO-SIM, idle" in statuses
    assert statuses[-1] == "stopping"
    assert lines.index("READY=1") < lines.index("STOPPING=1")
    pings = [t for t, line in got if line == "WATCHDOG=1"]
    assert len(pings) >= 8  # every 0.2 s (half of WatchdogSec) for ~3 s
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < 0.4  # never as long as the watchdog interval itself


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
