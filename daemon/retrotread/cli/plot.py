"""``retrotread plot LOG [-o FILE.png]``: speed, incline and heart rate over time."""

from __future__ import annotations

import argparse
from pathlib import Path

from retrotread.cli._shared import write_from_log


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", metavar="LOG", type=Path)
    parser.add_argument("-o", "--output", type=Path, help="PNG file (default: beside the log)")


def run(args: argparse.Namespace) -> int:
    from retrotread.session.plot import plot

    return write_from_log(args.log, args.output, ".png", plot)
