"""``retrotread run``: the daemon, or one profile in the terminal with ``--profile``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from retrotread.clock import Clock, RealClock, ScaledClock
from retrotread.errors import ConfigError, RetrotreadError
from retrotread.service.progress import Progress, fmt_time

if TYPE_CHECKING:  # the CLI imports this module to build its parser: keep that cheap
    from retrotread.config import Config
    from retrotread.link.transport import GattTransport
    from retrotread.sim.treadmill import SimTreadmill

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        help="config file (default /etc/retrotread/config.toml if present)",
    )
    parser.add_argument(
        "--simulate", action="store_true", help="use the built-in simulated treadmill"
    )
    parser.add_argument("--profile", help="run this profile once in the terminal, then exit")
    parser.add_argument(
        "--speedup", type=float, default=1.0, help="compress time N times (simulator only)"
    )
    parser.add_argument("--no-mqtt", action="store_true", help="do not connect to the MQTT broker")
    parser.add_argument(
        "--sessions-dir", type=Path, help="where session logs go (overrides config)"
    )


def resolve_config(path: Path | None) -> Config:
    """-c FILE, else $RETROTREAD_CONFIG, else /etc/retrotread/config.toml if it exists."""
    from retrotread.config import find_config_path, load_config

    return load_config(find_config_path(path))


def make_clock(speedup: float, simulate: bool) -> Clock:
    if speedup <= 0:
        raise ConfigError("--speedup must be positive")
    if speedup != 1.0 and not simulate:
        raise ConfigError("--speedup only works with --simulate: a real belt runs in real time")
    return ScaledClock(speedup) if speedup != 1.0 else RealClock()


def scale_watchdog(config: Config, speedup: float) -> None:
    """Keep the silence watchdog at least one real second when time is compressed.

    It counts clock seconds; at 120x, 5 clock seconds are 42 real milliseconds, which a
    busy event loop can miss without the link being in any trouble.
    """
    t = config.treadmill
    t.silence_timeout_s = max(t.silence_timeout_s, min(120.0, speedup * 1.0))


def make_transport(config: Config, simulate: bool) -> tuple[GattTransport, SimTreadmill | None]:
    from retrotread.sim.treadmill import SimTreadmill

    if simulate:
        from retrotread.link.inprocess import InProcessTransport

        sim = SimTreadmill()
        return InProcessTransport(sim), sim
    from retrotread.link.bleak_transport import BleakTransport

    t = config.treadmill
    return (
        BleakTransport(
            address=t.address, name=t.name, adapter=t.adapter, scan_timeout_s=t.scan_timeout_s
        ),
        None,
    )


def run(args: argparse.Namespace) -> int:
    config = resolve_config(args.config)
    if args.sessions_dir is not None:
        config.sessions.dir = args.sessions_dir
    clock = make_clock(args.speedup, args.simulate)
    scale_watchdog(config, args.speedup)
    if args.profile:
        return asyncio.run(
            run_profile(config, clock, args.profile, args.simulate, not args.no_mqtt)
        )
    return asyncio.run(
        serve(config, clock, args.simulate, mqtt=not args.no_mqtt and config.mqtt.enabled)
    )


def _signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def serve(config: Config, clock: Clock, simulate: bool, mqtt: bool) -> int:
    """The home service: runs until SIGTERM/SIGINT."""
    from retrotread.service.app import Daemon
    from retrotread.service.notify import SystemdNotifier

    transport, sim = make_transport(config, simulate)
    daemon = Daemon(config, transport, clock, sim=sim, mqtt=mqtt)
    stop = asyncio.Event()
    _signals(stop)
    notifier = SystemdNotifier.from_env()
    daemon.add_health_listener(lambda h: notifier.status(h.status_line()))
    log.info(
        "retrotread serving %s; %d profiles; sessions in %s",
        "the simulator" if simulate else "the treadmill",
        len(daemon.profile_set.profiles),
        config.sessions.dir,
    )
    watchdog = asyncio.create_task(notifier.watchdog_loop(), name="sd-watchdog")
    notifier.ready(daemon.health.status_line())
    try:
        await daemon.run(stop)
    finally:
        notifier.stopping()
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
    return 0


async def run_profile(config: Config, clock: Clock, name: str, simulate: bool, mqtt: bool) -> int:
    """Run one profile in the terminal with a live display; print the log's path."""
    from retrotread.service.app import Daemon

    transport, sim = make_transport(config, simulate)
    # Nobody is at an MQTT phone to send resume after a turn: count down instead.
    countdown = config.treadmill.turn_countdown_s or 10.0
    daemon = Daemon(
        config,
        transport,
        clock,
        sim=sim,
        mqtt=mqtt and config.mqtt.enabled,
        turn_countdown_s=countdown,
    )
    profile = daemon.resolve_profile(name)
    progress = Progress()
    daemon.runner.add_listener(progress)
    stop = asyncio.Event()
    _signals(stop)
    serving = asyncio.create_task(daemon.run(stop), name="daemon")
    print(
        f"retrotread: {profile.title or profile.name}, {fmt_time(profile.duration_s)} "
        f"({'simulated treadmill' if simulate else 'waiting for the treadmill'})"
    )
    try:
        waiter = asyncio.ensure_future(daemon.supervisor.wait_connected())
        done, _ = await asyncio.wait({waiter, serving}, return_when=asyncio.FIRST_COMPLETED)
        if serving in done:
            waiter.cancel()
            serving.result()
            return 1
        await daemon.runner.start(profile)
        finisher = asyncio.ensure_future(daemon.runner.wait_finished())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({finisher, stopper, serving}, return_when=asyncio.FIRST_COMPLETED)
        finisher.cancel()
        stopper.cancel()
    finally:
        stop.set()
        with contextlib.suppress(RetrotreadError):
            await serving
        progress.close()
    outcome = daemon.runner.last_outcome
    path = daemon.runner.last_log
    print(f"session {outcome}; log: {path}")
    return 0 if outcome in ("completed", "finished_early") else 1
