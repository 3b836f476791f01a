"""Model-based fault search: random profiles x random commands x random faults.

Each schedule is generated from one integer seed: a simulated treadmill (range, increment,
status echo, leniency, countdown, reply lag), safety limits that fit it, a few profiles, and
a timeline of commands (start, stop, pause, resume, skip, finish, set, floods) and faults
(link drops, out of reach for a while, silence, console speed/incline/stop/pause/start,
safety key, control taken back, a control point reply dropped or slow). The daemon's real
runner, FTMS client and supervisor run it against the simulator on the virtual clock, and
``retrotread.sim.safety_check`` judges the run from the treadmill's side only.

Every schedule ends the same way: faults cleared, the treadmill reachable, a ``stop``, and
time for it to land; so every run also checks that a last stop reaches the belt.
``python -m tests.faultsearch SEED`` replays one schedule and prints it and its verdict.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrotread.backoff import Backoff
from retrotread.clock import Clock, ScaledClock, VirtualClock
from retrotread.config import SafetyConfig
from retrotread.errors import ProfileError
from retrotread.link.bleak_transport import BleakTransport
from retrotread.link.ftms_client import FtmsTreadmill
from retrotread.link.transport import GattTransport
from retrotread.profiles.model import Profile, check_profile
from retrotread.service.runner import SessionRunner
from retrotread.service.supervisor import Supervisor
from retrotread.sim.bluez import FakeBlueZ
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.safety_check import Journal, Rules, Violation, check
from retrotread.sim.treadmill import SimConfig, SimTreadmill

COMMANDS = ("start", "stop", "pause", "resume", "skip", "finish", "set")
FAULTS = (
    "drop_link",
    "out_of_reach",
    "silent",
    "console_speed",
    "console_incline",
    "console_stop",
    "console_pause",
    "console_start",
    "safety_key",
    "revoke",
    "drop_reply",
    "slow_replies",
)
TAIL_S = 40.0
COMMAND_TIMEOUT_S = 5.0


@dataclass
class Event:
    t: float
    kind: str
    args: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.t:7.2f} {self.kind} {extra}".rstrip()


@dataclass
class Schedule:
    seed: int
    sim: SimConfig
    safety: SafetyConfig
    turn_speed_kmh: float | None
    turn_countdown_s: float | None
    on_reconnect: str
    profiles: list[Profile]
    events: list[Event]

    @property
    def end(self) -> float:
        return max((e.t for e in self.events), default=0.0)

    def describe(self) -> str:
        s, c = self.safety, self.sim
        lines = [
            f"seed {self.seed}: treadmill {c.speed_min_kmh:g}-{c.speed_max_kmh:g} km/h by "
            f"{c.speed_increment_kmh:g}, incline "
            + (
                f"{c.incline_min_pct:g}-{c.incline_max_pct:g} % by {c.incline_increment_pct:g}"
                if c.incline_supported
                else "none"
            )
            + f", echo {c.echo_status}, lenient {c.lenient}, countdown {c.pre_workout_s:g} s, "
            f"lag {c.response_lag_s:g} s, data every {c.data_interval_s:g} s",
            f"  safety: max {s.max_speed_kmh:g} km/h {s.max_incline_pct:g} %, steps "
            f"{s.speed_step_kmh:g}/{s.incline_step_pct:g} every {s.step_interval_s:g} s; turn "
            f"speed {self.turn_speed_kmh}, countdown {self.turn_countdown_s}, on_reconnect "
            f"{self.on_reconnect}",
        ]
        for i, p in enumerate(self.profiles):
            phases = ", ".join(
                f"{ph.direction[0]} {ph.speed_kmh:g}km/h {ph.incline_pct:g}% "
                f"{ph.duration_s:g}s/{ph.ramp_s:g}s"
                for ph in p.phase
            )
            lines.append(f"  profile {i}: {phases}")
        lines += [f"  {e}" for e in self.events]
        return "\n".join(lines)


# ------------------------------------------------------------------ generation


def generate(seed: int, *, length_s: float = 150.0) -> Schedule:
    """The schedule for ``seed`` (the same seed always gives the same schedule)."""
    rng = random.Random(seed)
    inc = rng.choice([0.1, 0.1, 0.1, 0.5])
    speed_min = rng.choice([0.0, 0.5, 0.5, 1.0])
    speed_max = rng.choice([4.0, 6.0, 8.0])
    incline_supported = rng.random() < 0.8
    incline_inc = rng.choice([0.5, 0.5, 1.0])
    sim = SimConfig(
        speed_min_kmh=speed_min,
        speed_max_kmh=speed_max,
        speed_increment_kmh=inc,
        incline_supported=incline_supported,
        incline_min_pct=0.0,
        incline_max_pct=rng.choice([6.0, 12.0, 15.0]),
        incline_increment_pct=incline_inc,
        echo_status=rng.random() < 0.7,
        lenient=rng.random() < 0.3,
        pre_workout_s=rng.choice([0.0, 1.0, 3.0]),
        response_lag_s=rng.choice([0.02, 0.05, 0.2]),
        data_interval_s=rng.choice([0.25, 0.25, 0.5, 1.0]),
        accel_kmh_per_s=rng.choice([0.5, 1.0, 5.0]),
        incline_rate_pct_per_s=rng.choice([0.2, 0.5, 2.0]),
    )
    step = max(0.1, inc) if inc <= 0.1 else inc
    safety = SafetyConfig(
        max_speed_kmh=rng.choice([3.0, 4.0, 5.0]),
        max_incline_pct=rng.choice([4.0, 8.0, 10.0]),
        speed_step_kmh=rng.choice([step, step, 2 * step]) if step <= 0.25 else step,
        incline_step_pct=rng.choice([incline_inc, incline_inc, 2 * incline_inc])
        if incline_inc <= 1.0
        else incline_inc,
        step_interval_s=rng.choice([0.5, 1.0, 1.0, 2.0]),
        settle_s=rng.choice([3.0, 5.0]),
    )
    turn_speed = rng.choice([None, None, 0.8]) if speed_min < 0.8 else None
    countdown = rng.choice([None, None, 5.0])
    profiles = [_profile(rng, safety, sim, i) for i in range(rng.randint(1, 3))]
    events = _events(rng, length_s, len(profiles), sim, safety)
    return Schedule(
        seed,
        sim,
        safety,
        turn_speed,
        countdown,
        rng.choice(["pause", "pause", "stop"]),
        profiles,
        events,
    )


def _profile(rng: random.Random, safety: SafetyConfig, sim: SimConfig, i: int) -> Profile:
    lo = max(sim.speed_min_kmh, safety.speed_step_kmh)
    hi = min(safety.max_speed_kmh, sim.speed_max_kmh)
    incline_hi = min(safety.max_incline_pct, sim.incline_max_pct) if sim.incline_supported else 0
    phases: list[dict[str, Any]] = []
    for n in range(rng.randint(1, 4)):
        speed = round(rng.uniform(lo, hi) / sim.speed_increment_kmh) * sim.speed_increment_kmh
        speed = round(min(max(speed, lo), hi), 2)
        incline = 0.0
        if incline_hi and rng.random() < 0.5:
            incline = round(rng.uniform(0, incline_hi) / sim.incline_increment_pct)
            incline = min(incline * sim.incline_increment_pct, incline_hi)
        phases.append(
            {
                "name": f"p{n}",
                "direction": rng.choice(["forward", "backward"]),
                "duration_s": rng.choice([15, 30, 45, 60]),
                "speed_kmh": speed,
                "incline_pct": round(incline, 1),
                "ramp_s": 0,
            }
        )

    # Ramps long enough for the step rule, from rest (or from the phase before); the phase
    # lasts a little longer than its ramp.
    def build(slack: float) -> Profile:
        prev_speed, prev_incline = 0.0, 0.0
        for ph in phases:
            steps = max(
                # From rest (after a turn) or from the phase before, whichever is longer.
                math.ceil(max(ph["speed_kmh"], prev_speed) / safety.speed_step_kmh - 1e-9),
                math.ceil(abs(ph["incline_pct"] - prev_incline) / safety.incline_step_pct - 1e-9),
            )
            ph["ramp_s"] = (steps + 2) * safety.step_interval_s * slack
            ph["duration_s"] = ph["ramp_s"] + rng.choice([5, 15, 30])
            prev_speed, prev_incline = ph["speed_kmh"], ph["incline_pct"]
        return Profile.model_validate(
            {"name": f"fs-{i}", "title": f"Fault search {i}", "phase": phases}
        )

    profile = build(rng.choice([1, 1, 2]))
    try:
        check_profile(profile, safety)
    except ProfileError:
        profile = build(4)  # a ramp from rest after a turn: generous rather than clever
        check_profile(profile, safety)
    return profile


def _events(
    rng: random.Random, length_s: float, n_profiles: int, sim: SimConfig, safety: SafetyConfig
) -> list[Event]:
    events = [Event(rng.uniform(0.0, 2.0), "start", {"profile": 0})]
    for _ in range(rng.randint(6, 24)):
        t = round(rng.uniform(0.0, length_s), 2)
        if rng.random() < 0.55:
            events.append(_command(rng, t, n_profiles, sim, safety))
        else:
            events.append(_fault(rng, t, sim))
    # A walker who carries on: resumes after pauses and turns, starts again after a stop.
    t = rng.uniform(5.0, 15.0)
    while t < length_s:
        kind = rng.choices(["resume", "start"], weights=[4, 1])[0]
        args = {"profile": rng.randrange(n_profiles)} if kind == "start" else {}
        events.append(Event(round(t, 2), kind, args))
        t += rng.uniform(4.0, 20.0)
    if rng.random() < 0.3:
        t = round(rng.uniform(0.0, length_s), 2)
        for _ in range(rng.randint(5, 40)):
            events.append(_command(rng, t, n_profiles, sim, safety))
    events.sort(key=lambda e: e.t)
    end = max(e.t for e in events) + rng.uniform(5.0, 30.0)
    events.append(Event(end, "clear_faults"))
    events.append(Event(end + rng.uniform(0.0, 6.0), "stop"))
    events.append(Event(events[-1].t + TAIL_S, "end"))
    return events


def _command(
    rng: random.Random, t: float, n_profiles: int, sim: SimConfig, safety: SafetyConfig
) -> Event:
    kind = rng.choices(COMMANDS, weights=[2, 1, 3, 3, 1, 1, 3])[0]
    args: dict[str, Any] = {}
    if kind == "start":
        args["profile"] = rng.randrange(n_profiles)
    elif kind == "set":
        if rng.random() < 0.7:
            args["speed_kmh"] = round(rng.uniform(0.0, safety.max_speed_kmh + 1.0), 1)
        if sim.incline_supported and (rng.random() < 0.5 or not args):
            args["incline_pct"] = round(rng.uniform(0.0, safety.max_incline_pct + 2.0) * 2) / 2
        if not args:
            args["speed_kmh"] = 1.0
    return Event(t, kind, args)


def _fault(rng: random.Random, t: float, sim: SimConfig) -> Event:
    kind = rng.choice(FAULTS)
    args: dict[str, Any] = {}
    if kind in ("out_of_reach", "silent", "slow_replies"):
        args["for_s"] = round(rng.uniform(1.0, 25.0), 1)
    if kind == "slow_replies":
        args["delay_s"] = rng.choice([0.3, 1.0, 6.0])
    if kind == "console_speed":
        args["kmh"] = round(rng.uniform(max(sim.speed_min_kmh, 0.5), sim.speed_max_kmh), 1)
    if kind == "console_incline":
        args["pct"] = round(rng.uniform(0.0, sim.incline_max_pct) * 2) / 2
    return Event(t, kind, args)


# ------------------------------------------------------------------ running


@dataclass
class Outcome:
    schedule: Schedule
    violations: list[Violation]
    writes: int
    sessions: int
    unanswered: list[str]

    @property
    def ok(self) -> bool:
        return not self.violations and not self.unanswered


async def run(
    schedule: Schedule, sessions_dir: Path, *, ble_bus: str | None = None, speedup: float = 10.0
) -> Outcome:
    """Run ``schedule`` to its end and judge it from the treadmill's side.

    In-process on the virtual clock; or, with ``ble_bus`` (a private D-Bus address, with
    bleak pointed at it), through the fake BlueZ and the real bleak on a clock ``speedup``
    times faster than real time.
    """
    clock: Clock
    sim = SimTreadmill(schedule.sim)
    fake: FakeBlueZ | None = None
    transport: GattTransport
    if ble_bus is None:
        clock = VirtualClock()
        transport = InProcessTransport(sim)
    else:
        clock = ScaledClock(speedup)
        fake = FakeBlueZ()
        fake.add_peripheral(sim)
        await fake.start(ble_bus)
        transport = BleakTransport(address=sim.address, scan_timeout_s=3.0)
    treadmill = FtmsTreadmill(transport, clock, command_timeout_s=COMMAND_TIMEOUT_S)
    supervisor = Supervisor(
        treadmill,
        clock,
        silence_timeout_s=3.0,
        backoff=Backoff(0.5, 2.0, random.Random(schedule.seed)),
    )
    runner = SessionRunner(
        treadmill,
        clock,
        safety=schedule.safety,
        sessions_dir=sessions_dir,
        on_reconnect=schedule.on_reconnect,  # type: ignore[arg-type]
        turn_speed_kmh=schedule.turn_speed_kmh,
        turn_countdown_s=schedule.turn_countdown_s,
    )
    journal = Journal()
    sessions = 0

    def on_output(kind: str, payload: dict[str, Any]) -> None:
        nonlocal sessions
        if kind == "event" and payload.get("type") == "session_started":
            sessions += 1

    runner.add_listener(on_output)
    tasks = [
        asyncio.create_task(sim.run(clock, tick_s=0.25), name="sim"),
        asyncio.create_task(runner.run(), name="session-runner"),
        asyncio.create_task(supervisor.run(), name="supervisor"),
    ]
    answers: list[tuple[str, asyncio.Future[Any]]] = []
    faults = _Faults(sim, journal)
    try:
        base = clock.monotonic()  # schedules count from 0; a scaled clock does not
        for event in schedule.events:
            at = base + event.t
            while clock.monotonic() < at - 1e-9:  # a second at most: belt samples
                now = clock.monotonic()
                dt = max(0.0, min(at, now + 1.0, faults.next_end) - now)
                if isinstance(clock, VirtualClock):
                    await clock.advance(dt)
                else:
                    await clock.sleep(dt)
                faults.tick(clock.monotonic())
            now = clock.monotonic()
            if event.kind in COMMANDS:
                journal.command(now, event.kind)
                answers.append((f"{event}", asyncio.ensure_future(_send(runner, event, schedule))))
            elif event.kind != "end":
                faults.apply(event, now)
        await asyncio.sleep(0)
    finally:
        end = clock.monotonic()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await treadmill.disconnect()
        if fake is not None:
            await fake.stop()
    for t in sim.link_downs:
        journal.link_lost(t)
    journal.statuses = list(sim.status_sent)
    journal.link_ups = list(sim.link_ups)
    rules = Rules.of(schedule.safety, schedule.sim.speed_min_kmh)
    violations = check(rules, sim.accepted, journal, end)
    unanswered = [what for what, fut in answers if not fut.done()]
    for _, fut in answers:
        if not fut.done():
            fut.cancel()
    await asyncio.gather(*(f for _, f in answers), return_exceptions=True)
    return Outcome(schedule, violations, len(sim.accepted), sessions, unanswered)


async def _send(runner: SessionRunner, event: Event, schedule: Schedule) -> object:
    kind = event.kind
    try:
        if kind == "start":
            return await runner.start(schedule.profiles[event.args["profile"]])
        if kind == "set":
            await runner.set(event.args.get("speed_kmh"), event.args.get("incline_pct"))
            return None
        return await getattr(runner, kind)()
    except Exception as exc:  # refusals are answers too
        return exc


def _moving_target(sim: SimTreadmill) -> float:
    """The speed target of a belt that runs (0 for one already at rest)."""
    return sim.target_speed_kmh if sim.state in ("running", "pre_workout") else 0.0


class _Faults:
    """Applies fault events to the simulator, ends timed ones, and journals what it did."""

    def __init__(self, sim: SimTreadmill, journal: Journal) -> None:
        self.sim = sim
        self.journal = journal
        self.ends: list[tuple[float, str]] = []  # (when, what ends)
        self.out_since: float | None = None

    @property
    def next_end(self) -> float:
        return min((t for t, _ in self.ends), default=math.inf)

    def tick(self, now: float) -> None:
        self.journal.sample(now, self.sim.speed_kmh, self.sim.state)
        for item in [e for e in self.ends if e[0] <= now + 1e-9]:
            self.ends.remove(item)
            self._end(item[1], now)

    def _end(self, what: str, now: float) -> None:
        sim = self.sim
        if what == "reach":
            sim.come_back()
            if self.out_since is not None:
                self.journal.out_of_reach(self.out_since, now)
                self.out_since = None
        elif what == "voice":
            sim.faults.silent = False
        elif what == "fast":
            sim.faults.control_reply_delay_s = 0.0

    def apply(self, event: Event, now: float) -> None:
        sim, journal, kind, args = self.sim, self.journal, event.kind, event.args
        if kind == "clear_faults":
            for _, what in self.ends:
                self._end(what, now)
            self.ends.clear()
            self._end("reach", now)
            sim.faults.drop_control_replies = 0
        elif kind == "out_of_reach":
            self.ends = [e for e in self.ends if e[1] != "reach"]
            if self.out_since is None:
                self.out_since = now
            sim.go_out_of_reach()
            self.ends.append((now + args["for_s"], "reach"))
        elif kind == "drop_link":
            sim.drop_link("dropped by the fault search")
        elif kind == "silent":
            sim.faults.silent = True
            self.ends.append((now + args["for_s"], "voice"))
        elif kind == "slow_replies":
            sim.faults.control_reply_delay_s = args["delay_s"]
            self.ends.append((now + args["for_s"], "fast"))
            if args["delay_s"] >= COMMAND_TIMEOUT_S:
                # Answers slower than the timeout: control is out of reach meanwhile.
                self.journal.out_of_reach(now, now + args["for_s"])
        elif kind == "drop_reply":
            sim.faults.drop_control_replies += 1
        elif kind == "console_speed":
            before = sim.target_speed_kmh
            sim.set_speed_at_console(args["kmh"])  # the treadmill snaps it to its own grid
            journal.at_console(now, "speed", sim.target_speed_kmh, before)
        elif kind == "console_incline":
            if sim.config.incline_supported:
                before = sim.target_incline_pct
                sim.set_incline_at_console(args["pct"])
                journal.at_console(now, "incline", sim.target_incline_pct, before)
        elif kind == "console_stop":
            journal.at_console(now, "stop", 0.0, _moving_target(sim))
            sim.stop_at_console()
        elif kind == "console_pause":
            if sim.state in ("running", "pre_workout"):
                journal.at_console(now, "pause", 0.0, _moving_target(sim))
                sim.pause_at_console()
        elif kind == "console_start":
            if sim.state in ("idle", "paused", "stopped"):
                journal.at_console(now, "start")
                sim.start_at_console()
        elif kind == "safety_key":
            journal.at_console(now, "safety_key", 0.0, _moving_target(sim))
            sim.pull_safety_key()
        elif kind == "revoke":
            journal.at_console(now, "revoke")
            sim.revoke_control()


def run_seed(seed: int, *, length_s: float = 150.0) -> Outcome:
    """One schedule in a fresh event loop (fresh state, like a new process)."""
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(run(generate(seed, length_s=length_s), Path(tmp)))


def report(outcome: Outcome) -> str:
    lines = [outcome.schedule.describe()]
    lines += [f"VIOLATION {v}" for v in outcome.violations]
    lines += [f"NO ANSWER to {u}" for u in outcome.unanswered]
    lines.append(
        f"{'OK' if outcome.ok else 'BROKEN'}: {outcome.writes} writes, {outcome.sessions} sessions"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    length = float(sys.argv[2]) if len(sys.argv) > 2 else 150.0
    print(report(run_seed(int(sys.argv[1]), length_s=length)))
