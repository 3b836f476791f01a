"""The session log (SPEC.md §5): raw-first JSONL, flushed per line, fsynced at boundaries.

Line 1 is the header; then records with ``t`` (seconds since start) of type rx, tx,
telemetry, event, state, cmd; the last line is the footer. A log with no footer is an
interrupted session, and the reader accepts one cut off anywhere, up to its last complete
line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from retrotread.errors import RetrotreadError

log = logging.getLogger(__name__)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""One encoder for every line (``json.dumps`` with options builds a new one per call)."""

SCHEMA = 1
Outcome = Literal[
    "completed", "finished_early", "stopped", "stopped_by_treadmill", "interrupted", "error"
]
OUTCOMES: tuple[str, ...] = (
    "completed",
    "finished_early",
    "stopped",
    "stopped_by_treadmill",
    "interrupted",
    "error",
)
RECORD_TYPES = ("rx", "tx", "telemetry", "event", "state", "cmd", "gap")


class SessionLogError(RetrotreadError):
    """A session log that cannot be read at all (missing, not a session log)."""


def log_filename(started: datetime, profile: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", profile).strip("-") or "session"
    return f"{started.strftime('%Y%m%d-%H%M%S')}-{safe}.jsonl"


RESERVE_NAME = ".retrotread-reserve"
RESERVE_BYTES = 256 * 1024
"""Space kept aside in the sessions directory so a log can still be closed on a full disk."""

CHECK_EVERY_S = 0.5
"""How often, in session time, a record first looks whether its log file was deleted."""

RecordingListener = Callable[["SessionLogWriter"], None]
"""Called when ``recording`` changes; must not block or raise."""


class SessionLogWriter:
    """Append-only writer that never stops the session, and never loses data silently.

    A record that cannot be written (disk full, read-only, I/O error) is counted, the file
    is cut back to its last complete line, and ``recording`` goes false (listeners are
    told). Every later record tries again; the first that succeeds is preceded by a
    ``gap`` record ``{"from", "to", "lost", "error"}`` (session seconds). A log file deleted
    under the writer is recreated from what the writer still holds open, losing nothing.
    On a full disk the footer still goes in, using a small reserve file kept beside the
    logs for that purpose.
    """

    def __init__(self, path: Path, t0: float) -> None:
        self.path = path
        self.t0 = t0
        self.failed: str | None = None
        """The current write problem, or None while recording."""
        self.lines = 0
        self.lost = 0
        """Records lost in the current gap."""
        self.lost_total = 0
        self.gaps: list[dict[str, Any]] = []
        self.closed = False
        self.started_at: datetime | None = None
        self.clock_note: dict[str, Any] | None = None
        self._gap_from: float | None = None
        self._orphaned = False
        self._last_error: str | None = None
        self._size = 0
        self._last_t = 0.0
        self._checked_t: float | None = None  # session time the file was last looked for
        self._listeners: list[RecordingListener] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(
            path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o640
        )

    @classmethod
    def create(
        cls,
        directory: Path,
        started: datetime,
        profile: str,
        t0: float,
        *,
        floor: datetime | None = None,
    ) -> SessionLogWriter:
        """A new log in ``directory`` named per SPEC.md §5 (suffixed if the name is taken).

        ``started`` is the wall clock's word for now. When it cannot be true (before this
        release, or before the newest session on disk: a board with no clock, before NTP)
        the log is dated just after the newest session instead and its header says so.
        Raises SessionLogError, one line, when the directory cannot take a log.
        """
        from retrotread.session.store import plausible_start

        try:
            directory.mkdir(parents=True, exist_ok=True)
            dated, note = plausible_start(directory, started, floor)
            name = log_filename(dated, profile)
            path = directory / name
            n = 1
            while path.exists():
                n += 1
                path = directory / name.replace(".jsonl", f"-{n}.jsonl")
            writer = cls(path, t0)
        except OSError as exc:
            raise SessionLogError(_cannot_record(directory, exc)) from None
        writer.started_at = dated
        writer.clock_note = note
        _keep_reserve(directory)
        return writer

    # ------------------------------------------------------------------ observing

    @property
    def recording(self) -> bool:
        """False while the log is not being kept on disk; the listeners hear every change."""
        return self.failed is None and not self._orphaned

    @property
    def problem(self) -> str | None:
        """Why ``recording`` is false, for people."""
        if self.failed is not None:
            return self.failed
        return "the log file was deleted and cannot be made again" if self._orphaned else None

    def add_listener(self, listener: RecordingListener) -> None:
        self._listeners.append(listener)

    def _tell(self) -> None:
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:
                log.exception("recording listener failed")

    # ------------------------------------------------------------------ writing

    def _line(self, obj: dict[str, Any]) -> bytes:
        try:
            text = _ENCODER.encode(obj)
        except (ValueError, TypeError):
            text = json.dumps(obj, separators=(",", ":"), default=str)
        return (text + "\n").encode("utf-8", "backslashreplace")

    def _append(self, data: bytes) -> None:
        """All of ``data`` or nothing: a short write is cut back off the file."""
        assert self._fd is not None
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError:
            if done:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)

    def _write(self, obj: dict[str, Any], t: float | None = None, *, count: bool = True) -> bool:
        """Append one record (after the gap record, if one is due); False if it was lost.

        ``count=False`` is a first try that, when it fails, is neither counted nor told.
        """
        if self._fd is None:
            return False
        if t is not None:
            self._last_t = t
        if t is None or self._checked_t is None or not 0 <= t - self._checked_t < CHECK_EVERY_S:
            self._checked_t = t
            self._check_still_there()
        data = self._line(obj)
        gap = None
        if self.failed is not None:
            gap = {
                "type": "gap",
                "t": self._last_t,
                "from": self._gap_from,
                "to": self._last_t,
                "lost": self.lost,
                "error": self.failed,
            }
            data = self._line(gap) + data
        try:
            self._append(data)
        except OSError as exc:
            self._last_error = exc.strerror or str(exc)
            if count:
                self._lose(exc)
            return False
        self.lines += 1 + (gap is not None)
        if gap is not None:
            self._resumed(gap)
        return True

    def _lose(self, exc: OSError) -> None:
        self.lost += 1
        self.lost_total += 1
        if self.failed is None:
            self.failed = exc.strerror or str(exc)
            self._gap_from = self._last_t
            log.error(
                "session log %s: cannot write (%s); the session goes on, and the records "
                "lost are counted and marked when writing works again",
                self.path,
                self.failed,
            )
            self._tell()

    def _resumed(self, gap: dict[str, Any]) -> None:
        self.gaps.append(gap)
        log.warning(
            "session log %s: writing again; %s s not recorded, %d records lost (marked in the log)",
            self.path,
            _secs(float(gap["to"]) - float(gap["from"] or 0.0)),
            self.lost,
        )
        self.failed = None
        self.lost = 0
        self._gap_from = None
        self._tell()

    def _check_still_there(self) -> None:
        """A log deleted under us (its directory removed) is written out again in place.

        Until that works the records go on into the deleted file, which the writer still
        holds, so nothing is lost unless the daemon dies meanwhile; ``recording`` is false.
        Looked at for every record without a time and for the first of every
        ``CHECK_EVERY_S`` of session time (a system call per record was 3 % of a sample's
        CPU at 50 Hz); the records written before the deletion is seen are in the file
        copied out.
        """
        assert self._fd is not None
        try:
            if os.fstat(self._fd).st_nlink > 0:
                return
        except OSError:
            return
        problem = self._restore()
        if problem is None:
            log.warning("session log %s was deleted; written out again in full", self.path)
            if self._orphaned:
                self._orphaned = False
                self._tell()
        elif not self._orphaned:
            self._orphaned = True
            log.error(
                "session log %s was deleted and cannot be made again (%s); the session goes "
                "on and is kept until it can be",
                self.path,
                problem,
            )
            self._tell()

    def _restore(self) -> str | None:
        """Copy the deleted file's content to a new file at ``path``; the problem or None."""
        assert self._fd is not None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(
                self.path,
                os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC,
                0o640,
            )
        except OSError as exc:
            return exc.strerror or str(exc)
        try:
            os.lseek(self._fd, 0, os.SEEK_SET)
            while chunk := os.read(self._fd, 1 << 16):
                os.write(fd, chunk)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                self.path.unlink()
            return exc.strerror or str(exc)
        os.close(self._fd)
        self._fd = fd
        return None

    def header(self, **fields: Any) -> None:
        """The first line; SessionLogError (and no file left) when it cannot be written."""
        if self.started_at is not None and self.clock_note is not None:
            fields["started_at"] = _iso(self.started_at)
            fields["clock"] = self.clock_note
        if not self._write({"type": "header", "schema": SCHEMA, **fields}, count=False):
            problem = self._last_error or "cannot write"
            self._discard()
            raise SessionLogError(f"cannot record the session in {self.path.parent}: {problem}")
        self.sync()

    def _discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.closed = True
        with contextlib.suppress(OSError):
            self.path.unlink()

    def record(self, kind: str, now: float, **fields: Any) -> None:
        t = round(now - self.t0, 3)
        self._write({"type": kind, "t": t, **fields}, t)

    def frame(self, direction: Literal["rx", "tx"], now: float, char: str, data: bytes) -> None:
        self.record(direction, now, char=char, hex=data.hex())

    def sync(self) -> None:
        """Flush to the disk itself (phase boundaries and the end), off the event loop.

        What was written is already in the page cache, safe from the daemon dying; the
        fsync is for power loss. On an SD card it can take tens of milliseconds, so it runs
        on one syncing thread, in the order asked, on a duplicate of the descriptor (the
        writer may close or replace its own meanwhile). ``synced()`` waits for it.
        """
        if self._fd is None:
            return
        try:
            fd = os.dup(self._fd)
        except OSError as exc:
            log.error("session log %s: cannot sync: %s", self.path, exc.strerror or exc)
            return
        _syncer().submit(_sync_and_close, fd, self.path)

    def footer(self, outcome: str, summary: dict[str, Any], *, wall: float | None = None) -> None:
        """The last line. On a full disk the reserve is given up for it (and the gap)."""
        if self.closed:
            return
        obj: dict[str, Any] = {"type": "footer", "outcome": outcome, "summary": summary}
        corrected = self._corrected_start(time.time() if wall is None else wall)
        if corrected is not None:
            obj["clock"] = {"started_at": _iso(corrected), "corrected_at_end": True}
        if not self._write(obj, count=False):
            _free_reserve(self.path.parent)
            self._write(obj)
            _keep_reserve(self.path.parent)
        self.close()

    def _corrected_start(self, wall: float) -> datetime | None:
        """When the session began implausibly dated and the clock is right now, the truth."""
        if self.clock_note is None or self.started_at is None:
            return None
        from retrotread.session.store import clock_is_plausible

        now = datetime.fromtimestamp(wall, UTC)
        if not clock_is_plausible(now, self.started_at):
            return None
        return now - timedelta(seconds=self._last_t)

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self.closed = True


