"""A private D-Bus daemon for the fake BlueZ (BLESIM.md): no root, no system bus."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from retrotread.errors import RetrotreadError

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


class DBusUnavailable(RetrotreadError):
    """dbus-daemon is not installed (Debian package ``dbus``)."""


class PrivateBus:
    """``dbus-daemon`` on a socket in a temp dir; ``address`` is its bus address."""

    def __init__(self) -> None:
        self.address = ""
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.bin_dir: Path | None = None

    def start(self) -> str:
        binary = shutil.which("dbus-daemon")
        if binary is None:
            raise DBusUnavailable("dbus-daemon is not installed (Debian package: dbus)")
        self._tmp = tempfile.TemporaryDirectory(prefix="retrotread-bus-")
        root = Path(self._tmp.name)
        conf = root / "bus.conf"
        conf.write_text(CONFIG.format(socket=root / "bus.sock"))
        self._proc = subprocess.Popen(
            [binary, "--config-file", str(conf), "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().decode().strip()
        self._proc.stdout.close()
        if not line:
            self.stop()
            raise DBusUnavailable("dbus-daemon did not start")
        self.address = line
        self.bin_dir = _bluetoothctl_stub(root)
        return line

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

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
        self.stop()


def _bluetoothctl_stub(root: Path) -> Path | None:
    """bleak checks ``bluetoothctl --version`` once; without BlueZ installed, answer 5.66."""
    if shutil.which("bluetoothctl"):
        return None
    bin_dir = root / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "bluetoothctl"
    stub.write_text("#!/bin/sh\necho 5.66\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir
