"""Finding and loading plans: built-in ones in ``profiles/plans/``, user ones in
``<dir>/plans/`` of each ``[profiles] dirs`` entry (the profile loader reads only the
top level of those directories, so the two never see each other's files).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from retrotread.coach.plan import Plan
from retrotread.errors import PlanError
from retrotread.profiles.loader import builtin_dir
from retrotread.tomlfile import load_model

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
    return load_model(path, Plan, PlanError, "plan")


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
