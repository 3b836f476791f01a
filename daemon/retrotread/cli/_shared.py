"""What several subcommands share: the config lookup, a log's notes, times as m:ss."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from retrotread.errors import RetrotreadError

if TYPE_CHECKING:  # the CLI imports its modules to build the parser: keep that cheap
    from retrotread.config import Config
    from retrotread.session.analysis import SessionView
    from retrotread.session.log import SessionLog


def load_config(path: Path | None) -> Config:
    """-c FILE, else $RETROTREAD_CONFIG, else /etc/retrotread/config.toml if it exists."""
    from retrotread.config import find_config_path, load_config

    return load_config(find_config_path(path))


def print_notes(log: SessionLog, out: TextIO | None = None) -> None:
    """What is odd about a log (no footer, a cut line); on stderr unless told."""
    for note in log.notes():
        print(f"note: {note}", file=out or sys.stderr)


def fmt_time(seconds: float | None) -> str:
    """m:ss, or --:-- when unknown."""
    if seconds is None:
        return "--:--"
    s = max(0, round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def write_from_log(
    log: Path, output: Path | None, suffix: str, write: Callable[[SessionView, Path], object]
) -> int:
    """Read ``log``, say what is odd about it, ``write`` to ``output`` (else beside the log)."""
    from retrotread.session.analysis import load

    view = load(log)
    print_notes(view.log)
    out = output or log.with_suffix(suffix)
    try:
        write(view, out)
    except OSError as exc:
        raise RetrotreadError(f"cannot write {out}: {exc.strerror}") from None
    print(out)
    return 0


class Actions:
    """A subcommand's actions (``profiles list``...), each taking ``-c FILE`` before the
    action or after it."""

    def __init__(self, parser: argparse.ArgumentParser, dest: str, config_help: str) -> None:
        parser.add_argument("-c", "--config", type=Path, help=config_help)
        self._sub = parser.add_subparsers(dest=dest, metavar="ACTION", required=True)
        self._config_help = config_help

    def add(self, name: str, help_text: str) -> argparse.ArgumentParser:
        action = self._sub.add_parser(name, help=help_text)
        # SUPPRESS: a -c given before the action is kept when none comes after it.
        action.add_argument(
            "-c", "--config", type=Path, default=argparse.SUPPRESS, help=self._config_help
        )
        return action
