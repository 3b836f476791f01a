"""Phone commands on ``<base>/cmd`` (SPEC.md §3), validated as a discriminated union.

Every payload, however broken, yields either a Command or a CommandError carrying the
``id`` and ``action`` that could be recovered, so the result can always be answered.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from retrotread.errors import RetrotreadError

ACTIONS = ("start", "stop", "pause", "resume", "finish", "skip", "set")
CommandId = str | int | None


class CommandError(RetrotreadError):
    """A command that cannot be accepted; ``message`` is for the person who sent it."""

    def __init__(self, message: str, command_id: CommandId = None, action: str | None = None):
        self.message = message
        self.command_id = command_id
        self.action = action
        super().__init__(message)


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: CommandId = Field(default=None, description="echoed in cmd/result")


class Start(_Base):
    action: Literal["start"]
    profile: str | None = Field(
        default=None, min_length=1, max_length=100, description="omit to start the last profile"
    )


class Stop(_Base):
    action: Literal["stop"]


class Pause(_Base):
    action: Literal["pause"]


class Resume(_Base):
    action: Literal["resume"]


class Finish(_Base):
    action: Literal["finish"]


class Skip(_Base):
    action: Literal["skip"]


class Set(_Base):
    action: Literal["set"]
    speed_kmh: float | None = Field(default=None, ge=0, le=30)
    incline_pct: float | None = Field(default=None, ge=-30, le=40)

    @model_validator(mode="after")
    def _one_value(self) -> Set:
        if self.speed_kmh is None and self.incline_pct is None:
            raise ValueError("set needs speed_kmh, incline_pct or both")
        return self


Command = Annotated[
    Start | Stop | Pause | Resume | Finish | Skip | Set, Field(discriminator="action")
]
_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


def _int_to_float(obj: dict[str, Any]) -> dict[str, Any]:
    # Strict mode keeps "2.5" (a string) out, but 3 is a perfectly good 3.0 km/h.
    for key in ("speed_kmh", "incline_pct"):
        v = obj.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            obj[key] = float(v)
    return obj


def parse_command(payload: bytes, max_bytes: int = 4096) -> Command:
    """Validate one ``cmd`` payload; raises CommandError with a message a person can act on."""
    if len(payload) > max_bytes:
        raise CommandError(f"payload of {len(payload)} bytes is over the {max_bytes}-byte limit")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise CommandError("payload is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise CommandError(f"payload is not JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(obj, dict):
        raise CommandError(
            f'payload must be a JSON object like {{"action": "stop"}}, not {type(obj).__name__}'
        )
    raw_id = obj.get("id")
    command_id: CommandId = (
        raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    )
    action = obj.get("action")
    action_name = action if isinstance(action, str) else None
    if action is None:
        raise CommandError(f"missing 'action' (one of {', '.join(ACTIONS)})", command_id)
    if action not in ACTIONS:
        raise CommandError(
            f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}", command_id, None
        )
    try:
        return _ADAPTER.validate_python(_int_to_float(obj))
    except ValidationError as exc:
        raise CommandError(_explain(exc, str(action)), command_id, action_name) from None


def _explain(exc: ValidationError, action: str) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"] if str(x) != action]
        field = ".".join(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            parts.append(f"{action} does not take {field!r}")
        elif kind == "missing":
            parts.append(f"{action} needs {field!r}")
        elif field:
            parts.append(f"{field}: {err['msg'].lower()}")
        else:
            parts.append(str(err["msg"]).removeprefix("Value error, "))
    return "; ".join(parts)
