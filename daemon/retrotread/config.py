"""Configuration (SPEC.md §7): one TOML file, every key optional, unknown keys refused.

Validated once at the edge with pydantic and passed down as plain values. Environment
variables ``RETROTREAD_<SECTION>__<KEY>`` override the file (read by pydantic-settings;
an empty value unsets an optional key; a list is a TOML array or ``os.pathsep``-separated).
Relative paths in the file are relative to the file; ``~`` is expanded everywhere.
"""

from __future__ import annotations

import os
import shlex
import string
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from retrotread.coach.walkers import WalkerConfig, loosened
from retrotread.errors import ConfigError
from retrotread.events import COMMAND_REFUSED, EVENT_TYPES, SPOKEN_BY_DEFAULT
from retrotread.tomlfile import problems, read_toml

ENV_PREFIX = "RETROTREAD_"
ENV_CONFIG = "RETROTREAD_CONFIG"
DEFAULT_PATH = Path("/etc/retrotread/config.toml")
MASK = "***"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TreadmillConfig(_Section):
    """Which treadmill, how to reach it, and how a turn-around is done."""

    address: str | None = Field(default=None, description="Bluetooth address; else name or FTMS")
    name: str | None = None
    adapter: str | None = Field(default=None, description="e.g. hci0")
    connect_timeout_s: float = Field(default=20.0, gt=0, le=300)
    scan_timeout_s: float = Field(default=10.0, gt=0, le=300)
    silence_timeout_s: float = Field(default=5.0, gt=0, le=120)
    command_timeout_s: float = Field(default=5.0, gt=0, le=30)
    # A stop (or pause) not answered this fast is sent again over a fresh link.
    stop_wait_s: float = Field(default=1.5, ge=0.2, le=30)
    reconnect_max_backoff_s: float = Field(default=60.0, ge=1, le=3600)
    on_reconnect: Literal["pause", "stop"] = "pause"
    pace_width: Literal[1, 2] = 1
    # Slowing down for a turn-around is only sane at a crawl: 2 km/h at most.
    turn_speed_kmh: float | None = Field(default=None, gt=0, le=2.0)
    turn_countdown_s: float | None = Field(default=None, gt=0, le=120)  # None: wait for resume


