"""A private D-Bus daemon for the fake BlueZ (BLESIM.md): no root, no system bus.

``PrivateBus`` runs ``dbus-daemon`` on a unix socket in a temp dir and gives its address;
point bleak at it with ``DBUS_SYSTEM_BUS_ADDRESS`` (``environ()`` has the variables, also
for a child process). Use it as a context manager, sync (scripts) or async (tests)::

    async with PrivateBus() as bus:
        fake = FakeBlueZ()
        await fake.start(bus.address)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
from pathlib import Path
from types import TracebackType

from retrotread.errors import RetrotreadError
from retrotread.servers import ServerError, ServerProcess

# A system-type bus (bleak connects with BusType.SYSTEM) that anyone may own names on,
# send to and eavesdrop on: it lives in a private temp dir and exists for one test/run.
CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""

START_TIMEOUT_S = 10.0
BLUEZ_VERSION_FOR_STUB = "5.66"


class DBusUnavailable(RetrotreadError):
    """``dbus-daemon`` is not installed (Debian package ``dbus``) or would not start."""


class PrivateBus:
    """``dbus-daemon`` on a socket in a temp dir; ``address`` is its bus address once started.

    ``bin_dir`` is a directory to put first on PATH (it holds a ``bluetoothctl`` stub) or
    None when a real ``bluetoothctl`` is installed.
    """

    def __init__(self) -> None:
        self.address = ""
        self.bin_dir: Path | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: ServerProcess | None = None

    def start(self) -> str:
        """Start the daemon and return its address; raises DBusUnavailable."""
        binary = shutil.which("dbus-daemon")
        if binary is None:
            raise DBusUnavailable(
                "dbus-daemon is not installed (Debian package: dbus); "
                "the fake BlueZ needs it for a private bus"
            )
        self._tmp = tempfile.TemporaryDirectory(prefix="retrotread-bus-")
        root = Path(self._tmp.name)
        sock = root / "bus.sock"
        conf = root / "bus.conf"
        conf.write_text(CONFIG.format(socket=sock))
        self._server = ServerProcess(
            "dbus-daemon",
            [binary, "--config-file", str(conf), "--nofork", "--nopidfile"],
            sock,
            errors=root / "dbus-daemon.err",
            start_timeout_s=START_TIMEOUT_S,
        )
        try:
            self._server.start()
        except ServerError as exc:
            self.stop()
            raise DBusUnavailable(str(exc)) from None
        self.address = f"unix:path={sock}"
        self.bin_dir = bluetoothctl_stub(root / "bin")
        return self.address

    def stop(self) -> None:
        """Stop the daemon and delete the temp dir; safe to call twice."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self.address = ""
        self.bin_dir = None

    def environ(self) -> dict[str, str]:
        """Variables that point bleak (in this or a child process) at this bus."""
        env = {"DBUS_SYSTEM_BUS_ADDRESS": self.address}
        if self.bin_dir is not None:
            env["PATH"] = f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return env

    def __enter__(self) -> PrivateBus:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> PrivateBus:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)


def bluetoothctl_stub(bin_dir: Path) -> Path | None:
    """Write a ``bluetoothctl`` that prints 5.66 into ``bin_dir``; return the dir for PATH.

    bleak runs ``bluetoothctl --version`` once per process and logs a warning when it is
    missing (BLESIM.md); the stub keeps that quiet. Returns None, and writes nothing, when
    a real ``bluetoothctl`` is on PATH.
    """
    if shutil.which("bluetoothctl"):
        return None
    bin_dir.mkdir(parents=True, exist_ok=True)
    stub = bin_dir / "bluetoothctl"
    stub.write_text(f"#!/bin/sh\necho {BLUEZ_VERSION_FOR_STUB}\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir
