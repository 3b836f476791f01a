"""Finding and loading profiles: built-in ones from ``profiles/``, user ones from config."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from retrotread.errors import ProfileError
from retrotread.profiles.model import Profile
from retrotread.tomlfile import load_model

ENV_BUILTIN = "RETROTREAD_BUILTIN_PROFILES"


def builtin_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """Where the built-in profiles are, first found of:

    $RETROTREAD_BUILTIN_PROFILES (when set, the only place looked at); ``<repo>/profiles``
    next to ``daemon/`` (an editable install or a checkout); ``<prefix>/share/retrotread/
    profiles`` (a wheel install, from ``[tool.setuptools.data-files]``).
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_BUILTIN):
        return Path(env[ENV_BUILTIN])
    # daemon/retrotread/profiles/loader.py -> parents[3] is the repository root.
    for candidate in (
        Path(__file__).resolve().parents[3] / "profiles",
        Path(sys.prefix) / "share" / "retrotread" / "profiles",
    ):
        if candidate.is_dir() and any(candidate.glob("*.toml")):
            return candidate
    return None


def load_profile_file(path: Path) -> Profile:
    """One profile file; ProfileError names the file, the key and the problem."""
    return load_model(path, Profile, ProfileError, "profile")


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


def load_profiles(
    dirs: Iterable[Path] = (),
    include_builtin: bool = True,
    environ: Mapping[str, str] | None = None,
) -> ProfileSet:
    """Built-in profiles, then each user directory; a broken file never hides the others.

    Every file that cannot be used is one line in ``errors`` (naming the file). A user
    profile with the name of a built-in one replaces it; two files with one name in the
    user directories: the later one wins and the clash is reported.
    """
    result = ProfileSet()
    roots: list[tuple[Path, bool]] = []
    if include_builtin:
        b = builtin_dir(environ)
        if b is None:
            result.errors.append("built-in profiles not found (set $RETROTREAD_BUILTIN_PROFILES)")
        else:
            roots.append((b, True))
    roots.extend((Path(d).expanduser(), False) for d in dirs)
    from_builtin: dict[str, bool] = {}  # name -> loaded from the built-in directory
    for root, builtin in roots:
        if not root.is_dir():
            result.errors.append(f"{root}: profile directory does not exist")
            continue
        for path in sorted(root.glob("*.toml")):
            try:
                profile = load_profile_file(path)
            except ProfileError as exc:
                result.errors.append(str(exc))
                continue
            name = profile.name
            if from_builtin.get(name) == builtin:  # a clash within one tier, not an override
                result.errors.append(
                    f"{path}: profile name {name!r} is also used by {result.sources[name]}; "
                    "this file wins"
                )
            from_builtin[name] = builtin
            result.profiles[name] = profile
            result.sources[name] = path
    return result
