"""``retrotread plan list | show`` and ``retrotread progress`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retrotread.coach.walkers import WalkerConfig
from tests.coachhelpers import Walker, coach

ROOT = Path(__file__).resolve().parents[1]
RETROTREAD = ROOT / ".venv" / "bin" / "retrotread"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROTREAD_")}
    exe = [str(RETROTREAD)] if RETROTREAD.exists() else [sys.executable, "-m", "retrotread.cli"]
    return subprocess.run(
        [*exe, *args], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )


@pytest.fixture
def house(tmp_path: Path) -> Path:
    """A config with two walkers; anna has walked five sessions, with a console slow-down."""
    sessions = tmp_path / "sessions"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[sessions]\ndir = "{sessions}"\n[[walker]]\nname = "anna"\nmax_speed_kmh = 3.0\n'
        '[[walker]]\nname = "ben"\n'
    )
    anna = Walker(coach(sessions))
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=12)
    for i in range(5):
        anna.walk(
            "retro-start",
            start + timedelta(days=2 * i),
            slow_to=1.5 if i == 2 else None,
            pain=2,
            rating="right",
        )
    return config


def test_plan_list(house: Path) -> None:
    p = cli("plan", "list", "-c", str(house))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "LEVELS", "/WEEK"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"knee-6-weeks", "retro-hill", "retro-start"}
    assert "2-10 min" in rows["retro-start"]
    assert "retro-start" in rows["retro-hill"].split("  ")[-2]  # needs
    data = json.loads(cli("plan", "list", "--json", "-c", str(house)).stdout)
    assert [d["name"] for d in data] == ["knee-6-weeks", "retro-hill", "retro-start"]


def test_plan_show_for_a_walker_says_why(house: Path) -> None:
    p = cli("plan", "show", "retro-start", "--walker", "anna", "-c", str(house))
    assert p.returncode == 0, p.stderr
    out = p.stdout
    # Five sessions: levels 1, 2, 3 (slowed: hold), 3, 4 -> now level 5.
    assert " → flat           5      5:00" in out
    assert "anna today: flat, level 5 of 9" in out
    assert "backward-1     backward    2:30" in out
    assert "advance to flat, level 5 of 9: the session of" in out
    assert "[rule learned-speed]" in out and "1.5 chosen" in out
    data = json.loads(
        cli("plan", "show", "retro-start", "--walker", "anna", "--json", "-c", str(house)).stdout
    )
    assert (data["level"], data["backward_min"], data["walker"]) == (5, 5.0, "anna")
    assert max(p["speed_kmh"] for p in data["profile"]["phase"]) <= 3.0  # anna's limit


def test_plan_show_refusal_names_walker_plan_and_rule(house: Path) -> None:
    p = cli("plan", "show", "retro-hill", "--walker", "anna", "-c", str(house))
    assert p.returncode == 1
    assert (
        "today: refused: walker 'anna', plan 'retro-hill': refused by rule 'requires': this plan "
        "opens once plan 'retro-start' is completed (anna is at flat, level 5 of 9 of it)"
    ) in p.stdout


def test_plan_show_without_a_walker_shows_the_levels(house: Path) -> None:
    p = cli("plan", "show", "knee-6-weeks", "-c", str(house))
    assert p.returncode == 0
    assert "name a walker with --walker" in p.stdout
    assert "   trial          3     10:00    2x5:00" in p.stdout


def test_unknown_names_are_one_line_errors(house: Path) -> None:
    for args, expected in (
        (("plan", "show", "nope"), "unknown plan 'nope'; known plans: knee-6-weeks, retro-hill"),
        (("plan", "show", "retro-start", "--walker", "carl"), "unknown walker 'carl'"),
        (("progress", "--walker", "carl"), "unknown walker 'carl'; known walkers: anna, ben"),
    ):
        p = cli(*args, "-c", str(house))
        assert p.returncode == 2, p
        assert "Traceback" not in p.stderr
        (line,) = p.stderr.strip().splitlines()
        assert expected in line


def test_progress_table_and_plot(house: Path, tmp_path: Path) -> None:
    png = tmp_path / "anna.png"
    p = cli("progress", "--walker", "anna", "-o", str(png), "-c", str(house))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "anna: 5 sessions"
    rows = [line for line in lines[2:] if line[:4].isdigit()]
    assert sum(int(r.split()[1]) for r in rows) == 5
    total = sum(float(r.split()[2]) for r in rows)
    assert total == pytest.approx(2 + 2.5 + 3 + 3 + 4, abs=0.2)  # the slowed session held at 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert lines[-1] == str(png)
    none = cli("progress", "--walker", "ben", "-c", str(house))
    assert none.returncode == 0 and none.stdout.startswith("no sessions of ben in ")


def test_history_tools_know_the_walker(house: Path, tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    ben = Walker(coach(sessions, [WalkerConfig(name="ben")]), "ben")
    ben.walk("knee-6-weeks", datetime.now(UTC) - timedelta(hours=2), pain=4, rating="hard")
    listed = cli("sessions", "-c", str(house), "list")
    assert listed.returncode == 0, listed.stderr
    head, *rows = listed.stdout.splitlines()
    assert "WALKER" in head
    assert [r.split()[-2] for r in rows] == ["anna"] * 5 + ["ben"]
    only = cli("sessions", "-c", str(house), "list", "--walker", "BEN")
    assert [r.split()[-2] for r in only.stdout.splitlines()[1:]] == ["ben"]
    nobody = cli("sessions", "-c", str(house), "list", "--walker", "zed")
    assert nobody.stdout.splitlines()[-1] == "(no sessions of zed)"
    log = sorted(sessions.glob("*ben.jsonl"))[0]
    summary = cli("summary", str(log))
    assert summary.returncode == 0, summary.stderr
    assert "walker ben, plan knee-6-weeks trial 3" in summary.stdout
    assert "feedback: felt hard, knee pain after 4/10" in summary.stdout
    assert "backward walking (ben): 10.0 min this week" in summary.stdout
    # A garbled sidecar is a note, never a failure.
    side = log.with_name(log.stem + ".feedback.ndjson")
    side.write_bytes(b"\xff\xfe garbage\n" + side.read_bytes() + b'{"type": "feedb')
    summary = cli("summary", str(log))
    assert summary.returncode == 0
    assert "feedback: felt hard, knee pain after 4/10" in summary.stdout
    assert "note: " in summary.stderr and "is not JSON" in summary.stderr


def test_demo_walks_weeks_of_a_plan(tmp_path: Path) -> None:
    """``demo --plan``: the daemon, broker, simulator and a simulated walker, then a plot."""
    png = tmp_path / "progress.png"
    p = cli(
        "demo",
        "--plan",
        "retro-start",
        "--sessions",
        "4",
        "--sessions-dir",
        str(tmp_path),
        "-o",
        str(png),
    )
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [line for line in p.stdout.splitlines() if line.startswith("  20")]
    assert len(lines) == 4
    # Session 2: the walker slows the belt (a hold); session 3: again (two in a row: back).
    assert "retro-start flat 1: 2.0 min backward at 1.8 km/h, completed" in lines[0]
    assert "slowed to 1.5 at the console" in lines[1] and "flat 2" in lines[1]
    assert "flat 2" in lines[2] and "at 1.6 km/h" in lines[2]
    assert "retro-start flat 1" in lines[3] and "at 1.5 km/h" in lines[3]
    assert "[rule holds-in-a-row]" in p.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"
    logs = sorted(tmp_path.glob("coach-*/*.jsonl"))
    assert len(logs) == 4
    assert all(json.loads(lg.read_text().splitlines()[0])["walker"] == "sam" for lg in logs)
    unknown = cli("demo", "--plan", "nope", "--sessions-dir", str(tmp_path))
    assert unknown.returncode == 2 and "unknown plan 'nope'" in unknown.stderr
