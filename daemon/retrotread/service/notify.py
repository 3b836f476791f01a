"""systemd notification (READY=1, STATUS=, WATCHDOG=1, STOPPING=1) over $NOTIFY_SOCKET.

A datagram to a unix socket is the whole protocol; no library needed, and nothing is sent
when the daemon is not run by systemd.
"""

from __future__ import annotations

import logging
import os
import socket

from retrotread.clock import Clock, RealClock

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_usec / 1e6 if watchdog_usec else None
        self._sock: socket.socket | None = None
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.last_status: str | None = None

    @classmethod
    def from_env(cls) -> SystemdNotifier:
        addr = os.environ.get("NOTIFY_SOCKET")
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        watchdog = (
            int(usec) if usec and usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        )
        return cls(addr, watchdog)

    def send(self, message: str) -> None:
        if self._sock is None or not self.address:
            return
        target = self.address
        if target.startswith("@"):  # abstract namespace
            target = "\0" + target[1:]
        try:
            self._sock.sendto(message.encode(), target)
        except OSError as exc:
            log.debug("sd_notify %r failed: %s", message, exc)

    def ready(self, status: str) -> None:
        self.last_status = status
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        if status != self.last_status:
            self.last_status = status
            self.send(f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1\nSTATUS=stopping")

    async def watchdog_loop(self, clock: Clock | None = None) -> None:
        """WATCHDOG=1 at half the interval systemd asked for, from the main loop."""
        if self.watchdog_s is None:
            return
        clock = clock or RealClock()
        while True:
            self.send("WATCHDOG=1")
            await clock.sleep(self.watchdog_s / 2)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
