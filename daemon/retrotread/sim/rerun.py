"""Recorded Control Point writes re-run against a fresh simulator (``replay --through-sim``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from retrotread.errors import AttError
from retrotread.ftms import uuids
from retrotread.sim.treadmill import SimConfig, SimTreadmill


def sim_like(treadmill: Mapping[str, Any]) -> SimTreadmill:
    """A simulator with the ranges a session log's header recorded for its treadmill."""
    cfg = SimConfig()
    sr, ir = treadmill.get("speed_range"), treadmill.get("incline_range")
    if isinstance(sr, list) and len(sr) == 3:
        cfg.speed_min_kmh, cfg.speed_max_kmh, cfg.speed_increment_kmh = (float(x) for x in sr)
    if isinstance(ir, list) and len(ir) == 3:
        cfg.incline_min_pct, cfg.incline_max_pct, cfg.incline_increment_pct = (float(x) for x in ir)
    elif "incline_range" in treadmill:
        cfg.incline_supported = False
    return SimTreadmill(cfg)


def rerun_control_point(
    writes: Sequence[tuple[float, bytes]], treadmill: Mapping[str, Any]
) -> list[tuple[float, str]]:
    """Each write at its time; the answers: indication hex, or ``att-error-XX``."""
    sim = sim_like(treadmill)
    answers: list[tuple[float, str]] = []
    sim.connect(
        lambda uuid, value: (
            answers.append((sim.now, value.hex())) if uuid == uuids.CONTROL_POINT else None
        ),
        lambda reason: None,
    )
    for char in (uuids.TREADMILL_DATA, uuids.MACHINE_STATUS, uuids.TRAINING_STATUS):
        sim.subscribe(char, "notify")
    sim.subscribe(uuids.CONTROL_POINT, "indicate")
    for t, data in writes:
        sim.advance_to(t)
        try:
            sim.write(uuids.CONTROL_POINT, data)
        except AttError as exc:
            answers.append((t, f"att-error-{exc.code:02x}"))
        # The recorded client waited for each indication before its next write; so does
        # the re-run (bounded, in case the simulator never answers).
        deadline = sim.now + 5.0
        while sim.procedure_pending and sim.now < deadline:
            sim.advance_to(sim.now + 0.01)
    return answers
