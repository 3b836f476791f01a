"""Reading a TOML file into a pydantic model, and pydantic's complaints in plain words.

Config, profiles and plans share this: a missing, unreadable or broken file is one line
naming the file; a value pydantic refuses is a ``Problem``, worded by ``explain`` for a
profile or a plan (the config words its own, with the environment variables).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from retrotread.errors import RetrotreadError

M = TypeVar("M", bound=BaseModel)


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


def load_model(path: Path, model: type[M], error: type[RetrotreadError], kind: str) -> M:
    """A TOML file validated as ``model``; ``error``, one line naming the file, where in it,
    the key, the value and why, when it cannot be read or is refused."""
    data = read_toml(path, error)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{path}: {explain(exc, data, kind)}") from None


def explain(exc: ValidationError, data: dict[str, Any], kind: str) -> str:
    """pydantic's errors as "plan 'x', stage 1 'flat', level 3, bout_s = 10: why".

    The file is named by its ``name`` (``kind`` says what it is); an entry of an array of
    tables ([[phase]], [[stage.level]]) by its number, counted from 1, and its ``name``.
    """
    out = []
    file_name = data.get("name")
    for p in problems(exc):
        parts = [f"{kind} {file_name!r}"] if isinstance(file_name, str) else []
        node: Any = data
        keys: list[str] = []
        loc = list(p.loc)
        i = 0
        while i < len(loc):
            part = loc[i]
            nxt = loc[i + 1] if i + 1 < len(loc) else None
            child = node.get(part) if isinstance(node, dict) else None
            if isinstance(nxt, int) and isinstance(child, list):
                item = child[nxt] if nxt < len(child) else None
                name = item.get("name") if isinstance(item, dict) else None
                parts.append(f"{part} {nxt + 1}" + (f" {name!r}" if isinstance(name, str) else ""))
                node, i = item, i + 2
                continue
            keys.append(str(part))
            node, i = child, i + 1
        key = ".".join(keys)
        where = ", ".join(parts)
        if p.kind == "extra_forbidden":
            out.append(f"unknown key {key!r}" + (f" in {where}" if where else ""))
            continue
        prefix = f"{where}, " if where and key else where
        if p.kind == "missing":
            out.append(f"{prefix}{key}: required")
        else:
            shown = f" = {p.value!r}" if key and isinstance(p.value, int | float | str) else ""
            out.append(f"{prefix}{key}{shown}: {p.message}")
    return "; ".join(out)
