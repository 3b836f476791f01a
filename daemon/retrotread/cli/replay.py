"""``retrotread replay LOG``: to MQTT for dashboards, or through the simulator as a regression.

``--mqtt`` republishes the session's telemetry, events and state on the SPEC.md §3 topics,
every payload marked ``"replay": true`` (state is not retained, so the live retained state
is left alone), at the original pace, ``--rate N`` times faster, or ``--rate 0`` at once.

``--through-sim`` feeds the recorded raw frames back through today's codec and re-runs the
recorded Control Point writes, at their recorded times, against a fresh simulator set up
with the recorded treadmill's ranges; it reports each place the re-run differs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from retrotread.cli._shared import load_config, print_notes
from retrotread.errors import RetrotreadError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", metavar="LOG", type=Path)
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--mqtt", action="store_true", help="republish to the MQTT broker")
    how.add_argument(
        "--through-sim", action="store_true", help="re-run through codec and simulator"
    )
    parser.add_argument("--rate", type=float, default=1.0, help="N times faster; 0 = at once")
    parser.add_argument("-c", "--config", type=Path, help="config file (broker, base topic)")
    parser.add_argument("--host", help="broker host (overrides config)")
    parser.add_argument("--port", type=int, help="broker port (overrides config)")
    parser.add_argument("--base-topic", help="base topic (overrides config)")


def run(args: argparse.Namespace) -> int:
    from retrotread.session.log import read_session

    log = read_session(args.log)
    print_notes(log, sys.stdout)
    if args.through_sim:
        from retrotread.session.replay import check_codec, check_commands
        from retrotread.sim.rerun import rerun_control_point

        found = check_codec(log) + check_commands(log, rerun_control_point)
        found.sort(key=lambda d: d.t)
        if not found:
            n_tx = sum(1 for r in log.records if r.get("type") == "tx")
            n_rx = sum(1 for r in log.records if r.get("type") == "rx")
            print(f"no divergence: {n_rx} frames re-decoded, {n_tx} commands re-run")
            return 0
        print(f"{len(found)} divergence(s):")
        for d in found[:50]:
            print(f"  {d}")
        return 1
    if args.rate < 0:
        raise RetrotreadError("--rate must be 0 or more")
    from retrotread.mqtt.replay import publish_replay
    from retrotread.session.replay import replay_messages

    mqtt = load_config(args.config).mqtt
    base = args.base_topic or mqtt.effective_base_topic
    if args.host or args.port:
        mqtt = mqtt.model_copy(
            update={"host": args.host or mqtt.host, "port": args.port or mqtt.port}
        )
    sent = asyncio.run(publish_replay(mqtt, base, replay_messages(log), args.rate))
    print(f'replayed {sent} messages to {base}/ (marked "replay": true)')
    return 0
