"""The ``retrotread`` command line: one module per subcommand, imported lazily."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from retrotread import __version__
from retrotread.errors import RetrotreadError

# subcommand -> (module, help). Each module has ``add_arguments(parser)`` and
# ``run(args) -> int``; it is imported only when its subcommand runs (or for --help).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("retrotread.service.run_command", "run the daemon (or one profile in the terminal)"),
    "demo": ("retrotread.service.demo", "the whole pipeline on this machine, nothing to configure"),
    "profiles": ("retrotread.profiles.command", "list, show and check walking profiles"),
    "check-config": ("retrotread.config_command", "validate a config file and say what is wrong"),
    "decode": ("retrotread.ftms.command", "decode one raw FTMS frame to JSON"),
    "scan": ("retrotread.link.scan_command", "list nearby FTMS treadmills"),
    "probe": ("retrotread.link.probe_command", "connect and print what a treadmill supports"),
}


def build_parser() -> argparse.ArgumentParser:
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
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from retrotread.logs import setup_logging

    setup_logging(args.log_level)
    try:
        code: int = args._module.run(args)
    except RetrotreadError as exc:
        print(f"retrotread: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
