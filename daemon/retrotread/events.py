"""The event types on ``<base>/event`` (SPEC.md §3), named once for everyone who lists them.

The runner and the engine emit them; Home Assistant's event entity must declare every one
(HA drops an event whose type it was not told about); ``[cues]`` chooses among them.
"""

from __future__ import annotations

# A command answered ``ok: false`` on ``cmd/result`` is also told as an event, so that a
# person who only sees Home Assistant's logbook (or hears the cues) learns why nothing happened.
COMMAND_REFUSED = "command_refused"

EVENT_TYPES: tuple[str, ...] = (
    "session_started",
    "phase_started",
    "cue",
    "turn_required",
    "override",
    "link_lost",
    "link_restored",
    "stopped_by_treadmill",
    "session_finished",
    "error",
    # The session log could not be written for a while and now can: the gap (from, to,
    # records lost) is marked in the log. Its start was told as an "error" (reason
    # "recording"), and the state's "recording" flag says it all along.
    "recording_gap",
    # The heart-rate cap changed state (README "Heart-rate cap"): holding, stepping_down,
    # finish, resumed, no_signal, signal_back; what the walker must hear is also a "cue".
    "hr_cap",
    COMMAND_REFUSED,
)

# What a walker facing the rear should hear: a phase's own cue (carried by phase_started),
# the runner's cues and every turn-around.
SPOKEN_BY_DEFAULT: tuple[str, ...] = ("phase_started", "cue", "turn_required")
