"""The connection supervisor: keep the treadmill link up, with capped, jittered backoff.

A treadmill that is not advertising is listened for rather than retried: the transport
scans until it is heard, and the connect follows at once (SPEC.md §1: found when it is
powered on). The backoff is for a treadmill that advertises but cannot be connected to.
Explicit states; a silence watchdog (no Treadmill Data for ``silence_timeout_s`` while
connected counts as link loss, SPEC.md §2); ``disconnect()`` after every loss, because
bleak keeps its bus socket open until told (BLESIM.md). One supervisor per link: the
treadmill's, and the heart-rate strap's beside it (``what`` names it in the log).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import Any, Protocol

from retrotread.backoff import Backoff
from retrotread.clock import Clock
from retrotread.errors import RetrotreadError
from retrotread.link.events import LinkDown
from retrotread.link.transport import Listening, NotAdvertising

log = logging.getLogger(__name__)


class LinkState(enum.StrEnum):
    STOPPED = "stopped"
    SEARCHING = "searching"  # listening for the treadmill's advertisements
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"


class Supervised(Protocol):
    """A link the supervisor keeps up (the treadmill client, the strap client)."""

    @property
    def transport(self) -> object: ...

    @property
    def is_connected(self) -> bool: ...

    @property
    def last_data_at(self) -> float | None: ...

    async def connect(self) -> Any: ...

    async def disconnect(self) -> None: ...

    def declare_lost(self, reason: str) -> None: ...

    def add_listener(self, listener: Callable[[Any], None]) -> Callable[[], None]: ...


class Supervisor:
    """Runs forever (until cancelled): connect, watch, recover."""

    def __init__(
        self,
        treadmill: Supervised,
        clock: Clock,
        *,
        silence_timeout_s: float = 5.0,
        connect_timeout_s: float = 20.0,
        backoff: Backoff | None = None,
        what: str = "treadmill",
        search: bool = True,
    ) -> None:
        self.what = what
        self.search = search  # listen for a device that is not advertising (else: backoff)
        self.treadmill = treadmill
        self.clock = clock
        self.silence_timeout_s = silence_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff = backoff or Backoff()
        self.state = LinkState.STOPPED
        self.attempts = 0
        self.losses = 0
        self.last_error: str | None = None
        self._state_listeners: list[Callable[[LinkState], None]] = []
        self._down = asyncio.Event()
        self._connected = asyncio.Event()
        treadmill.add_listener(self._on_event)

    def add_state_listener(self, listener: Callable[[LinkState], None]) -> None:
        self._state_listeners.append(listener)

    def _set_state(self, state: LinkState) -> None:
        if state != self.state:
            self.state = state
            if state == LinkState.CONNECTED:
                self._connected.set()
            else:
                self._connected.clear()
            for listener in list(self._state_listeners):
                listener(state)

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def _on_event(self, event: object) -> None:
        if isinstance(event, LinkDown):
            self._down.set()

    async def run(self) -> None:
        failures = 0
        heard = False  # the last search heard it: absent again now is a failure, not news
        try:
            while True:
                self._set_state(LinkState.CONNECTING)
                self.attempts += 1
                self._down.clear()
                try:
                    async with asyncio.timeout(self.connect_timeout_s):
                        await self.treadmill.connect()
                except (RetrotreadError, TimeoutError, OSError) as exc:
                    failures += 1
                    self.last_error = str(exc) or type(exc).__name__
                    # First failure is news; repeats while the treadmill is off are not.
                    level = logging.WARNING if failures == 1 else logging.DEBUG
                    log.log(level, "cannot connect to the %s: %s", self.what, self.last_error)
                    await self.treadmill.disconnect()
                    if isinstance(exc, NotAdvertising) and not heard and self.search:
                        heard = await self._search()
                        if heard:
                            continue  # connect now: it has just been switched on
                    heard = False
                    self._set_state(LinkState.BACKOFF)
                    await self.clock.sleep(self.backoff.delay(failures))
                    continue
                failures = 0
                heard = False
                self.last_error = None
                self._set_state(LinkState.CONNECTED)
                reason = await self._watch()
                # Not CONNECTED any more from this moment, not only once disconnect() returns.
                self._set_state(LinkState.BACKOFF)
                self.losses += 1
                log.warning("%s link lost: %s", self.what, reason)
                await self.treadmill.disconnect()
                await self.clock.sleep(self.backoff.delay(1))
        finally:
            self._set_state(LinkState.STOPPED)

    async def _search(self) -> bool:
        """Listen until the device advertises; False if this transport cannot listen."""
        transport = self.treadmill.transport
        if not isinstance(transport, Listening):
            return False  # the in-process simulator: retried with backoff, as before
        self._set_state(LinkState.SEARCHING)
        try:
            await transport.wait_until_advertising()
        except (RetrotreadError, OSError) as exc:
            self.last_error = str(exc) or type(exc).__name__
            log.debug("cannot listen for the %s: %s", self.what, self.last_error)
            return False
        return True

    async def _watch(self) -> str:
        """Return when the link is lost: dropped, or silent for too long."""
        tick = max(0.01, min(1.0, self.silence_timeout_s / 5))
        while True:
            if self._down.is_set() or not self.treadmill.is_connected:
                return f"the {self.what} dropped the link"
            last = self.treadmill.last_data_at
            if last is not None and self.clock.monotonic() - last > self.silence_timeout_s:
                reason = f"no {self.what} data for {self.silence_timeout_s:g} s"
                self.treadmill.declare_lost(reason)
                return reason
            await self.clock.sleep(tick)
