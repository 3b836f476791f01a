"""One error hierarchy for retrotread; every error a user can cause is one clear line."""

from __future__ import annotations


class RetrotreadError(Exception):
    """Base of every error retrotread raises on purpose."""


class DecodeError(RetrotreadError):
    """Bytes from a treadmill (or a log) that cannot be decoded into a trustworthy frame."""

    def __init__(self, char: str, data: bytes, reason: str) -> None:
        self.char = char
        self.data = bytes(data)
        self.reason = reason
        super().__init__(f"cannot decode {char} frame {self.data.hex() or '(empty)'}: {reason}")


class UnsupportedOpCode(DecodeError):
    """A Control Point request whose op code is reserved or unknown (FTMS result 0x02)."""

    def __init__(self, char: str, data: bytes, op_code: int) -> None:
        self.op_code = op_code
        super().__init__(char, data, f"op code 0x{op_code:02x} is not supported")


# ATT error codes a GATT server answers with (Core Spec Vol 3 Part F §3.4.1.1; 0xFD and 0xFE
# are the Common Profile and Service Error Codes of CSS Part B §1.2, which FTMS relies on).
ATT_READ_NOT_PERMITTED = 0x02
ATT_WRITE_NOT_PERMITTED = 0x03
ATT_REQUEST_NOT_SUPPORTED = 0x06
ATT_ATTRIBUTE_NOT_FOUND = 0x0A
ATT_UNLIKELY_ERROR = 0x0E
ATT_APPLICATION_ERROR = 0x80
ATT_CCCD_IMPROPERLY_CONFIGURED = 0xFD
ATT_PROCEDURE_IN_PROGRESS = 0xFE


class AttError(RetrotreadError):
    """An ATT-level error a GATT server answers a request with (e.g. 0xFD, 0xFE)."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(f"ATT error 0x{code:02X}: {message}")


class LinkError(RetrotreadError):
    """The treadmill link failed or is not connected."""


class WrongDevice(LinkError):
    """Connected, but the device is not what was asked for (a strap, not a treadmill...)."""


class BrokerError(RetrotreadError):
    """The MQTT broker cannot be reached, refused us, or dropped us."""


class ControlError(RetrotreadError):
    """A Control Point procedure did not succeed."""

    def __init__(self, op: str, message: str, result_code: int | None = None) -> None:
        self.op = op
        self.result_code = result_code
        super().__init__(f"{op}: {message}")


class ConfigError(RetrotreadError):
    """A configuration file or value is wrong."""


class ProfileError(RetrotreadError):
    """A profile is malformed or breaks the safety limits."""


class CoachError(RetrotreadError):
    """Something the coach cannot do: an unknown walker or plan, a broken plan file."""


class PlanError(CoachError):
    """A plan file is malformed, or a plan name is unknown."""


class CoachRefused(CoachError):
    """The coach will not give this walker a session of this plan now; says why.

    ``str()`` names the walker, the plan and the rule (docs/plans.md), e.g. "walker 'anna',
    plan 'retro-hill': refused by rule 'requires': ...".
    """

    def __init__(self, walker: str, plan: str, rule: str, reason: str) -> None:
        self.walker = walker
        self.plan = plan
        self.rule = rule
        self.reason = reason
        super().__init__(f"walker {walker!r}, plan {plan!r}: refused by rule {rule!r}: {reason}")
