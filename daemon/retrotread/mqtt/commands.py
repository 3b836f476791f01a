"""Phone commands on ``<base>/cmd`` (SPEC.md §3), validated as a discriminated union.

Every payload, however broken, yields either a Command or a CommandError carrying the
``id`` and ``action`` that could be recovered, so the result can always be answered.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from retrotread.errors import RetrotreadError

ACTIONS = ("start", "stop", "pause", "resume", "finish", "skip", "set", "feedback", "walker")
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


Pain = Annotated[int, Field(ge=0, le=10, description="knee pain, 0-10 numeric rating scale")]


class Start(_Base):
    """A profile; or today's session of a plan for a walker (docs/plans.md)."""

    action: Literal["start"]
    profile: str | None = Field(
        default=None, min_length=1, max_length=100, description="omit to start the last profile"
    )
    plan: str | None = Field(default=None, min_length=1, max_length=48)
    walker: str | None = Field(default=None, min_length=1, max_length=32)  # the coach knows
    pain: Pain | None = Field(default=None, description="knee pain before the session")
    today: bool = Field(default=False, description="today's session of the current walker")

    @model_validator(mode="after")
    def _profile_or_plan(self) -> Start:
        if self.profile is not None and (self.plan is not None or self.today):
            raise ValueError("start takes 'profile' or a plan ('plan', 'today'), not both")
        if self.pain is not None and self.profile is not None:
            raise ValueError("'pain' goes with a plan session, not a profile")
        return self

    @property
    def for_walker(self) -> bool:
        """Today's session of a plan (also implied by ``pain`` before it), or a profile for
        a named walker: the coach's part."""
        return (
            self.plan is not None or self.today or self.walker is not None or self.pain is not None
        )


