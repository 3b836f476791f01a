"""Reading a TOML file into a pydantic model, and pydantic's complaints in plain words.

Config and profiles share this: a missing, unreadable or broken file is one line naming
the file; a value pydantic refuses is a ``Problem`` each caller words with its own names.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from retrotread.errors import RetrotreadError


def read_toml(path: Path, error: type[RetrotreadError]) -> dict[str, Any]:
    """The file's top-level table; ``error`` naming the file when it cannot be had."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)".
        raise error(f"{path}: not valid TOML: {exc}") from None


@dataclass(frozen=True)
class Problem:
    """One refusal: where (pydantic's loc), what kind, why, and the value refused."""

    loc: tuple[str | int, ...]
    kind: str
    message: str
    value: Any

    @property
    def key(self) -> str:
        return ".".join(str(x) for x in self.loc)


def problems(exc: ValidationError) -> list[Problem]:
    """pydantic's errors, each message without its "Value error, " prefix."""
    return [
        Problem(
            tuple(err["loc"]),
            err["type"],
            str(err["msg"]).removeprefix("Value error, "),
            err.get("input"),
        )
        for err in exc.errors()
    ]
