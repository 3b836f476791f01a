"""A live one-line progress display for the terminal (run --profile, demo)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from retrotread.cli._shared import fmt_time


def _num(v: Any, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


class Progress:
    """Prints events as lines and telemetry as one updating status line."""

    def __init__(self, out: TextIO | None = None, every_s: float = 10.0) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.every_s = every_s
        self._last_line_t = -1e9
        self._state: dict[str, Any] = {}
        self._status_shown = False

    def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "state":
            self._state = payload
        elif kind == "event":
            self._event(payload)
        elif kind == "telemetry" and payload.get("session_id"):
            self._telemetry(payload)

    def _clear(self) -> None:
        if self.tty and self._status_shown:
            self.out.write("\r\033[K")
            self._status_shown = False

    def _event(self, e: dict[str, Any]) -> None:
        self._clear()
        kind = e.get("type")
        prefix = {
            "phase_started": "▶",
            "turn_required": "↻",
            "override": "✋",
            "link_lost": "⚠",
            "link_restored": "✓",
            "stopped_by_treadmill": "■",
            "session_finished": "■",
            "error": "✗",
        }.get(str(kind), "•")
        text = str(e.get("message", ""))
        if kind == "phase_started":
            what = f"{e.get('direction')}, {e.get('speed_kmh')} km/h, {e.get('incline_pct')} %"
            text = f"{e.get('phase')} ({what}): {text}"
        self.out.write(f"{prefix} {text}\n")
        self.out.flush()

    def _telemetry(self, t: dict[str, Any]) -> None:
        st = self._state
        line = (
            f"{(t.get('phase') or '-'):<14} {(t.get('direction') or ''):<8} "
            f"left {fmt_time(st.get('phase_remaining_s'))}  "
            f"speed {_num(t.get('speed_kmh'), '.2f')} -> "
            f"{_num(t.get('target_speed_kmh'), '.1f')} km/h  "
            f"incline {_num(t.get('incline_pct'))} -> {_num(t.get('target_incline_pct'))} %  "
            f"{_num(t.get('distance_m'), '.0f')} m"
        )
        if t.get("heart_rate_bpm"):
            line += f"  {t['heart_rate_bpm']} bpm"
        if self.tty:
            self.out.write("\r\033[K" + line)
            self._status_shown = True
            self.out.flush()
            return
        elapsed = float(t.get("elapsed_s") or 0.0)
        if elapsed - self._last_line_t >= self.every_s:
            self._last_line_t = elapsed
            self.out.write(f"[{fmt_time(elapsed)}] {line}\n")
            self.out.flush()

    def close(self) -> None:
        self._clear()
