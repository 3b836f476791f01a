"""The command desk: one way in for the phone's commands, whichever transport brought them.

MQTT's ``<base>/cmd`` and the web page's WebSocket hand the desk the same bytes; the desk
parses them (``parse_command``: one contract, one validation), queues them for one worker
(bounded: beyond ``backlog`` each is told to slow down), lets a stop overtake the queue,
carries each out through the daemon's one ``handle`` and answers each with exactly one
result, given to the ``reply`` its transport passed in. A refusal is also told as a
``command_refused`` event to every output listener, so Home Assistant's logbook and the
web page hear why nothing happened, whoever sent it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from retrotread.clock import Clock, RealClock
from retrotread.errors import RetrotreadError
from retrotread.events import COMMAND_REFUSED
from retrotread.mqtt.commands import Command, CommandError, CommandId, Stop, parse_command

log = logging.getLogger(__name__)

SHUTTING_DOWN = "the daemon is shutting down"
REFUSAL_EVENTS_PER_S = 5
"""Refused commands told as events (beyond, the result alone answers: a client that
floods bad commands must not double the daemon's output)."""

Reply = Callable[[dict[str, Any]], None]
"""Takes one ``cmd/result`` payload ``{"id", "action", "ok", "error"}``; must not block."""
Output = Callable[[str, dict[str, Any]], None]
"""An output listener, like the runner's: ``("event", payload)``."""


class Handler(Protocol):
    """What the desk needs from the daemon."""

    async def handle(self, command: Command) -> None:
        """Carry out a command; raise RetrotreadError with a message for the user."""
        ...


class CommandDesk:
    """Parse, queue, carry out and answer commands: every payload gets one result.

    Commands wait in one queue of at most ``backlog`` for one worker; a stop never waits
    behind them (at most ``backlog`` stops at once). The worker starts with the first
    command and ends with ``close``, which answers whatever still waits.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        max_payload_bytes: int = 4096,
        backlog: int = 64,
        clock: Clock | None = None,
    ) -> None:
        self.handler = handler
        self.clock = clock or RealClock()
        self.max_payload_bytes = max_payload_bytes
        self.backlog = backlog
        self.closing = False
        self.received = 0
        self.answered = 0
        self.refused_busy = 0
        self._queue: asyncio.Queue[tuple[Command, Reply]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._stops: set[asyncio.Task[None]] = set()
        self._listeners: list[Output] = []
        self._busy_told = False  # a flood of refusals is told as one event, not thousands
        self._refusals_told: deque[float] = deque()  # when the last few refusal events went

    def add_listener(self, listener: Output) -> None:
        """Hears ``("event", refusal)``; must not block."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ inbound

    def submit(self, data: bytes, reply: Reply) -> None:
        """Take one payload; ``reply`` gets its one result, now or when it is carried out."""
        self.received += 1
        try:
            command = parse_command(data, self.max_payload_bytes)
        except CommandError as exc:
            self._answer(reply, exc.command_id, exc.action, False, exc.message)
            return
        except Exception as exc:  # a bug in the parser must not cost the answer
            failed("reading a command", exc)
            self._answer(reply, None, None, False, internal("reading the command", exc))
            return
        if self.closing:
            self._answer(reply, command.id, command.action, False, SHUTTING_DOWN)
        elif isinstance(command, Stop):
            # Stop is never delayed by other work: it does not queue behind commands.
            if len(self._stops) >= self.backlog:
                self._busy(command, reply)
                return
            self._busy_told = False
            task = asyncio.get_running_loop().create_task(
                self._execute(command, reply), name="stop"
            )
            self._stops.add(task)
            task.add_done_callback(self._stops.discard)
        elif self._queue.qsize() >= self.backlog:
            self._busy(command, reply)
        else:
            self._busy_told = False
            self._queue.put_nowait((command, reply))
            if self._worker is None or self._worker.done():
                self._worker = asyncio.get_running_loop().create_task(self._work(), name="commands")

    def _busy(self, command: Command, reply: Reply) -> None:
        self.refused_busy += 1
        self._answer(
            reply,
            command.id,
            command.action,
            False,
            f"too many commands, slow down ({self.backlog} are already waiting)",
            tell=not self._busy_told,
        )
        self._busy_told = True

    async def _work(self) -> None:
        while True:
            command, reply = await self._queue.get()
            await self._execute(command, reply)

    async def _execute(self, command: Command, reply: Reply) -> None:
        """Carry out one command and give its one result; never raises but CancelledError."""
        try:
            await self.handler.handle(command)
        except asyncio.CancelledError:
            self._answer(reply, command.id, command.action, False, SHUTTING_DOWN)
            raise
        except RetrotreadError as exc:
            message = exc.message if isinstance(exc, CommandError) else str(exc)
            self._answer(reply, command.id, command.action, False, message or type(exc).__name__)
        except Exception as exc:
            failed(f"command {command.action}", exc)
            self._answer(reply, command.id, command.action, False, internal(command.action, exc))
        else:
            self._answer(reply, command.id, command.action, True, None)

    # ------------------------------------------------------------------ outbound

    def _answer(
        self,
        reply: Reply,
        command_id: CommandId,
        action: str | None,
        ok: bool,
        error: str | None,
        tell: bool = True,
    ) -> None:
        self.answered += 1
        payload = result_payload(command_id, action, ok, error)
        try:
            reply(payload)
        except Exception as exc:  # a transport's bug must not cost the others their answer
            failed("answering a command", exc)
        if not ok and tell and self._may_tell_refusal():
            self._tell("event", refusal_event(command_id, action, error))

    def _may_tell_refusal(self) -> bool:
        """At most REFUSAL_EVENTS_PER_S refusal events a second: people, not floods."""
        now = self.clock.monotonic()
        told = self._refusals_told
        while told and now - told[0] >= 1.0:
            told.popleft()
        if len(told) >= REFUSAL_EVENTS_PER_S:
            return False
        told.append(now)
        return True

    def _tell(self, kind: str, payload: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, payload)
            except Exception as exc:
                failed("a command desk listener", exc)

    # ------------------------------------------------------------------ lifecycle

    async def close(self, why: str = SHUTTING_DOWN) -> None:
        """Refuse what comes from now on; end the worker and the stops in flight (each
        answered ``why``) and answer every command still waiting. Safe to call twice."""
        self.closing = True
        tasks = [t for t in (self._worker, *self._stops) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while not self._queue.empty():
            command, reply = self._queue.get_nowait()
            self._answer(reply, command.id, command.action, False, why)


def result_payload(
    command_id: CommandId, action: str | None, ok: bool, error: str | None
) -> dict[str, Any]:
    """The ``cmd/result`` payload (SPEC.md §3)."""
    return {"id": command_id, "action": action, "ok": ok, "error": error}


def refusal_event(command_id: CommandId, action: str | None, error: str | None) -> dict[str, Any]:
    """A refused command told as an event: Home Assistant's event entity and logbook show
    it, and the web page shows it as it comes."""
    what = action.capitalize() if action else "Command"
    return {
        "ts": round(time.time(), 3),
        "type": COMMAND_REFUSED,
        "message": f"{what} refused: {error}",
        "id": command_id,
        "action": action,
        "error": error,
    }


def internal(what: str, exc: BaseException) -> str:
    return (
        f"internal error while {what} ({type(exc).__name__}); the daemon carries on, "
        "check the state before trying again"
    )


def describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def failed(what: str, exc: BaseException, logger: logging.Logger = log) -> None:
    """One line for the operator; the traceback goes with it only at DEBUG."""
    logger.error(
        "%s failed: %s: %s",
        what,
        type(exc).__name__,
        describe(exc),
        exc_info=exc if logger.isEnabledFor(logging.DEBUG) else None,
    )


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""One encoder for every payload: ``json.dumps`` with options builds a new one per call."""


def encode_json(payload: Any) -> bytes:
    """UTF-8 JSON for any payload; what JSON cannot carry is made safe, never raised."""
    try:
        return _ENCODER.encode(payload).encode()
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        return json.dumps(_safe(payload, 0), separators=(",", ":"), ensure_ascii=False).encode()


def _safe(value: Any, depth: int) -> Any:
    if depth > 20:
        return None
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, dict):
        return {str(_safe(str(k), depth + 1)): _safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v, depth + 1) for v in value]
    return _safe(str(value), depth + 1)
