"""``retrotread replay LOG``: to MQTT for dashboards, or through the simulator as a regression.

``--mqtt`` republishes the session's telemetry, events and state on the SPEC.md §3 topics,
every payload marked ``"replay": true`` (state is not retained, so the live retained state
is left alone), at the original pace, ``--rate N`` times faster, or ``--rate 0`` at once.

``--through-sim`` feeds the recorded raw frames back through today's codec and re-runs the
recorded Control Point writes, at their recorded times, against a fresh simulator set up
with the recorded treadmill's ranges; it reports each place the re-run differs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrotread.errors import AttError, DecodeError, RetrotreadError
from retrotread.session.log import SessionLog, read_session


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


def _sim_for(log: SessionLog) -> Any:
    from retrotread.sim.treadmill import SimConfig, SimTreadmill

    tm = (log.header or {}).get("treadmill") or {}
    cfg = SimConfig()
    sr, ir = tm.get("speed_range"), tm.get("incline_range")
    if isinstance(sr, list) and len(sr) == 3:
        cfg.speed_min_kmh, cfg.speed_max_kmh, cfg.speed_increment_kmh = (float(x) for x in sr)
    if isinstance(ir, list) and len(ir) == 3:
        cfg.incline_min_pct, cfg.incline_max_pct, cfg.incline_increment_pct = (float(x) for x in ir)
    elif "incline_range" in tm:
        cfg.incline_supported = False
    return SimTreadmill(cfg)


def check_commands(log: SessionLog) -> list[Divergence]:
    """Re-run the recorded Control Point writes; compare the answers with the recorded ones."""
    from retrotread.ftms import uuids

    sim = _sim_for(log)
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
    recorded = [
        (float(r["t"]), str(r["hex"]))
        for r in log.records
        if r.get("type") == "rx" and r.get("char") == "2ad9"
    ]
    writes = [(float(r["t"]), str(r["hex"])) for r in log.records if r.get("type") == "tx"]
    for t, hexdata in writes:
        sim.advance_to(t)
        try:
            sim.write(uuids.CONTROL_POINT, bytes.fromhex(hexdata))
        except AttError as exc:
            answers.append((t, f"att-error-{exc.code:02x}"))
        # The recorded client waited for each indication before its next write; so does
        # the re-run (bounded, in case the simulator never answers).
        deadline = sim.now + 5.0
        while sim.procedure_pending and sim.now < deadline:
            sim.advance_to(sim.now + 0.01)
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


async def replay_mqtt(
    log: SessionLog,
    host: str,
    port: int,
    base: str,
    rate: float,
    username: str | None = None,
    password: str | None = None,
) -> int:
    import aiomqtt

    sent = 0
    start = asyncio.get_running_loop().time()
    async with aiomqtt.Client(host, port, username=username, password=password) as client:
        for rec in log.records:
            kind = rec.get("type")
            if kind not in ("telemetry", "event", "state"):
                continue
            t = float(rec.get("t", 0.0))
            if rate > 0:
                delay = start + t / rate - asyncio.get_running_loop().time()
                if delay > 0:
                    await asyncio.sleep(delay)
            payload = {k: v for k, v in rec.items() if k not in ("type",)}
            if kind == "event":
                payload["type"] = payload.pop("event", "event")
            payload["replay"] = True
            payload.setdefault("session_id", (log.header or {}).get("session_id"))
            qos = 0 if kind == "telemetry" else 1
            await client.publish(f"{base}/{kind}", json.dumps(payload), qos=qos, retain=False)
            sent += 1
    return sent


# ------------------------------------------------------------------ command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", metavar="LOG", type=Path)
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--mqtt", action="store_true", help="republish to the MQTT broker")
    how.add_argument(
        "--through-sim", action="store_true", help="re-run through codec and simulator"
    )
    parser.add_argument("--rate", type=float, default=1.0, help="N times faster; 0 = at once")
    parser.add_argument("-c", "--config", type=Path, help="config file (broker, base topic)")
    parser.add_argument("--host", help="broker host (overrides config)")
    parser.add_argument("--port", type=int, help="broker port (overrides config)")
    parser.add_argument("--base-topic", help="base topic (overrides config)")


def run(args: argparse.Namespace) -> int:
    log = read_session(args.log)
    for note in log.notes():
        print(f"note: {note}")
    if args.through_sim:
        found = check_codec(log) + check_commands(log)
        found.sort(key=lambda d: d.t)
        if not found:
            n_tx = sum(1 for r in log.records if r.get("type") == "tx")
            n_rx = sum(1 for r in log.records if r.get("type") == "rx")
            print(f"no divergence: {n_rx} frames re-decoded, {n_tx} commands re-run")
            return 0
        print(f"{len(found)} divergence(s):")
        for d in found[:50]:
            print(f"  {d}")
        return 1
    if args.rate < 0:
        raise RetrotreadError("--rate must be 0 or more")
    from retrotread.service.run_command import resolve_config

    config = resolve_config(args.config)
    m = config.mqtt
    base = args.base_topic or m.effective_base_topic
    sent = asyncio.run(
        replay_mqtt(
            log, args.host or m.host, args.port or m.port, base, args.rate, m.username, m.password
        )
    )
    print(f'replayed {sent} messages to {base}/ (marked "replay": true)')
    return 0
