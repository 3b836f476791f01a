"""The FTMS client and the connection supervisor against the in-process simulator."""

from __future__ import annotations

import asyncio
import random

import pytest

from retrotread.backoff import Backoff
from retrotread.clock import VirtualClock
from retrotread.errors import ControlError, LinkError
from retrotread.ftms import control as cp
from retrotread.ftms.status import StatusOp
from retrotread.link.control_point import CommandTimeout, ControlPoint
from retrotread.link.events import BadFrame, LinkDown, LinkUp, RawFrame, StatusChanged, Telemetry
from retrotread.link.ftms_client import ControlRefused, Superseded
from retrotread.service.supervisor import LinkState, Supervisor
from retrotread.sim.treadmill import Faults, SimConfig
from tests.linkhelpers import Rig, rig


async def test_capabilities_read_after_connect() -> None:
    async with rig() as r:
        caps = await r.drive(r.treadmill.connect())
        assert caps.name == "RETRO-SIM"
        assert caps.speed_range is not None and caps.incline_range is not None
        assert (caps.speed_range.minimum, caps.speed_range.maximum) == (0.5, 8.0)
        assert caps.speed_range.increment == 0.1
        assert (caps.incline_range.minimum, caps.incline_range.maximum) == (0.0, 12.0)
        assert caps.can_set_speed and caps.can_set_incline
        assert caps.device_info["manufacturer"] == "retrotread"
        assert caps.device_info["model"] == "SIM-1"
        assert r.of(LinkUp)[0].capabilities == caps


async def test_missing_incline_range_tolerated() -> None:
    async with rig(SimConfig(incline_supported=False)) as r:
        caps = await r.drive(r.treadmill.connect())
        assert caps.incline_range is None
        assert caps.can_set_speed and not caps.can_set_incline


async def test_speed_and_incline_reach_telemetry() -> None:
    async with rig() as r:
        await r.drive(r.treadmill.connect())
        await r.drive(r.treadmill.start())
        await r.clock.advance(4)
        await r.drive(r.treadmill.set_speed(2.0))
        await r.drive(r.treadmill.set_incline(3.5))
        await r.clock.advance(10)
        last = r.of(Telemetry)[-1].record
        assert last.speed_kmh == 2.0
        assert last.incline_pct == 3.5
        tx = [e.data for e in r.of(RawFrame) if e.direction == "tx"]
        # Request Control first (FTMS.md §8.4 step 4), then the commands, byte for byte.
        assert tx == [b"\x00", b"\x07", b"\x02\xc8\x00", b"\x03\x23\x00"]


async def test_request_control_again_after_permission_lost() -> None:
    async with rig() as r:
        await r.drive(r.treadmill.connect())
        await r.drive(r.treadmill.start())
        r.sim.revoke_control()
        await r.clock.advance(0.2)
        assert not r.treadmill.has_control
        await r.drive(r.treadmill.set_speed(1.0))
        tx = [e.data for e in r.of(RawFrame) if e.direction == "tx"]
        assert tx[-2:] == [b"\x00", b"\x02\x64\x00"]
        assert r.sim.target_speed_kmh == 1.0


async def test_refused_control_is_a_typed_error() -> None:
    async with rig(faults=Faults(refuse_control=True)) as r:
        await r.drive(r.treadmill.connect())
        with pytest.raises(ControlRefused) as info:
            await r.drive(r.treadmill.start())
        assert info.value.result_code == 0x05
        assert r.sim.state == "idle"


async def test_operation_failed_maps_to_control_error() -> None:
    async with rig() as r:
        await r.drive(r.treadmill.connect())
        with pytest.raises(ControlError) as info:
            await r.drive(r.treadmill.stop())  # stop while already stopped: 0x04
        assert info.value.result_code == 0x04


async def test_stop_overtakes_queued_commands() -> None:
    async with rig() as r:
        await r.drive(r.treadmill.connect())
        await r.drive(r.treadmill.start())
        await r.clock.advance(4)
        ramp = [asyncio.ensure_future(r.treadmill.set_speed(1.0 + i / 10)) for i in range(10)]
        await asyncio.sleep(0)  # the first set_speed is now on the wire
        stop = asyncio.ensure_future(r.treadmill.stop())
        await r.drive(asyncio.wait_for(stop, 5))
        results = await asyncio.gather(*ramp, return_exceptions=True)
        superseded = [x for x in results if isinstance(x, Superseded)]
        assert len(superseded) == 9  # only the one already on the wire went through
        tx = [e.data for e in r.of(RawFrame) if e.direction == "tx"]
        assert tx[-2:] == [b"\x02\x64\x00", b"\x08\x01"]
        await r.clock.advance(10)
        assert r.sim.state == "stopped"
        assert r.of(Telemetry)[-1].record.speed_kmh == 0.0


