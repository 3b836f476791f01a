"""The daemon in its own process, reaching simulated peripherals through the fake BlueZ.

This process holds a private D-Bus, the fake BlueZ, the simulated peripherals and a
Mosquitto; the daemon (``retrotread run -c FILE``, the same command as the service) runs
in a child process whose bleak talks to that bus. The child's CPU is then the daemon's
alone: the radio side (simulator, fake BlueZ, dbus-daemon) is counted elsewhere, as the
kernel and bluetoothd would be on a real box.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrotread.mqtt.client import mqtt_client
from retrotread.servers import free_port, mosquitto
from retrotread.sim.bluez import FakeBlueZ
from retrotread.sim.bluez_server import driver
from retrotread.sim.dbus_bus import PrivateBus
from retrotread.sim.gatt import Peripheral

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Message:
    at: float
    topic: str
    payload: bytes


@dataclass
class DaemonProcess:
    """The running daemon: its process, its broker, and every message it published."""

    proc: subprocess.Popen[bytes]
    port: int
    base: str
    fake: FakeBlueZ
    log_path: Path
    messages: list[Message] = field(default_factory=list)

    def cpu_s(self) -> float:
        """CPU seconds the daemon has used so far, every thread, at nanosecond resolution."""
        total = 0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def count(self, since: float, until: float, topic: str | None = None) -> int:
        return sum(1 for m in self.messages if since <= m.at < until and topic in (None, m.topic))

    def per_topic(self, since: float, until: float) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.messages:
            if since <= m.at < until:
                counts[m.topic] = counts.get(m.topic, 0) + 1
        return counts

    async def wait_for(
        self,
        topic: str,
        test: Callable[[bytes], bool],
        since: float = 0.0,
        timeout: float = 60.0,
    ) -> None:
        """Until the daemon has published, since ``since``, a payload on ``<base>/topic``
        that passes ``test``."""
        full = f"{self.base}/{topic}"
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                for m in self.messages[seen:]:
                    if m.at >= since and m.topic == full and test(m.payload):
                        return
                seen = len(self.messages)
                await asyncio.sleep(0.05)

    async def command(self, payload: bytes) -> float:
        """Publish a command as a phone does; the time just before it was sent."""
        async with mqtt_client("127.0.0.1", self.port) as phone:
            sent = time.monotonic()
            await phone.publish(f"{self.base}/cmd", payload, qos=1)
        return sent

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the daemon exited ({self.proc.returncode}):\n{tail}")


async def _listen(daemon: DaemonProcess, ready: asyncio.Event) -> None:
    """Every message the daemon publishes live (retained copies sent on subscribe are not)."""
    async with mqtt_client("127.0.0.1", daemon.port, identifier="bench-counter") as watcher:
        await watcher.subscribe("#")
        ready.set()
        async for m in watcher.messages:
            if m.retain:
                continue
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            daemon.messages.append(Message(time.monotonic(), str(m.topic), payload))


@contextlib.asynccontextmanager
async def daemon_over_bluez(
    tmp: Path,
    peripherals: Sequence[Peripheral],
    address: str,
    *,
    config: str = "",
    profile: Path | None = None,
) -> AsyncIterator[DaemonProcess]:
    """The daemon configured for the treadmill at ``address``, running until the exit.

    ``config`` is appended to the generated config file. With ``profile`` the daemon runs
    under cProfile (process CPU time) and writes its statistics there. The daemon is
    stopped with SIGTERM, as systemd stops it, so that it shuts down (and a profile is
    written) cleanly.
    """
    async with contextlib.AsyncExitStack() as stack:
        port = free_port()
        stack.enter_context(mosquitto(tmp, port))
        bus = stack.enter_context(PrivateBus())
        fake = FakeBlueZ(bus_address=bus.address)
        for p in peripherals:
            fake.add_peripheral(p)
        await stack.enter_async_context(fake)
        drivers = []
        for p in peripherals:
            coro = driver(p)
            if coro is not None:
                drivers.append(asyncio.create_task(coro, name=f"peripheral-{p.address}"))
        stack.push_async_callback(_cancel, drivers)
        cfg = tmp / "config.toml"
        cfg.write_text(
            f'[treadmill]\naddress = "{address}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ndevice_id = "bench"\n'
            f'[sessions]\ndir = "{tmp}/sessions"\n' + config
        )
        log_path = tmp / "daemon.log"
        log_file = stack.enter_context(log_path.open("wb"))
        env = {**os.environ, **bus.environ(), "PYTHONUNBUFFERED": "1"}
        cli = [sys.executable, "-m", "retrotread.cli"]
        if profile is not None:
            cli = [sys.executable, str(ROOT / "bench" / "_profiled.py"), str(profile)]
        proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            [*cli, "run", "-c", str(cfg)],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        daemon = DaemonProcess(proc, port, "retrotread/bench", fake, log_path)
        stack.push_async_callback(_terminate, proc)
        ready = asyncio.Event()
        listener = asyncio.create_task(_listen(daemon, ready), name="bench-counter")
        stack.push_async_callback(_cancel, [listener])
        await asyncio.wait_for(ready.wait(), 10)
        yield daemon


async def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then wait with this event loop running: the daemon's shutdown stops the
    belt through the fake BlueZ and the simulator, which live here."""
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                while proc.poll() is None:
                    await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def connected(payload: bytes) -> bool:
    """A ``state`` payload that says the treadmill is connected."""
    return b'"connected": true' in payload or b'"connected":true' in payload


def disconnected(payload: bytes) -> bool:
    return b'"connected": false' in payload or b'"connected":false' in payload


async def windows(
    daemon: DaemonProcess, seconds: float, window_s: float
) -> tuple[list[tuple[float, float, float]], float, float]:
    """CPU seconds, wall seconds and end time of each window over ``seconds``; (start, end)."""
    out = []
    start = time.monotonic()
    t_prev, cpu_prev = start, daemon.cpu_s()
    while time.monotonic() - start < seconds - 1e-3:
        await asyncio.sleep(window_s)
        daemon.check_alive()
        t, cpu = time.monotonic(), daemon.cpu_s()
        out.append((cpu - cpu_prev, t - t_prev, t))
        t_prev, cpu_prev = t, cpu
    return out, start, t_prev
