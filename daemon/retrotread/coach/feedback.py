"""How a session felt: a rating (easy/right/hard) and knee pain 0-10, before and/or after.

Stored in a sidecar next to the session log, ``<log stem>.feedback.ndjson``: one JSON
object per line, appended and fsynced. Why a sidecar and not a record appended to the log:
the log is the runner's raw record and ends with its footer (SPEC.md §5); feedback often
arrives after that footer is written, sometimes while the runner is still writing, and a
second writer on one file could interleave lines. The sidecar leaves every log byte as
the runner wrote it (replay and the through-sim regression stay exact), and its name does
not end in ``.jsonl``, so the session tools never mistake it for a session.

The reader takes what it can: a cut-off last line, garbage or an out-of-range value is
skipped and reported in ``notes``; it never raises for a broken sidecar.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retrotread.errors import RetrotreadError

Rating = Literal["easy", "right", "hard"]
When = Literal["before", "after"]
SUFFIX = ".feedback.ndjson"


class FeedbackError(RetrotreadError):
    """Feedback that cannot be stored (the disk refused it)."""


class Feedback(BaseModel):
    """One report from the walker."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    when: When = "after"
    rating: Rating | None = None
    pain: int | None = Field(default=None, ge=0, le=10, description="knee pain, 0-10 NRS")
    walker: str | None = None
    ts: str | None = None  # ISO 8601, UTC

    def describe(self) -> str:
        """``after: right, knee pain 2/10``."""
        pain = None if self.pain is None else f"knee pain {self.pain}/10"
        return f"{self.when}: " + ", ".join(b for b in (self.rating, pain) if b)


def sidecar_path(log_path: Path) -> Path:
    """``20261201-090000-retro-start-anna.jsonl`` -> ``...-anna.feedback.ndjson``."""
    return log_path.with_name(log_path.stem + SUFFIX)


def append_feedback(log_path: Path, feedback: Feedback, now: datetime | None = None) -> Path:
    """Append one report to the session's sidecar (created if needed); returns its path."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z")
    record = {"type": "feedback", **feedback.model_dump(exclude_none=True), "ts": stamp}
    path = sidecar_path(log_path)
    line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as fh:
            # A line cut by an earlier crash must not swallow this one: start on a new line.
            if fh.tell() > 0 and not _ends_with_newline(path):
                fh.write("\n")
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise FeedbackError(f"cannot store feedback in {path}: {exc.strerror or exc}") from None
    return path


def _ends_with_newline(path: Path) -> bool:
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
    return True


@dataclass
class SessionFeedback:
    """Everything the walker reported about one session; the latest of each kind counts."""

    reports: list[Feedback] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _last(self, when: When, attr: str) -> Feedback | None:
        return next(
            (r for r in reversed(self.reports) if r.when == when and getattr(r, attr) is not None),
            None,
        )

    @property
    def pain_before(self) -> int | None:
        r = self._last("before", "pain")
        return r.pain if r else None

    @property
    def pain_after(self) -> int | None:
        r = self._last("after", "pain")
        return r.pain if r else None

    @property
    def rating(self) -> Rating | None:
        """How it felt: the latest rating given after the session (or before, if only then)."""
        r = self._last("after", "rating") or self._last("before", "rating")
        return r.rating if r else None

    def pains(self) -> list[tuple[When, int]]:
        """The session's pain reports in order: before first, then after."""
        out: list[tuple[When, int]] = []
        if self.pain_before is not None:
            out.append(("before", self.pain_before))
        if self.pain_after is not None:
            out.append(("after", self.pain_after))
        return out

    def describe(self) -> str:
        """One line for the session tools; empty when nothing was reported."""
        parts = []
        if self.pain_before is not None:
            parts.append(f"knee pain before {self.pain_before}/10")
        if self.rating is not None:
            parts.append(f"felt {self.rating}")
        if self.pain_after is not None:
            parts.append(f"knee pain after {self.pain_after}/10")
        return ", ".join(parts)


def read_feedback(log_path: Path) -> SessionFeedback:
    """The sidecar of ``log_path``; none, empty, cut off or garbled all read without error."""
    path = sidecar_path(log_path)
    result = SessionFeedback()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return result
    except OSError as exc:
        result.notes.append(f"{path.name}: cannot read: {exc.strerror or exc}")
        return result
    lines = raw.split(b"\n")
    tail = lines.pop()
    if tail.strip():
        result.notes.append(f"{path.name}: the last line was cut off and was ignored")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            result.notes.append(f"{path.name}: line {number} is not JSON; skipped")
            continue
        if not isinstance(obj, dict) or obj.get("type") != "feedback":
            result.notes.append(f"{path.name}: line {number} is not a feedback record; skipped")
            continue
        try:
            result.reports.append(Feedback.model_validate(obj))
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(x) for x in first["loc"])
            result.notes.append(f"{path.name}: line {number}: {key}: {first['msg']}; skipped")
    return result
