"""Home Assistant MQTT discovery: one retained device-based config message (HA 2024.11+).

SPEC.md §3. Every entity reads the daemon's own topics and every control publishes to
``<base>/cmd``, so Home Assistant, a phone MQTT app and scripts share one command contract.
"""

from __future__ import annotations

import json
import re
from typing import Any

from retrotread import __version__
from retrotread.events import EVENT_TYPES
from retrotread.mqtt.topics import Topics

STATES = ["disconnected", "idle", "running", "paused", "turning", "finishing", "stopped", "error"]
BUTTONS = ("start", "stop", "pause", "resume", "finish", "skip")
BUTTON_ICONS = {
    "start": "mdi:play",
    "stop": "mdi:stop",
    "pause": "mdi:pause",
    "resume": "mdi:play-pause",
    "finish": "mdi:flag-checkered",
    "skip": "mdi:skip-next",
}


def discovery_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/device/{object_id(device_id)}/config"


def object_id(device_id: str) -> str:
    """HA object ids allow [a-zA-Z0-9_-] only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", device_id)


# Home Assistant's MQTT select forgets its option only on the payload ``None`` (an empty one
# is ignored and the old option stays shown); its sensors read ``None`` as unknown too. Jinja
# renders a null as ``None``, so a template that yields the value or none does both.
_SESSION_PROFILE = (
    "{{% set p = value_json.profile %}}"
    "{{{{ p if value_json.session_id and p in {options} else 'None' }}}}"
)
# HA's event entity wants a JSON object with ``event_type``; every other key of ours
# (message, phase, action, error...) becomes an attribute of the event.
_EVENT = "{{ dict(value_json, event_type=value_json.type) | to_json }}"


def discovery_payload(
    topics: Topics,
    device_id: str,
    profile_names: list[str],
    treadmill_name: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """The device config: sensors, the profile select, buttons and the link sensor."""
    oid = object_id(device_id)
    uid = f"retrotread_{oid}"
    tele = topics.telemetry

    def sensor(key: str, name: str, field: str, **extra: Any) -> dict[str, Any]:
        return {
            "p": "sensor",
            "name": name,
            "unique_id": f"{uid}_{key}",
            "state_topic": tele,
            "value_template": f"{{{{ value_json.{field} }}}}",
            **extra,
        }

    cmps: dict[str, dict[str, Any]] = {
        "speed": sensor(
            "speed",
            "Speed",
            "speed_kmh",
            unit_of_measurement="km/h",
            device_class="speed",
            state_class="measurement",
            suggested_display_precision=1,
        ),
        "incline": sensor(
            "incline",
            "Incline",
            "incline_pct",
            unit_of_measurement="%",
            state_class="measurement",
            icon="mdi:slope-uphill",
            suggested_display_precision=1,
        ),
        "distance": sensor(
            "distance",
            "Distance",
            "distance_m",
            unit_of_measurement="m",
            device_class="distance",
            state_class="total_increasing",
        ),
        "elapsed": sensor(
            "elapsed",
            "Elapsed time",
            "elapsed_s",
            unit_of_measurement="s",
            device_class="duration",
            state_class="measurement",
        ),
        "heart_rate": sensor(
            "heart_rate",
            "Heart rate",
            "heart_rate_bpm",
            unit_of_measurement="bpm",
            state_class="measurement",
            icon="mdi:heart-pulse",
        ),
        "energy": sensor(
            "energy",
            "Energy",
            "energy_kcal",
            unit_of_measurement="kcal",
            device_class="energy",
            state_class="total_increasing",
            icon="mdi:fire",
        ),
        "phase": {
            "p": "sensor",
            "name": "Phase",
            "unique_id": f"{uid}_phase",
            "state_topic": topics.state,
            "value_template": "{{ value_json.phase }}",
            "icon": "mdi:format-list-numbered",
        },
        "phase_remaining": {
            "p": "sensor",
            "name": "Phase time left",
            "unique_id": f"{uid}_phase_remaining",
            "state_topic": topics.state,
            "value_template": "{{ value_json.phase_remaining_s }}",
            "unit_of_measurement": "s",
            "device_class": "duration",
        },
        "state": {
            "p": "sensor",
            "name": "State",
            "unique_id": f"{uid}_state",
            "state_topic": topics.state,
            "value_template": "{{ value_json.state }}",
            "device_class": "enum",
            "options": list(STATES),
        },
        "profile": {
            "p": "select",
            "name": "Profile",
            "unique_id": f"{uid}_profile",
            "options": list(profile_names),
            "state_topic": topics.state,
            "value_template": _SESSION_PROFILE.format(options=json.dumps(list(profile_names))),
            "command_topic": topics.cmd,
            "command_template": '{"action": "start", "profile": "{{ value }}"}',
            "icon": "mdi:walk",
        },
        "events": {
            "p": "event",
            "name": "Events",
            "unique_id": f"{uid}_events",
            "state_topic": topics.event,
            "value_template": _EVENT,
            "event_types": list(EVENT_TYPES),
            "icon": "mdi:bullhorn",
        },
        "link": {
            "p": "binary_sensor",
            "name": "Treadmill link",
            "unique_id": f"{uid}_link",
            "state_topic": topics.state,
            "value_template": "{{ 'ON' if value_json.connected else 'OFF' }}",
            "device_class": "connectivity",
        },
    }
    for action in BUTTONS:
        cmps[action] = {
            "p": "button",
            "name": action.capitalize(),
            "unique_id": f"{uid}_{action}",
            "command_topic": topics.cmd,
            "payload_press": json.dumps({"action": action}),
            "icon": BUTTON_ICONS[action],
        }
    cmps.update(heart_rate_components(uid, topics))
    for key, component in cmps.items():
        # Entity ids that do not depend on which name the device had when HA first saw it
        # (the placeholder, when the broker answers before the treadmill does).
        component["default_entity_id"] = f"{component['p']}.{oid}_{key}"
    device: dict[str, Any] = {
        "ids": [uid],
        "name": treadmill_name or f"Treadmill {device_id}",
        "mf": "retrotread",
        "mdl": model or "FTMS treadmill",
        "sw": __version__,
    }
    return {
        "dev": device,
        "o": {"name": "retrotread", "sw": __version__},
        "cmps": cmps,
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
    }


# ---------------------------------------------------------------------------- the coach


def coach_components(topics: Topics, device_id: str, walkers: list[str]) -> dict[str, Any]:
    """The coach's entities (docs/plans.md §7), added to the device's ``cmps``.

    They read the current walker's retained status on ``<base>/walker`` (so they follow
    the walker select) and publish to ``<base>/cmd`` like every other control: the select
    sends ``walker``, "Start today's session" ``start`` with ``today``, the rating buttons
    and the pain numbers ``feedback``.
    """
    oid = object_id(device_id)
    uid = f"retrotread_{oid}"
    cur = topics.walker_current

    def sensor(key: str, name: str, template: str, **extra: Any) -> dict[str, Any]:
        return {
            "p": "sensor",
            "name": name,
            "unique_id": f"{uid}_{key}",
            "state_topic": cur,
            "value_template": template,
            **extra,
        }

    def command(key: str, name: str, payload: dict[str, Any], icon: str) -> dict[str, Any]:
        return {
            "p": "button",
            "name": name,
            "unique_id": f"{uid}_{key}",
            "command_topic": topics.cmd,
            "payload_press": json.dumps(payload),
            "icon": icon,
        }

    def pain(key: str, name: str, when: str, **extra: Any) -> dict[str, Any]:
        return {
            "p": "number",
            "name": name,
            "unique_id": f"{uid}_{key}",
            "command_topic": topics.cmd,
            "command_template": (
                f'{{"action": "feedback", "when": "{when}", "pain": {{{{ value | int }}}}}}'
            ),
            "min": 0,
            "max": 10,
            "step": 1,
            "mode": "slider",
            "icon": "mdi:knee",
            **extra,
        }

    cmps: dict[str, dict[str, Any]] = {
        "walker": {
            "p": "select",
            "name": "Walker",
            "unique_id": f"{uid}_walker",
            "options": list(walkers),
            "state_topic": cur,
            "value_template": "{{ value_json.walker }}",
            "command_topic": topics.cmd,
            "command_template": '{"action": "walker", "walker": "{{ value }}"}',
            "icon": "mdi:account",
        },
        "start_today": command(
            "start_today", "Start today's session", {"action": "start", "today": True}, "mdi:play"
        ),
        "plan_level": sensor(
            "plan_level",
            "Plan level",
            "{{ value_json.plan ~ ': ' ~ value_json.stage ~ ' ' ~ value_json.level ~ '/' ~ "
            "value_json.levels if value_json.plan else 'None' }}",
            icon="mdi:stairs-up",
        ),
        "today_backward": sensor(
            "today_backward",
            "Today's backward minutes",
            "{{ value_json.today_backward_min }}",
            unit_of_measurement="min",
            icon="mdi:walk",
        ),
        "sessions_week": sensor(
            "sessions_week",
            "Sessions this week",
            "{{ value_json.sessions_this_week }}",
            state_class="measurement",
            icon="mdi:calendar-check",
        ),
        "learned_speed": sensor(
            "learned_speed",
            "Own backward speed",
            "{{ value_json.learned_speed_kmh }}",
            unit_of_measurement="km/h",
            device_class="speed",
            suggested_display_precision=1,
        ),
        "coach_says": sensor(
            "coach_says",
            "Coach says",
            "{{ ((value_json.refused or (value_json.why or [''])[0]) or '')[:250] }}",
            icon="mdi:message-text",
        ),
        "felt_easy": command(
            "felt_easy", "Felt easy", {"action": "feedback", "rating": "easy"}, "mdi:emoticon-happy"
        ),
        "felt_right": command(
            "felt_right", "Felt right", {"action": "feedback", "rating": "right"}, "mdi:emoticon"
        ),
        "felt_hard": command(
            "felt_hard", "Felt hard", {"action": "feedback", "rating": "hard"}, "mdi:emoticon-sad"
        ),
        "pain_after": pain(
            "pain_after",
            "Knee pain after",
            "after",
            state_topic=cur,
            value_template="{{ value_json.last_pain if value_json.last_pain is not none else 0 }}",
        ),
        "pain_before": pain("pain_before", "Knee pain before", "before", optimistic=True),
    }
    for key, component in cmps.items():
        component["default_entity_id"] = f"{component['p']}.{oid}_{key}"  # as discovery_payload
    return cmps


# ---------------------------------------------------------------------- heart rate (issue 15)

HEART_RATE_SOURCES = ["strap", "treadmill"]
CAP_STATES = ["off", "ok", "holding", "stepping_down", "recovering", "no_signal"]
# The state's heart_rate block (README "Heart-rate cap"); absent in a state from before it.
_HR = "{{% set h = value_json.heart_rate | default({{}}) %}}"


def heart_rate_components(uid: str, topics: Topics) -> dict[str, dict[str, Any]]:
    """Where the heart rate comes from, the cap and what it is doing, the strap's link."""
    return {
        "heart_rate_source": {
            "p": "sensor",
            "name": "Heart rate source",
            "unique_id": f"{uid}_heart_rate_source",
            "state_topic": topics.telemetry,
            "value_template": "{{ value_json.heart_rate_source }}",
            "device_class": "enum",
            "options": list(HEART_RATE_SOURCES),
            "icon": "mdi:heart-cog",
        },
        "hr_cap_state": {
            "p": "sensor",
            "name": "Heart-rate cap state",
            "unique_id": f"{uid}_hr_cap_state",
            "state_topic": topics.state,
            "value_template": _HR.format() + "{{ h.cap_state | default('off') }}",
            "device_class": "enum",
            "options": list(CAP_STATES),
            "icon": "mdi:heart-off",
        },
        "hr_cap": {
            "p": "sensor",
            "name": "Heart-rate cap",
            "unique_id": f"{uid}_hr_cap",
            "state_topic": topics.state,
            "value_template": _HR.format() + "{{ h.cap_bpm | default(None) }}",
            "unit_of_measurement": "bpm",
            "icon": "mdi:heart-flash",
        },
        "strap": {
            "p": "binary_sensor",
            "name": "Heart-rate strap",
            "unique_id": f"{uid}_strap",
            "state_topic": topics.state,
            "value_template": _HR.format()
            + "{{ 'ON' if h.strap | default(None) == 'connected' else 'OFF' }}",
            "device_class": "connectivity",
        },
    }
