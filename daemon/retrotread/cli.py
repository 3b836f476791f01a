"""The ``retrotread`` command line: one module per subcommand, imported lazily."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from retrotread import __version__
from retrotread.errors import RetrotreadError

# subcommand -> (module, help[, name]). A module has ``add_arguments(parser)`` and
# ``run(args) -> int`` (or ``add_<name>_arguments`` / ``run_<name>`` when it serves several
# subcommands). Modules are imported to build the parser, so they import heavy
# dependencies (bleak, aiomqtt, matplotlib, fit-tool) inside ``run``, not at the top.
COMMANDS: dict[str, tuple[str, str] | tuple[str, str, str]] = {
    "run": ("retrotread.service.run_command", "run the daemon (or one profile in the terminal)"),
    "demo": ("retrotread.service.demo", "the whole pipeline on this machine, nothing to configure"),
    "profiles": ("retrotread.profiles.command", "list, show and check walking profiles"),
    "check-config": ("retrotread.config_command", "validate a config file and say what is wrong"),
    "replay": ("retrotread.session.replay", "replay a session to MQTT or through the simulator"),
    "sessions": ("retrotread.session.commands", "history: every recorded session", "sessions"),
    "summary": (
        "retrotread.session.commands",
        "per-phase and total summary of a session",
        "summary",
    ),
    "export": ("retrotread.session.commands", "export a session as TCX, FIT or CSV", "export"),
    "plot": ("retrotread.session.commands", "plot speed, incline and heart rate to PNG", "plot"),
    "decode": ("retrotread.ftms.command", "decode one raw FTMS frame to JSON"),
    "scan": ("retrotread.link.scan_command", "list nearby FTMS treadmills"),
    "probe": ("retrotread.link.probe_command", "connect and print what a treadmill supports"),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the subcommand named in ``argv`` has its module imported.

    ``retrotread decode ...`` must not pay for importing bleak, aiomqtt and pydantic, so the
    other subcommands get a bare parser that is enough for ``retrotread --help``.
    """
    parser = argparse.ArgumentParser(
        prog="retrotread",
        description="Programmed backward walking on a Bluetooth FTMS treadmill.",
    )
    parser.add_argument("--version", action="version", version=f"retrotread {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold on stderr (default WARNING)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    args = list(argv) if argv is not None else []
    chosen = next((a for a in args if a in COMMANDS), None)
    for name, spec in COMMANDS.items():
        help_text = spec[1]
        p = sub.add_parser(name, help=help_text, description=help_text)
        if argv is not None and name != chosen:
            continue
        module = importlib.import_module(spec[0])
        # A module serving several subcommands names them: add_<x>_arguments / run_<x>.
        suffix = f"_{spec[2]}" if len(spec) == 3 else ""
        getattr(module, f"add{suffix}_arguments")(p)
        p.set_defaults(_run=getattr(module, f"run{suffix}"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    from retrotread.logs import setup_logging

    setup_logging(args.log_level)
    try:
        code: int = args._run(args)
    except RetrotreadError as exc:
        print(f"retrotread: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
