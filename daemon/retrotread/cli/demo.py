"""``retrotread demo``: the whole pipeline on this machine with nothing to configure.

A simulated treadmill (behind a fake BlueZ on a private D-Bus when ``dbus-daemon`` is
here, so the real bleak code path runs), a private Mosquitto on a free port, the daemon,
and a phone that starts a profile over MQTT (and says "resume" after each turn-around,
as the walker would), with live progress from the MQTT telemetry.

Started in this order and stopped in the reverse one: the broker and the private bus
outlive the event loop, so bleak has let go of the bus before it goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrotread.cli._shared import fmt_time

if TYPE_CHECKING:  # the CLI imports this module to build its parser: keep that cheap
    from retrotread.service.app import TransportKind
    from retrotread.sim.dbus_bus import PrivateBus


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
    parser.add_argument(
        "--max-heart-rate",
        type=int,
        default=DEMO_CAP_BPM,
        metavar="BPM",
        help=f"the heart-rate cap (default {DEMO_CAP_BPM}: the simulated walker's heart "
        "crosses it on hill-intro's hills; 0: no cap)",
    )
    coach = parser.add_argument_group(
        "the coach", "weeks of a plan in a minute or two (a virtual clock; --speedup unused)"
    )
    coach.add_argument("--plan", help="walk a plan instead of one profile, e.g. retro-start")
    coach.add_argument(
        "--sessions", type=int, default=18, help="how many sessions of the plan (default 18)"
    )
    coach.add_argument("--walker", default="sam", help="the simulated walker's name")
    coach.add_argument("-o", "--output", type=Path, help="the progress plot (PNG)")


DEMO_CAP_BPM = 108


def default_demo_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "retrotread" / "demo-sessions"


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for this process; put the old values back on exit."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _private_bus(stack: contextlib.ExitStack) -> PrivateBus | None:
    """A private bus that this process's bleak points at, or None (then: in-process)."""
    from retrotread.sim.dbus_bus import DBusUnavailable, PrivateBus

    if not shutil.which("dbus-daemon"):
        print("(no dbus-daemon here: using the simulator in-process)")
        return None
    try:
        bus = stack.enter_context(PrivateBus())
    except DBusUnavailable as exc:
        print(f"(fake BlueZ unavailable: {exc}; using the simulator in-process)")
        return None
    stack.enter_context(environment(bus.environ()))
    return bus


