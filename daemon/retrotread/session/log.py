"""The session log (SPEC.md §5): raw-first JSONL, flushed per line, fsynced at boundaries.

Line 1 is the header; then records with ``t`` (seconds since start) of type rx, tx,
telemetry, event, state, cmd; the last line is the footer. A log with no footer is an
interrupted session, and the reader accepts one cut off anywhere, up to its last complete
line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from retrotread.errors import RetrotreadError

log = logging.getLogger(__name__)

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
RECORD_TYPES = ("rx", "tx", "telemetry", "event", "state", "cmd")


class SessionLogError(RetrotreadError):
    """A session log that cannot be read at all (missing, not a session log)."""


def log_filename(started: datetime, profile: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", profile).strip("-") or "session"
    return f"{started.strftime('%Y%m%d-%H%M%S')}-{safe}.jsonl"


class SessionLogWriter:
    """Append-only writer. Disk errors are logged once and never stop the session."""

    def __init__(self, path: Path, t0: float) -> None:
        self.path = path
        self.t0 = t0
        self.failed: str | None = None
        self.lines = 0
        self.closed = False
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = open(path, "x", encoding="utf-8")  # noqa: SIM115

    @classmethod
    def create(
        cls, directory: Path, started: datetime, profile: str, t0: float
    ) -> SessionLogWriter:
        """A new log in ``directory`` named per SPEC.md §5 (suffixed if the name is taken)."""
        directory.mkdir(parents=True, exist_ok=True)
        name = log_filename(started, profile)
        path = directory / name
        n = 1
        while path.exists():
            n += 1
            path = directory / name.replace(".jsonl", f"-{n}.jsonl")
        return cls(path, t0)

    def _write(self, obj: dict[str, Any]) -> None:
        if self._fh is None:
            return
        try:
            self._fh.write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
            self._fh.flush()
            self.lines += 1
        except (OSError, ValueError) as exc:
            if self.failed is None:
                log.error("session log %s: cannot write: %s", self.path, exc)
            self.failed = str(exc)

    def header(self, **fields: Any) -> None:
        self._write({"type": "header", "schema": SCHEMA, **fields})
        self.sync()

    def record(self, kind: str, now: float, **fields: Any) -> None:
        self._write({"type": kind, "t": round(now - self.t0, 3), **fields})

    def frame(self, direction: Literal["rx", "tx"], now: float, char: str, data: bytes) -> None:
        self.record(direction, now, char=char, hex=data.hex())

    def sync(self) -> None:
        """Flush to the disk itself (phase boundaries and the end)."""
        if self._fh is None:
            return
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            if self.failed is None:
                log.error("session log %s: cannot sync: %s", self.path, exc)
            self.failed = str(exc)

    def footer(self, outcome: str, summary: dict[str, Any]) -> None:
        if self.closed:
            return
        self._write({"type": "footer", "outcome": outcome, "summary": summary})
        self.close()

    def close(self) -> None:
        if self._fh is not None:
            self.sync()
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        self.closed = True


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

    def notes(self) -> list[str]:
        """Plain-language remarks a tool prints about this log's condition."""
        out = []
        if self.footer is None:
            out.append("interrupted: the log has no footer (the session did not end cleanly)")
        if self.cut_tail:
            out.append("the last line was cut off and was ignored")
        if self.bad_lines:
            out.append(f"{len(self.bad_lines)} unreadable line(s) skipped: {self.bad_lines[:5]}")
        return out


def read_session(path: Path) -> SessionLog:
    """Read a log, tolerating a cut-off last line and skipping unreadable lines.

    Raises SessionLogError only when the file cannot be opened or holds no header.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SessionLogError(f"cannot read session log {path}: {exc.strerror or exc}") from exc
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    result = SessionLog(Path(path), header=None, cut_tail=bool(tail.strip()))
    for number, line in enumerate(lines, start=1):
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