async def test_a_request_is_on_the_wire_one_loop_turn_after_it_is_submitted() -> None:
    """The control point's worker writes in its own step: a stop submitted now has reached
    the treadmill when the loop has run once (a task for the write took a turn more)."""
    async with rig() as r:
        await r.drive(r.treadmill.connect())
        await r.drive(r.treadmill.start())
        await r.clock.advance(4)
        n = len(r.sim.writes)
        answer = r.treadmill.submit(cp.stop(), urgent=True)
        await asyncio.sleep(0)
        assert r.sim.writes[n:] == [b"\x08\x01"]
        response = await r.drive(asyncio.wait_for(answer, 5))
        assert response.ok


async def _unanswered_speed(r: Rig, after_s: float) -> asyncio.Future[None]:
    """A belt running, then a Set Target Speed the treadmill never answers, ``after_s``
    on the wire."""
    await r.drive(r.treadmill.connect())
    await r.drive(r.treadmill.start())
    await r.clock.advance(4)
    r.sim.faults.drop_control_replies = 1
    speed = asyncio.ensure_future(r.treadmill.set_speed(1.5))
    await r.clock.advance(after_s)
    assert r.sim.writes[-1][:1] == b"\x02"
    return speed


async def test_a_stop_shortens_the_wait_for_an_unanswered_write() -> None:
    """A write the treadmill never answers holds the control point for its own timeout
    (5 s), unless a stop comes: from then on it is given ``stop_wait_s`` (1.5 s), and the
    link is dropped then so that the stop goes out on a fresh one (FTMS rule 4)."""
    async with rig() as r:
        speed = await _unanswered_speed(r, 2.0)
        stop = asyncio.ensure_future(r.treadmill.stop())
        t_stop = r.clock.monotonic()
        with pytest.raises(LinkError, match=r"no response within 3\.5 s"):
            await r.drive(asyncio.wait_for(stop, 10), limit_s=4)  # sent again on a new link
        downs = r.of(LinkDown)
        assert len(downs) == 1 and "no response within" in downs[0].reason
        assert downs[0].t - t_stop == pytest.approx(1.5, abs=0.02)
        with pytest.raises(CommandTimeout):
            await speed


async def test_a_request_on_the_wire_fails_when_the_link_drops() -> None:
    """The link drops while a write waits for its indication: its caller is told
    (LinkError), it is not left waiting for an answer that cannot come."""
    async with rig() as r:
        speed = await _unanswered_speed(r, 1.0)
        r.sim.drop_link("power cut")
        with pytest.raises(LinkError, match="power cut"):
            await r.drive(asyncio.wait_for(speed, 10), limit_s=1)


async def test_no_command_while_disconnected() -> None:
    async with rig() as r:
        await r.drive(r.treadmill.connect())
        r.sim.drop_link("power cut")
        assert r.of(LinkDown)[-1].reason == "power cut"
        writes = len(r.sim.writes)
        with pytest.raises(LinkError):
            await r.drive(r.treadmill.set_speed(1.0))
        assert len(r.sim.writes) == writes


async def test_garbage_frames_are_reported_not_fatal() -> None:
    async with rig(faults=Faults(truncate_at=3)) as r:
        await r.drive(r.treadmill.connect())
        await r.clock.advance(1)
        bad = r.of(BadFrame)
        assert bad and all(b.error.char == "2acd" for b in bad)
        r.sim.faults.truncate_at = None
        await r.clock.advance(1)
        assert r.of(Telemetry)


async def test_padded_status_frames_decode() -> None:
    async with rig(faults=Faults(pad_status_to=3)) as r:
        await r.drive(r.treadmill.connect())
        await r.drive(r.treadmill.start())
        await r.clock.advance(0.5)
        ops = [(e.status.op, e.status.extra) for e in r.of(StatusChanged)]
        assert (StatusOp.STARTED_OR_RESUMED_BY_USER, b"\x00\x00") in ops


async def test_split_records_are_reassembled() -> None:
    async with rig(faults=Faults(mtu=23)) as r:
        await r.drive(r.treadmill.connect())
        await r.clock.advance(2)
        frames = [e for e in r.of(RawFrame) if e.char == "2acd"]
        assert frames and max(len(f.data) for f in frames) <= 20
        records = r.of(Telemetry)
        assert len(records) < len(frames)
        assert records[-1].record.heart_rate_bpm is not None
        assert records[-1].record.speed_kmh == 0.0


