"""The page's history: recorded sessions, newest first, and each one's plot on demand.

Read from the session logs themselves, away from the event loop (a log is megabytes), and
remembered while a log is unchanged: its size and modification time are the key. A plot
is drawn by ``session.plot`` (the same one ``retrotread plot`` draws), one at a time.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from retrotread.session.log import SessionLogError, list_sessions, read_session

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}\.jsonl$")
"""What a session log's name may look like here: no path, nothing to escape."""


class NoSuchSession(LookupError):
    """No readable session log of that name."""


class History:
    """Sessions in ``directory``: a list for the page and PNG plots, cached."""

    def __init__(self, directory: Path, *, newest: int = 50, plots_kept: int = 8) -> None:
        self.directory = directory
        self.newest = newest
        self.plots_kept = plots_kept
        self._entries: dict[str, tuple[tuple[int, int], dict[str, Any] | None]] = {}
        self._plots: OrderedDict[str, tuple[tuple[int, int], bytes]] = OrderedDict()
        self._drawing = asyncio.Lock()  # matplotlib's pyplot is one drawing at a time
        self._listing = asyncio.Lock()  # one thread at a time keeps the cache

    async def sessions(self) -> list[dict[str, Any]]:
        """The newest sessions, newest first (unreadable logs left out)."""
        async with self._listing:
            return await asyncio.to_thread(self._sessions)

    def _sessions(self) -> list[dict[str, Any]]:
        out = []
        paths = list_sessions(self.directory)[-self.newest :]
        for path in reversed(paths):
            entry = self._entry(path)
            if entry is not None:
                out.append(entry)
        keep = {p.name for p in paths}
        for name in [n for n in self._entries if n not in keep]:
            del self._entries[name]
        return out

    def _entry(self, path: Path) -> dict[str, Any] | None:
        key = _key(path)
        if key is None:
            return None
        cached = self._entries.get(path.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        entry = _describe(path)
        self._entries[path.name] = (key, entry)
        return entry

    async def plot(self, name: str) -> bytes:
        """The PNG of session ``name``; NoSuchSession when there is no such readable log."""
        path = self._path(name)
        key = _key(path)
        if key is None:
            raise NoSuchSession(name)
        cached = self._plots.get(name)
        if cached is not None and cached[0] == key:
            self._plots.move_to_end(name)
            return cached[1]
        async with self._drawing:
            png = await asyncio.to_thread(_draw, path)
        self._plots[name] = (key, png)
        while len(self._plots) > self.plots_kept:
            self._plots.popitem(last=False)
        return png

    def _path(self, name: str) -> Path:
        if not NAME.match(name):
            raise NoSuchSession(name)
        path = self.directory / name
        if not path.is_file():
            raise NoSuchSession(name)
        return path


def _key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _describe(path: Path) -> dict[str, Any] | None:
    try:
        log = read_session(path, kinds=())
    except SessionLogError:
        return None
    header = log.header or {}
    profile = header.get("profile") if isinstance(header.get("profile"), dict) else {}
    assert isinstance(profile, dict)
    summary = (log.footer or {}).get("summary")
    summary = summary if isinstance(summary, dict) else {}
    started = log.started_at
    walker = header.get("walker")
    return {
        "name": path.name,
        "started_at": started.isoformat() if started is not None else None,
        "profile": str(profile.get("name", "?")),
        "title": str(profile.get("title") or profile.get("name", "?")),
        "walker": walker if isinstance(walker, str) else None,
        "outcome": log.outcome,
        "duration_s": _number(summary.get("duration_s")),
        "distance_m": _number(summary.get("distance_m")),
        "backward_s": _number(summary.get("backward_s")),
    }


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _draw(path: Path) -> bytes:
    from retrotread.session.analysis import load
    from retrotread.session.plot import plot

    try:
        view = load(path)
    except SessionLogError as exc:
        raise NoSuchSession(path.name) from exc
    with tempfile.TemporaryDirectory(prefix="retrotread-plot-") as tmp:
        out = Path(tmp) / "plot.png"
        plot(view, out)
        return out.read_bytes()
