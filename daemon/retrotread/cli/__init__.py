"""The ``retrotread`` command line: one module per subcommand, imported lazily.

Each module here parses its arguments and calls into the layers; the layers keep no
argparse code. A module has ``add_arguments(parser)`` and ``run(args) -> int``, and imports
heavy dependencies (bleak, aiomqtt, matplotlib, fit-tool) inside ``run``, not at the top.
Every error a user can cause ends here as one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from retrotread import __version__
from retrotread.errors import RetrotreadError

# subcommand -> (module under retrotread.cli, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run the daemon (or one profile in the terminal)"),
    "demo": ("demo", "the whole pipeline on this machine, nothing to configure"),
    "profiles": ("profiles", "list, show and check walking profiles"),
    "plan": ("plan", "list the coaching plans; a walker's session today, and why"),
    "progress": ("walker_progress", "a walker's weeks: backward minutes, incline, speed, pain"),
    "check-config": ("check_config", "validate a config file and say what is wrong"),
    "replay": ("replay", "replay a session to MQTT or through the simulator"),
    "sessions": ("sessions", "history: every recorded session"),
    "summary": ("summary", "per-phase and total summary of a session"),
    "export": ("export", "export a session as TCX, FIT or CSV"),
    "plot": ("plot", "plot speed, incline and heart rate to PNG"),
    "decode": ("decode", "decode one raw FTMS or heart-rate frame to JSON"),
    "scan": ("scan", "list nearby FTMS treadmills"),
    "probe": ("probe", "connect and print what a treadmill supports"),
    "web": ("web", "the phone page: its address with the access token, as a QR code"),
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
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if argv is not None and name != chosen:
            continue
        module = importlib.import_module(f"{__name__}.{module_name}")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
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
    except BrokenPipeError:
        # Read by something that stopped reading (``| head``): not an error of ours. Later
        # writes (the interpreter's own flush at exit) go nowhere instead of failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a process ended by SIGPIPE
    except OSError as exc:
        # A file or socket the user pointed at (permissions, a full disk, a missing device).
        print(f"retrotread: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


def _os_error(exc: OSError) -> str:
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {text}" if exc.filename else text
