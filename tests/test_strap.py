"""The heart-rate strap: the simulated walker's heart, the simulated strap's bytes, the strap
link and its own supervisor (in-process, virtual clock), and which heart rate is in use."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from retrotread.backoff import Backoff
from retrotread.clock import VirtualClock
from retrotread.errors import LinkError
from retrotread.ftms.heart_rate import HeartRateMeasurement, decode_heart_rate_measurement
from retrotread.link.events import LinkDown, RawFrame
from retrotread.link.strap import HeartRateSample, HeartRateStrap, StrapEvent, StrapUp
from retrotread.service.heart_rate import HeartRateSources
from retrotread.service.supervisor import LinkState, Supervisor
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.physiology import Walker, walking_vo2
from retrotread.sim.strap import SimStrap, StrapConfig, StrapFaults
from retrotread.sim.treadmill import SimTreadmill

# ---------------------------------------------------------------------- physiology


def test_effort_costs_more_backward_uphill_and_faster() -> None:
    w = Walker()
    flat = w.steady_bpm(3.0, 0.0)
    assert w.steady_bpm(3.0, 8.0) > flat > w.steady_bpm(2.0, 0.0) > w.steady_bpm(0.0, 0.0)
    w.backward = True
    assert w.steady_bpm(3.0, 0.0) > flat  # backward costs more than forward
    assert w.steady_bpm(0.0, 0.0) == w.rest_bpm
    assert w.steady_bpm(8.0, 15.0) == w.max_bpm  # never above the maximum
    # ACSM: 3 km/h (50 m/min) flat is 3.5 + 5 = 8.5 ml/kg/min forward.
    assert walking_vo2(3.0, 0.0, backward=False, backward_cost=1.45) == pytest.approx(8.5)
    assert walking_vo2(3.0, 0.0, backward=True, backward_cost=1.45) == pytest.approx(10.75)


def test_heart_rate_follows_effort_with_a_lag() -> None:
    w = Walker(heart_rate_bpm=65.0)  # at rest
    goal = w.steady_bpm(3.0, 8.0)
    for _ in range(30):  # one time constant up (30 s)
        w.step(1.0, 3.0, 8.0)
    rise = (w.heart_rate_bpm - w.rest_bpm) / (goal - w.rest_bpm)
    assert rise == pytest.approx(1 - 1 / 2.718281828, abs=0.01)
    for _ in range(600):
        w.step(1.0, 3.0, 8.0)
    assert w.heart_rate_bpm == pytest.approx(goal, abs=0.1)
    for _ in range(45):  # coming down is slower: one 45 s time constant
        w.step(1.0, 0.0, 0.0)
    fall = (goal - w.heart_rate_bpm) / (goal - w.rest_bpm)
    assert fall == pytest.approx(1 - 1 / 2.718281828, abs=0.01)


# ---------------------------------------------------------------------- the strap link


@dataclass
class StrapRig:
    clock: VirtualClock
    walker: Walker
    sim: SimStrap
    strap: HeartRateStrap
    events: list[StrapEvent] = field(default_factory=list)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def drive(self, coro: Any) -> Any:
        task = asyncio.ensure_future(coro)
        await self.clock.run_until(task.done, 30, 0.01)
        return task.result()


@asynccontextmanager
async def strap_rig(
    faults: StrapFaults | None = None,
    walker: Walker | None = None,
    config: StrapConfig | None = None,
) -> AsyncIterator[StrapRig]:
    clock = VirtualClock()
    w = walker or Walker()
    sim = SimStrap(w, config or StrapConfig(noise_bpm=0.0), faults)
    task = asyncio.create_task(sim.run(clock, tick_s=0.05))
    strap = HeartRateStrap(InProcessTransport(sim), clock)
    r = StrapRig(clock, w, sim, strap)
    strap.add_listener(r.events.append)
    try:
        yield r
    finally:
        await strap.disconnect()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_strap_connects_and_notifies_its_walker_once_a_second() -> None:
    async with strap_rig(walker=Walker(heart_rate_bpm=96.0)) as r:
        info = await r.drive(r.strap.connect())
        assert (info.name, info.address, info.location) == (
            "RETRO-HR",
            "C0:FF:EE:00:00:02",
            "chest",
        )
        assert info.device_info == {"manufacturer": "retrotread", "model": "SIM-HR"}
        assert r.of(StrapUp)[0].info == info
        await r.clock.advance(10.0)
        samples = r.of(HeartRateSample)
        assert len(samples) == 10
        gaps = [b.t - a.t for a, b in itertools.pairwise(samples)]
        assert all(g == pytest.approx(1.0) for g in gaps)
        m = samples[-1].measurement
        assert m.heart_rate_bpm == 96 and m.sensor_contact is True and not m.wide
        # 96 bpm is 0.625 s a beat (a few percent variability, in 1/1024 s units).
        rr = [x for s in samples[1:] for x in s.measurement.rr_intervals_s]
        assert statistics.mean(rr) == pytest.approx(0.625, rel=0.02)
        assert sum(rr) == pytest.approx(9.0, abs=1.0)
        # Every notification is logged raw, as the session log needs it (rx on 2a37).
        raw = [e for e in r.of(RawFrame) if e.char == "2a37"]
        assert [e.data for e in raw] == [b for _, b in r.sim.sent]
        assert [decode_heart_rate_measurement(e.data) for e in raw[-3:]] == [
            s.measurement for s in samples[-3:]
        ]


async def test_the_strap_reads_with_its_own_noise_the_same_for_a_seed() -> None:
    async def series(seed: int) -> list[int]:
        heart = Walker(heart_rate_bpm=100.0, tau_up_s=1e9, tau_down_s=1e9)
        async with strap_rig(walker=heart, config=StrapConfig(noise_bpm=1.5, seed=seed)) as r:
            await r.drive(r.strap.connect())
            await r.clock.advance(120.0)
            return [s.measurement.heart_rate_bpm for s in r.of(HeartRateSample)]

    a = await series(3)
    assert len(a) == 120 and a == await series(3)
    assert a != await series(4)
    assert 0.8 < statistics.pstdev(a) < 2.5  # noisy, but around the true value
    assert abs(statistics.mean(a) - 100) < 1


@pytest.mark.parametrize(
    ("faults", "check"),
    [
        (StrapFaults(wide=True), lambda m: m.wide and m.flags & 0x01 and m.heart_rate_bpm == 96),
        (StrapFaults(rr=False), lambda m: m.rr_intervals_s == () and not m.flags & 0x10),
        (
            StrapFaults(contact_lost=True),
            lambda m: m.sensor_contact is False and m.heart_rate_bpm == 0,
        ),
        (StrapFaults(energy=True), lambda m: m.energy_expended_kj is not None),
    ],
)
async def test_format_and_contact_knobs(faults: StrapFaults, check: Any) -> None:
    async with strap_rig(faults, Walker(heart_rate_bpm=96.0)) as r:
        await r.drive(r.strap.connect())
        await r.clock.advance(5.0)
        for s in r.of(HeartRateSample)[1:]:
            assert check(s.measurement), s.measurement


async def test_frozen_knob_repeats_the_same_bytes() -> None:
    async with strap_rig(walker=Walker(heart_rate_bpm=96.0)) as r:
        await r.drive(r.strap.connect())
        await r.clock.advance(3.0)
        r.sim.faults.frozen = True
        frozen_at = len(r.sim.sent)
        r.walker.heart_rate_bpm = 140.0  # the heart moves on; the strap does not
        await r.clock.advance(5.0)
        frames = [b for _, b in r.sim.sent[frozen_at - 1 :]]
        assert len(frames) == 6 and len(set(frames)) == 1
        assert r.of(HeartRateSample)[-1].measurement.heart_rate_bpm == 96


async def test_rr_intervals_beyond_one_notification_wait_for_the_next() -> None:
    """A fast heart in a 20-byte notification: the intervals are never dropped, only late."""
    async with strap_rig(walker=Walker(heart_rate_bpm=150.0)) as r:
        r.sim.config.interval_s = 4.0  # ten beats per notification: room for nine
        await r.drive(r.strap.connect())
        await r.clock.advance(40.0)
        frames = [b for _, b in r.sim.sent]
        assert max(len(f) for f in frames) <= 20
        rr = [x for s in r.of(HeartRateSample) for x in s.measurement.rr_intervals_s]
        assert sum(rr) == pytest.approx(r.sim.now - 4.0, abs=1.5)


async def test_a_treadmill_and_a_strap_read_the_same_heart() -> None:
    w = Walker()
    treadmill = SimTreadmill(walker=w)
    strap = SimStrap(w)
    assert treadmill.walker is strap.walker
    treadmill.speed_kmh = 3.0  # walking (the belt moves the walker)
    treadmill.state = "running"
    treadmill.target_speed_kmh = 3.0
    treadmill.advance_to(120.0)
    assert w.heart_rate_bpm > w.rest_bpm + 10
    assert treadmill.current_record().heart_rate_bpm == w.reading()


async def test_not_a_strap_is_refused() -> None:
    clock = VirtualClock()
    strap = HeartRateStrap(InProcessTransport(SimTreadmill()), clock)
    task = asyncio.ensure_future(strap.connect())
    await clock.run_until(task.done, 5, 0.01)
    with pytest.raises(LinkError, match="not a heart-rate strap"):
        task.result()
    assert not strap.is_connected


async def test_the_strap_supervisor_reconnects_and_watches_for_silence() -> None:
    async with strap_rig() as r:
        sup = Supervisor(
            r.strap,
            r.clock,
            silence_timeout_s=3.0,
            backoff=Backoff(1.0, 4.0, random.Random(1)),
            what="heart-rate strap",
        )
        task = asyncio.create_task(sup.run())
        try:
            await r.clock.run_until(lambda: sup.state == LinkState.CONNECTED, 10)
            r.sim.drop_link("battery low")
            await r.clock.run_until(lambda: r.sim.connects == 2, 20)
            assert r.of(LinkDown)[0].reason == "battery low"
            await r.clock.run_until(lambda: sup.state == LinkState.CONNECTED, 10)
            r.sim.faults.silent = True  # connected, nothing sent
            await r.clock.run_until(lambda: len(r.of(LinkDown)) == 2, 20)
            assert r.of(LinkDown)[1].reason == "no heart-rate strap data for 3 s"
            assert sup.losses == 2
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


# ---------------------------------------------------------------------- which heart rate


def hrm(bpm: int, contact: bool | None = True, rr: tuple[float, ...] = ()) -> HeartRateMeasurement:
    return HeartRateMeasurement(bpm, sensor_contact=contact, rr_intervals_s=rr)


def test_the_strap_wins_and_the_treadmill_fills_in() -> None:
    h = HeartRateSources(strap_expected=True, stale_after_s=5.0)
    h.treadmill_sample(90, 0.0)
    assert (h.reading(0.0).bpm, h.reading(0.0).source) == (90, "treadmill")
    h.strap_up("RETRO-HR")
    h.strap_sample(hrm(101), 1.0)
    h.treadmill_sample(92, 1.0)
    assert (h.reading(1.0).bpm, h.reading(1.0).source) == (101, "strap")
    h.treadmill_sample(93, 7.0)  # the strap went quiet 6 s ago
    assert (h.reading(7.0).bpm, h.reading(7.0).source) == (93, "treadmill")
    h.strap_down()
    h.treadmill_sample(0, 8.0)  # a console with no heart rate says 0
    r = h.reading(8.0)
    assert (r.bpm, r.source, r.problem) == (None, None, "the heart-rate strap is not connected")
    assert h.report(8.0)["strap"] == "disconnected"


def test_no_contact_is_no_reading() -> None:
    h = HeartRateSources(strap_expected=True)
    h.strap_up("RETRO-HR")
    h.strap_sample(hrm(0, contact=False), 0.0)
    r = h.reading(0.5)
    assert (r.bpm, r.problem) == (None, "the strap has no skin contact")
    h.strap_sample(hrm(88, contact=None), 1.0)  # a strap that does not report contact
    assert h.reading(1.0).bpm == 88


def test_a_frozen_value_is_no_reading_but_a_steady_beating_heart_is() -> None:
    h = HeartRateSources(strap_expected=True, frozen_after_s=45.0)
    h.strap_up("RETRO-HR")
    for t in range(0, 60):  # the same bpm, new beat intervals every second
        h.strap_sample(hrm(100, rr=(0.6 + t / 1024,)), float(t))
    assert h.reading(59.0).bpm == 100
    for t in range(60, 120):  # the same frame again and again
        h.strap_sample(hrm(100, rr=(0.6,)), float(t))
    r = h.reading(119.0)
    assert r.bpm is None and r.problem is not None and "frozen" in r.problem
    h.strap_sample(hrm(101, rr=(0.59,)), 120.0)
    assert h.reading(120.0).bpm == 101


def test_without_beat_intervals_a_steady_value_is_never_taken_for_frozen() -> None:
    h = HeartRateSources(strap_expected=True, frozen_after_s=45.0)
    h.strap_up("RETRO-HR")
    for t in range(0, 120):
        h.strap_sample(hrm(100), float(t))  # no RR intervals at all
        h.treadmill_sample(90, float(t))  # and a console that holds still
    assert (h.reading(119.0).bpm, h.reading(119.0).source) == (100, "strap")
    h.strap_down()
    assert (h.reading(119.0).bpm, h.reading(119.0).source) == (90, "treadmill")


def test_a_quiet_strap_is_stale_not_frozen() -> None:
    h = HeartRateSources(strap_expected=True, stale_after_s=60.0, frozen_after_s=45.0)
    h.strap_up("RETRO-HR")
    h.strap_sample(hrm(100, rr=(0.6,)), 0.0)
    assert h.reading(50.0).bpm == 100  # one sample 50 s ago: old, but nothing repeated
    r = h.reading(61.0)
    assert r.bpm is None and r.problem == "strap: no reading for more than 60 s"


def test_changes_of_source_are_reported_once() -> None:
    h = HeartRateSources(strap_expected=True)
    assert h.changed(0.0) is not None  # the first answer is news
    assert h.changed(0.5) is None
    h.strap_up("x")
    h.strap_sample(hrm(90), 1.0)
    c = h.changed(1.0)
    assert c is not None and c.source == "strap"
    assert h.changed(2.0) is None
    assert h.changed(20.0) is not None  # stale: back to none