def test_backoff_is_capped_and_jittered() -> None:
    b = Backoff(initial_s=1.0, max_s=30.0, rng=random.Random(7))
    delays = [b.delay(n) for n in range(1, 12)]
    assert all(0.5 <= delays[0] <= 1.0 for _ in [0])
    assert all(d <= 30.0 for d in delays)
    assert delays[-1] >= 15.0  # capped at 30, jitter keeps it in [15, 30]
    assert len({round(d, 6) for d in delays}) == len(delays)


async def test_supervisor_reconnects_after_drop() -> None:
    async with rig() as r:
        sup = Supervisor(
            r.treadmill, r.clock, silence_timeout_s=2.0, backoff=Backoff(1.0, 8.0, random.Random(1))
        )
        states: list[LinkState] = []
        sup.add_state_listener(states.append)
        task = asyncio.create_task(sup.run())
        await r.clock.run_until(lambda: sup.state == LinkState.CONNECTED, 5)
        r.sim.drop_link("out of range")
        r.sim.faults.refuse_connect = "device not found"
        await r.clock.advance(20)
        assert sup.state == LinkState.BACKOFF
        assert sup.attempts >= 3  # it kept trying while the treadmill was absent
        r.sim.faults.refuse_connect = None
        assert await r.clock.run_until(lambda: sup.state == LinkState.CONNECTED, 30)
        assert sup.losses == 1
        assert states[:3] == [LinkState.CONNECTING, LinkState.CONNECTED, LinkState.BACKOFF]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_silence_watchdog_declares_link_lost() -> None:
    async with rig() as r:
        sup = Supervisor(
            r.treadmill, r.clock, silence_timeout_s=2.0, backoff=Backoff(1.0, 8.0, random.Random(1))
        )
        task = asyncio.create_task(sup.run())
        await r.clock.run_until(lambda: sup.state == LinkState.CONNECTED, 5)
        r.sim.faults.silent = True
        await r.clock.advance(2.5)
        downs = r.of(LinkDown)
        assert downs and downs[0].reason == "no treadmill data for 2 s"
        assert not r.sim.connected  # we released the link ourselves
        r.sim.faults.silent = False
        assert await r.clock.run_until(lambda: sup.state == LinkState.CONNECTED, 30)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _misbehaving_write(kind: str) -> tuple[VirtualClock, ControlPoint, list[str]]:
    """A control point whose transport answers Request Control and then, for any other
    request, hangs in its write and handles the deadline's cancellation badly: ``convert``
    turns it into a LinkError, ``swallow`` ignores the first one and waits again. (Neither
    bleak nor the simulator does this: the transport is stood in for, not the control
    point.)"""
    clock = VirtualClock()
    broken: list[str] = []

    async def write(request: bytes) -> None:
        if request[:1] == b"\x00":
            loop = asyncio.get_running_loop()
            loop.call_soon(control.indication, cp.ControlResponse(0x00, cp.ResultCode.SUCCESS))
            return
        try:
            await clock.sleep(60)
        except asyncio.CancelledError:
            if kind == "convert":
                raise LinkError("the write was cut off") from None
        await clock.sleep(60)

    control = ControlPoint(write, clock, timeout_s=5.0, on_broken=broken.append)
    control.open()
    return clock, control, broken


@pytest.mark.parametrize("kind", ["convert", "swallow"])
async def test_the_deadline_holds_whatever_the_write_does_with_its_cancellation(
    kind: str,
) -> None:
    """Past its 5 s, a request fails with CommandTimeout and the link is given up (FTMS
    rule 4), also when the write turns the cancellation into another error (it failed
    with that error instead, the link kept, and a cancellation left counted against the
    worker) or swallows it (the worker waited on for the write's whole minute)."""
    clock, control, broken = await _misbehaving_write(kind)
    answer = control.submit(cp.set_target_speed(2.0))
    await clock.advance(5.2 if kind == "convert" else 5.7)
    assert answer.done()
    with pytest.raises(CommandTimeout):
        answer.result()
    # Cut off at 5.0 s; the one that swallowed it, cancelled again 0.5 s later.
    seconds = "5.0" if kind == "convert" else "5.5"
    assert broken == [f"set_target_speed: no response within {seconds} s"]
    assert not control.is_open
    control.close("test over")
