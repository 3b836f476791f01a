"""The session log: written per SPEC.md §5, read back after a cut at any byte."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path

import pytest

from retrotread.session import log as session_log
from retrotread.session.log import SessionLogError, SessionLogWriter, read_session


def _write_sample(tmp_path: Path) -> Path:
    w = SessionLogWriter.create(tmp_path, datetime(2026, 11, 25, 7, 30, 5), "hill-intro", t0=100.0)
    w.header(
        session_id="abc",
        started_at="2026-11-25T07:30:05Z",
        profile={"name": "hill-intro"},
        limits={},
        treadmill={},
        version="0.1.0",
    )
    w.frame("tx", 100.5, "2ad9", b"\x00")
    w.frame("rx", 100.6, "2ad9", b"\x80\x00\x01")
    w.record("telemetry", 101.0, speed_kmh=1.5, incline_pct=0.0)
    w.record("event", 102.25, event="phase_started", phase="warm-up")
    w.footer("completed", {"distance_m": 12})
    return w.path


def test_writer_layout(tmp_path: Path) -> None:
    path = _write_sample(tmp_path)
    assert path.name == "20261125-073005-hill-intro.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["type"] for x in lines] == ["header", "tx", "rx", "telemetry", "event", "footer"]
    assert lines[0]["schema"] == 1
    assert lines[1] == {"type": "tx", "t": 0.5, "char": "2ad9", "hex": "00"}
    assert lines[4]["t"] == 2.25
    assert lines[-1] == {"type": "footer", "outcome": "completed", "summary": {"distance_m": 12}}


def test_fsync_runs_off_the_event_loop_and_still_happens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An fsync that takes long (an SD card) does not hold up the writer, and every sync
    asked for reaches the disk, on the log's file, in another thread."""
    release = threading.Event()
    synced: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        release.wait(10)
        real_fsync(fd)
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), threading.current_thread().name))

    session_log.synced(10)  # an earlier test's syncs are not this one's
    monkeypatch.setattr(os, "fsync", slow_fsync)
    path = _write_sample(tmp_path)  # header (synced), records, footer (synced and closed)
    # Written and closed while both fsyncs still wait: the writer did not wait for them.
    assert synced == []
    assert [json.loads(x)["type"] for x in path.read_text().splitlines()][-1] == "footer"
    release.set()
    session_log.synced(10)
    assert [p for p, _ in synced] == [str(path), str(path)]
    assert all(name.startswith("retrotread-fsync") for _, name in synced)


def test_second_log_same_second_gets_suffix(tmp_path: Path) -> None:
    first = _write_sample(tmp_path)
    second = _write_sample(tmp_path)
    assert first != second
    assert second.name == "20261125-073005-hill-intro-2.jsonl"


def test_complete_log_reads_back(tmp_path: Path) -> None:
    log = read_session(_write_sample(tmp_path))
    assert log.header is not None and log.header["session_id"] == "abc"
    assert log.outcome == "completed"
    assert not log.interrupted
    assert [r["type"] for r in log.records] == ["tx", "rx", "telemetry", "event"]
    assert log.duration_s == 2.25
    assert log.notes() == []


def test_truncated_at_every_offset_reads_up_to_last_complete_line(tmp_path: Path) -> None:
    data = _write_sample(tmp_path).read_bytes()
    ends = [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    cut = tmp_path / "cut.jsonl"
    for offset in range(len(data) + 1):
        cut.write_bytes(data[:offset])
        complete = sum(1 for e in ends if e <= offset)
        if complete == 0:
            if offset == 0:
                with pytest.raises(SessionLogError, match="empty"):
                    read_session(cut)
            else:
                with pytest.raises(SessionLogError, match="no header"):
                    read_session(cut)
            continue
        log = read_session(cut)
        assert log.header is not None
        got = len(log.records) + 1 + (1 if log.footer else 0)
        assert got == complete, offset
        assert log.cut_tail == (offset not in ends and offset != 0)
        assert log.interrupted == (complete < len(ends))


def test_garbage_line_is_skipped_and_reported(tmp_path: Path) -> None:
    path = _write_sample(tmp_path)
    lines = path.read_text().splitlines()
    lines.insert(3, "{not json")
    path.write_text("\n".join(lines) + "\n")
    log = read_session(path)
    assert log.bad_lines == [4]
    assert len(log.records) == 4
    assert "1 unreadable line(s) skipped: [4]" in log.notes()


def test_not_a_log(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"type": "telemetry", "t": 1}\n')
    with pytest.raises(SessionLogError, match="no header"):
        read_session(p)
    with pytest.raises(SessionLogError, match="cannot read"):
        read_session(tmp_path / "missing.jsonl")