class Feedback(_Base):
    """How a session felt: a rating and/or knee pain, before or after (docs/plans.md §5)."""

    action: Literal["feedback"]
    walker: str | None = Field(default=None, min_length=1, max_length=32)  # the coach knows
    rating: Literal["easy", "right", "hard"] | None = None
    pain: Pain | None = None
    when: Literal["before", "after"] | None = None

    @model_validator(mode="after")
    def _something(self) -> Feedback:
        if self.rating is None and self.pain is None:
            raise ValueError("feedback needs 'rating' (easy, right, hard), 'pain' (0-10) or both")
        return self


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
    speed_kmh: float | None = Field(default=None, ge=0, le=30, allow_inf_nan=False)
    incline_pct: float | None = Field(default=None, ge=-30, le=40, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_value(self) -> Set:
        if self.speed_kmh is None and self.incline_pct is None:
            raise ValueError("set needs speed_kmh, incline_pct or both")
        return self


class ChooseWalker(_Base):
    """Who is walking now: what 'today' and feedback without 'walker' are for (the HA select)."""

    action: Literal["walker"]
    walker: str = Field(min_length=1, max_length=32)


Command = Annotated[
    Start | Stop | Pause | Resume | Finish | Skip | Set | Feedback | ChooseWalker,
    Field(discriminator="action"),
]
_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


# Bounds on what a command may contain. A command is a flat object of short values, so
# these are generous; they exist because json and float() have limits of their own that
# would otherwise surface as RecursionError, OverflowError or ValueError.
MAX_NESTING = 8
MAX_INT_DIGITS = 15
MAX_STRING_CHARS = 200


class _BadNumber:
    """A number json accepted but a command cannot use (NaN, Infinity, 1e400, 400 digits)."""

    def __init__(self, text: str, why: str) -> None:
        self.text = text
        self.why = why


def _parse_int(text: str) -> int | _BadNumber:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        shown = text if len(text) <= 20 else f"{text[:12]}…"
        return _BadNumber(shown, f"has {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float | _BadNumber:
    value = float(text)
    if not math.isfinite(value):
        return _BadNumber(text if len(text) <= 20 else f"{text[:12]}…", "is out of range")
    return value


def _parse_constant(text: str) -> _BadNumber:
    # json accepts NaN, Infinity and -Infinity, which are not JSON and not speeds.
    return _BadNumber(text, "is not a number")


def _nesting(text: str) -> int:
    """How deep arrays and objects nest in ``text`` (brackets inside strings do not count)."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    depth = deepest = 0
    for ch in brackets:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"?')  # an unterminated one runs to the end
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def _text_problem(value: str) -> str | None:
    if len(value) > MAX_STRING_CHARS:
        return f"text of {len(value)} characters is too long (at most {MAX_STRING_CHARS})"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        return f"text holds a lone surrogate (\\u{ord(bad):04x}), which is not valid Unicode"
    return None


def _problem(value: Any, where: str) -> str | None:
    """The first value in ``value`` a command cannot carry, named by its place, or None."""
    if isinstance(value, _BadNumber):
        return f"{where}: {value.text} {value.why}"
    if isinstance(value, str):
        p = _text_problem(value)
        return f"{where}: {p}" if p else None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _problem(item, f"{where}[{i}]")
            if found:
                return found
    if isinstance(value, dict):
        for key, item in value.items():
            key_problem = _text_problem(key)
            if key_problem:
                return f"a key in {where or 'the payload'}: {key_problem}"
            found = _problem(item, f"{where}.{key}" if where else key)
            if found:
                return found
    return None


def _usable_id(raw: Any) -> CommandId:
    if isinstance(raw, str) and _text_problem(raw) is None:
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    return None


def _int_to_float(obj: dict[str, Any]) -> dict[str, Any]:
    # Strict mode keeps "2.5" (a string) out, but 3 is a perfectly good 3.0 km/h.
    for key in ("speed_kmh", "incline_pct"):
        v = obj.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            obj[key] = float(v)
    # And a pain of 3.0 (what a slider sends) is a pain of 3; 2.5 stays an error.
    v = obj.get("pain")
    if isinstance(v, float) and v.is_integer():
        obj["pain"] = int(v)
    return obj


def parse_command(payload: bytes, max_bytes: int = 4096) -> Command:
    """Validate one ``cmd`` payload; raises CommandError with a message a person can act on.

    Total: any payload at all ends in a Command or a CommandError, never another exception.
    """
    if len(payload) > max_bytes:
        raise CommandError(f"payload of {len(payload)} bytes is over the {max_bytes}-byte limit")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("payload is not UTF-8 text") from None
    depth = _nesting(text)
    if depth > MAX_NESTING:
        raise CommandError(
            f"payload nests {depth} levels deep (at most {MAX_NESTING}); "
            'a command is one flat JSON object like {"action": "stop"}'
        )
    try:
        obj = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError as exc:
        raise CommandError(f"payload is not JSON ({exc.msg} at char {exc.pos})") from None
    except (ValueError, RecursionError) as exc:  # json's own limits, should ours miss one
        raise CommandError(f"payload cannot be read as JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CommandError(
            f'payload must be a JSON object like {{"action": "stop"}}, not {_kind(obj)}'
        )
    command_id = _usable_id(obj.get("id"))
    action = obj.get("action")
    action_name = action if isinstance(action, str) and action in ACTIONS else None
    problem = _problem(obj, "")
    if problem is not None:
        raise CommandError(problem, command_id, action_name)
    if action is None:
        raise CommandError(f"missing 'action' (one of {', '.join(ACTIONS)})", command_id)
    if action_name is None:
        raise CommandError(
            f"unknown action {_short(action)}; expected one of {', '.join(ACTIONS)}",
            command_id,
            None,
        )
    try:
        return _ADAPTER.validate_python(_int_to_float(obj))
    except ValidationError as exc:
        raise CommandError(_explain(exc, action_name), command_id, action_name) from None


def _kind(obj: Any) -> str:
    if isinstance(obj, _BadNumber):
        return "a number"
    return {list: "an array", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(obj), "a number"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _explain(exc: ValidationError, action: str) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"]]
        if loc and loc[0] == action:  # the union's tag, not a field (a field may share it)
            loc = loc[1:]
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
