"""``retrotread export LOG --format tcx|fit|csv [-o FILE]``: files training apps import."""

from __future__ import annotations

import argparse
from pathlib import Path

from retrotread.cli._shared import write_from_log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", metavar="LOG", type=Path)
    parser.add_argument("--format", required=True, choices=["tcx", "fit", "csv"])
    parser.add_argument("-o", "--output", type=Path, help="output file (default: beside the log)")


def run(args: argparse.Namespace) -> int:
    from retrotread.session.export import export

    fmt: str = args.format
    return write_from_log(
        args.log, args.output, "." + fmt, lambda view, out: export(view, fmt, out)
    )
