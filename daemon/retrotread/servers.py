"""Helper servers as child processes (Mosquitto, dbus-daemon): start one, poll until its
socket answers, stop it. Used by ``demo``, the fake BlueZ's private bus and the tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from retrotread.errors import RetrotreadError

Address = tuple[str, int] | Path
"""A TCP (host, port) or a unix socket path."""


class ServerError(RetrotreadError):
    """A helper server is not installed, exited at once, or never answered."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(address: Address) -> bool:
    family = socket.AF_UNIX if isinstance(address, Path) else socket.AF_INET
    with socket.socket(family) as s:
        return s.connect_ex(str(address) if isinstance(address, Path) else address) == 0


class ServerProcess:
    """``argv`` run as a child; ready once ``address`` accepts a connection.

    ``errors`` is a file for its stderr, whose last line explains a failed start.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        address: Address,
        *,
        errors: Path | None = None,
        start_timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.address = address
        self.errors = errors
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and return once it answers; ServerError (one line) otherwise."""
        err = open(self.errors, "ab") if self.errors else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        finally:
            if not isinstance(err, int):
                err.close()
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                why = self._last_error()
                self.stop()
                raise ServerError(f"{self.name} exited at once" + (f": {why}" if why else ""))
            if _answers(self.address):
                return
            time.sleep(0.01)
        self.stop()
        raise ServerError(f"{self.name} did not answer within {self.start_timeout_s:g} s")

    def _last_error(self) -> str:
        if self.errors is None or not self.errors.exists():
            return ""
        lines = self.errors.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def stop(self) -> None:
        """Terminate it (kill after 5 s); safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def mosquitto_binary() -> str:
    """Where Mosquitto is; ServerError saying how to install it when it is not."""
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise ServerError(
            "Mosquitto is not installed: run `bash scripts/bootstrap demo` (installs it), "
            "or `sudo apt-get install mosquitto`"
        )
    return found


def mosquitto(workdir: Path, port: int, extra: Sequence[str] = ()) -> ServerProcess:
    """A throwaway Mosquitto on 127.0.0.1:``port``, its config and log in ``workdir``.

    ``extra`` are more lines for mosquitto.conf (authentication, TLS); without any that
    allow or refuse anonymous clients, anonymous clients are allowed.
    """
    lines = [
        f"listener {port} 127.0.0.1",
        "persistence false",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        # Each MQTT packet leaves at once: with Nagle's algorithm the broker holds one back
        # until the subscriber's (delayed, up to 40 ms) ACK of the previous one.
        "set_tcp_nodelay true",
        *extra,
    ]
    if not any(line.startswith("allow_anonymous") for line in extra):
        lines.append("allow_anonymous true")
    if os.geteuid() == 0:
        # Run as root, mosquitto would switch to its own user, who cannot read our files.
        lines.append("user root")
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    return ServerProcess(
        "Mosquitto",
        [mosquitto_binary(), "-c", str(conf)],
        ("127.0.0.1", port),
        errors=workdir / "mosquitto.log",
    )
