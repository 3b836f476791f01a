"""``retrotread run``: the daemon, or one profile in the terminal with ``--profile``."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from retrotread.cli._shared import fmt_time, load_config

if TYPE_CHECKING:  # the CLI imports this module to build its parser: keep that cheap
    from retrotread.clock import Clock
    from retrotread.config import Config
    from retrotread.service.app import TransportKind

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


def run(args: argparse.Namespace) -> int:
    from retrotread.service.app import clock_for

    config = load_config(args.config)
    if args.sessions_dir is not None:
        config.sessions.dir = args.sessions_dir
    clock = clock_for(config, args.speedup, args.simulate)
    transport: TransportKind = "simulator" if args.simulate else "bluetooth"
    mqtt = not args.no_mqtt and config.mqtt.enabled
    if args.profile:
        return asyncio.run(run_profile(config, clock, transport, args.profile, mqtt))
    return asyncio.run(serve(config, clock, transport, mqtt))


async def serve(config: Config, clock: Clock, transport: TransportKind, mqtt: bool) -> int:
    """The home service: runs until SIGTERM/SIGINT, telling systemd how it is."""
    from retrotread.service.app import daemon_for, run_daemon
    from retrotread.service.notify import SystemdNotifier

    notifier = SystemdNotifier.from_env()
    async with daemon_for(config, clock, transport, mqtt=mqtt) as daemon:
        daemon.add_health_listener(lambda h: notifier.status(h.status_line()))
        log.info(
            "retrotread serving %s; %d profiles; sessions in %s",
            "the treadmill" if transport == "bluetooth" else "the simulator",
            len(daemon.profile_set.profiles),
            config.sessions.dir,
        )
        notifier.ready(daemon.health.status_line())
        try:
            await run_daemon(daemon, companions=[notifier.watchdog_loop()])
        finally:
            notifier.stopping()
    return 0


async def run_profile(
    config: Config, clock: Clock, transport: TransportKind, name: str, mqtt: bool
) -> int:
    """Run one profile in the terminal with a live display; print the log's path."""
    from retrotread.cli.progress import Progress
    from retrotread.service.app import daemon_for, run_daemon

    # Nobody is at an MQTT phone to send resume after a turn: count down instead.
    countdown = config.treadmill.turn_countdown_s or 10.0
    async with daemon_for(
        config, clock, transport, mqtt=mqtt, turn_countdown_s=countdown
    ) as daemon:
        profile = daemon.resolve_profile(name)
        progress = Progress()
        daemon.runner.add_listener(progress)
        where = "waiting for the treadmill" if transport == "bluetooth" else "simulated treadmill"
        print(
            f"retrotread: {profile.title or profile.name}, {fmt_time(profile.duration_s)} ({where})"
        )

        async def one_session() -> None:
            await daemon.supervisor.wait_connected()
            await daemon.runner.start(profile)
            await daemon.runner.wait_finished()

        try:
            await run_daemon(daemon, one_session())
        finally:
            progress.close()
    outcome = daemon.runner.last_outcome
    print(f"session {outcome}; log: {daemon.runner.last_log}")
    return 0 if outcome in ("completed", "finished_early") else 1
