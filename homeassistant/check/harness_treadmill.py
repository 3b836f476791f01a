"""bluez_server factory: the simulated treadmill, switched off until $POWER_ON_FILE exists,
and a heart-rate strap on its walker (always on)."""

from __future__ import annotations

import asyncio
import os
import pathlib

from retrotread.sim.strap import SimStrap
from retrotread.sim.treadmill import Faults, SimConfig, SimTreadmill


def make() -> list[object]:
    sim = SimTreadmill(SimConfig(pre_workout_s=1.0), Faults(advertising=False))
    flag = pathlib.Path(os.environ["POWER_ON_FILE"])
    original = sim.run

    async def run(clock):  # type: ignore[no-untyped-def]
        async def power_on() -> None:
            while not flag.exists():
                await asyncio.sleep(0.2)
            sim.faults.advertising = True

        switch = asyncio.create_task(power_on())
        try:
            await original(clock)
        finally:
            switch.cancel()

    sim.run = run  # type: ignore[method-assign]
    return [sim, SimStrap(sim.walker)]
