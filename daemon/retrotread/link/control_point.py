"""The Fitness Machine Control Point as one explicit queue (FTMS.md §8.3, §8.4).

- Requests wait in a queue and go on the wire one at a time; each procedure ends with
  its Response Code indication (rule 3: a write during a procedure is refused with 0xFE).
- Control is asked for (Request Control, 0x00) before the first request of a link and
  again after it was lost (result 0x05, status 0xFF, a reconnect).
- An urgent request (stop, pause) drops every request still waiting (they fail with
  ``Superseded``) and goes next; a stop also drops waiting pauses. A procedure already
  on the wire cannot be recalled: it is given at most ``urgent_wait_s`` more to answer.
- A stop or pause itself, and the Request Control before it, wait ``urgent_wait_s`` at
  most: a stop that cannot be confirmed quickly is sent again after a reconnect.
- No answer within ``timeout_s``, or ATT 0xFE / 0xFD on a write: the link is no longer
  usable for control (rule 4). Everything waiting fails and ``on_broken`` is called; the
  owner drops the link so that it is re-established.

All waiting is on the injected clock, so every timeout path can be tested.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from retrotread.clock import Clock
from retrotread.errors import (
    ATT_CCCD_IMPROPERLY_CONFIGURED,
    ATT_PROCEDURE_IN_PROGRESS,
    AttError,
    ControlError,
    LinkError,
)
from retrotread.ftms import control as cp

log = logging.getLogger(__name__)

T = TypeVar("T")


RECANCEL_S = 0.5
"""How often a write that holds on past its deadline is cancelled again."""


class ControlRefused(ControlError):
    """The treadmill does not let us take control (result 0x05, or Request Control refused)."""


class CommandTimeout(ControlError):
    """No Response Code indication arrived in time (FTMS.md §8.3 rule 4)."""


class Superseded(ControlError):
    """A queued request dropped because a stop or pause came first."""


Writer = Callable[[bytes], Awaitable[None]]


@dataclass
class _Job:
    request: bytes
    future: asyncio.Future[cp.ControlResponse]
    urgent: bool
    dropped: str | None = None  # why it must not go out after all (not yet on the wire)
    written: bool = False  # its own request is on the wire

    @property
    def is_stop(self) -> bool:
        return self.request[:2] == b"\x08\x01"


class ControlPoint:
    """One link's control point; ``open`` after connect, ``close`` when the link goes."""

    def __init__(
        self,
        write: Writer,
        clock: Clock,
        *,
        timeout_s: float = 5.0,
        urgent_wait_s: float = 1.5,
        on_broken: Callable[[str], None] = lambda reason: None,
        on_write: Callable[[bytes], None] = lambda request: None,
    ) -> None:
        self._write = write
        self.clock = clock
        self.timeout_s = timeout_s
        self.urgent_wait_s = urgent_wait_s
        self.on_broken = on_broken
        self.on_write = on_write
        self.has_control = False
        self._queue: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._hurry: Callable[[], None] | None = None  # the running wait's: a stop/pause waits
        self._urgent_since: float | None = None
        self._reply: asyncio.Future[cp.ControlResponse] | None = None
        self._reply_op: int | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed_reason: str | None = "not connected"
        self._revocations = 0
        self._limit_s = timeout_s
        self._current: _Job | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def is_open(self) -> bool:
        return self._closed_reason is None

    def open(self) -> None:
        """A fresh link: no control yet, an empty queue, a worker."""
        self._closed_reason = None
        self.has_control = False
        self._worker = asyncio.get_running_loop().create_task(
            self._work(), name="ftms-control-point"
        )

    def close(self, reason: str) -> None:
        """The link is gone: everything waiting or on the wire fails with LinkError."""
        if self._closed_reason is None:
            self._closed_reason = reason
        self.has_control = False
        error = LinkError(f"link lost while waiting for the treadmill: {reason}")
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(error)
            self._reply.exception()  # its waiter may be cancelled below: no unretrieved warning
        self._fail_queued(lambda job: LinkError(f"{_name(job.request)}: {reason}"))
        worker, self._worker = self._worker, None
        if worker is not None and worker is not asyncio.current_task():
            # The request being carried out fails here: its worker ends without a word.
            current = self._current
            if current is not None and not current.future.done():
                current.future.set_exception(LinkError(f"{_name(current.request)}: {reason}"))
                current.future.exception()
            worker.cancel()

    def control_lost(self) -> None:
        """Status 0xFF or Reset: the next request asks for control first.

        A request on the wire when control was taken back is not retried with a fresh
        Request Control: whoever took it (the walker at the console) is not fought.
        """
        self.has_control = False
        self._revocations += 1

    def withdraw(self, future: asyncio.Future[cp.ControlResponse], why: str) -> bool:
        """Take back one request if it is not on the wire yet (it fails with ``Superseded``).

        True when it will not reach the treadmill; False when it is (or was) on the wire:
        then it keeps its future, whose result still tells what the treadmill did.
        """
        for job in list(self._queue):
            if job.future is future:
                self._queue.remove(job)
                if not future.done():
                    future.set_exception(Superseded(_name(job.request), why))
                    future.exception()
                return True
        current = self._current
        if current is not None and current.future is future:
            if current.written:
                return False
            current.dropped = why
            return True
        # Finished, or not ours: taken back only if it surely never reached the wire.
        if not future.done():
            return False
        return future.cancelled() or isinstance(future.exception(), Superseded)

    def cancel_queued(self, why: str) -> None:
        """Drop every request not yet on the wire: ``Superseded``.

        That includes the one being carried out if only its Request Control is out yet.
        """
        self._fail_queued(lambda job: Superseded(_name(job.request), why))
        if self._current is not None and not self._current.written:
            self._current.dropped = why

    # ------------------------------------------------------------------ requests

    def submit(self, request: bytes, *, urgent: bool = False) -> asyncio.Future[cp.ControlResponse]:
        """Queue ``request``; the future gets its response (any result code) or an error.

        Errors: LinkError (not connected, link lost), Superseded, CommandTimeout,
        ControlRefused (0x05 even after asking for control again), ControlError (ATT).
        """
        future: asyncio.Future[cp.ControlResponse] = asyncio.get_running_loop().create_future()
        if self._closed_reason is not None:
            # SPEC.md §2: commands are never queued while disconnected.
            future.set_exception(
                LinkError(f"{_name(request)}: treadmill not connected ({self._closed_reason})")
            )
            return future
        job = _Job(bytes(request), future, urgent)
        if urgent:
            stop = job.is_stop
            self._fail_queued(
                lambda j: Superseded(_name(j.request), f"superseded by {_name(request)}"),
                keep=lambda j: j.is_stop and not stop,  # a pause never drops a waiting stop
            )
            # Behind a waiting stop, ahead of everything else.
            at = sum(1 for j in self._queue if j.is_stop)
            self._queue.insert(at, job)
            current = self._current
            if current is not None and not current.urgent and not current.written:
                current.dropped = f"superseded by {_name(request)}"
            if self._reply is not None and self._urgent_since is None:
                self._urgent_since = self.clock.monotonic()
                if self._hurry is not None:
                    self._hurry()  # the procedure on the wire now has the shorter deadline
        else:
            self._queue.append(job)
        self._wakeup.set()
        return future

    def indication(self, response: cp.ControlResponse) -> None:
        """A Response Code indication arrived (called from the notification callback)."""
        reply = self._reply
        if reply is not None and not reply.done() and response.request_op == self._reply_op:
            reply.set_result(response)
        else:
            log.debug("unexpected control point indication for op 0x%02x", response.request_op)

    def _fail_queued(
        self,
        error: Callable[[_Job], Exception],
        keep: Callable[[_Job], bool] = lambda job: False,
    ) -> None:
        kept: deque[_Job] = deque()
        while self._queue:
            job = self._queue.popleft()
            if keep(job):
                kept.append(job)
            elif not job.future.done():
                job.future.set_exception(error(job))
                job.future.exception()  # nobody may be waiting any more: no warning
        self._queue = kept

    # ------------------------------------------------------------------ the worker

    async def _work(self) -> None:
        while self._closed_reason is None:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            job = self._queue.popleft()
            if job.future.done():  # the caller gave up
                continue
            if not any(j.urgent for j in self._queue):
                self._urgent_since = None
            # A stop or pause that is not answered quickly is better sent again on a fresh
            # link than waited for: its own procedures get the short wait too.
            self._limit_s = (
                min(self.timeout_s, self.urgent_wait_s) if job.urgent else self.timeout_s
            )
            self._current = job
            try:
                response = await self._carry_out(job)
            except Exception as exc:
                if not job.future.done():
                    job.future.set_exception(exc)
                    job.future.exception()
            else:
                if not job.future.done():
                    job.future.set_result(response)
            finally:
                self._current = None

    async def _carry_out(self, job: _Job) -> cp.ControlResponse:
        """Request Control when needed, then the request (FTMS.md §8.4 steps 4 and 8)."""
        request = job.request
        revocations = self._revocations
        refused: cp.ControlResponse | None = None
        if not self.has_control:
            refused = await self._request_control()
        if job.dropped is not None or job.future.done():
            # A stop or pause arrived (or the caller changed its mind) while we asked for
            # control: this request never goes out.
            raise Superseded(_name(request), job.dropped or "cancelled")
        job.written = True
        response = await self._procedure(request)
        if (
            response.result == cp.ResultCode.CONTROL_NOT_PERMITTED
            and refused is None
            and revocations == self._revocations
        ):
            # Control lost without a 0xFF status: ask once more, then try again.
            self.has_control = False
            refused = await self._request_control()
            if refused is None:
                response = await self._procedure(request)
        if response.result == cp.ResultCode.CONTROL_NOT_PERMITTED:
            self.has_control = False
            raise ControlRefused(
                _name(request), "the treadmill does not give us control", response.result
            )
        return response

    async def _request_control(self) -> cp.ControlResponse | None:
        """None when granted; the refusal otherwise.

        FTMS.md §12 #12/#16: some units refuse Request Control yet obey commands, so a
        refusal is not final here: the request itself decides.
        """
        response = await self._procedure(cp.request_control())
        if response.ok:
            self.has_control = True
            return None
        return response

    async def _procedure(self, request: bytes) -> cp.ControlResponse:
        """One write and its indication, both within the deadline.

        The write runs in the worker's own step, not in a task of its own: the request is
        on its way to the treadmill in the step that took it from the queue (a task would
        start it a loop turn later).
        """
        name = _name(request)
        started = self.clock.monotonic()
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[cp.ControlResponse] = loop.create_future()
        self._reply, self._reply_op = reply, request[0]
        try:
            self.on_write(request)
            try:
                await self._within_deadline(self._write(request), started, name)
            except AttError as exc:
                if exc.code in (ATT_PROCEDURE_IN_PROGRESS, ATT_CCCD_IMPROPERLY_CONFIGURED):
                    why = (
                        "another control procedure is in progress"
                        if exc.code == ATT_PROCEDURE_IN_PROGRESS
                        else "control point indications are not enabled"
                    )
                    self._break(f"{name}: {why}")
                    raise ControlError(name, why, None) from exc
                raise ControlError(name, str(exc)) from exc
            return await self._within_deadline(reply, started, name)
        finally:
            self._reply, self._reply_op = None, None
            if not reply.done():
                reply.cancel()

    def _deadline(self, started: float) -> float:
        deadline = started + self._limit_s
        if self._urgent_since is not None:
            deadline = min(deadline, max(started, self._urgent_since) + self.urgent_wait_s)
        return deadline

    async def _within_deadline(self, aw: Awaitable[T], started: float, name: str) -> T:
        """Await ``aw`` in this task until the procedure's deadline, shorter while a stop
        or pause waits; past it, CommandTimeout and the link is given up (FTMS rule 4).

        The way ``asyncio.timeout`` works, on the daemon's clock: a timer that, when the
        deadline has come, cancels this task, and that cancellation (not one from outside,
        such as ``close``) becomes the timeout here. ``submit`` calls ``_hurry`` when an
        urgent request arrives, which moves the timer to the shorter deadline.

        The deadline holds whatever the transport's write does with the cancellation: one
        that swallows it is cancelled again every ``RECANCEL_S`` until it ends, and any
        error that comes out once the deadline has passed is the timeout (a write that
        turned the cancellation into another error would otherwise leave a cancellation
        counted against the worker, and the next timeout would end it for good).
        """
        me = asyncio.current_task()
        assert me is not None
        if self._deadline(started) <= self.clock.monotonic():
            if inspect.iscoroutine(aw):
                aw.close()  # never started: nothing of it reached the treadmill
            raise self._timed_out(name, started)
        loop = asyncio.get_running_loop()
        cancels = 0  # ours, each to be taken back with uncancel
        timer: asyncio.Future[None] | None = None

        def expire() -> None:
            nonlocal cancels, timer
            if self._hurry is not arm:  # no longer waiting here
                return
            cancels += 1
            me.cancel()
            if timer is not None:
                timer.cancel()
            timer = self.clock.timer(RECANCEL_S)  # in case the write does not let go
            timer.add_done_callback(again)

        def again(t: asyncio.Future[None]) -> None:
            if t is timer and not t.cancelled():
                expire()

        def arm() -> None:
            nonlocal timer
            if cancels:
                return  # past the deadline already
            if timer is not None:
                timer.cancel()
                timer = None
            remaining = self._deadline(started) - self.clock.monotonic()
            if remaining > 0:
                timer = self.clock.timer(remaining)
                timer.add_done_callback(rang)
            elif asyncio.current_task() is me:
                loop.call_soon(expire)  # a task cannot be cancelled at its own await yet
            else:
                expire()

        def rang(t: asyncio.Future[None]) -> None:
            if t is timer and not t.cancelled():
                arm()  # looks at the deadline again: it may have moved

        self._hurry = arm
        arm()
        try:
            result = await aw
        except BaseException as exc:
            if cancels:
                left = 0
                for _ in range(cancels):
                    left = me.uncancel()
                if left == 0:  # our timer's, nobody else's
                    cause = None if isinstance(exc, asyncio.CancelledError) else exc
                    raise self._timed_out(name, started) from cause
            raise
        else:
            for _ in range(cancels):
                me.uncancel()  # done as the deadline came: the answer counts
            return result
        finally:
            self._hurry = None
            if timer is not None:
                timer.cancel()

    def _timed_out(self, name: str, started: float) -> CommandTimeout:
        self._break(f"{name}: no response within {self.clock.monotonic() - started:.1f} s")
        return CommandTimeout(name, "no response from the treadmill")

    def _break(self, reason: str) -> None:
        """FTMS rule 4: after a timeout, no more procedures on this link."""
        log.warning("control point unusable (%s): dropping the link", reason)
        self._fail_queued(lambda job: LinkError(f"{_name(job.request)}: {reason}"))
        self._closed_reason = reason
        self.on_broken(reason)


def _name(request: bytes) -> str:
    return cp.op_name(request[0]) if request else "empty request"
