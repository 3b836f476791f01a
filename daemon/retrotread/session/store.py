"""The sessions directory as a whole: is it usable, when did its newest session start,
is the wall clock believable, and which old logs retention removes."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from retrotread.session.log import list_sessions

log = logging.getLogger(__name__)

RELEASED = datetime(2026, 11, 1, tzinfo=UTC)
"""This version was built after this: a wall clock reading earlier is wrong (a board with
no real-time clock before NTP has set it). Moved forward with each release."""

SAME_TIME_S = 300.0
"""Daemons sharing a directory start sessions close together; only an earlier start by
more than this is taken as a wrong clock."""

MIN_FREE_BYTES = 16_000_000
"""Below this a session (about 2 MB per half hour) may not fit."""


# ---------------------------------------------------------------------------- the clock


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def newest_session(directory: Path) -> tuple[datetime, float] | None:
    """(start, duration in seconds) of the newest readable log in ``directory``."""
    for path in reversed(list_sessions(directory)):
        found = _start_and_length(path)
        if found is not None:
            return found
    return None


def _start_and_length(path: Path) -> tuple[datetime, float] | None:
    """The header's start and the last record's ``t``, reading only the file's two ends."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(1 << 16)
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - (1 << 14)))
            tail = fh.read().splitlines()
        header = json.loads(first)
        started = _aware(datetime.fromisoformat(str(header["started_at"]).replace("Z", "+00:00")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    length = 0.0
    for line in reversed(tail):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("type") == "footer":
            summary = obj.get("summary") or {}
            d = summary.get("duration_s") if isinstance(summary, dict) else None
            if isinstance(d, int | float):
                length = float(d)
                break
        elif isinstance(obj, dict) and isinstance(obj.get("t"), int | float):
            length = float(obj["t"])
            break
    return started, length


def clock_is_plausible(
    now: datetime, newest_start: datetime | None = None, floor: datetime | None = None
) -> bool:
    """Not before this release, nor well before the newest session on disk."""
    now = _aware(now)
    if now < (floor or RELEASED):
        return False
    return newest_start is None or now >= _aware(newest_start) - timedelta(seconds=SAME_TIME_S)


def plausible_start(
    directory: Path, started: datetime, floor: datetime | None = None
) -> tuple[datetime, dict[str, Any] | None]:
    """The date to give a session starting now, and a note for its header when the wall
    clock was not believed (None when it was)."""
    started = _aware(started)
    floor = floor or RELEASED
    newest = newest_session(directory)
    newest_start = newest[0] if newest else None
    if clock_is_plausible(started, newest_start, floor):
        return started, None
    if newest is not None and newest[0] + timedelta(seconds=newest[1]) >= floor:
        dated = newest[0] + timedelta(seconds=newest[1] + 1)
        reason = (
            f"the wall clock said {_iso(started)}, before the newest session on disk "
            f"({_iso(newest[0])}); dated just after that one"
        )
    else:
        dated = max(floor, newest[0] + timedelta(seconds=newest[1] + 1) if newest else floor)
        reason = (
            f"the wall clock said {_iso(started)}, before this version of retrotread was "
            f"built ({floor:%Y-%m-%d}); dated {_iso(dated)}"
        )
    log.warning("session dated %s, not %s: %s", _iso(dated), _iso(started), reason)
    return dated.replace(microsecond=0), {
        "implausible": True,
        "wall_clock": _iso(started),
        "reason": reason,
    }


def _iso(d: datetime) -> str:
    return _aware(d).astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------- the directory


@dataclass(frozen=True)
class DirCheck:
    """What check_sessions_dir found; ``problem`` is one line, or None when all is well."""

    path: Path
    exists: bool
    free_bytes: int | None
    problem: str | None


def check_sessions_dir(
    path: Path, min_free_bytes: int = MIN_FREE_BYTES, *, probe: bool = True
) -> DirCheck:
    """Can session logs go to ``path``: exists or can be made, writable, space left.

    Changes nothing on disk but a probe file it removes at once (``probe=False``: asks
    the file system instead, for checks repeated often on an SD card).
    """
    if path.exists() and not path.is_dir():
        return DirCheck(path, True, None, f"sessions directory {path} is not a directory")
    if not path.exists():
        parent = _nearest_existing(path)
        if parent is None or not parent.is_dir():
            where = parent or path
            return DirCheck(
                path,
                False,
                None,
                f"sessions directory {path} cannot be made: {where} is not a directory",
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            return DirCheck(
                path,
                False,
                None,
                f"sessions directory {path} does not exist and cannot be made: "
                f"{_why_not_writable(parent)}",
            )
        return _space(DirCheck(path, False, _free(parent), None), min_free_bytes)
    if not probe:
        if not os.access(path, os.W_OK | os.X_OK):
            return DirCheck(
                path,
                True,
                _free(path),
                f"sessions directory {path} is not writable: {_why_not_writable(path)}",
            )
        return _space(DirCheck(path, True, _free(path), None), min_free_bytes)
    try:
        fd, name = tempfile.mkstemp(prefix=".retrotread-probe-", dir=path)
    except OSError as exc:
        return DirCheck(
            path,
            True,
            _free(path),
            f"sessions directory {path} is not writable: {_describe_os_error(exc)}",
        )
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return _space(DirCheck(path, True, _free(path), None), min_free_bytes)


def _space(check: DirCheck, min_free_bytes: int) -> DirCheck:
    free = check.free_bytes
    if free is not None and free < min_free_bytes:
        return DirCheck(
            check.path,
            check.exists,
            free,
            f"sessions directory {check.path} has only {_mb(free)} free "
            f"(a session needs about 2 MB per half hour; keep {_mb(min_free_bytes)} free)",
        )
    return check


def _nearest_existing(path: Path) -> Path | None:
    for p in path.absolute().parents:
        if p.exists():
            return p
    return None


def _free(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _why_not_writable(path: Path) -> str:
    try:
        st = os.statvfs(path)
        if st.f_flag & os.ST_RDONLY:
            return f"{path} is on a read-only file system"
    except OSError:
        pass
    return f"{path} is not writable (permission denied)"


def describe_pruned(pruned: Pruned, directory: Path, days: int) -> str:
    """One line for the log each time retention runs."""
    if pruned.skipped:
        return f"retention ({days} days) skipped in {directory}: {pruned.skipped}"
    return (
        f"retention ({days} days): removed {len(pruned.removed)} session log(s) from "
        f"{directory}, kept {pruned.kept}"
    )


def _describe_os_error(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "it is on a read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 10e6 else f"{n / 1e6:.0f} MB"


# ---------------------------------------------------------------------------- retention


@dataclass(frozen=True)
class Pruned:
    removed: list[Path]
    kept: int
    skipped: str | None = None


def prune_sessions(
    directory: Path,
    retention_days: int,
    now: datetime,
    keep: Iterable[Path] = (),
    floor: datetime | None = None,
) -> Pruned:
    """Remove logs that started more than ``retention_days`` before ``now``.

    Never the logs in ``keep`` (the session being recorded), never the newest log, and
    nothing at all while the clock is not believable (a clock far off would age them all).
    """
    paths = list_sessions(directory)
    newest = newest_session(directory)
    if not clock_is_plausible(now, newest[0] if newest else None, floor):
        return Pruned([], len(paths), "the wall clock is not believable")
    cutoff = _aware(now) - timedelta(days=retention_days)
    keep_set = {p.resolve() for p in keep}
    removed: list[Path] = []
    for path in paths[:-1]:  # the newest is always kept
        if path.resolve() in keep_set:
            continue
        started = _start_of(path)
        if started is None or started >= cutoff:
            continue
        try:
            path.unlink()
        except OSError as exc:
            log.warning("retention: cannot remove %s: %s", path, exc.strerror or exc)
            continue
        removed.append(path)
    return Pruned(removed, len(paths) - len(removed))


def _start_of(path: Path) -> datetime | None:
    found = _start_and_length(path)
    if found is not None:
        return found[0]
    try:  # unreadable logs age by their name (YYYYmmdd-HHMMSS-...), then their mtime
        return datetime.strptime(path.name[:15], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None
