"""``python -m retrotread.sim.bluez_server [MODULE:CALLABLE]``: simulated peripherals behind
a fake BlueZ on a private D-Bus, for other processes' bleak.

Prints two lines on stdout, then serves until SIGTERM/SIGINT::

    DBUS_SYSTEM_BUS_ADDRESS=unix:path=/tmp/retrotread-bus-.../bus.sock
    PATH_PREFIX=/tmp/retrotread-bus-.../bin      (empty when bluetoothctl is installed)

Give another process those two (PATH_PREFIX goes in front of PATH) and its bleak, e.g.
``retrotread scan``, finds the peripherals. The factory is called with no arguments and
returns one ``sim.gatt.Peripheral`` or several; default: the simulated treadmill
(``retrotread.sim.treadmill:default_peripheral``). ``--count``, ``--name`` and
``--no-incline`` build simulated treadmills instead of calling a factory.

A served peripheral MAY have ``async def run(self) -> None``, its own driver (clock,
periodic notifications): the server runs it as a task while serving. A ``run`` whose
first parameter is a ``clock`` gets a ``retrotread.clock.RealClock``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import inspect
import signal
import sys
from collections.abc import Coroutine, Iterable
from typing import Any

from retrotread.errors import RetrotreadError
from retrotread.sim.bluez import FakeBlueZ
from retrotread.sim.dbus_bus import PrivateBus
from retrotread.sim.gatt import Peripheral

DEFAULT_FACTORY = "retrotread.sim.treadmill:default_peripheral"


class FactoryError(RetrotreadError):
    """The MODULE:CALLABLE given on the command line cannot make peripherals."""


def load_factory(spec: str) -> Any:
    """The callable named by ``module:callable``; raises FactoryError."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise FactoryError(f"factory must be MODULE:CALLABLE, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FactoryError(f"cannot import {module_name}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise FactoryError(f"{spec} is not a callable")
    return factory


def make_peripherals(factory: Any) -> list[Peripheral]:
    """Call the factory; it returns a peripheral or an iterable of them."""
    made = factory()
    if isinstance(made, Iterable) and not hasattr(made, "advertisement"):
        return list(made)
    return [made]


def sim_treadmills(count: int, name: str, incline: bool) -> list[Peripheral]:
    """``count`` simulated treadmills at C0:FF:EE:00:00:01 upwards, named NAME-1... if several."""
    from retrotread.sim.treadmill import SimConfig, SimTreadmill

    return [
        SimTreadmill(
            SimConfig(
                name=name if count == 1 else f"{name}-{i + 1}",
                address=f"C0:FF:EE:00:00:{i + 1:02X}",
                incline_supported=incline,
                pre_workout_s=1.0,
            )
        )
        for i in range(count)
    ]


def driver(peripheral: Peripheral) -> Coroutine[Any, Any, Any] | None:
    """The peripheral's own ``run()`` coroutine, or None when it has none."""
    run = getattr(peripheral, "run", None)
    if not callable(run):
        return None
    params = list(inspect.signature(run).parameters.values())
    if params and params[0].name == "clock" and params[0].default is inspect.Parameter.empty:
        from retrotread.clock import RealClock

        coro = run(RealClock())
    else:
        coro = run()
    if not inspect.iscoroutine(coro):
        raise FactoryError(f"{type(peripheral).__name__}.run() is not a coroutine function")
    return coro


async def serve(peripherals: list[Peripheral]) -> None:
    """Serve ``peripherals`` on a fresh private bus until SIGTERM/SIGINT."""
    async with PrivateBus() as bus:
        fake = FakeBlueZ()
        for p in peripherals:
            fake.add_peripheral(p)
        await fake.start(bus.address)
        try:
            print(f"DBUS_SYSTEM_BUS_ADDRESS={bus.address}")
            print(f"PATH_PREFIX={bus.bin_dir or ''}", flush=True)
            for p in peripherals:
                adv = p.advertisement()
                label = adv.local_name if adv is not None else "(not advertising)"
                print(f"serving {p.address} {label}", file=sys.stderr, flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            async with asyncio.TaskGroup() as tasks:
                drivers = [
                    tasks.create_task(coro, name=f"peripheral-{p.address}")
                    for p in peripherals
                    if (coro := driver(p)) is not None
                ]
                await stop.wait()
                for task in drivers:
                    task.cancel()
        finally:
            await fake.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m retrotread.sim.bluez_server",
        description="Serve simulated BLE peripherals behind a fake BlueZ on a private D-Bus.",
    )
    p.add_argument(
        "factory",
        nargs="?",
        default=None,
        help=f"MODULE:CALLABLE returning the peripheral(s) (default {DEFAULT_FACTORY})",
    )
    p.add_argument("--count", type=int, help="serve this many simulated treadmills")
    p.add_argument("--name", help="advertised name of the simulated treadmills")
    p.add_argument("--no-incline", action="store_true", help="treadmills without incline")
    args = p.parse_args(argv)
    treadmill_options = args.count is not None or args.name is not None or args.no_incline
    try:
        if treadmill_options:
            if args.factory is not None:
                p.error("--count/--name/--no-incline build treadmills; do not give a factory too")
            peripherals = sim_treadmills(
                args.count or 1, args.name or "RETRO-SIM", not args.no_incline
            )
        else:
            peripherals = make_peripherals(load_factory(args.factory or DEFAULT_FACTORY))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(peripherals))
    except RetrotreadError as exc:
        print(f"bluez_server: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
