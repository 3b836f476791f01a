"""``retrotread profiles list | show | check`` as a user runs them: subprocesses, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clihelpers import ROOT, one_line_error
from tests.clihelpers import run_cli as cli

TOO_FAST = 'name = "fast"\n[[phase]]\nname = "run"\nduration_s = 60\nspeed_kmh = 6.0\nramp_s = 60\n'
SHORT_RAMP = (
    'name = "abrupt"\n[[phase]]\nname = "go"\nduration_s = 60\nspeed_kmh = 3.0\nramp_s = 10\n'
)
MINE = (
    'name = "mine"\ntitle = "My walk"\n'
    '[[phase]]\nname = "warm"\nduration_s = 120\nspeed_kmh = 2.5\nramp_s = 30\ncue = "Easy."\n'
    '[[phase]]\nname = "back"\ndirection = "backward"\nduration_s = 60\nspeed_kmh = 2.0\n'
    'ramp_s = 20\nincline_pct = 1.0\ncue = "Hold the rails."\n'
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config with a user profile directory holding one good and one broken file."""
    user = tmp_path / "profiles"
    user.mkdir()
    (user / "mine.toml").write_text(MINE)
    (user / "broken.toml").write_text('name = "broken"\n[[phase]]\nname = "x"\n')
    path = tmp_path / "config.toml"
    path.write_text(f'[profiles]\ndirs = ["{user}"]\n')
    return path


def test_list_shows_name_duration_limits_and_title() -> None:
    p = cli("profiles", "list")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DURATION", "BACKWARD", "MAX", "km/h", "MAX", "%", "TITLE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) >= {"first-steps", "build-up", "hill-intro", "knee-gentle"}
    assert rows["hill-intro"][:5] == ["hill-intro", "18:00", "12:00", "3", "7"]
    assert " ".join(rows["hill-intro"][5:]) == "Backward hill introduction"
    assert rows["first-steps"][:3] == ["first-steps", "8:00", "2:00"]


def test_list_json_matches_the_mqtt_profiles_payload() -> None:
    p = cli("profiles", "list", "--json")
    assert p.returncode == 0, p.stderr
    rows = {r["name"]: r for r in json.loads(p.stdout)}
    assert rows["hill-intro"] == {
        "name": "hill-intro",
        "title": "Backward hill introduction",
        "duration_s": 1080,
        "max_speed_kmh": 3.0,
        "max_incline_pct": 7.0,
    }
    assert rows["knee-gentle"] == {
        "name": "knee-gentle",
        "title": "Gentle backward walking for sore knees",
        "duration_s": 900,
        "max_speed_kmh": 2.5,
        "max_incline_pct": 0.0,
    }


def test_list_includes_user_profiles_and_warns_about_broken_ones(config: Path) -> None:
    p = cli("profiles", "-c", str(config), "list")
    assert p.returncode == 0
    assert any(line.startswith("mine ") and "My walk" in line for line in p.stdout.splitlines())
    assert "broken" not in p.stdout
    (warning,) = p.stderr.strip().splitlines()
    assert warning.startswith(f"warning: {config.parent / 'profiles' / 'broken.toml'}: ")
    assert "phase 1 'x', duration_s: required" in warning


def test_show_prints_phases_cues_and_the_plan() -> None:
    p = cli("profiles", "show", "hill-intro")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.startswith("hill-intro: Backward hill introduction\n")
    assert "6 phases, 18:00 in all, 12:00 backward" in out
    assert "3. hill — backward, 4:00, 2 km/h, 5 %, reached within 90 s" in out
    assert "   “The belt tilts up slowly to 5 %." in out
    # The planned setpoints: when each phase reaches its targets, and the step totals.
    assert "  1. from 0:00: 3 km/h after 0:40, 0 % from the start" in out
    assert "  3. from 6:00: 2 km/h after 1:30, 5 % after 1:30" in out
    assert "never two within 1 s" in out


