"""The safety fault search at soak size: thousands of random schedules, one verdict each.

Each schedule (tests/faultsearch.py) is a random treadmill, limits, profiles, commands and
faults, run through the daemon's real runner, FTMS client and supervisor on the virtual
clock, and judged by retrotread.sim.safety_check from what the simulated treadmill
received. Some also run through the fake BlueZ and the real bleak (on a scaled clock).

    .venv/bin/python bench/safety_soak.py                 # 10,000 in-process + 20 over BLE
    .venv/bin/python bench/safety_soak.py -n 500 --ble 3  # a quick look

Prints how many ran and how many broke, violations by rule, and every failing seed
(replay one with ``python -m tests.faultsearch SEED``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT)]

from tests.faultsearch import Outcome, generate, report, run, run_seed  # noqa: E402


def _one(seed: int) -> tuple[int, bool, list[str], int, int, str]:
    outcome = run_seed(seed)
    rules = [v.rule for v in outcome.violations] + ["no_answer"] * len(outcome.unanswered)
    text = "" if outcome.ok else report(outcome)
    return seed, outcome.ok, rules, outcome.writes, outcome.sessions, text


def _ble(seeds: list[int], length_s: float, speedup: float) -> list[Outcome]:
    from retrotread.sim.dbus_bus import PrivateBus

    outcomes = []
    with PrivateBus() as bus:
        os.environ.update(bus.environ())
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                schedule = generate(seed, length_s=length_s)
                outcomes.append(
                    asyncio.run(run(schedule, Path(tmp), ble_bus=bus.address, speedup=speedup))
                )
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--schedules", type=int, default=10_000)
    parser.add_argument("--start", type=int, default=1_000_000, help="first seed")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ble", type=int, default=20, help="schedules through the fake BlueZ")
    parser.add_argument("--ble-speedup", type=float, default=10.0)
    args = parser.parse_args()

    t0 = time.monotonic()
    broken: list[str] = []
    by_rule: collections.Counter[str] = collections.Counter()
    writes = sessions = done = 0
    seeds = range(args.start, args.start + args.schedules)
    with ProcessPoolExecutor(args.workers) as pool:
        for seed, ok, rules, w, s, text in pool.map(_one, seeds, chunksize=8):
            done += 1
            writes += w
            sessions += s
            by_rule.update(set(rules))
            if not ok:
                broken.append(text)
                print(f"BROKEN seed {seed}: {', '.join(sorted(set(rules)))}", flush=True)
            if done % 500 == 0:
                rate = done / (time.monotonic() - t0)
                print(f"  {done} schedules, {len(broken)} broken ({rate:.1f}/s)", flush=True)
    in_process_s = time.monotonic() - t0

    ble_outcomes: list[Outcome] = []
    t1 = time.monotonic()
    if args.ble:
        ble_seeds = list(range(args.start, args.start + args.ble))
        ble_outcomes = _ble(ble_seeds, 60.0, args.ble_speedup)
        for o in ble_outcomes:
            if not o.ok:
                broken.append("[BLE] " + report(o))
                by_rule.update({v.rule for v in o.violations})
    ble_s = time.monotonic() - t1

    print("\nsafety soak")
    print(f"{'path':<34} {'schedules':>10} {'broken':>8} {'writes':>10} {'sessions':>9} {'s':>8}")
    print(
        f"{'in-process, virtual clock':<34} {done:>10} "
        f"{sum(1 for b in broken if not b.startswith('[BLE]')):>8} {writes:>10} "
        f"{sessions:>9} {in_process_s:>8.0f}"
    )
    if args.ble:
        print(
            f"{'fake BlueZ + bleak, ' + format(args.ble_speedup, 'g') + 'x clock':<34} "
            f"{len(ble_outcomes):>10} {sum(not o.ok for o in ble_outcomes):>8} "
            f"{sum(o.writes for o in ble_outcomes):>10} "
            f"{sum(o.sessions for o in ble_outcomes):>9} {ble_s:>8.0f}"
        )
    if by_rule:
        print("\nviolations by rule (schedules):")
        for rule, n in by_rule.most_common():
            print(f"  {rule:<28} {n}")
    for text in broken:
        print("\n" + text)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
