"""``retrotread demo``: the whole pipeline on this machine with nothing to configure.

A simulated treadmill, a private Mosquitto on a free port, the daemon, and a small client
that starts a profile over MQTT exactly as a phone would (and says "resume" after each
turn-around, as the walker would), with live progress from the MQTT telemetry.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrotread.clock import RealClock, ScaledClock
from retrotread.errors import RetrotreadError
from retrotread.service.progress import Progress, fmt_time

if TYPE_CHECKING:  # the CLI imports this module to build its parser: keep that cheap
    from retrotread.link.transport import GattTransport
    from retrotread.sim.treadmill import SimTreadmill


class DemoError(RetrotreadError):
    """Something the demo needs is missing on this machine."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speedup", type=float, default=1.0, help="compress time N times")
    parser.add_argument(
        "--profile", default="hill-intro", help="profile to run (default hill-intro)"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="skip the fake BlueZ and talk to the simulator directly",
    )
    parser.add_argument("--sessions-dir", type=Path, help="where the session log goes")


def default_demo_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "retrotread" / "demo-sessions"


def _mosquitto() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise DemoError(
            "the demo needs Mosquitto: run `bash scripts/bootstrap demo` (installs it), "
            "or `sudo apt-get install mosquitto`"
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalBroker:
    """A throwaway Mosquitto on 127.0.0.1 and a free port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> LocalBroker:
        conf = self.workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; we poll below
            [_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(500):
            if self.proc.poll() is not None:
                raise DemoError("Mosquitto exited at once; is the port taken?")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            await asyncio.sleep(0.01)
        raise DemoError("Mosquitto did not start listening")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _phone(
    port: int,
    base: str,
    profile: str,
    progress: Progress,
    done: asyncio.Event,
    outcome: dict[str, Any],
) -> None:
    """What a phone does: start the profile, watch, say resume after each turn."""
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port, identifier="retrotread-demo-phone") as phone:
        await phone.subscribe(f"{base}/#", qos=1)
        started = False
        async for message in phone.messages:
            topic = str(message.topic)
            raw = message.payload
            if not isinstance(raw, bytes | bytearray):
                continue
            if topic == f"{base}/state" and not started:
                state = json.loads(raw)
                if state.get("connected") and state.get("state") == "idle":
                    started = True
                    cmd = {"action": "start", "profile": profile, "id": "demo-start"}
                    print(f"phone → {base}/cmd {json.dumps(cmd)}")
                    await phone.publish(f"{base}/cmd", json.dumps(cmd), qos=1)
                continue
            kind = topic.removeprefix(base + "/")
            if kind == "cmd/result":
                result = json.loads(raw)
                if not result.get("ok"):
                    outcome["error"] = result.get("error")
                    done.set()
                    return
                continue
            if kind not in ("telemetry", "event", "state"):
                continue
            payload = json.loads(raw)
            progress(kind, payload)
            if kind == "event" and payload.get("type") == "turn_required":
                await asyncio.sleep(0.5)
                print(f'phone → {base}/cmd {{"action": "resume"}}  (turned around)')
                await phone.publish(f"{base}/cmd", b'{"action": "resume"}', qos=1)
            if kind == "event" and payload.get("type") == "session_finished":
                outcome.update(payload)
                done.set()
                return


async def _transport(
    sim: SimTreadmill, in_process: bool, stack: contextlib.AsyncExitStack
) -> tuple[GattTransport, str]:
    """Behind the fake BlueZ when dbus-daemon is here (the real bleak path), else direct."""
    if not in_process and shutil.which("dbus-daemon"):
        try:
            from retrotread.sim.bluez import serve_for_demo

            transport = await serve_for_demo(sim, stack)
            return transport, "fake BlueZ on a private D-Bus, through the real bleak"
        except (ImportError, RetrotreadError, OSError) as exc:
            print(f"(fake BlueZ unavailable: {exc}; using the simulator in-process)")
    from retrotread.link.inprocess import InProcessTransport

    return InProcessTransport(sim), "in-process"


async def _demo(args: argparse.Namespace) -> int:
    from retrotread.config import Config, MqttConfig, SessionsConfig
    from retrotread.service.app import Daemon
    from retrotread.sim.treadmill import SimTreadmill

    clock = ScaledClock(args.speedup) if args.speedup != 1.0 else RealClock()
    sessions = args.sessions_dir or default_demo_dir()
    with tempfile.TemporaryDirectory(prefix="retrotread-demo-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            broker = await stack.enter_async_context(LocalBroker(Path(tmp)))
            config = Config(
                mqtt=MqttConfig(host="127.0.0.1", port=broker.port, device_id="demo"),
                sessions=SessionsConfig(dir=sessions),
            )
            from retrotread.service.run_command import scale_watchdog

            scale_watchdog(config, args.speedup)
            sim = SimTreadmill()
            transport, how = await _transport(sim, args.in_process, stack)
            daemon = Daemon(config, transport, clock, sim=sim)
            profile = daemon.resolve_profile(args.profile)
            print(
                f"retrotread demo: {profile.title} ({fmt_time(profile.duration_s)}"
                + (f", {args.speedup:g}x faster" if args.speedup != 1 else "")
                + f")\n  treadmill: simulated, {how}"
                f"\n  broker:    mosquitto on 127.0.0.1:{broker.port}"
                f"\n  topics:    {config.mqtt.effective_base_topic}/#\n"
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, stop.set)
            serving = asyncio.create_task(daemon.run(stop), name="daemon")
            done = asyncio.Event()
            outcome: dict[str, Any] = {}
            progress = Progress()
            phone = asyncio.create_task(
                _phone(
                    broker.port,
                    config.mqtt.effective_base_topic,
                    profile.name,
                    progress,
                    done,
                    outcome,
                ),
                name="phone",
            )
            waiter = asyncio.create_task(done.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait(
                {waiter, stopper, serving, phone}, return_when=asyncio.FIRST_COMPLETED
            )
            for t in (waiter, stopper, phone):
                t.cancel()
            stop.set()
            with contextlib.suppress(RetrotreadError):
                await serving
            await asyncio.gather(phone, return_exceptions=True)
            progress.close()
    if "error" in outcome:
        print(f"the daemon refused the start: {outcome['error']}", file=sys.stderr)
        return 1
    summary = outcome.get("summary") or {}
    print("\nSummary")
    print(f"  outcome:   {outcome.get('outcome', 'interrupted')}")
    print(
        f"  time:      {fmt_time(summary.get('duration_s'))} "
        f"({fmt_time(summary.get('backward_s'))} walking backward)"
    )
    print(f"  distance:  {summary.get('distance_m', 0):.0f} m")
    top = f"{summary.get('max_speed_kmh')} km/h, top incline {summary.get('max_incline_pct')} %"
    print(f"  top speed: {top}")
    if summary.get("mean_heart_rate_bpm"):
        print(f"  heart:     {summary['mean_heart_rate_bpm']} bpm on average")
    log_path = daemon.runner.last_log
    print(f"  log:       {log_path}")
    if log_path is not None:
        from retrotread.session.analysis import load
        from retrotread.session.plot import plot

        png = log_path.with_suffix(".png")
        plot(load(log_path), png)
        print(f"  plot:      {png}")
    return 0 if outcome.get("outcome") in ("completed", "finished_early") else 1


def run(args: argparse.Namespace) -> int:
    if args.speedup <= 0:
        raise DemoError("--speedup must be positive")
    return asyncio.run(_demo(args))
