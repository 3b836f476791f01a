"""The package's layers point one way (README, design notes): an ast walk over every import.

Upward imports fail, and so do bleak outside ``link/``, aiomqtt and paho outside ``mqtt/``,
aiohttp and segno outside ``web/``, dbus-fast outside ``sim/`` and argparse outside
``cli/`` (the layers parse no arguments).
Imports inside functions and under TYPE_CHECKING count too: a lazy import is still a
dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "daemon" / "retrotread"

# Modules at the root of the package that import no layer: the ground floor.
GROUND = {"errors", "clock", "backoff", "events", "logs", "servers", "tomlfile"}
# Which layers each layer may import (besides itself and the ground floor). ``config`` is
# one module (the validated configuration, with the coach's [[walker]] entries).
ALLOWED: dict[str, set[str]] = {
    "ftms": set(),
    "profiles": {"ftms"},
    "session": {"ftms", "profiles"},
    "coach": {"ftms", "profiles", "session"},
    "config": {"ftms", "profiles", "session", "coach"},
    "link": {"ftms"},
    "sim": {"ftms", "link.transport"},  # link's interface, never its bleak side
    "mqtt": {"ftms", "profiles", "session", "coach", "config"},
    # The web page answers through mqtt/'s command desk and contract (no aiomqtt there).
    "web": {"ftms", "profiles", "session", "coach", "config", "mqtt"},
    "service": {"ftms", "profiles", "session", "coach", "config", "link", "mqtt", "sim", "web"},
    "cli": {
        "ftms",
        "profiles",
        "session",
        "coach",
        "config",
        "link",
        "mqtt",
        "sim",
        "web",
        "service",
    },
}
MODULE_LAYERS = {"config"}
# Nothing imports the simulator but the tests and these: the --simulate and demo wiring,
# the demo itself, and replay --through-sim (a re-run against the simulator).
SIM_USERS = {"service/app.py", "cli/demo.py", "cli/replay.py"}
# Third-party libraries that belong to one layer only (STYLE.md); argparse to the command
# line, and to the fake BlueZ's own server (``python -m retrotread.sim.bluez_server``,
# BLESIM.md), a development tool that is no retrotread subcommand.
OWNED = {
    "bleak": "link",
    "bleak_retry_connector": "link",
    "bluetooth_adapters": "link",
    "aiomqtt": "mqtt",
    "paho": "mqtt",
    "aiohttp": "web",
    "segno": "web",
    "dbus_fast": "sim",
    "argparse": "cli",
}
OWNED_TOO = {("argparse", "sim/bluez_server.py")}


def layer_of(relative: str) -> str:
    """``link/ftms_client.py`` -> ``link``; ``config.py`` -> ``config`` (a ground module)."""
    head = relative.split("/")[0]
    return head.removesuffix(".py")


def imported(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``tree`` of module ``module``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            out.append((node.lineno, base))
            # "from retrotread import cli" imports retrotread.cli
            if base == "retrotread":
                out += [(node.lineno, f"retrotread.{a.name}") for a in node.names]
    return out


def violations(relative: str, source: str) -> list[str]:
    """What is wrong with the imports of ``daemon/retrotread/<relative>``."""
    layer = layer_of(relative)
    module = "retrotread." + relative.removesuffix(".py").replace("/", ".")
    module = module.removesuffix(".__init__")
    problems = []
    for line, name in imported(ast.parse(source), module):
        where = f"{relative}:{line} imports {name}"
        top = name.split(".")[0]
        owner = OWNED.get(top)
        if owner is not None and layer != owner and (top, relative) not in OWNED_TOO:
            problems.append(f"{where}: {top} belongs in {owner}/ only")
        if top != "retrotread" or name == "retrotread":
            continue
        target = name.split(".")[1]
        if target == layer or (target not in ALLOWED and target not in GROUND):
            continue  # itself, or a name of the package (__version__); see the next test
        if layer in GROUND:
            if target not in GROUND:
                problems.append(f"{where}: a ground module imports no layer")
            continue
        if target in GROUND:
            continue
        allowed = ALLOWED.get(layer, set())
        dotted = ".".join(name.split(".")[1:3])
        if target not in allowed and dotted not in allowed:
            problems.append(f"{where}: {layer}/ may not import {target}/")
        elif target == "sim" and relative not in SIM_USERS:
            problems.append(f"{where}: only the simulate/demo wiring imports sim/")
    return problems


def test_every_module_imports_only_downward() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "__init__.py":
            continue
        found += violations(relative, path.read_text(encoding="utf-8"))
    assert found == []


def test_every_layer_is_known() -> None:
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    ground = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert layers == set(ALLOWED) - MODULE_LAYERS
    assert ground == GROUND | MODULE_LAYERS


@pytest.mark.parametrize(
    ("relative", "source", "complaint"),
    [
        ("ftms/x.py", "from retrotread.profiles.model import Profile", "ftms/ may not import"),
        ("session/x.py", "def f():\n    import retrotread.service.app", "may not import service/"),
        ("profiles/x.py", "from retrotread import session", "may not import session/"),
        ("mqtt/x.py", "from ..service import supervisor", "may not import service/"),
        ("service/runner.py", "import bleak", "bleak belongs in link/ only"),
        ("session/x.py", "from aiomqtt import Client", "aiomqtt belongs in mqtt/ only"),
        ("link/x.py", "import dbus_fast.aio", "dbus_fast belongs in sim/ only"),
        ("sim/x.py", "from retrotread.link.bleak_transport import B", "may not import link/"),
        ("service/runner.py", "from retrotread.sim.treadmill import S", "only the simulate"),
        ("link/x.py", "from retrotread.sim.gatt import Peripheral", "link/ may not import sim/"),
        ("clock.py", "from retrotread.session.log import SessionLog", "ground module"),
        ("config.py", "from retrotread.mqtt.topics import Topics", "config/ may not import mqtt/"),
        ("session/replay.py", "import argparse", "argparse belongs in cli/ only"),
        ("service/app.py", "from aiohttp import web", "aiohttp belongs in web/ only"),
        ("web/server.py", "from retrotread.service.app import Daemon", "may not import service/"),
    ],
)
def test_the_walk_catches(relative: str, source: str, complaint: str) -> None:
    found = violations(relative, source)
    assert len(found) == 1 and complaint in found[0], found


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        ("sim/inprocess.py", "from retrotread.link.transport import NotifyCallback"),
        ("service/app.py", "from retrotread.sim.treadmill import SimTreadmill"),
        ("cli/run.py", "from retrotread.service.app import run_daemon"),
        ("session/log.py", "from retrotread.errors import RetrotreadError"),
        ("link/bleak_transport.py", "from bleak import BleakClient"),
    ],
)
def test_the_walk_lets_pass(relative: str, source: str) -> None:
    assert violations(relative, source) == []
