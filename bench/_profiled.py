"""``python bench/_profiled.py OUT ARGS...``: retrotread's command line under a sampling profiler.

Every 0.5 ms of the process's CPU time (SIGPROF), the Python stack of the main thread is
counted; SIGUSR1 starts counting and SIGUSR2 stops it, so a benchmark profiles exactly its
measuring window. CPU time, not wall time: time spent waiting for a core on a shared
machine is not charged to anyone, and a sample costs a few microseconds, so the shares
are those of a run without the profiler. At exit OUT gets one JSON line per distinct
stack: ``[count, [[file, function], ...innermost first]]``.
"""

from __future__ import annotations

import collections
import json
import signal
import sys
from types import FrameType

from retrotread.cli import main

INTERVAL_S = 0.0005

Stack = tuple[tuple[str, str], ...]
stacks: collections.Counter[Stack] = collections.Counter()


def _sample(signum: int, frame: FrameType | None) -> None:
    key = []
    while frame is not None:
        key.append((frame.f_code.co_filename, frame.f_code.co_name))
        frame = frame.f_back
    stacks[tuple(key)] += 1


def _start(signum: int, frame: FrameType | None) -> None:
    signal.setitimer(signal.ITIMER_PROF, INTERVAL_S, INTERVAL_S)


def _stop(signum: int, frame: FrameType | None) -> None:
    signal.setitimer(signal.ITIMER_PROF, 0, 0)


if __name__ == "__main__":
    signal.signal(signal.SIGPROF, _sample)
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    try:
        code = main(sys.argv[2:])
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        with open(sys.argv[1], "w") as out:
            for stack, count in stacks.items():
                out.write(json.dumps([count, stack]) + "\n")
    sys.exit(code)
