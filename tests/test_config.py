"""Configuration (SPEC.md §7): defaults, refusals by name, environment, secrets, display."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from retrotread.config import (
    DEFAULT_PATH,
    Config,
    MqttConfig,
    SafetyConfig,
    config_to_display,
    effective_base_topic,
    find_config_path,
    load_config,
)
from retrotread.errors import ConfigError

NO_ENV: dict[str, str] = {}


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error(path: Path | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, NO_ENV if environ is None else environ)
    message = str(err.value)
    assert "\n" not in message  # one line
    return message


def test_everything_has_a_sane_default() -> None:
    c = load_config(None, {"HOME": "/home/walker"})
    assert c.safety == SafetyConfig(
        max_speed_kmh=5.0,
        max_incline_pct=10.0,
        speed_step_kmh=0.1,
        incline_step_pct=0.5,
        step_interval_s=1.0,
        settle_s=5.0,
    )
    t = c.treadmill
    assert (t.address, t.name, t.adapter) == (None, None, None)
    assert (t.connect_timeout_s, t.scan_timeout_s, t.silence_timeout_s) == (20, 10, 5.0)
    assert (t.command_timeout_s, t.reconnect_max_backoff_s, t.on_reconnect) == (5.0, 60, "pause")
    assert (t.pace_width, t.turn_speed_kmh, t.turn_countdown_s) == (1, None, None)
    m = c.mqtt
    assert (m.enabled, m.host, m.port, m.tls, m.device_id) == (
        True,
        "localhost",
        1883,
        False,
        "treadmill",
    )
    assert (m.discovery, m.discovery_prefix, m.keepalive_s) == (True, "homeassistant", 30)
    assert (m.on_broker_loss, m.max_payload_bytes, m.password) == ("continue", 4096, None)
    assert effective_base_topic(m) == m.effective_base_topic == "retrotread/treadmill"
    assert c.sessions.retention_days is None
    assert c.profiles.dirs == []


def test_an_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), NO_ENV).safety == SafetyConfig()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"STATE_DIRECTORY": "/var/lib/retrotread"}, Path("/var/lib/retrotread/sessions")),
        ({"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}, Path("/var/lib/a/sessions")),
    ],
)
def test_sessions_dir_follows_systemd_state_directory(
    environ: dict[str, str], expected: Path
) -> None:
    assert load_config(None, environ).sessions.dir == expected


def test_sessions_dir_without_systemd_is_under_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/walker")
    assert load_config(None, NO_ENV).sessions.dir == Path(
        "/home/walker/.local/state/retrotread/sessions"
    )


def test_base_topic_follows_device_id_unless_set() -> None:
    assert effective_base_topic(MqttConfig(device_id="gym-3")) == "retrotread/gym-3"
    assert effective_base_topic(MqttConfig(base_topic="home/tread")) == "home/tread"


def test_a_full_file_reads_with_paths_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    for f in ("ca.pem", "me.pem", "me.key"):
        (tmp_path / "certs" / f).write_text("x")
    path = write(
        tmp_path,
        """
[treadmill]
address = "C0:FF:EE:00:00:01"
adapter = "hci1"
turn_speed_kmh = 0.8
turn_countdown_s = 10

[mqtt]
host = "broker.lan"
port = 8883
username = "walker"
password = "s3cret"
tls = true
ca_file = "certs/ca.pem"
cert_file = "certs/me.pem"
key_file = "certs/me.key"
device_id = "gym-3"

[safety]
max_speed_kmh = 4.0
step_interval_s = 2.0

[sessions]
dir = "logs"
retention_days = 90

