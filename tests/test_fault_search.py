"""The fault search, bounded: seeded schedules every run, judged from the treadmill's side.

Each case is one schedule from ``tests/faultsearch.py`` (random profile x commands x faults);
a failure prints the whole schedule and every violated rule, and replays with
``python -m tests.faultsearch SEED``. ``bench/safety_soak.py`` runs thousands.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from retrotread.sim.dbus_bus import PrivateBus
from retrotread.sim.safety_check import Journal, Rules, check
from retrotread.sim.treadmill import AcceptedWrite
from tests.blehelpers import private_bus
from tests.faultsearch import generate, report, run

__all__ = ["private_bus"]

# Fixed seeds: every schedule that once broke a rule (each found a bug, since fixed: see
# the git log of service/runner.py and link/control_point.py), plus fresh ones each run,
# named in the test id so that a failure can be replayed.
FOUND = [105, 112, 124, 125, 129, 137, 306, 367, 464, 476, 483, 505, 517, 529, 633, 820]
FOUND += [828, 832, 888, 927, 986, 1103, 1156, 1301, 1342, 1423, 1550, 1683, 2016, 2018]
FOUND += [2138, 2466, 2888, 2991, 3723, 3743, 100662, 100872, 101377, 101581]
# From the soak of 4,000: 301744, 302951, 303508 and 303946 found runner bugs; 300174, 302974,
# 303018 and 303316 the checker's own (a write answering the last of several commands at
# one instant; a console stop undone at the console while the link was down; a belt the
# walker started with no target, running at the bottom of its range).
FOUND += [300174, 301744, 302951, 302974, 303018, 303316, 303508, 303946]
FOUND += [310365]  # the checker's: a write refused for want of control, then sent again
FOUND += [311534]  # a person's stop dropped with the queue by the walker's console start
FOUND += [361193]  # the checker's: a console start hid the console incline change after it
FRESH = random.Random().sample(range(10_000, 10_000_000), 8)


@pytest.mark.parametrize("seed", FOUND + FRESH)
async def test_schedule_keeps_every_rule(seed: int, tmp_path: Path) -> None:
    outcome = await run(generate(seed), tmp_path)
    assert outcome.ok, f"replay: python -m tests.faultsearch {seed}\n" + report(outcome)


@pytest.mark.parametrize("seed", [3, 11, 29])
async def test_schedule_over_ble_keeps_every_rule(
    seed: int, private_bus: PrivateBus, tmp_path: Path
) -> None:
    """The same search through the fake BlueZ and the real bleak, at 10x real time."""
    outcome = await run(
        generate(seed, length_s=60.0), tmp_path, ble_bus=private_bus.address, speedup=10.0
    )
    assert outcome.ok, f"replay (in-process): python -m tests.faultsearch {seed} 60\n" + report(
        outcome
    )


def test_the_search_finds_a_planted_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker is not blind: a runner that forgets the restart speed is caught."""
    import asyncio

    from retrotread.service import runner as runner_module

    def careless_start(self: runner_module.SessionRunner, s: object, now: float) -> None:
        # The old bug: Start/Resume straight away, whatever speed the treadmill holds.
        self._set_belt(runner_module.Belt.STARTING, now)
        self._start_acked = False
        self._start_request = self._submit(
            runner_module.cp.start_or_resume(), runner_module._Done("start", self._epoch)
        )

    monkeypatch.setattr(runner_module.SessionRunner, "_begin_start", careless_start)
    broken = 0
    for seed in range(40):
        outcome = asyncio.run(run(generate(seed, length_s=120.0), tmp_path / str(seed)))
        broken += not outcome.ok
        if any(v.rule == "restart_low" for v in outcome.violations):
            return
    pytest.fail(f"40 schedules and no restart_low found ({broken} broken otherwise)")


def test_the_checker_lets_a_write_answer_any_command_of_its_instant() -> None:
    """Five commands at one instant are journaled a hair apart to keep their order; the
    restart speed written at that instant may answer the last of them (a ``start``). The
    same write with no ``start`` at all is still a write after the stop."""
    rules = Rules(3.0, 10.0, 0.1, 0.5, 1.0, 0.1)

    def judged(actions: list[str]) -> list[str]:
        journal = Journal()
        journal.command(1.0, "start")
        for action in actions:
            journal.command(29.9, action)
        writes = [
            AcceptedWrite(1.35, bytes.fromhex("020a00"), "idle", 0.0, 0.0, 0.0),
            AcceptedWrite(1.62, b"\x07", "idle", 0.1, 0.0, 0.0),
            AcceptedWrite(5.75, bytes.fromhex("0801"), "running", 0.1, 0.0, 0.1),
            AcceptedWrite(29.9, bytes.fromhex("020a00"), "stopped", 0.0, 0.0, 0.0),
        ]
        return [v.rule for v in check(rules, writes, journal, 40.0)]

    assert judged(["pause", "resume", "set", "resume", "start"]) == []
    assert judged(["pause", "resume", "set", "resume"]) == ["after_stop"]


