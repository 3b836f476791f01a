"""``retrotread decode CHAR HEX``: one raw FTMS or Heart Rate frame to JSON, for bug reports."""

from __future__ import annotations

import argparse
import json
import sys

from retrotread.errors import DecodeError
from retrotread.ftms.frames import decode_to_dict


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "char", metavar="CHAR", help="characteristic, e.g. 2acd, 0x2ACD or 2a37 (heart rate)"
    )
    parser.add_argument(
        "hex", metavar="HEX", nargs="+", help="the value as hex (spaces, ':' allowed)"
    )
    parser.add_argument(
        "--pace-width",
        type=int,
        choices=[1, 2],
        default=1,
        help="bytes per Treadmill Data pace field: 1 (FTMS v1.0, default) or 2 (current GSS)",
    )


def run(args: argparse.Namespace) -> int:
    text = "".join(args.hex).replace(":", "").replace("-", "").replace(" ", "")
    if text.lower().startswith("0x"):
        text = text[2:]
    try:
        data = bytes.fromhex(text)
    except ValueError:
        print(f"retrotread: error: {''.join(args.hex)!r} is not hex bytes", file=sys.stderr)
        return 2
    try:
        decoded = decode_to_dict(args.char, data, pace_width=args.pace_width)
    except (DecodeError, ValueError) as exc:
        print(f"retrotread: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(decoded, indent=2))
    return 0
