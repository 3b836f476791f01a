"""RSS and CPU of the daemon process: idle, then running a profile with 4 Hz telemetry.

The daemon runs as `retrotread run --simulate` in its own process on a private Mosquitto;
figures come from /proc every second. Run: .venv/bin/python bench/footprint.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
from retrotread.mqtt.client import mqtt_client
from retrotread.servers import free_port, mosquitto

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def sample(pid: int) -> tuple[float, float]:
    """(CPU seconds so far, RSS MiB)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    rss_kib = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return cpu, rss_kib / 1024


async def measure(pid: int, seconds: int) -> tuple[list[float], list[float]]:
    cpu_pct, rss = [], []
    prev_cpu, _ = sample(pid)
    prev_t = time.monotonic()
    for _ in range(seconds):
        await asyncio.sleep(1.0)
        cpu, r = sample(pid)
        now = time.monotonic()
        cpu_pct.append((cpu - prev_cpu) / (now - prev_t) * 100)
        rss.append(r)
        prev_cpu, prev_t = cpu, now
    return cpu_pct, rss


async def main(seconds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        with mosquitto(Path(tmp), port):
            cfg = Path(tmp) / "config.toml"
            cfg.write_text(
                f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ndevice_id = "bench"\n'
                f'[sessions]\ndir = "{tmp}/sessions"\n'
            )
            proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [sys.executable, "-m", "retrotread.cli", "run", "--simulate", "-c", str(cfg)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                await asyncio.sleep(3)  # imports, connect, announce
                idle_cpu, idle_rss = await measure(proc.pid, seconds)
                async with mqtt_client("127.0.0.1", port) as phone:
                    await phone.publish(
                        "retrotread/bench/cmd", b'{"action": "start", "profile": "build-up"}', qos=1
                    )
                await asyncio.sleep(2)
                run_cpu, run_rss = await measure(proc.pid, seconds)
            finally:
                proc.terminate()
                proc.wait(20)
    _common.table(
        f"Daemon footprint (1 s samples over {seconds} s; simulator in the same process)",
        [
            ("idle: CPU (%)", idle_cpu, ""),
            ("idle: RSS (MiB)", idle_rss, ""),
            ("session at 4 Hz telemetry: CPU (%)", run_cpu, ""),
            ("session at 4 Hz telemetry: RSS (MiB)", run_rss, ""),
        ],
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    asyncio.run(main(ap.parse_args().seconds))
