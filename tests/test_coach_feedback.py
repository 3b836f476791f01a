"""Feedback sidecars and broken history: nothing a walker or a power cut leaves behind
breaks the coach, and nothing readable is lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retrotread.coach.feedback import (
    Feedback,
    append_feedback,
    read_feedback,
    sidecar_path,
)
from retrotread.coach.history import HistoryReader
from retrotread.session.log import list_sessions
from tests.coachhelpers import T0, Walker, coach, log_session


def a_log(tmp_path: Path) -> Path:
    today = coach(tmp_path).today("anna", "retro-start", T0)
    return log_session(tmp_path, today.profile, T0, plan=today.header_plan)


def test_reports_are_appended_and_read_back(tmp_path: Path) -> None:
    log = a_log(tmp_path)
    when = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    append_feedback(log, Feedback(when="before", pain=3), when)
    path = append_feedback(log, Feedback(when="after", rating="right", pain=2, walker="anna"), when)
    assert path == sidecar_path(log)
    assert path.name == log.stem + ".feedback.ndjson"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[1] == {
        "type": "feedback",
        "when": "after",
        "rating": "right",
        "pain": 2,
        "walker": "anna",
        "ts": "2026-11-02T09:30:00Z",
    }
    fb = read_feedback(log)
    assert (fb.pain_before, fb.pain_after, fb.rating) == (3, 2, "right")
    assert fb.pains() == [("before", 3), ("after", 2)]
    assert fb.describe() == "knee pain before 3/10, felt right, knee pain after 2/10"
    assert fb.notes == []


def test_the_latest_report_of_each_kind_counts(tmp_path: Path) -> None:
    log = a_log(tmp_path)
    append_feedback(log, Feedback(pain=4, rating="hard"))
    append_feedback(log, Feedback(pain=2))  # a correction of the pain only
    fb = read_feedback(log)
    assert (fb.pain_after, fb.rating) == (2, "hard")


def test_a_sidecar_is_not_a_session(tmp_path: Path) -> None:
    log = a_log(tmp_path)
    append_feedback(log, Feedback(pain=1))
    assert list_sessions(tmp_path) == [log]


def test_a_truncated_or_garbled_sidecar_reads_what_it_can(tmp_path: Path) -> None:
    log = a_log(tmp_path)
    side = sidecar_path(log)
    good = json.dumps({"type": "feedback", "when": "after", "pain": 2, "rating": "easy"})
    side.write_bytes(
        b"\x00\xffnot json\n"
        + json.dumps({"type": "feedback", "pain": 11}).encode()
        + b"\n[1, 2]\n"
        + json.dumps({"type": "feedback", "pain": "3"}).encode()
        + b"\n"
        + good.encode()
        + b'\n{"type": "feedback", "pain": 9'
    )
    fb = read_feedback(log)
    assert (fb.pain_after, fb.rating) == (2, "easy")  # only the good line counts
    assert len(fb.notes) == 5
    assert any("line 1 is not JSON" in n for n in fb.notes)
    assert any("line 2: pain: Input should be less than or equal to 10" in n for n in fb.notes)
    assert any("line 3 is not a feedback record" in n for n in fb.notes)
    assert any("line 4: pain: Input should be a valid integer" in n for n in fb.notes)
    assert any("the last line was cut off" in n for n in fb.notes)
    # The next report starts on a line of its own: the cut-off one cannot swallow it.
    append_feedback(log, Feedback(pain=4))
    assert read_feedback(log).pain_after == 4


def test_an_unreadable_sidecar_is_a_note(tmp_path: Path) -> None:
    log = a_log(tmp_path)
    sidecar_path(log).mkdir()  # not a file
    fb = read_feedback(log)
    assert fb.reports == [] and fb.notes and "cannot read" in fb.notes[0]


def test_feedback_that_cannot_be_stored_says_so(tmp_path: Path) -> None:
    from retrotread.coach.feedback import FeedbackError

    missing = tmp_path / "gone" / "x.jsonl"
    with pytest.raises(FeedbackError, match=r"cannot store feedback in .*gone"):
        append_feedback(missing, Feedback(pain=1))


def test_broken_logs_never_break_the_coach(tmp_path: Path) -> None:
    w = Walker(coach(tmp_path))
    w.walk("retro-start", T0)
    w.walk("retro-start", T0 + timedelta(days=2))
    (tmp_path / "20261103-000000-junk.jsonl").write_bytes(b"\x00\x01garbage\n")
    (tmp_path / "20261103-000001-empty.jsonl").write_bytes(b"")
    (tmp_path / "20261103-000002-noheader.jsonl").write_text('{"type":"telemetry","t":1}\n')
    # A session cut off by a power cut: no footer, last line half written.
    t = w.coach.today("anna", "retro-start", T0 + timedelta(days=4))
    cut = log_session(tmp_path, t.profile, T0 + timedelta(days=4), plan=t.header_plan, footer=False)
    with open(cut, "ab") as fh:
        fh.write(b'{"type":"telemetry","t":9')
    records, notes = HistoryReader().all(tmp_path)
    assert len(records) == 3
    assert records[-1].outcome == "interrupted"
    assert records[-1].backward_s > 0  # from the phase events
    assert sum("not a readable session log" in n for n in notes) == 3
    # Interrupted: neither counts nor holds -> still level 3.
    today = w.coach.today("anna", "retro-start", T0 + timedelta(days=6))
    assert today.progress.spec.level_number == 3


def test_the_reader_rereads_only_changed_files(tmp_path: Path) -> None:
    log = a_log(tmp_path)
    reader = HistoryReader()
    first = reader.read(log)
    assert first is not None and first.feedback.pain_after is None
    assert reader.read(log) is first  # unchanged: the same record
    append_feedback(log, Feedback(pain=3))
    again = reader.read(log)
    assert again is not first and again is not None and again.feedback.pain_after == 3


def test_reading_only_events_skips_samples_and_frames(tmp_path: Path) -> None:
    from retrotread.session.log import read_session

    log = a_log(tmp_path)
    with open(log, "ab") as fh:
        fh.write(b'{"type": "telemetry", "t": 1}\n')  # not the writer's spelling: parsed
        fh.write(b"garbage\n")
    full = read_session(log)
    events = read_session(log, kinds=("event",))
    assert events.header == full.header and events.footer == full.footer
    assert list(events.of("event")) == list(full.of("event"))
    assert not list(events.of("rx")) and list(full.of("telemetry"))
    # Only lines the writer wrote are skipped unread; odd ones are read (and reported).
    assert [r for r in events.records if r.get("type") == "telemetry"] == [
        {"type": "telemetry", "t": 1}
    ]
    assert events.bad_lines == full.bad_lines != []
