"""Issue 11 finding 4: disk trouble is visible and marked, on a real (small, full,
read-only, deleted) file system; the tools show the gaps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from retrotread.session.log import (
    CHECK_EVERY_S,
    RESERVE_NAME,
    SessionLogError,
    SessionLogWriter,
    read_session,
)
from tests.fshelpers import small_fs

ROOT = Path(__file__).resolve().parents[1]
STARTED = datetime(2026, 11, 30, 18, 0, 0, tzinfo=UTC)


class Seen:
    """A recording listener: what ``recording`` and ``problem`` were at each change."""

    def __init__(self, writer: SessionLogWriter) -> None:
        self.changes: list[tuple[bool, str | None]] = []
        writer.add_listener(lambda w: self.changes.append((w.recording, w.problem)))


def _writer(directory: Path) -> SessionLogWriter:
    w = SessionLogWriter.create(directory, STARTED, "hill-intro", t0=0.0)
    w.header(session_id="s1", started_at="2026-11-30T18:00:00Z", profile={"name": "hill-intro"})
    return w


def _telemetry(w: SessionLogWriter, t: float) -> None:
    w.record("telemetry", t, speed_kmh=2.0, incline_pct=1.0, distance_m=t)


def _until_lost(w: SessionLogWriter, first: int, last: int) -> int:
    """Write samples ``first``..``last-1`` (4 Hz); the index of the first one lost.

    A full disk still takes what fits in the blocks a file already has, so the loss
    starts a little after the disk is full.
    """
    lost_at = None
    for i in range(first, last):
        _telemetry(w, i * 0.25)
        if lost_at is None and not w.recording:
            lost_at = i
    assert lost_at is not None, "the disk never refused a record"
    return lost_at


def test_disk_full_then_space_back_marks_a_gap(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs") as fs:
        w = _writer(fs.path / "sessions")
        seen = Seen(w)
        for i in range(10):
            _telemetry(w, i * 0.25)
        fs.fill()
        lost_at = _until_lost(w, 10, 400)  # 100 s of samples while the disk is full
        assert w.recording is False
        assert w.problem == "No space left on device"
        assert w.lost == 400 - lost_at
        fs.free()
        _telemetry(w, 100.0)
        assert w.recording is True
        assert seen.changes == [(False, "No space left on device"), (True, None)]
        w.footer("completed", {"duration_s": 100.0})
        log = read_session(w.path)
    assert not log.cut_tail
    assert log.bad_lines == []
    assert log.outcome == "completed"
    assert log.gaps == [
        {
            "type": "gap",
            "t": 100.0,
            "from": lost_at * 0.25,
            "to": 100.0,
            "lost": 400 - lost_at,
            "error": "No space left on device",
        }
    ]
    ts = [r["t"] for r in log.of("telemetry")]
    assert ts == [i * 0.25 for i in range(lost_at)] + [100.0]
    m, sec = divmod(int(lost_at * 0.25), 60)
    assert log.notes()[0] == (
        f"not recorded from {m}:{sec:02d} to 1:40 into the session "
        f"({400 - lost_at} records lost: No space left on device)"
    )


def test_disk_full_at_the_end_still_gets_its_footer(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs") as fs:
        w = _writer(fs.path / "sessions")
        assert (fs.path / "sessions" / RESERVE_NAME).stat().st_size > 0
        _telemetry(w, 0.0)
        fs.fill()
        lost_at = _until_lost(w, 1, 400)
        w.footer("completed", {"duration_s": 100.0})  # the reserve makes room for it
        log = read_session(w.path)
    assert log.outcome == "completed"
    assert not log.interrupted
    assert not log.cut_tail
    assert [(g["from"], g["to"], g["lost"]) for g in log.gaps] == [
        (lost_at * 0.25, 399 * 0.25, 400 - lost_at)
    ]


def test_a_read_only_directory_refuses_with_one_line(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs") as fs:
        (fs.path / "sessions").mkdir()
        fs.read_only(True)
        with pytest.raises(SessionLogError) as caught:
            SessionLogWriter.create(fs.path / "sessions", STARTED, "first-steps", t0=0.0)
        fs.read_only(False)
    assert str(caught.value) == (
        f"cannot record the session in {fs.path / 'sessions'}: it is on a read-only file system"
    )


def test_a_full_disk_refuses_to_start_and_leaves_no_file(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs") as fs:
        directory = fs.path / "sessions"
        directory.mkdir()
        fs.fill()
        w = SessionLogWriter.create(directory, STARTED, "first-steps", t0=0.0)
        with pytest.raises(SessionLogError, match="No space left on device"):
            w.header(session_id="x", profile={})
        assert [p.name for p in directory.iterdir() if p.suffix == ".jsonl"] == []


def test_a_deleted_directory_is_made_again_losing_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    w = _writer(directory)
    seen = Seen(w)
    _telemetry(w, 1.0)
    shutil.rmtree(directory)
    _telemetry(w, 2.0)
    w.footer("completed", {})
    log = read_session(w.path)
    assert [r["t"] for r in log.of("telemetry")] == [1.0, 2.0]
    assert log.header is not None and log.outcome == "completed"
    assert seen.changes == []  # restored at once: recording never stopped


def test_a_log_deleted_at_50_hz_is_made_again_within_the_check_interval(tmp_path: Path) -> None:
    """At 50 samples a second the file is looked for once every ``CHECK_EVERY_S`` of
    session time, not at every record: the deletion is seen within that, and the records
    written meanwhile (into the deleted file) are in the copy."""
    directory = tmp_path / "sessions"
    w = _writer(directory)
    seen = Seen(w)
    times = [round(i * 0.02, 2) for i in range(100)]
    for t in times[:10]:
        _telemetry(w, t)
    shutil.rmtree(directory)
    back_at = None
    for t in times[10:]:
        _telemetry(w, t)
        if back_at is None and w.path.exists():
            back_at = t
    assert back_at is not None and back_at - times[10] < CHECK_EVERY_S
    w.footer("completed", {})
    log = read_session(w.path)
    assert [r["t"] for r in log.of("telemetry")] == times
    assert seen.changes == []


def test_a_deleted_log_that_cannot_be_made_again_is_kept_until_it_can(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    w = _writer(directory)
    seen = Seen(w)
    _telemetry(w, 1.0)
    shutil.rmtree(directory)
    directory.write_text("in the way")  # a file where the directory was
    _telemetry(w, 2.0)
    assert w.recording is False
    assert w.problem == "the log file was deleted and cannot be made again"
    directory.unlink()
    _telemetry(w, 3.0)
    assert w.recording is True
    w.footer("completed", {})
    log = read_session(w.path)
    assert [r["t"] for r in log.of("telemetry")] == [1.0, 2.0, 3.0]  # nothing lost
    assert log.gaps == []
    assert seen.changes == [
        (False, "the log file was deleted and cannot be made again"),
        (True, None),
    ]


def _log_with_gap(tmp_path: Path) -> Path:
    path = tmp_path / "20261130-180000-hill-intro.jsonl"
    lines = [
        {
            "type": "header",
            "schema": 1,
            "session_id": "s",
            "started_at": "2026-11-30T18:00:00Z",
            "profile": {"name": "hill-intro", "title": "Hill intro"},
        },
        {"type": "event", "t": 0.0, "event": "phase_started", "phase": "walk", "phase_index": 0},
        *(
            {"type": "telemetry", "t": float(t), "speed_kmh": 2.0, "distance_m": t * 0.5}
            for t in range(0, 10)
        ),
        {"type": "gap", "t": 90.0, "from": 9.0, "to": 90.0, "lost": 320, "error": "No space"},
        *(
            {"type": "telemetry", "t": float(t), "speed_kmh": 2.0, "distance_m": t * 0.5}
            for t in range(90, 100)
        ),
        {"type": "footer", "outcome": "completed", "summary": {"duration_s": 99}},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retrotread.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


GAP_NOTE = "not recorded from 0:09 to 1:30 into the session (320 records lost: No space)"


def test_summary_export_and_replay_show_the_gap(tmp_path: Path) -> None:
    path = _log_with_gap(tmp_path)
    summary = _cli("summary", str(path))
    assert summary.returncode == 0, summary.stderr
    assert f"note: {GAP_NOTE}" in summary.stderr.splitlines()
    assert "1 gap: 81 s not recorded" in summary.stdout
    export = _cli("export", str(path), "--format", "csv", "-o", str(tmp_path / "x.csv"))
    assert export.returncode == 0, export.stderr
    assert f"note: {GAP_NOTE}" in export.stderr.splitlines()
    replay = _cli("replay", str(path), "--through-sim")
    assert f"note: {GAP_NOTE}" in replay.stdout.splitlines()