class MqttConfig(_Section):
    """The broker, the topics, and Home Assistant discovery (SPEC.md §3)."""

    enabled: bool = True
    host: str = Field(default="localhost", min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    device_id: str = Field(default="treadmill", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    base_topic: str | None = None
    client_id: str | None = None
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    on_broker_loss: Literal["continue", "pause"] = "continue"
    max_payload_bytes: int = Field(default=4096, ge=256, le=1_000_000)
    # Outside a session, unchanged telemetry goes out at most this often (0: every sample).
    idle_telemetry_s: float = Field(default=30.0, ge=0, le=3600)

    @field_validator("base_topic", "discovery_prefix")
    @classmethod
    def _plain_topic(cls, value: str | None) -> str | None:
        if value is not None and (
            not value or any(c in value for c in "#+\0") or value.endswith("/")
        ):
            raise ValueError("must be a plain topic (no '#', '+', trailing '/')")
        return value

    @property
    def effective_base_topic(self) -> str:
        return effective_base_topic(self)


def effective_base_topic(mqtt: MqttConfig) -> str:
    """``[mqtt] base_topic``, or ``retrotread/<device_id>`` when unset (SPEC.md §3)."""
    return mqtt.base_topic or f"retrotread/{mqtt.device_id}"


class SafetyConfig(_Section):
    """Walker-safety limits (SPEC.md §2): conservative defaults, ceilings no file can lift."""

    max_speed_kmh: float = Field(default=5.0, gt=0, le=8.0)
    # 0 is allowed: it keeps the belt flat.
    max_incline_pct: float = Field(default=10.0, ge=0, le=15.0)
    speed_step_kmh: float = Field(default=0.1, ge=0.01, le=0.5)
    incline_step_pct: float = Field(default=0.5, ge=0.1, le=2.0)
    # A floor too: a step every 0.5 s is already brisk for someone walking backward.
    step_interval_s: float = Field(default=1.0, ge=0.5, le=30)
    settle_s: float = Field(default=5.0, ge=1, le=60)
    # The heart-rate cap (SPEC.md §2, README "Heart-rate cap"): off unless set here or per
    # walker (the lower wins), or derived from a walker's age.
    max_heart_rate_bpm: int | None = Field(default=None, ge=60, le=220)
    # A walker's age gives a cap of this fraction of 208 - 0.7 x age (Tanaka et al. 2001).
    heart_rate_cap_fraction: float = Field(default=0.85, ge=0.5, le=1.0)
    heart_rate_hysteresis_bpm: int = Field(default=5, ge=1, le=30)
    # Above the cap this long (in all, within one episode): step down; this long: finish.
    heart_rate_step_down_after_s: float = Field(default=20.0, ge=5, le=300)
    heart_rate_finish_after_s: float = Field(default=60.0, ge=10, le=900)
    # One step down (incline first, then speed) this often while above the cap (never more
    # often than step_interval_s).
    heart_rate_step_every_s: float = Field(default=5.0, ge=0.5, le=60)

    @model_validator(mode="after")
    def _finish_after_step_down(self) -> SafetyConfig:
        if self.heart_rate_finish_after_s <= self.heart_rate_step_down_after_s:
            raise ValueError(
                f"heart_rate_finish_after_s {self.heart_rate_finish_after_s:g} must be longer "
                f"than heart_rate_step_down_after_s {self.heart_rate_step_down_after_s:g}"
            )
        return self


class HeartRateConfig(_Section):
    """The heart-rate strap (Bluetooth Heart Rate Service), a second link beside the treadmill.

    On Bluetooth a strap is used only when ``address`` or ``name`` is set: one picked at
    random could be a neighbour's, and it would steer this belt. With ``--simulate`` a
    simulated strap is used unless ``enabled = false``.
    """

    enabled: bool = True
    address: str | None = Field(default=None, description="Bluetooth address of the strap")
    name: str | None = Field(default=None, description="its advertised name")
    adapter: str | None = Field(default=None, description="default: the treadmill's adapter")
    connect_timeout_s: float = Field(default=20.0, gt=0, le=300)
    scan_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # A strap notifies about once a second; silence this long counts as a lost strap.
    silence_timeout_s: float = Field(default=5.0, ge=2, le=120)
    reconnect_max_backoff_s: float = Field(default=30.0, ge=1, le=3600)
    # A reading older than this is no reading (then the treadmill's own field, if any).
    stale_after_s: float = Field(default=5.0, ge=1, le=60)
    # The same value for this long (and no new beat intervals) is a frozen strap.
    frozen_after_s: float = Field(default=45.0, ge=10, le=600)

    def wanted(self, simulated: bool) -> bool:
        """Whether the daemon keeps a strap link."""
        return self.enabled and (simulated or bool(self.address or self.name))


def default_sessions_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$STATE_DIRECTORY/sessions (systemd StateDirectory=), else ~/.local/state/..."""
    env = os.environ if environ is None else environ
    state = env.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "sessions"  # systemd may list several
    return Path.home() / ".local" / "state" / "retrotread" / "sessions"


class SessionsConfig(_Section):
    """Where session logs go and how long they are kept (None: forever)."""

    dir: Path = Field(default_factory=default_sessions_dir)
    retention_days: int | None = Field(default=None, ge=1)


class ProfilesConfig(_Section):
    """User profile directories, read after the built-in profiles."""

    dirs: list[Path] = Field(default_factory=list)


CUE_PLACEHOLDERS = frozenset({"text", "type"})
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish"})


def parse_cue_command(template: str) -> list[str]:
    """``[cues] command`` as arguments, checked; ValueError says what is wrong.

    Split like a shell splits (``shlex``); ``{text}`` and ``{type}`` are filled in per
    argument later, so cue text is always one argument and never parsed by a shell.
    """
    try:
        argv = shlex.split(template)
    except ValueError as exc:  # e.g. "No closing quotation"
        raise ValueError(f"cannot split into arguments: {exc}") from None
    if not argv:
        raise ValueError("is empty")
    for arg in argv:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(arg) if f is not None]
        except ValueError as exc:  # e.g. "Single '}' encountered"
            raise ValueError(f"argument {arg!r}: {exc} (write {{{{ or }}}} for a brace)") from None
        unknown = sorted(set(fields) - CUE_PLACEHOLDERS)
        if unknown:
            raise ValueError(
                f"argument {arg!r}: unknown placeholder {{{unknown[0]}}} (use {{text}} or {{type}})"
            )
    if os.path.basename(argv[0]) in _SHELLS and any("{text}" in a for a in argv[1:]):
        raise ValueError(
            "puts {text} into a shell command line, where cue text would run as shell code; "
            "a shell script reads the text from standard input instead"
        )
    return argv


class CuesConfig(_Section):
    """Spoken cues without Home Assistant: a command run for each cue, e.g. "espeak-ng {text}"."""

    command: str | None = None
    events: list[str] = Field(default_factory=lambda: list(SPOKEN_BY_DEFAULT))
    timeout_s: float = Field(default=30.0, gt=0, le=600)

    @field_validator("command")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cue_command(value)
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        # command_refused is told on MQTT by the bridge; the runner never sees it.
        allowed = [t for t in EVENT_TYPES if t != COMMAND_REFUSED]
        for name in value:
            if name not in allowed:
                raise ValueError(f"unknown event type {name!r} (one of: {', '.join(allowed)})")
        return value


def parse_listen(value: str) -> tuple[str, int]:
    """``"0.0.0.0:8080"``, ``"[::]:8080"`` or ``":8080"`` (every address) as (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f'{value!r} is not HOST:PORT (e.g. "0.0.0.0:8080")')
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"port {number} is out of range (1-65535)")
    host = host.removeprefix("[").removesuffix("]")
    if any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError(f"{host!r} is not a host name or address")
    return host or "0.0.0.0", number


class WebConfig(_Section):
    """The phone page served by the daemon (off unless ``listen`` is set)."""

    listen: str | None = Field(default=None, description='e.g. "0.0.0.0:8080"; unset: off')
    # The access token; default: web-token beside the sessions directory (the state dir).
    token_file: Path | None = None
    # The address a phone uses, when the listen address is not it (a name, a proxy).
    url: str | None = Field(default=None, pattern=r"^https?://[^/?#\s]+/?$")
    max_clients: int = Field(default=8, ge=1, le=64)
    # TLS, for a browser that installs only from https (both or neither).
    cert_file: Path | None = None
    key_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen is not None else None


class Config(_Section):
    """The whole configuration file."""

    treadmill: TreadmillConfig = Field(default_factory=TreadmillConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)
    profiles: ProfilesConfig = Field(default_factory=ProfilesConfig)
    heart_rate: HeartRateConfig = Field(default_factory=HeartRateConfig)
    # [[walker]] entries (the coach); none: one implicit walker, everything as before.
    walker: list[WalkerConfig] = Field(default_factory=list, max_length=32)
    cues: CuesConfig = Field(default_factory=CuesConfig)
    web: WebConfig = Field(default_factory=WebConfig)

    @property
    def web_token_file(self) -> Path:
        """``[web] token_file``, else ``web-token`` beside the sessions directory (under
        systemd both are in the StateDirectory)."""
        return self.web.token_file or self.sessions.dir.parent / "web-token"

    @model_validator(mode="after")
    def _turn_speed_within_limits(self) -> Config:
        turn = self.treadmill.turn_speed_kmh
        if turn is not None and turn > self.safety.max_speed_kmh:
            raise ValueError(
                f"treadmill.turn_speed_kmh {turn:g} is above safety.max_speed_kmh "
                f"{self.safety.max_speed_kmh:g}"
            )
        return self

    @model_validator(mode="after")
    def _walkers_only_tighten(self) -> Config:
        problems: list[str] = []
        seen: set[str] = set()
        turn = self.treadmill.turn_speed_kmh
        for w in self.walker:
            if w.name.casefold() in seen:
                problems.append(f"walker {w.name!r} is configured twice")
            seen.add(w.name.casefold())
            problems.extend(loosened(w, self.safety))
            if turn is not None and w.max_speed_kmh is not None and turn > w.max_speed_kmh:
                problems.append(
                    f"walker {w.name!r}: max_speed_kmh = {w.max_speed_kmh:g} is below "
                    f"treadmill.turn_speed_kmh = {turn:g}"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


SECRET_KEYS = frozenset({("mqtt", "password")})
# Keys holding paths: "~" is expanded, and relative ones are taken from the file's folder.
PATH_KEYS = frozenset(
    {
        ("mqtt", "password_file"),
        ("mqtt", "ca_file"),
        ("mqtt", "cert_file"),
        ("mqtt", "key_file"),
        ("sessions", "dir"),
        ("profiles", "dirs"),
        ("web", "token_file"),
        ("web", "cert_file"),
        ("web", "key_file"),
    }
)


def find_config_path(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """``path``, else $RETROTREAD_CONFIG, else /etc/retrotread/config.toml if it exists."""
    env = os.environ if environ is None else environ
    if path is not None:
        return path
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    return DEFAULT_PATH if DEFAULT_PATH.exists() else None


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (None: defaults), apply the environment, validate, read secret files.

    Raises ConfigError, one line naming the file (or variable), the dotted key, the bad
    value and why.
    """
    env = os.environ if environ is None else environ
    source = str(path) if path is not None else "configuration"
    data = read_toml(path, ConfigError) if path is not None else {}
    if path is not None:
        _resolve_paths(data, path.absolute().parent)
    from_env = _apply_env(data, env, source)
    sessions = data.setdefault("sessions", {})
    if isinstance(sessions, dict) and sessions.get("dir") is None:
        sessions["dir"] = str(default_sessions_dir(env))  # from ``environ``, not os.environ
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(source, exc, data, from_env)) from None
    _check_files(config, source, from_env)
    return config


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    def resolve(value: object) -> object:
        if not isinstance(value, str) or not value:
            return value  # not a path: pydantic says so, with the key
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else base / p)

    for section, key in PATH_KEYS:
        table = data.get(section)
        if not isinstance(table, dict) or key not in table:
            continue
        value = table[key]
        table[key] = [resolve(v) for v in value] if isinstance(value, list) else resolve(value)


class _Settings(BaseSettings, Config):
    """The configuration as pydantic-settings sees the environment (never instantiated)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False
    )


class _Environment(EnvSettingsSource):
    """``RETROTREAD_<SECTION>__<KEY>`` from a given mapping, as nested values.

    A list of paths is a TOML array or ``os.pathsep``-separated; anything else complex
    (a ``[[walker]]`` list) is JSON, as pydantic-settings reads it.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(_Settings)
        self.env_vars = {name.lower(): value for name, value in environ.items()}

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        if field is None or typing.get_args(field.annotation) != (Path,):
            return super().decode_complex_value(field_name, field, value)  # JSON
        if value.lstrip().startswith("["):
            try:
                return tomllib.loads(f"v = {value}")["v"]
            except tomllib.TOMLDecodeError:
                return value  # pydantic: "Input should be a valid list"
        return [str(Path(p).expanduser()) for p in value.split(os.pathsep) if p]


def _apply_env(
    data: dict[str, Any], environ: Mapping[str, str], source: str
) -> dict[tuple[str, str], str]:
    """Merge ``RETROTREAD_<SECTION>__<KEY>`` into ``data``; return key -> variable name."""
    names = {name.lower(): name for name in environ}
    for name in names:
        section, nested, _ = name.removeprefix(ENV_PREFIX.lower()).partition("__")
        if name.startswith(ENV_PREFIX.lower()) and nested and section not in Config.model_fields:
            data.setdefault(section, {})  # not a section: pydantic refuses it by name
    used: dict[tuple[str, str], str] = {}
    for section, values in _Environment(environ)().items():
        if not isinstance(values, dict):
            data[section] = values  # not a table: pydantic says so
            continue
        table = data.setdefault(section, {})
        for key, value in values.items():
            # (a key can also come from a whole section given as JSON, $RETROTREAD_MQTT)
            var = names.get(f"{ENV_PREFIX}{section}__{key}".lower(), ENV_PREFIX + section.upper())
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: [{section}] must be a table (to take ${var})")
            if value == "":
                value = None
            elif (section, key) in PATH_KEYS and isinstance(value, str):
                value = str(Path(value).expanduser())
            table[key] = value
            used[(section, key)] = var
    return used


def _explain(
    source: str,
    exc: ValidationError,
    data: dict[str, Any],
    from_env: Mapping[tuple[str, str], str],
) -> str:
    out = []
    for p in problems(exc):
        loc = [str(x) for x in p.loc]
        var = from_env.get((loc[0], loc[1])) if len(loc) >= 2 else None
        via = f" (from ${var})" if var else ""
        key = p.key
        walker = _walker_entry(loc, data)
        if walker is not None:  # [[walker]] entries are named by their name, not index
            key = f"{walker}, {'.'.join(loc[2:])}" if loc[2:] else walker
        if p.kind == "extra_forbidden":
            where = f"[{loc[0]}]" if len(loc) > 1 else "the top level"
            if walker is not None:
                key, where = ".".join(loc[2:]), walker
            out.append(f"unknown key {key!r}{via} in {where}")
        elif not loc:
            out.append(p.message)  # a check across sections names its own keys
        else:
            value: Any = data
            for part in loc:
                if isinstance(value, list) and part.isdigit() and int(part) < len(value):
                    value = value[int(part)]
                else:
                    value = value.get(part) if isinstance(value, dict) else None
            shown = "" if value is None else f" = {value!r}"
            out.append(f"{key}{shown}{via}: {p.message}")
    return f"{source}: " + "; ".join(out)


def _walker_entry(loc: list[str], data: dict[str, Any]) -> str | None:
    """``walker 'anna'`` (or ``walker #2`` when unnamed) for a location in [[walker]]."""
    if len(loc) < 2 or loc[0] != "walker" or not loc[1].isdigit():
        return None
    entries = data.get("walker")
    i = int(loc[1])
    entry = entries[i] if isinstance(entries, list) and i < len(entries) else None
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"walker {name!r}" if isinstance(name, str) else f"walker #{i + 1}"


def _check_files(config: Config, source: str, from_env: Mapping[tuple[str, str], str]) -> None:
    """Secrets from files; TLS files must exist; keys that only make sense together."""
    mqtt = config.mqtt
    if mqtt.password_file is not None:
        if mqtt.password is not None and ("mqtt", "password") not in from_env:
            raise ConfigError(f"{source}: set mqtt.password or mqtt.password_file, not both")
        if mqtt.password is None:  # $RETROTREAD_MQTT__PASSWORD beats the file
            try:
                text = mqtt.password_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"{source}: mqtt.password_file = {str(mqtt.password_file)!r}: "
                    f"cannot read: {exc.strerror}"
                ) from None
            password = text.rstrip("\r\n")  # the editor's newline is not part of it
            if not password:
                raise ConfigError(
                    f"{source}: mqtt.password_file = {str(mqtt.password_file)!r}: file is empty"
                )
            mqtt.password = password
    if mqtt.password is not None and mqtt.username is None:
        raise ConfigError(f"{source}: mqtt.password needs mqtt.username (MQTT sends both)")
    for key in ("ca_file", "cert_file", "key_file"):
        f = getattr(mqtt, key)
        if f is not None and not Path(f).is_file():
            raise ConfigError(f"{source}: mqtt.{key} = {str(f)!r}: no such file")
    if (mqtt.cert_file is None) != (mqtt.key_file is None):
        raise ConfigError(f"{source}: mqtt.cert_file and mqtt.key_file go together")
    web = config.web
    for key in ("cert_file", "key_file"):
        f = getattr(web, key)
        if f is not None and not Path(f).is_file():
            raise ConfigError(f"{source}: web.{key} = {str(f)!r}: no such file")
    if (web.cert_file is None) != (web.key_file is None):
        raise ConfigError(f"{source}: web.cert_file and web.key_file go together")


def config_to_display(config: Config) -> dict[str, Any]:
    """The effective configuration as plain JSON data, secrets masked as ``***``."""
    data = config.model_dump(mode="json")
    for section, key in SECRET_KEYS:
        if data[section].get(key) is not None:
            data[section][key] = MASK
    data["mqtt"]["base_topic"] = effective_base_topic(config.mqtt)
    return data
