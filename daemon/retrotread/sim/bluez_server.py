"""``python -m retrotread.sim.bluez_server``: simulated treadmills behind a fake BlueZ.

Starts a private D-Bus, serves N simulated treadmills on it and prints, one per line,
``DBUS_SYSTEM_BUS_ADDRESS=...`` and ``PATH_PREFIX=...`` (a directory holding a
``bluetoothctl`` stub), then runs until SIGTERM/SIGINT. Point another process's bleak at
it with those two variables: ``retrotread scan`` and ``probe`` then find the simulators.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from retrotread.clock import RealClock
from retrotread.sim.bluez import FakeBlueZ
from retrotread.sim.dbus_bus import PrivateBus
from retrotread.sim.treadmill import SimConfig, SimTreadmill


async def serve(count: int, name: str, incline: bool) -> None:
    async with PrivateBus() as bus:
        fake = FakeBlueZ()
        sims = []
        for i in range(count):
            cfg = SimConfig(
                name=name if count == 1 else f"{name}-{i + 1}",
                address=f"C0:FF:EE:00:00:{i + 1:02X}",
                incline_supported=incline,
                pre_workout_s=1.0,
            )
            sims.append(SimTreadmill(cfg))
            fake.add_peripheral(sims[-1])
        await fake.start(bus.address)
        env = bus.environ()
        print(f"DBUS_SYSTEM_BUS_ADDRESS={env['DBUS_SYSTEM_BUS_ADDRESS']}")
        print(f"PATH_PREFIX={bus.bin_dir or ''}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        clock = RealClock()
        tasks = [asyncio.create_task(s.run(clock)) for s in sims]
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await fake.stop()


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m retrotread.sim.bluez_server")
    p.add_argument("--count", type=int, default=1, help="how many treadmills (default 1)")
    p.add_argument("--name", default="RETRO-SIM", help="advertised name")
    p.add_argument("--no-incline", action="store_true", help="a treadmill without incline")
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.count, args.name, not args.no_incline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
