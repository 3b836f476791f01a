"""Spoken cues without Home Assistant: a command run for each cue (config ``[cues]``).

The runner's listener only appends the text to a short queue; one task runs the commands
one after another, each bounded by a timeout. A slow or broken command can delay the next
cue, never the runner: when the queue is full the oldest cue is dropped (the newest is the
one that matters to the walker). Failures are logged once, then quietly until the command
works again.

The template is split like a shell would split it (``shlex``), then ``{text}`` and
``{type}`` are filled in per argument: cue text is always exactly one argument, never
parsed by a shell. The text is also written to the command's standard input, for programs
(or ``sh -c`` pipelines) that read it from there. The command runs niced by 10.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import Iterable
from typing import Any

from retrotread.config import parse_cue_command

log = logging.getLogger(__name__)


class CueCommand:
    """Runs ``template`` for each event of the chosen types; ``output`` is a runner listener."""

    def __init__(
        self,
        template: str,
        events: Iterable[str],
        *,
        timeout_s: float = 30.0,
        queue_size: int = 4,
    ) -> None:
        self.argv = parse_cue_command(template)
        self.events = frozenset(events)
        self.timeout_s = timeout_s
        self._queue: deque[tuple[str, str]] = deque(maxlen=queue_size)
        self._wake = asyncio.Event()
        self.spoken = 0
        self.failed = 0
        self.dropped = 0
        self._failing = False
        self._dropping = False

    def output(self, kind: str, payload: dict[str, Any]) -> None:
        """Runner listener: never blocks, never raises, never waits for the command."""
        if kind != "event" or payload.get("type") not in self.events:
            return
        text = " ".join(str(payload.get("message") or "").split())
        if not text:
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.warning("cue command busy: dropping older cues (%s)", self.argv[0])
        self._queue.append((str(payload["type"]), text))
        self._wake.set()

    def command_for(self, event_type: str, text: str) -> list[str]:
        return [arg.format(text=text, type=event_type) for arg in self.argv]

    async def run(self) -> None:
        """Speak queued cues one at a time until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                event_type, text = self._queue.popleft()
                await self._speak(self.command_for(event_type, text), text)
            self._dropping = False

    async def _speak(self, argv: list[str], text: str) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: a timeout ends all of it
            )
        except OSError as exc:
            self._failure(f"cannot run {argv[0]!r}: {exc.strerror or exc}")
            return
        _lower_priority(proc.pid)
        try:
            async with asyncio.timeout(self.timeout_s):
                _, err = await proc.communicate((text + "\n").encode())
        except TimeoutError:
            await _end(proc)
            self._failure(f"{argv[0]!r} took longer than {self.timeout_s:g} s; stopped it")
            return
        except BaseException:
            await _end(proc)
            raise
        if proc.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            why = f": {lines[-1][:200]}" if lines else ""
            self._failure(f"{argv[0]!r} exited with status {proc.returncode}{why}")
            return
        self.spoken += 1
        if self._failing:
            self._failing = False
            log.info("cue command works again")

    def _failure(self, message: str) -> None:
        self.failed += 1
        if self._failing:
            log.debug("cue command failed again: %s", message)
            return
        self._failing = True
        log.warning("cue command failed (further failures are logged at debug): %s", message)


def _lower_priority(pgid: int) -> None:
    """Nice the command's process group by 10: speech synthesis must not slow the runner.

    Done from here, just after the start, rather than in the child before exec: that would
    need ``preexec_fn``, which makes Python fork the whole daemon instead of vfork.
    """
    try:
        nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
        os.setpriority(os.PRIO_PGRP, pgid, nice)
    except OSError as exc:  # gone already, or not allowed: it still runs
        log.debug("cue command priority unchanged: %s", exc)


async def _end(proc: asyncio.subprocess.Process) -> None:
    """Kill the command's process group and reap it (bounded: it is SIGKILL)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError, ProcessLookupError):
        async with asyncio.timeout(5):
            await proc.communicate()
