"""Real file-system trouble for tests: a small tmpfs that fills up, goes read-only, comes back.

Mounting needs root (CAP_SYS_ADMIN); where that is missing the tests that need it skip.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


class SmallFs:
    """A tmpfs of ``size`` bytes mounted at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Write a file until the disk is full (ENOSPC): nothing more fits."""
        with open(self.filler, "ab", buffering=0) as fh:
            for size in (4096, 1):  # then the last partial block
                try:
                    while True:
                        fh.write(b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise

    def free(self) -> None:
        self.filler.unlink()

    def read_only(self, on: bool) -> None:
        """Remount read-only or back (the kernel refuses while a file is open to write)."""
        mode = "remount,ro" if on else "remount,rw"
        subprocess.run(["mount", "-o", mode, str(self.path)], check=True, capture_output=True)


@contextlib.contextmanager
def small_fs(path: Path, size: int = 2 * 1024 * 1024) -> Iterator[SmallFs]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield SmallFs(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