_SYNCER: ThreadPoolExecutor | None = None


def _syncer() -> ThreadPoolExecutor:
    global _SYNCER
    if _SYNCER is None:
        _SYNCER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrotread-fsync")
    return _SYNCER


def _sync_and_close(fd: int, path: Path) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        log.error("session log %s: cannot sync: %s", path, exc.strerror or exc)
    finally:
        os.close(fd)


def synced(timeout_s: float | None = None) -> None:
    """Wait until every sync asked for so far has reached the disk."""
    _syncer().submit(lambda: None).result(timeout_s)


def _iso(d: datetime) -> str:
    return d.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _secs(s: float) -> str:
    return f"{s:.0f}" if s >= 10 else f"{s:.1f}"


def _cannot_record(directory: Path, exc: OSError) -> str:
    why = {
        errno.EROFS: "it is on a read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOSPC: "no space left on the device",
        errno.ENOTDIR: "a part of the path is not a directory",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return f"cannot record the session in {directory}: {why}"


def _keep_reserve(directory: Path) -> None:
    """Best effort: the reserve file exists and holds RESERVE_BYTES of real disk space."""
    path = directory / RESERVE_NAME
    try:
        if path.stat().st_size >= RESERVE_BYTES:
            return
    except OSError:
        pass
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a reserve that holds nothing must not look like one
    finally:
        os.close(fd)


def _free_reserve(directory: Path) -> bool:
    try:
        (directory / RESERVE_NAME).unlink()
    except OSError:
        return False
    return True


@dataclass
class SessionLog:
    """A session log as read back: whatever was complete when it was written."""

    path: Path
    header: dict[str, Any] | None
    records: list[dict[str, Any]] = field(default_factory=list)
    footer: dict[str, Any] | None = None
    cut_tail: bool = False
    bad_lines: list[int] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        """No footer (power cut, kill -9), or a footer that says so."""
        return self.footer is None or self.footer.get("outcome") == "interrupted"

    @property
    def outcome(self) -> str:
        return str(self.footer["outcome"]) if self.footer else "interrupted"

    def of(self, kind: str) -> Iterator[dict[str, Any]]:
        return (r for r in self.records if r.get("type") == kind)

    @property
    def duration_s(self) -> float:
        times = [float(r["t"]) for r in self.records if isinstance(r.get("t"), int | float)]
        return max(times, default=0.0)

    @property
    def gaps(self) -> list[dict[str, Any]]:
        """Stretches the writer could not record (disk full, read-only, ...), in order."""
        return list(self.of("gap"))

    @property
    def started_at(self) -> datetime | None:
        """When the session began: the footer's correction of a wrong clock, else the header."""
        clock = self.footer.get("clock") if self.footer else None
        for text in (
            clock.get("started_at") if isinstance(clock, dict) else None,
            (self.header or {}).get("started_at"),
        ):
            try:
                found = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
            except ValueError:
                continue
            return found if found.tzinfo is not None else found.replace(tzinfo=UTC)
        return None

    def notes(self) -> list[str]:
        """Plain-language remarks a tool prints about this log's condition."""
        out = [describe_gap(g) for g in self.gaps]
        clock = (self.header or {}).get("clock")
        if isinstance(clock, dict):
            out.append(f"the clock was wrong when this session started: {clock.get('reason')}")
        if self.footer is None:
            out.append("interrupted: the log has no footer (the session did not end cleanly)")
        if self.cut_tail:
            out.append("the last line was cut off and was ignored")
        if self.bad_lines:
            out.append(f"{len(self.bad_lines)} unreadable line(s) skipped: {self.bad_lines[:5]}")
        return out


def describe_gap(gap: dict[str, Any]) -> str:
    """``gap`` record -> "not recorded from 12:05 to 13:25 (320 records lost: ...)"."""
    start, end = _num(gap.get("from")), _num(gap.get("to"))
    lost = gap.get("lost")
    why = gap.get("error") or "write failed"
    return (
        f"not recorded from {_clock(start)} to {_clock(end)} into the session "
        f"({lost} records lost: {why})"
    )


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def read_session(path: Path, kinds: Collection[str] | None = None) -> SessionLog:
    """Read a log, tolerating a cut-off last line and skipping unreadable lines.

    ``kinds``: keep only records of these types (the header and footer always), and do not
    even parse the lines of other types that the writer wrote (they begin
    ``{"type":"<kind>"``): the coach reads a year of logs for their events in a fraction
    of the time. Raises SessionLogError only when the file cannot be opened or holds no
    header.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SessionLogError(f"cannot read session log {path}: {exc.strerror or exc}") from exc
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    result = SessionLog(Path(path), header=None, cut_tail=bool(tail.strip()))
    skip = (
        tuple(f'{{"type":"{k}"'.encode() for k in RECORD_TYPES if k not in kinds)
        if kinds is not None
        else ()
    )
    for number, line in enumerate(lines, start=1):
        if skip and line.startswith(skip):
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            result.bad_lines.append(number)
            continue
        if not isinstance(obj, dict):
            result.bad_lines.append(number)
            continue
        kind = obj.get("type")
        if kind == "header" and result.header is None and not result.records:
            result.header = obj
        elif kind == "footer":
            result.footer = obj
        else:
            result.records.append(obj)
    if result.header is None:
        if not lines and not tail:
            raise SessionLogError(f"{path} is empty: not a session log")
        if result.records or result.bad_lines or result.cut_tail:
            raise SessionLogError(f"{path} has no header line: not a retrotread session log")
    return result


def list_sessions(directory: Path) -> list[Path]:
    """Session logs in ``directory``, oldest first (names sort by start time)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.jsonl") if p.is_file())
