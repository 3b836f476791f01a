"""The command line as a user runs it: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrotread.session.log import read_session
from tests.clihelpers import RETROTREAD, ROOT, one_line_error
from tests.clihelpers import run_cli as cli


def test_profiles_show_and_unknown() -> None:
    p = cli("profiles", "show", "first-steps")
    assert p.returncode == 0
    assert "2. backward — backward, 2:00, 1.5 km/h" in p.stdout
    err = one_line_error(cli("profiles", "show", "moonwalk"))
    assert "unknown profile 'moonwalk'" in err


def test_profiles_check(tmp_path: Path) -> None:
    too_fast = tmp_path / "fast.toml"
    too_fast.write_text(
        'name = "fast"\n[[phase]]\nname = "run"\nduration_s = 60\nspeed_kmh = 6.0\nramp_s = 60\n'
    )
    broken = tmp_path / "broken.toml"
    broken.write_text("name = [\n")
    p = cli(
        "profiles", "check", str(ROOT / "profiles" / "hill-intro.toml"), str(too_fast), str(broken)
    )
    assert p.returncode == 1
    out = p.stdout.splitlines()
    assert out[0].startswith("ok ")
    assert out[1] == (
        f"FAIL {too_fast}: profile 'fast', phase 1 'run': speed_kmh 6 is above the safety "
        "limit max_speed_kmh = 5"
    )
    assert out[2].startswith(f"FAIL {broken}: not valid TOML")
    # Limits come from the config: with a higher cap the same file passes.
    cfg = tmp_path / "c.toml"
    cfg.write_text("[safety]\nmax_speed_kmh = 6.5\n")
    assert cli("profiles", "-c", str(cfg), "check", str(too_fast)).returncode == 0


def test_check_config_good_bad_missing_and_env(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    good.write_text(
        f'[mqtt]\nhost = "broker.lan"\nusername = "walker"\npassword_file = "{secret}"\n'
        "[safety]\nmax_speed_kmh = 4.0\n"
    )
    p = cli("check-config", "-c", str(good))
    assert p.returncode == 0, p.stderr
    shown = json.loads(p.stdout)
    assert shown["mqtt"]["host"] == "broker.lan"
    assert shown["mqtt"]["password"] == "***"
    assert "hunter2" not in p.stdout
    assert shown["safety"]["max_speed_kmh"] == 4.0
    assert shown["mqtt"]["base_topic"] == "retrotread/treadmill"
    p = cli(
        "check-config",
        "-c",
        str(good),
        env={"RETROTREAD_SAFETY__MAX_SPEED_KMH": "3.5", "RETROTREAD_MQTT__PORT": "8883"},
    )
    assert json.loads(p.stdout)["safety"]["max_speed_kmh"] == 3.5
    assert json.loads(p.stdout)["mqtt"]["port"] == 8883
    bad_key = tmp_path / "badkey.toml"
    bad_key.write_text('[mqtt]\nhots = "x"\n')
    assert one_line_error(cli("check-config", "-c", str(bad_key))) == (
        f"retrotread: error: {bad_key}: unknown key 'mqtt.hots' in [mqtt]"
    )
    bad_value = tmp_path / "badvalue.toml"
    bad_value.write_text("[safety]\nmax_speed_kmh = 12\n")
    err = one_line_error(cli("check-config", "-c", str(bad_value)))
    assert "safety.max_speed_kmh = 12" in err
    assert "less than or equal to 8" in err
    bad_toml = tmp_path / "badtoml.toml"
    bad_toml.write_text("[safety\n")
    assert "not valid TOML" in one_line_error(cli("check-config", "-c", str(bad_toml)))
    assert one_line_error(cli("check-config", "-c", str(tmp_path / "none.toml"))).endswith(
        "no such file"
    )
    err = one_line_error(
        cli("check-config", "-c", str(good), env={"RETROTREAD_MQTT__PORT": "http"})
    )
    assert "mqtt.port = 'http'" in err


def test_run_simulated_profile_end_to_end(tmp_path: Path) -> None:
    p = cli(
        "run",
        "--simulate",
        "--profile",
        "hill-intro",
        "--speedup",
        "120",
        "--no-mqtt",
        "--sessions-dir",
        str(tmp_path),
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith("session completed; log: ")
    log = read_session(Path(last.split("log: ")[1]))
    assert log.outcome == "completed"
    assert "▶ hill (backward, 2.0 km/h, 5.0 %)" in p.stdout


def test_run_refuses_speedup_on_real_treadmill() -> None:
    err = one_line_error(cli("run", "--speedup", "10", "--profile", "first-steps"))
    assert "only works with --simulate" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("decode", "2acd", "84"), "needs at least the 2-byte flags"),
        (("decode", "2acd", "zz"), "is not hex"),
        (("decode", "2a99", "0102"), "not one this decoder covers"),
    ],
)
def test_decode_errors(args: tuple[str, ...], needle: str) -> None:
    assert needle in one_line_error(cli(*args))


def test_decode_golden() -> None:
    p = cli("decode", "0x2ACD", "8424c8002100000100ffffff3c00400000")
    assert p.returncode == 0
    d = json.loads(p.stdout)
    assert (d["speed_kmh"], d["distance_m"], d["elapsed_s"], d["extra_hex"]) == (
        2.0,
        33,
        60,
        "400000",
    )


def test_output_read_by_a_reader_that_stops_is_no_error() -> None:
    """``retrotread profiles list | head -0``: the reader is gone before the first line; the
    command ends quietly (as a process ended by SIGPIPE), with nothing on stderr."""
    exe = [str(RETROTREAD)] if RETROTREAD.exists() else [sys.executable, "-m", "retrotread.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROTREAD_")}
    read, write = os.pipe()
    os.close(read)  # nobody will read
    try:
        p = subprocess.run(
            [*exe, "profiles", "list"], stdout=write, stderr=subprocess.PIPE, env=env, timeout=60
        )
    finally:
        os.close(write)
    assert p.stderr.decode() == ""
    assert p.returncode == 141