def run(args: argparse.Namespace) -> int:
    from retrotread.servers import free_port, mosquitto

    if args.plan is not None:
        return _coach(args)
    if args.max_heart_rate and not 60 <= args.max_heart_rate <= 220:
        print("--max-heart-rate must be 60 to 220 bpm, or 0 for no cap", file=sys.stderr)
        return 2

    sessions = args.sessions_dir or default_demo_dir()
    with (
        tempfile.TemporaryDirectory(prefix="retrotread-demo-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        port = free_port()
        stack.enter_context(mosquitto(Path(tmp), port))
        bus = None if args.in_process else _private_bus(stack)
        outcome, log_path = asyncio.run(_demo(args, port, sessions, bus))
    if "error" in outcome:
        print(f"the daemon refused the start: {outcome['error']}", file=sys.stderr)
        return 1
    _print_summary(outcome, log_path)
    return 0 if outcome.get("outcome") in ("completed", "finished_early") else 1


async def _demo(
    args: argparse.Namespace, port: int, sessions: Path, bus: PrivateBus | None
) -> tuple[dict[str, Any], Path | None]:
    from retrotread.cli.progress import Progress
    from retrotread.config import Config, MqttConfig, SafetyConfig, SessionsConfig
    from retrotread.mqtt.phone import walk_profile
    from retrotread.service.app import clock_for, daemon_for, run_daemon

    config = Config(
        mqtt=MqttConfig(host="127.0.0.1", port=port, device_id="demo"),
        sessions=SessionsConfig(dir=sessions),
        safety=SafetyConfig(max_heart_rate_bpm=args.max_heart_rate or None),
    )
    clock = clock_for(config, args.speedup, simulated=True)
    transport: TransportKind = "simulator-over-bluez" if bus is not None else "simulator"
    address = bus.address if bus is not None else None
    async with daemon_for(config, clock, transport, bus_address=address) as daemon:
        profile = daemon.resolve_profile(args.profile)
        how = "in-process"
        if bus is not None:
            how = "fake BlueZ on a private D-Bus, through the real bleak"
        print(
            f"retrotread demo: {profile.title} ({fmt_time(profile.duration_s)}"
            + (f", {args.speedup:g}x faster" if args.speedup != 1 else "")
            + f")\n  treadmill: simulated, {how}"
            + "\n  heart:     a simulated strap on the simulated walker"
            + (f", cap {args.max_heart_rate} bpm" if args.max_heart_rate else ", no cap")
            + f"\n  broker:    mosquitto on 127.0.0.1:{port}"
            f"\n  topics:    {config.mqtt.effective_base_topic}/#\n"
        )
        progress = Progress()
        try:
            outcome = await run_daemon(daemon, walk_profile(config.mqtt, profile.name, progress))
        finally:
            progress.close()
    return outcome or {}, daemon.runner.last_log


def _print_summary(outcome: dict[str, Any], log_path: Path | None) -> None:
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
        source = summary.get("heart_rate_source") or "?"
        held = int(summary.get("hr_cap_episodes") or 0)
        print(
            f"  heart:     {summary['mean_heart_rate_bpm']} bpm on average, "
            f"{summary.get('max_heart_rate_bpm')} at most ({source})"
            + (f"; the cap held back {held} time{'s' if held != 1 else ''}" if held else "")
        )
    print(f"  log:       {log_path}")
    if log_path is not None:
        from retrotread.session.analysis import load
        from retrotread.session.plot import plot

        png = log_path.with_suffix(".png")
        plot(load(log_path), png)
        print(f"  plot:      {png}")


# ---------------------------------------------------------------------------- the coach


def _coach(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from retrotread.errors import RetrotreadError
    from retrotread.servers import free_port, mosquitto

    if not 1 <= args.sessions <= 60:
        raise RetrotreadError("--sessions must be between 1 and 60")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    sessions = (args.sessions_dir or default_demo_dir()) / f"coach-{stamp}"
    with (
        tempfile.TemporaryDirectory(prefix="retrotread-demo-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        port = free_port()
        stack.enter_context(mosquitto(Path(tmp), port))
        asyncio.run(_coach_weeks(args, port, sessions))
    return 0


async def _coach_weeks(args: argparse.Namespace, port: int, sessions: Path) -> None:
    from datetime import UTC, datetime

    from retrotread.cli.walker_progress import print_weeks
    from retrotread.clock import VirtualClock
    from retrotread.coach.coach import Coach
    from retrotread.coach.plot import plot_progress
    from retrotread.coach.report import build_report
    from retrotread.coach.walkers import WalkerConfig
    from retrotread.config import Config, MqttConfig, SessionsConfig
    from retrotread.mqtt.coach_phone import CoachPhone
    from retrotread.service.app import Daemon
    from retrotread.service.coach_demo import WeeksDriver, monday, story, walk_weeks
    from retrotread.sim.inprocess import InProcessTransport
    from retrotread.sim.treadmill import SimConfig, SimTreadmill

    config = Config(
        mqtt=MqttConfig(host="127.0.0.1", port=port, device_id="demo"),
        sessions=SessionsConfig(dir=sessions),
        walker=[WalkerConfig(name=args.walker)],
    )
    Coach.from_config(config).plans.get(args.plan)  # an unknown plan: one line, now
    clock = VirtualClock()
    driver = WeeksDriver(clock, monday(datetime.now(UTC)))
    sim = SimTreadmill(SimConfig(data_interval_s=1.0))  # telemetry 1/s: weeks in less time
    daemon = Daemon(config, InProcessTransport(sim), clock, sim=sim, turn_countdown_s=3.0)
    daemon.runner.wall = driver.wall
    print(
        f"retrotread demo: {args.sessions} sessions of plan {args.plan!r} for {args.walker}, "
        "Mondays, Wednesdays and Fridays"
        f"\n  treadmill: simulated, in-process, on a virtual clock"
        f"\n  broker:    mosquitto on 127.0.0.1:{port}"
        f"\n  sessions:  {sessions}\n"
    )
    stop = asyncio.Event()
    serving = asyncio.create_task(daemon.run(stop), name="daemon")
    try:
        async with CoachPhone(config.mqtt) as phone:
            await walk_weeks(
                daemon,
                phone,
                driver,
                walker=args.walker,
                plan=args.plan,
                episodes=story(args.sessions),
            )
    finally:
        stop.set()
        await driver.until(serving.done, 120, step=0.1)
    await serving
    coach = Coach.from_config(config)
    report = build_report(coach.plans, args.walker, coach.history(args.walker), datetime.now(UTC))
    print()
    print_weeks(report)
    out = args.output or sessions / "progress.png"
    plot_progress(report, out)
    print(f"\nprogress plot: {out}")