@pytest.mark.parametrize(("console_start_at", "expected"), [(15.0, []), (22.0, ["after"])])
def test_a_console_stop_undone_while_the_link_was_down_is_no_stop_to_know(
    console_start_at: float, expected: list[str]
) -> None:
    """Stopped at the console while the link was down (its status never delivered), and
    started again there before the link came back at 20 s: a client finds the walker's
    running belt and can know of no stop. Started again only after the link was back, the
    stop was there to be known, and is final (seeds 302974, 303018)."""
    rules = Rules(3.0, 10.0, 0.1, 0.5, 1.0, 0.1)
    journal = Journal()
    journal.command(1.0, "start")
    journal.link_lost(5.0)
    journal.at_console(10.0, "stop", 0.0, 2.0)
    journal.at_console(console_start_at, "start")
    journal.link_ups = [20.0]
    journal.command(24.0, "resume")
    writes = [
        AcceptedWrite(1.35, bytes.fromhex("020a00"), "idle", 0.0, 0.0, 0.0),
        AcceptedWrite(1.62, b"\x07", "idle", 0.1, 0.0, 0.0),
        AcceptedWrite(25.0, bytes.fromhex("020a00"), "paused", 0.0, 0.0, 0.0),
    ]
    found = [v for v in check(rules, writes, journal, 40.0) if v.rule == "treadmill_stop_final"]
    assert ["after" for _ in found] == expected


@pytest.mark.parametrize(("kmh", "expected"), [(0.7, []), (0.9, ["step"])])
def test_a_belt_started_at_the_console_with_no_target_steps_from_where_it_runs(
    kmh: float, expected: list[str]
) -> None:
    """Started at the console, the belt runs at the bottom of its range (0.5) with a target
    of 0: one step up from there is a step, not a restart from rest (seed 303316)."""
    rules = Rules(5.0, 10.0, 0.2, 0.5, 2.0, 0.5)
    journal = Journal()
    journal.command(0.2, "start")
    journal.at_console(0.3, "start")
    journal.statuses = [(0.31, b"\x04")]
    raw = round(kmh * 100).to_bytes(2, "little")
    writes = [AcceptedWrite(14.78, b"\x02" + raw, "running", 0.0, 0.0, 0.5)]
    assert [v.rule for v in check(rules, writes, journal, 20.0)] == expected


@pytest.mark.parametrize(("first_result", "expected"), [(0x05, []), (0x01, ["interval"])])
def test_a_write_refused_for_want_of_control_sets_no_interval(
    first_result: int, expected: list[str]
) -> None:
    """Refused with Control Not Permitted, a speed write changed nothing: sent again 0.35 s
    later once control is back, it is the first that counts. Two that both took effect
    0.35 s apart break the interval (seed 310365)."""
    rules = Rules(3.0, 4.0, 0.1, 1.0, 1.0, 1.0)
    journal = Journal()
    journal.command(132.5, "start")
    writes = [
        AcceptedWrite(132.575, bytes.fromhex("026400"), "paused", 1.0, 0.0, 0.0, first_result),
        AcceptedWrite(132.825, b"\x00", "paused", 1.0, 0.0, 0.0, 0x01),
        AcceptedWrite(132.925, bytes.fromhex("026400"), "paused", 1.0, 0.0, 0.0, 0x01),
    ]
    assert [v.rule for v in check(rules, writes, journal, 140.0)] == expected


@pytest.mark.parametrize(("pct", "expected"), [(0.5, []), (2.0, ["step"])])
def test_an_incline_change_behind_a_console_start_still_races_our_write(
    pct: float, expected: list[str]
) -> None:
    """The walker starts the belt at the console and, 40 ms later, sets 13.5 % there; our
    next incline step (from 1.0 %) reaches the treadmill 60 ms after that, before either
    status could be known. Judged against the incline before the walker's change it is a
    step (0.5); a jump (2.0) is still caught. The start ahead of the change hid it from
    the checker (seed 361193)."""
    rules = Rules(4.0, 15.0, 0.5, 0.5, 1.0, 0.1)
    journal = Journal()
    journal.command(97.96, "start")
    journal.command(101.21, "finish")
    journal.at_console(106.98, "start")
    journal.at_console(107.02, "incline", 13.5, 1.0)
    journal.statuses = [(107.08, b"\x04"), (107.12, bytes.fromhex("068700"))]
    raw = round(pct * 10).to_bytes(2, "little", signed=True)
    writes = [AcceptedWrite(107.08, b"\x03" + raw, "running", 0.5, 13.5, 0.05, 0x01)]
    assert [v.rule for v in check(rules, writes, journal, 120.0)] == expected
