"""Replaying a session: its messages for MQTT, and the checks of a re-run against the log.

``replay_messages`` gives the session's telemetry, events and state as the SPEC.md §3
payloads, every one marked ``"replay": true``, with the time each was recorded at.

``check_codec`` feeds the recorded raw frames back through today's codec; ``check_commands``
compares the recorded Control Point answers with those of a re-run (``rerun``: the recorded
writes at their times against a fresh simulator set up like the recorded treadmill). Each
reports every place where the re-run differs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from retrotread.errors import DecodeError
from retrotread.session.log import SessionLog, describe_gap

Rerun = Callable[[Sequence[tuple[float, bytes]], Mapping[str, Any]], list[tuple[float, str]]]
"""(writes at their times, the header's treadmill) -> the answers, as (time, hex or code)."""


@dataclass(frozen=True)
class Divergence:
    t: float
    what: str
    recorded: str
    rerun: str

    def __str__(self) -> str:
        return f"t={self.t:.3f} s: {self.what}: recorded {self.recorded}, re-run {self.rerun}"


# ------------------------------------------------------------------ through the codec


def check_codec(log: SessionLog, pace_width: int = 1) -> list[Divergence]:
    """Re-decode every recorded 2ACD frame; compare with the telemetry recorded for it."""
    from retrotread.ftms.treadmill_data import TreadmillDataAssembler, decode_treadmill_data

    out: list[Divergence] = []
    asm = TreadmillDataAssembler()
    latest: Any = None
    for rec in log.records:
        kind = rec.get("type")
        if kind == "rx" and rec.get("char") == "2acd":
            try:
                frame = decode_treadmill_data(bytes.fromhex(str(rec["hex"])), pace_width)
            except (DecodeError, ValueError) as exc:
                out.append(Divergence(float(rec["t"]), "2acd frame", "decoded", f"error: {exc}"))
                continue
            done = asm.feed(frame, float(rec["t"]))
            if done is not None:
                latest = done
        elif kind == "telemetry" and latest is not None:
            for key in ("speed_kmh", "incline_pct"):
                want, got = rec.get(key), getattr(latest, key)
                if want != got:
                    out.append(
                        Divergence(float(rec["t"]), f"telemetry {key}", repr(want), repr(got))
                    )
            latest = None
    return out


# ------------------------------------------------------------------ through the simulator


def check_commands(log: SessionLog, rerun: Rerun) -> list[Divergence]:
    """Re-run the recorded Control Point writes; compare the answers with the recorded ones."""
    recorded = [
        (float(r["t"]), str(r["hex"]))
        for r in log.records
        if r.get("type") == "rx" and r.get("char") == "2ad9"
    ]
    writes = [
        (float(r["t"]), bytes.fromhex(str(r["hex"]))) for r in log.records if r.get("type") == "tx"
    ]
    answers = rerun(writes, (log.header or {}).get("treadmill") or {})
    out: list[Divergence] = []
    for i in range(max(len(recorded), len(answers))):
        rec = recorded[i] if i < len(recorded) else None
        got = answers[i] if i < len(answers) else None
        if rec is None or got is None or rec[1] != got[1]:
            t = (rec or got or (0.0, ""))[0]
            out.append(
                Divergence(
                    t,
                    f"control point answer #{i + 1}",
                    rec[1] if rec else "(none)",
                    got[1] if got else "(none)",
                )
            )
    return out


# ------------------------------------------------------------------ to MQTT


def replay_messages(log: SessionLog) -> list[tuple[float, str, dict[str, Any]]]:
    """(t, "telemetry" | "event" | "state", payload) for each such record, marked as a replay."""
    session_id = (log.header or {}).get("session_id")
    out = []
    for rec in log.records:
        kind = rec.get("type")
        if kind == "gap":  # shown to dashboards as the live daemon shows it
            rec = {**rec, "type": "event", "event": "recording_gap", "message": describe_gap(rec)}
            kind = "event"
        if kind not in ("telemetry", "event", "state"):
            continue
        payload = {k: v for k, v in rec.items() if k != "type"}
        if kind == "event":
            payload["type"] = payload.pop("event", "event")
        payload["replay"] = True
        payload.setdefault("session_id", session_id)
        out.append((float(rec.get("t", 0.0)), str(kind), payload))
    return out
