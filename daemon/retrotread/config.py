"""Configuration (SPEC.md §7): one TOML file, every key optional, unknown keys refused.

Validated once at the edge with pydantic and passed down as plain values. Environment
variables ``RETROTREAD_<SECTION>__<KEY>`` override the file; secrets may come from files.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from retrotread.errors import ConfigError

ENV_PREFIX = "RETROTREAD_"
DEFAULT_PATH = Path("/etc/retrotread/config.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TreadmillConfig(_Section):
    address: str | None = Field(default=None, description="Bluetooth address; else name or FTMS")
    name: str | None = None
    adapter: str | None = Field(default=None, description="e.g. hci0")
    connect_timeout_s: float = Field(default=20.0, gt=0, le=300)
    scan_timeout_s: float = Field(default=10.0, gt=0, le=300)
    silence_timeout_s: float = Field(default=5.0, gt=0, le=120)
    command_timeout_s: float = Field(default=5.0, gt=0, le=30)
    reconnect_max_backoff_s: float = Field(default=60.0, ge=1, le=3600)
    on_reconnect: Literal["pause", "stop"] = "pause"
    pace_width: Literal[1, 2] = 1
    turn_speed_kmh: float | None = Field(default=None, gt=0, le=2.0)
    turn_countdown_s: float | None = Field(default=None, gt=0, le=120)


class MqttConfig(_Section):
    enabled: bool = True
    host: str = "localhost"
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

    @model_validator(mode="after")
    def _topics(self) -> MqttConfig:
        for name in ("base_topic", "discovery_prefix"):
            value = getattr(self, name)
            if value is not None and (
                not value or any(c in value for c in "#+") or value.endswith("/")
            ):
                raise ValueError(
                    f"{name} {value!r} must be a plain topic (no '#', '+', trailing '/')"
                )
        return self

    @property
    def effective_base_topic(self) -> str:
        return self.base_topic or f"retrotread/{self.device_id}"


class SafetyConfig(_Section):
    """Walker-safety limits (SPEC.md §2): conservative defaults, ceilings no file can lift."""

    max_speed_kmh: float = Field(default=5.0, gt=0, le=8.0)
    max_incline_pct: float = Field(default=10.0, ge=0, le=15.0)
    speed_step_kmh: float = Field(default=0.1, gt=0, le=0.5)
    incline_step_pct: float = Field(default=0.5, gt=0, le=2.0)
    step_interval_s: float = Field(default=1.0, ge=0.5, le=30)
    settle_s: float = Field(default=5.0, ge=1, le=60)


def _default_sessions_dir() -> Path:
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "sessions"
    return Path.home() / ".local" / "state" / "retrotread" / "sessions"


class SessionsConfig(_Section):
    dir: Path = Field(default_factory=_default_sessions_dir)
    retention_days: int | None = Field(default=None, ge=1)


class ProfilesConfig(_Section):
    dirs: list[Path] = Field(default_factory=list)


class Config(_Section):
    treadmill: TreadmillConfig = Field(default_factory=TreadmillConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)
    profiles: ProfilesConfig = Field(default_factory=ProfilesConfig)


SECRET_KEYS = {("mqtt", "password")}


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, name = key[len(ENV_PREFIX) :].partition("__")
        out.setdefault(section.lower(), {})[name.lower()] = value
    return out


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge environment overrides, validate; ConfigError names file, key, value, why."""
    environ = os.environ if environ is None else environ
    source = str(path) if path else "defaults"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for section, values in _env_overrides(environ).items():
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for name, value in values.items():
            target[name] = _env_value(value)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(source, exc, data)) from None
    mqtt = config.mqtt
    if mqtt.password_file is not None:
        try:
            mqtt.password = mqtt.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"{source}: mqtt.password_file = {str(mqtt.password_file)!r}: "
                f"cannot read: {exc.strerror}"
            ) from None
    for key in ("ca_file", "cert_file", "key_file"):
        f = getattr(mqtt, key)
        if f is not None and not Path(f).is_file():
            raise ConfigError(f"{source}: mqtt.{key} = {str(f)!r}: no such file")
    if mqtt.tls and (mqtt.cert_file is None) != (mqtt.key_file is None):
        raise ConfigError(f"{source}: mqtt.cert_file and mqtt.key_file go together")
    return config


def _env_value(text: str) -> Any:
    """Environment values are strings; let TOML read numbers, booleans and lists."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _explain(source: str, exc: ValidationError, data: dict[str, Any]) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"]]
        key = ".".join(loc)
        if err["type"] == "extra_forbidden":
            where = f"[{loc[0]}]" if len(loc) > 1 else "top level"
            problems.append(f"unknown key {key!r} in {where}")
            continue
        value: Any = data
        for part in loc:
            value = value.get(part) if isinstance(value, dict) else None
        msg = str(err["msg"]).removeprefix("Value error, ")
        if value is None:
            problems.append(f"{key}: {msg}")
        else:
            problems.append(f"{key} = {value!r}: {msg}")
    return f"{source}: " + "; ".join(problems)


def config_to_display(config: Config) -> dict[str, Any]:
    """The effective configuration as plain data, with secrets masked."""
    data = config.model_dump(mode="json")
    for section, key in SECRET_KEYS:
        if data[section].get(key):
            data[section][key] = "***"
    data["mqtt"]["base_topic"] = config.mqtt.effective_base_topic
    return data
