"""Finding and loading plans: built-in ones in ``profiles/plans/``, user ones in
``<dir>/plans/`` of each ``[profiles] dirs`` entry (the profile loader reads only the
top level of those directories, so the two never see each other's files).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from retrotread.coach.plan import Plan
from retrotread.errors import PlanError
from retrotread.profiles.loader import builtin_dir

ENV_BUILTIN_PLANS = "RETROTREAD_BUILTIN_PLANS"


def builtin_plans_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """$RETROTREAD_BUILTIN_PLANS, else ``plans/`` inside the built-in profiles directory."""
    env = os.environ if environ is None else environ
    if env.get(ENV_BUILTIN_PLANS):
        return Path(env[ENV_BUILTIN_PLANS])
    profiles = builtin_dir(environ)
    if profiles is None or not (profiles / "plans").is_dir():
        return None
    return profiles / "plans"


def load_plan_file(path: Path) -> Plan:
    """One plan file; PlanError names the file, where in it, the key, the value and why."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise PlanError(f"{path}: no such file") from None
    except OSError as exc:
        raise PlanError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(f"{path}: {explain(exc, data)}") from None


def explain(exc: ValidationError, data: dict[str, Any]) -> str:
    """pydantic's errors as "plan 'x', stage 1 'flat', level 3, bout_s = 10: why"."""
    out = []
    plan_name = data.get("name")
    for err in exc.errors():
        parts = [f"plan {plan_name!r}"] if isinstance(plan_name, str) else []
        node: Any = data
        keys: list[str] = []
        loc = list(err["loc"])
        i = 0
        while i < len(loc):
            part = loc[i]
            nxt = loc[i + 1] if i + 1 < len(loc) else None
            child = node.get(part) if isinstance(node, dict) else None
            if isinstance(nxt, int) and isinstance(child, list):
                # A table of an array ([[stage]], [[stage.level]]): named as a person counts.
                item = child[nxt] if nxt < len(child) else None
                label = f"{part} {nxt + 1}"
                name = item.get("name") if isinstance(item, dict) else None
                parts.append(label + (f" {name!r}" if isinstance(name, str) else ""))
                node, i = item, i + 2
                continue
            keys.append(str(part))
            node, i = child, i + 1
        key = ".".join(keys)
        where = ", ".join(parts)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            out.append(f"unknown key {key!r}" + (f" in {where}" if where else ""))
            continue
        prefix = f"{where}, " if where and key else where
        if err["type"] == "missing":
            out.append(f"{prefix}{key}: required")
        else:
            inp = err.get("input")
            shown = f" = {inp!r}" if key and isinstance(inp, int | float | str) else ""
            out.append(f"{prefix}{key}{shown}: {msg}")
    return "; ".join(out)


@dataclass
class PlanSet:
    """Plans by name, where each came from, and the files that could not be used."""

    plans: dict[str, Plan] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def get(self, name: str) -> Plan:
        try:
            return self.plans[name]
        except KeyError:
            known = ", ".join(sorted(self.plans)) or "none"
            raise PlanError(f"unknown plan {name!r}; known plans: {known}") from None


def load_plans(
    dirs: Iterable[Path] = (),
    include_builtin: bool = True,
    environ: Mapping[str, str] | None = None,
) -> PlanSet:
    """Built-in plans, then ``plans/`` in each user directory; a broken file hides nothing.

    A user plan with a built-in plan's name replaces it. A plan whose ``requires`` or
    ``next`` names a plan that is not there is kept and reported.
    """
    result = PlanSet()
    roots: list[tuple[Path, bool]] = []
    if include_builtin:
        b = builtin_plans_dir(environ)
        if b is None:
            result.errors.append(f"built-in plans not found (set ${ENV_BUILTIN_PLANS})")
        else:
            roots.append((b, True))
    # A user directory without plans/ is normal (it holds profiles only): skip it quietly.
    roots.extend((Path(d).expanduser() / "plans", False) for d in dirs)
    tier: dict[str, bool] = {}
    for root, builtin in roots:
        if not root.is_dir():
            if builtin:
                result.errors.append(f"{root}: plan directory does not exist")
            continue
        for path in sorted(root.glob("*.toml")):
            try:
                plan = load_plan_file(path)
            except PlanError as exc:
                result.errors.append(str(exc))
                continue
            if tier.get(plan.name) == builtin:
                result.errors.append(
                    f"{path}: plan name {plan.name!r} is also used by "
                    f"{result.sources[plan.name]}; this file wins"
                )
            tier[plan.name] = builtin
            result.plans[plan.name] = plan
            result.sources[plan.name] = path
    for plan in result.plans.values():
        for other in (*plan.requires, *([plan.next] if plan.next else [])):
            if other not in result.plans:
                key = "requires" if other in plan.requires else "next"
                result.errors.append(
                    f"{result.sources[plan.name]}: plan {plan.name!r}, {key} = {other!r}: "
                    "no such plan"
                )
    return result
