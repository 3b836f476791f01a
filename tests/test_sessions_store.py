"""Issue 11 findings 4 (the directory checked), 7 (a wrong wall clock) and 8 (retention):
the sessions directory as a whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retrotread.session.analysis import backward_by_week, load
from retrotread.session.log import SessionLogWriter, list_sessions, read_session
from retrotread.session.store import (
    RELEASED,
    check_sessions_dir,
    clock_is_plausible,
    plausible_start,
    prune_sessions,
)
from tests.fshelpers import small_fs

ROOT = Path(__file__).resolve().parents[1]
DAY = timedelta(days=1)


def _session(
    directory: Path, started: datetime, backward_s: float = 120.0, profile: str = "first-steps"
) -> Path:
    """A finished session log written the way the daemon writes one."""
    w = SessionLogWriter.create(directory, started, profile, t0=0.0)
    w.header(
        session_id=started.strftime("%Y%m%d-%H%M%S"),
        started_at=started.isoformat().replace("+00:00", "Z"),
        profile={"name": profile, "title": profile},
    )
    w.record("event", 0.0, event="phase_started", phase="back", phase_index=0, direction="backward")
    for i in range(int(backward_s) + 1):
        w.record("telemetry", float(i), speed_kmh=2.0, distance_m=i * 0.55)
    w.footer("completed", {"duration_s": backward_s}, wall=started.timestamp() + backward_s)
    return w.path


# ---------------------------------------------------------------------------- the clock


def test_a_session_started_before_the_newest_one_is_dated_after_it(tmp_path: Path) -> None:
    newest = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
    _session(tmp_path, newest - 2 * DAY)
    _session(tmp_path, newest, backward_s=300)
    boot = datetime(2020, 1, 1, 0, 0, 5, tzinfo=UTC)  # a board with no clock, before NTP
    w = SessionLogWriter.create(tmp_path, boot, "build-up", t0=0.0)
    w.header(session_id="x", started_at="2020-01-01T00:00:05Z", profile={"name": "build-up"})
    w.record("telemetry", 60.0, speed_kmh=2.0)
    # NTP has stepped the clock by the end: the footer says when it really began.
    real_end = datetime(2026, 12, 1, 9, 1, 0, tzinfo=UTC)
    w.footer("completed", {"duration_s": 60.0}, wall=real_end.timestamp())
    assert w.path.name == "20261130-180501-build-up.jsonl"  # newest start + 300 s + 1 s
    assert list_sessions(tmp_path)[-1] == w.path  # sorts last, where it belongs
    log = read_session(w.path)
    assert log.header is not None
    assert log.header["started_at"] == "2026-11-30T18:05:01Z"
    assert log.header["clock"] == {
        "implausible": True,
        "wall_clock": "2020-01-01T00:00:05Z",
        "reason": "the wall clock said 2020-01-01T00:00:05Z, before the newest session on "
        "disk (2026-11-30T18:00:00Z); dated just after that one",
    }
    assert log.footer is not None
    assert log.footer["clock"] == {"started_at": "2026-12-01T09:00:00Z", "corrected_at_end": True}
    assert log.started_at == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert any("the clock was wrong" in n for n in log.notes())


def test_weekly_figures_count_a_session_started_with_a_wrong_clock(tmp_path: Path) -> None:
    monday = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    _session(tmp_path, monday, backward_s=120)
    w = SessionLogWriter.create(tmp_path, datetime(2020, 1, 1, tzinfo=UTC), "x", t0=0.0)
    w.header(session_id="y", started_at="2020-01-01T00:00:00Z", profile={"name": "x"})
    w.record("event", 0.0, event="phase_started", phase="b", phase_index=0, direction="backward")
    for i in range(241):
        w.record("telemetry", float(i), speed_kmh=2.0)
    w.footer("completed", {"duration_s": 240.0}, wall=(monday + DAY).timestamp())
    this_week, last_week = backward_by_week(tmp_path, monday + 2 * DAY)
    assert (this_week, last_week) == (6.0, 0.0)  # 2 + 4 minutes, none lost to 2020
    assert load(w.path).started_at == monday + DAY - timedelta(seconds=240)


def test_a_clock_before_the_release_is_dated_at_the_release(tmp_path: Path) -> None:
    dated, note = plausible_start(tmp_path, datetime(2020, 1, 1, tzinfo=UTC))
    assert dated == RELEASED
    assert note is not None
    assert "before this version of retrotread was built" in note["reason"]


def test_a_good_clock_is_left_alone(tmp_path: Path) -> None:
    _session(tmp_path, datetime(2026, 11, 30, 18, 0, tzinfo=UTC))
    now = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    assert plausible_start(tmp_path, now) == (now, None)
    # Two daemons sharing the directory start sessions moments apart, in either order.
    assert plausible_start(tmp_path, datetime(2026, 11, 30, 17, 58, tzinfo=UTC))[1] is None
    assert clock_is_plausible(now)
    assert not clock_is_plausible(datetime(2025, 6, 1, tzinfo=UTC))


def test_the_unit_waits_for_time_sync() -> None:
    unit = (ROOT / "systemd" / "retrotread.service").read_text().splitlines()
    after = next(line for line in unit if line.startswith("After="))
    wants = next(line for line in unit if line.startswith("Wants="))
    assert "time-sync.target" in after.split("=", 1)[1].split()
    assert "time-sync.target" in wants.split("=", 1)[1].split()


# ---------------------------------------------------------------------------- the directory


def test_directory_checks(tmp_path: Path) -> None:
    ok = check_sessions_dir(tmp_path)
    assert (ok.exists, ok.problem) == (True, None)
    assert ok.free_bytes is not None and ok.free_bytes > 0
    fresh = check_sessions_dir(tmp_path / "a" / "b")
    assert (fresh.exists, fresh.problem) == (False, None)
    assert not (tmp_path / "a").exists()  # checking makes nothing
    (tmp_path / "file").write_text("x")
    assert check_sessions_dir(tmp_path / "file").problem == (
        f"sessions directory {tmp_path / 'file'} is not a directory"
    )
    assert check_sessions_dir(tmp_path / "file" / "s").problem == (
        f"sessions directory {tmp_path / 'file' / 's'} cannot be made: "
        f"{tmp_path / 'file'} is not a directory"
    )
    low = check_sessions_dir(tmp_path, min_free_bytes=1 << 62)
    assert low.problem is not None
    assert low.problem.startswith(f"sessions directory {tmp_path} has only ")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # the probe is gone


def test_read_only_and_full_directories(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs", size=4 * 1024 * 1024) as fs:
        (fs.path / "s").mkdir()
        fs.fill()
        full = check_sessions_dir(fs.path / "s")
        assert full.problem is not None
        assert "has only 0.0 MB free" in full.problem
        fs.free()
        fs.read_only(True)
        try:
            ro = check_sessions_dir(fs.path / "s")
            missing = check_sessions_dir(fs.path / "t")
        finally:
            fs.read_only(False)
    assert ro.problem == (
        f"sessions directory {fs.path / 's'} is not writable: it is on a read-only file system"
    )
    assert missing.problem == (
        f"sessions directory {fs.path / 't'} does not exist and cannot be made: "
        f"{fs.path} is on a read-only file system"
    )


def test_check_config_names_a_bad_sessions_directory(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[sessions]\ndir = "{tmp_path / "blocker" / "sessions"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROTREAD_")}
    done = subprocess.run(
        [sys.executable, "-m", "retrotread.cli", "check-config", "-c", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"retrotread: error: {cfg}: sessions.dir: sessions directory "
        f"{tmp_path / 'blocker' / 'sessions'} cannot be made: "
        f"{tmp_path / 'blocker'} is not a directory"
    ]


# ---------------------------------------------------------------------------- retention


def test_retention_removes_old_logs_but_never_the_current_or_the_newest(tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    old = [_session(tmp_path, now - (40 + i) * DAY) for i in range(3)]
    recent = _session(tmp_path, now - 5 * DAY)
    current = old[1]  # as if still being recorded (a long-running daemon's open log)
    (tmp_path / "notes.txt").write_text("not a session")
    pruned = prune_sessions(tmp_path, 30, now, keep=[current])
    assert sorted(pruned.removed) == sorted([old[0], old[2]])
    assert pruned.kept == 2
    assert sorted(list_sessions(tmp_path)) == sorted([current, recent])
    assert (tmp_path / "notes.txt").exists()
    # The newest log is kept even when it is old too.
    alone = tmp_path / "alone"
    last = _session(alone, now - 400 * DAY)
    assert prune_sessions(alone, 30, now).removed == []
    assert list_sessions(alone) == [last]


def test_retention_does_nothing_while_the_clock_is_wrong(tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    logs = [_session(tmp_path, now - (40 + i) * DAY) for i in range(2)]
    _session(tmp_path, now)
    pruned = prune_sessions(tmp_path, 30, datetime(2020, 1, 1, tzinfo=UTC))
    assert pruned.removed == []
    assert pruned.skipped == "the wall clock is not believable"
    assert all(p.exists() for p in logs)


def test_an_unreadable_log_ages_by_its_name(tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    junk = tmp_path / "20260101-000000-broken.jsonl"
    junk.write_text("{not a header\n")
    _session(tmp_path, now)
    assert prune_sessions(tmp_path, 30, now).removed == [junk]


@pytest.mark.parametrize("days", [0, -1])
def test_retention_days_must_be_positive(tmp_path: Path, days: int) -> None:
    from retrotread.config import ConfigError, load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[sessions]\nretention_days = {days}\n")
    with pytest.raises(ConfigError, match="retention_days"):
        load_config(cfg)


def test_session_json_header_first_line_only(tmp_path: Path) -> None:
    """The newest session is found from the ends of the file, whatever its size."""
    p = _session(tmp_path, datetime(2026, 11, 30, 18, 0, tzinfo=UTC), backward_s=3000)
    first = json.loads(p.read_text().splitlines()[0])
    assert first["type"] == "header"
    dated, note = plausible_start(tmp_path, datetime(2026, 11, 30, 17, 0, tzinfo=UTC))
    assert note is not None
    assert dated == datetime(2026, 11, 30, 18, 50, 1, tzinfo=UTC)