def test_show_a_user_profile_with_a_turn(config: Path) -> None:
    p = cli("profiles", "show", "mine", "-c", str(config))  # -c after the action works too
    assert p.returncode == 0, p.stderr
    assert "2. back — backward, 1:00, 2 km/h, 1 %, reached within 20 s" in p.stdout
    # After the turn the belt restarts at its minimum: 0.5 -> 2.0 spread over 20 s.
    assert "  2. from 2:00: 2 km/h after 0:20, 1 % after 0:20" in p.stdout


def test_show_says_when_the_limits_refuse_a_profile(tmp_path: Path, config: Path) -> None:
    strict = tmp_path / "strict.toml"
    strict.write_text(config.read_text() + "[safety]\nmax_speed_kmh = 2.2\n")
    p = cli("profiles", "-c", str(strict), "show", "mine")
    assert p.returncode == 0
    assert "Refused with the current safety limits:" in p.stdout
    assert (
        "  - profile 'mine', phase 1 'warm': speed_kmh 2.5 is above the safety limit "
        "max_speed_kmh = 2.2"
    ) in p.stdout
    assert "Planned" not in p.stdout


def test_show_unknown_profile_is_one_line() -> None:
    err = one_line_error(cli("profiles", "show", "moonwalk"))
    assert err.startswith("retrotread: error: unknown profile 'moonwalk'; known profiles: ")


def test_check_passes_the_builtins() -> None:
    files = sorted(str(f) for f in (ROOT / "profiles").glob("*.toml"))
    p = cli("profiles", "check", *files)
    assert p.returncode == 0, p.stdout
    assert len(p.stdout.splitlines()) == len(files)
    assert all(line.startswith("ok   ") for line in p.stdout.splitlines())


def test_check_refuses_with_clear_messages_and_exit_1(tmp_path: Path) -> None:
    fast = tmp_path / "fast.toml"
    fast.write_text(TOO_FAST)
    abrupt = tmp_path / "abrupt.toml"
    abrupt.write_text(SHORT_RAMP)
    broken = tmp_path / "broken.toml"
    broken.write_text("name = [\n")
    missing = tmp_path / "missing.toml"
    good = ROOT / "profiles" / "first-steps.toml"
    p = cli("profiles", "check", str(good), str(fast), str(abrupt), str(broken), str(missing))
    assert p.returncode == 1
    assert p.stdout.splitlines() == [
        f"ok   {good}: first-steps (8:00, 3 phases)",
        f"FAIL {fast}: profile 'fast', phase 1 'run': speed_kmh 6 is above the safety limit "
        "max_speed_kmh = 5",
        f"FAIL {abrupt}: profile 'abrupt', phase 1 'go': ramp_s 10 is too short to take "
        "speed_kmh from 0 to 3 in steps of 0.1 km/h every 1 s (needs 30 s)",
        f"FAIL {broken}: not valid TOML: Invalid value (at end of document)",
        f"FAIL {missing}: no such file",
    ]


@pytest.mark.parametrize("where", ["before", "after"])
def test_check_uses_the_config_limits(tmp_path: Path, where: str) -> None:
    fast = tmp_path / "fast.toml"
    fast.write_text(TOO_FAST)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[safety]\nmax_speed_kmh = 6.5\n")
    args = ["profiles", "-c", str(cfg), "check", str(fast)]
    if where == "after":
        args = ["profiles", "check", "-c", str(cfg), str(fast)]
    p = cli(*args)
    assert p.returncode == 0, p.stdout
    assert p.stdout.startswith(f"ok   {fast}: fast (1:00, 1 phases)")
    # The environment overrides the file, as for the daemon.
    p = cli(*args, env={"RETROTREAD_SAFETY__MAX_SPEED_KMH": "5"})
    assert p.returncode == 1


def test_check_with_a_bad_config_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[safety]\nmax_speed_kmh = 20\n")
    err = one_line_error(
        cli("profiles", "-c", str(cfg), "check", str(ROOT / "profiles" / "build-up.toml"))
    )
    assert err == (
        f"retrotread: error: {cfg}: safety.max_speed_kmh = 20: Input should be less than or "
        "equal to 8"
    )


def test_help_names_the_actions() -> None:
    p = cli("profiles", "--help")
    assert p.returncode == 0
    helps = {line.split()[0] for line in p.stdout.splitlines() if line.startswith("    ")}
    assert helps >= {"list", "show", "check"}
