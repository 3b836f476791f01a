"""``retrotread check-config [-c FILE]``: what is wrong, or the effective config, masked."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retrotread.cli._shared import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, help="config file (default: as `run` finds it)"
    )


def run(args: argparse.Namespace) -> int:
    from retrotread.config import config_to_display, find_config_path
    from retrotread.errors import ConfigError
    from retrotread.session.store import check_sessions_dir

    config = load_config(args.config)  # ConfigError -> one line, exit 2 (cli.main)
    check = check_sessions_dir(config.sessions.dir)
    if check.problem is not None:
        source = args.config or find_config_path(None) or "configuration"
        raise ConfigError(f"{source}: sessions.dir: {check.problem}")
    print(json.dumps(config_to_display(config), indent=2))
    return 0
