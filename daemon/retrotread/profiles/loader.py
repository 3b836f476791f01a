"""Finding and loading profiles: built-in ones from ``profiles/``, user ones from config."""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from retrotread.errors import ProfileError
from retrotread.profiles.model import Profile

ENV_BUILTIN = "RETROTREAD_BUILTIN_PROFILES"


def builtin_dir() -> Path | None:
    """The built-in profiles: $RETROTREAD_BUILTIN_PROFILES, the source tree, or share/."""
    env = os.environ.get(ENV_BUILTIN)
    candidates = [Path(env)] if env else []
    # daemon/retrotread/profiles/loader.py -> <repo>/profiles
    candidates.append(Path(__file__).resolve().parents[3] / "profiles")
    candidates.append(Path(sys.prefix) / "share" / "retrotread" / "profiles")
    for c in candidates:
        if c.is_dir() and any(c.glob("*.toml")):
            return c
    return None


def load_profile_file(path: Path) -> Profile:
    """One profile file; ProfileError names the file, the key and the problem."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such file") from None
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {_explain(exc, data)}") from None


def _explain(exc: ValidationError, data: dict[str, object]) -> str:
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        parts: list[str] = []
        for item in loc:
            if isinstance(item, int):
                parts[-1] = f"phase {item + 1}" if parts and parts[-1] == "phase" else str(item)
            else:
                parts.append(str(item))
        key = ", ".join(parts) if parts else "profile"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            out.append(
                f"unknown key {parts[-1]!r}"
                + (f" in {', '.join(parts[:-1])}" if parts[:-1] else "")
            )
        elif err["type"] == "missing":
            out.append(f"{key}: required")
        else:
            inp = err.get("input")
            shown = f" = {inp!r}" if isinstance(inp, int | float | str) else ""
            out.append(f"{key}{shown}: {msg}")
    return "; ".join(out)


@dataclass
class ProfileSet:
    """Profiles by name, where each came from, and the files that could not be loaded."""

    profiles: dict[str, Profile] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def get(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ProfileError(f"unknown profile {name!r}; known profiles: {known}") from None


def load_profiles(dirs: Iterable[Path] = (), include_builtin: bool = True) -> ProfileSet:
    """Load built-in then user profiles; a broken file is reported and skipped, never fatal.

    A user profile with the name of a built-in one replaces it.
    """
    result = ProfileSet()
    roots: list[Path] = []
    if include_builtin and (b := builtin_dir()) is not None:
        roots.append(b)
    roots.extend(Path(d).expanduser() for d in dirs)
    for root in roots:
        if not root.is_dir():
            result.errors.append(f"{root}: profile directory does not exist")
            continue
        for path in sorted(root.glob("*.toml")):
            try:
                profile = load_profile_file(path)
            except ProfileError as exc:
                result.errors.append(str(exc))
                continue
            result.profiles[profile.name] = profile
            result.sources[profile.name] = path
    return result