[profiles]
dirs = ["mine", "/abs/profiles"]
""",
    )
    c = load_config(path, NO_ENV)
    assert c.treadmill.turn_speed_kmh == 0.8
    assert c.mqtt.ca_file == tmp_path / "certs" / "ca.pem"
    assert c.sessions.dir == tmp_path / "logs"
    assert c.profiles.dirs == [tmp_path / "mine", Path("/abs/profiles")]
    assert (c.safety.max_speed_kmh, c.safety.step_interval_s) == (4.0, 2.0)
    assert c.mqtt.effective_base_topic == "retrotread/gym-3"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[mqtt]\nhots = "x"\n', "unknown key 'mqtt.hots' in [mqtt]"),
        ("[mqttt]\nhost = 1\n", "unknown key 'mqttt' in the top level"),
        ("verbose = true\n", "unknown key 'verbose' in the top level"),
        (
            "[safety]\nmax_speed_kmh = 12\n",
            "safety.max_speed_kmh = 12: Input should be less than or equal to 8",
        ),
        (
            "[safety]\nmax_incline_pct = 20\n",
            "safety.max_incline_pct = 20: Input should be less than or equal to 15",
        ),
        (
            "[safety]\nspeed_step_kmh = 1.0\n",
            "safety.speed_step_kmh = 1.0: Input should be less than or equal to 0.5",
        ),
        (
            "[safety]\nincline_step_pct = 3\n",
            "safety.incline_step_pct = 3: Input should be less than or equal to 2",
        ),
        (
            "[safety]\nmax_speed_kmh = -1\n",
            "safety.max_speed_kmh = -1: Input should be greater than 0",
        ),
        (
            "[safety]\nstep_interval_s = 0.1\n",
            "safety.step_interval_s = 0.1: Input should be greater than or equal to 0.5",
        ),
        (
            '[treadmill]\non_reconnect = "resume"\n',
            "treadmill.on_reconnect = 'resume': Input should be 'pause' or 'stop'",
        ),
        (
            "[mqtt]\nport = 70000\n",
            "mqtt.port = 70000: Input should be less than or equal to 65535",
        ),
        (
            '[mqtt]\nbase_topic = "home/#"\n',
            "mqtt.base_topic = 'home/#': must be a plain topic (no '#', '+', trailing '/')",
        ),
        (
            '[mqtt]\ndevice_id = "a b"\n',
            "mqtt.device_id = 'a b': String should match pattern '^[A-Za-z0-9_-]{1,64}$'",
        ),
        (
            "[treadmill]\nturn_speed_kmh = 1.5\n[safety]\nmax_speed_kmh = 1.0\n",
            "treadmill.turn_speed_kmh 1.5 is above safety.max_speed_kmh 1",
        ),
        (
            'safety = "fast"\n',
            "safety = 'fast': Input should be a valid dictionary or instance of SafetyConfig",
        ),
    ],
)
def test_bad_files_are_refused_with_file_key_value_and_why(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    assert error(path) == f"{path}: {expected}"


def test_several_problems_are_all_named_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[mqtt]\nhots = "x"\n[safety]\nmax_speed_kmh = 9\n')
    message = error(path)
    assert "unknown key 'mqtt.hots'" in message
    assert "safety.max_speed_kmh = 9" in message


def test_missing_unreadable_and_broken_files(tmp_path: Path) -> None:
    assert error(tmp_path / "none.toml") == f"{tmp_path / 'none.toml'}: no such file"
    assert error(tmp_path) == f"{tmp_path}: cannot read: Is a directory"
    bad = write(tmp_path, "[safety]\nmax_speed_kmh = 4.0\nstep_interval_s = = 2\n")
    message = error(bad)
    assert message.startswith(f"{bad}: not valid TOML: ")
    assert "line 3" in message


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[mqtt]\nhost = "a"\nusername = "u"\n[safety]\nmax_speed_kmh = 4.0\n')
    c = load_config(
        path,
        {
            "RETROTREAD_MQTT__HOST": "b",
            "RETROTREAD_MQTT__PORT": "8883",
            "RETROTREAD_MQTT__TLS": "true",
            "RETROTREAD_MQTT__PASSWORD": "123456",  # digits stay a string
            "RETROTREAD_SAFETY__MAX_SPEED_KMH": "3.5",
            "RETROTREAD_TREADMILL__ON_RECONNECT": "stop",
            "RETROTREAD_PROFILES__DIRS": "/a:/b",
            "RETROTREAD_CONFIG": "/ignored/no-double-underscore",
        },
    )
    assert (c.mqtt.host, c.mqtt.port, c.mqtt.tls, c.mqtt.password) == ("b", 8883, True, "123456")
    assert c.safety.max_speed_kmh == 3.5
    assert c.treadmill.on_reconnect == "stop"
    assert c.profiles.dirs == [Path("/a"), Path("/b")]


def test_environment_paths_expand_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write(tmp_path, "")
    c = load_config(
        path,
        {"RETROTREAD_SESSIONS__DIR": "~/logs", "RETROTREAD_PROFILES__DIRS": f"~/a{os.pathsep}/b"},
    )
    assert c.sessions.dir == tmp_path / "logs"
    assert c.profiles.dirs == [tmp_path / "a", Path("/b")]


def test_environment_can_unset_and_take_a_toml_list(tmp_path: Path) -> None:
    path = write(tmp_path, "[treadmill]\nturn_countdown_s = 10\n")
    c = load_config(
        path,
        {"RETROTREAD_TREADMILL__TURN_COUNTDOWN_S": "", "RETROTREAD_PROFILES__DIRS": '["/x"]'},
    )
    assert c.treadmill.turn_countdown_s is None
    assert c.profiles.dirs == [Path("/x")]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"RETROTREAD_MQTT__PORT": "http"},
            "mqtt.port = 'http' (from $RETROTREAD_MQTT__PORT): Input should be a valid integer, "
            "unable to parse string as an integer",
        ),
        (
            {"RETROTREAD_MQTT__HOTS": "x"},
            "unknown key 'mqtt.hots' (from $RETROTREAD_MQTT__HOTS) in [mqtt]",
        ),
        (
            {"RETROTREAD_SAFETY__MAX_SPEED_KMH": "9"},
            "safety.max_speed_kmh = '9' (from $RETROTREAD_SAFETY__MAX_SPEED_KMH): Input should "
            "be less than or equal to 8",
        ),
        (
            {"retrotread_mqtt__port": "0"},  # the name as it was set, whatever its case
            "mqtt.port = '0' (from $retrotread_mqtt__port): Input should be greater than or "
            "equal to 1",
        ),
        ({"RETROTREAD_MQTTT__HOST": "x"}, "unknown key 'mqttt' in the top level"),
        (
            {"RETROTREAD_PROFILES__DIRS": "[1"},
            "profiles.dirs = '[1' (from $RETROTREAD_PROFILES__DIRS): Input should be a valid list",
        ),
    ],
)
def test_bad_environment_values_name_the_variable(
    tmp_path: Path, environ: dict[str, str], expected: str
) -> None:
    path = write(tmp_path, "")
    assert error(path, environ) == f"{path}: {expected}"


def test_password_file_is_read_and_masked(tmp_path: Path) -> None:
    secret = write(tmp_path, "hunter2 \n", name="pw")
    path = write(tmp_path, '[mqtt]\nusername = "walker"\npassword_file = "pw"\n')
    c = load_config(path, NO_ENV)
    assert c.mqtt.password == "hunter2 "  # only the trailing newline is not part of it
    assert c.mqtt.password_file == secret
    shown = config_to_display(c)
    assert shown["mqtt"]["password"] == "***"
    assert "hunter2" not in repr(shown)
    assert shown["mqtt"]["username"] == "walker"
    assert shown["mqtt"]["base_topic"] == "retrotread/treadmill"
    # The environment beats the file.
    env = {"RETROTREAD_MQTT__PASSWORD": "from-env"}
    assert load_config(path, env).mqtt.password == "from-env"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[mqtt]\nusername = "u"\npassword_file = "nope"\n',
            "mqtt.password_file = '{dir}/nope': cannot read: No such file or directory",
        ),
        (
            '[mqtt]\nusername = "u"\npassword_file = "empty"\n',
            "mqtt.password_file = '{dir}/empty': file is empty",
        ),
        (
            '[mqtt]\nusername = "u"\npassword = "a"\npassword_file = "empty"\n',
            "set mqtt.password or mqtt.password_file, not both",
        ),
        ('[mqtt]\npassword = "a"\n', "mqtt.password needs mqtt.username (MQTT sends both)"),
        ('[mqtt]\nca_file = "ca.pem"\n', "mqtt.ca_file = '{dir}/ca.pem': no such file"),
        ('[mqtt]\ncert_file = "empty"\n', "mqtt.cert_file and mqtt.key_file go together"),
    ],
)
def test_secret_and_tls_files(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, "", name="empty")
    path = write(tmp_path, text)
    assert error(path) == f"{path}: {expected.format(dir=tmp_path)}"


def test_display_without_a_password_shows_none() -> None:
    shown = config_to_display(Config())
    assert shown["mqtt"]["password"] is None
    assert shown["safety"]["max_speed_kmh"] == 5.0


def test_find_config_path(tmp_path: Path) -> None:
    given = tmp_path / "given.toml"
    assert find_config_path(given, {"RETROTREAD_CONFIG": "/env.toml"}) == given
    assert find_config_path(None, {"RETROTREAD_CONFIG": "/env.toml"}) == Path("/env.toml")
    assert find_config_path(None, {}) == (DEFAULT_PATH if DEFAULT_PATH.exists() else None)


def test_sections_refuse_unknown_keys_in_code_too() -> None:
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        SafetyConfig.model_validate({"max_sped_kmh": 3})
