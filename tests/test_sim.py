"""The simulated treadmill driven only through its Control Point bytes, on simulated time."""

from __future__ import annotations

import time

import pytest

from retrotread.errors import AttError
from retrotread.ftms import control as cp
from retrotread.ftms import uuids
from retrotread.ftms.control import decode_control_response
from retrotread.ftms.status import decode_training_status
from retrotread.ftms.treadmill_data import decode_treadmill_data
from retrotread.sim.treadmill import Faults, SimConfig, SimTreadmill


class Central:
    """A bare GATT client: writes bytes, collects every notification by characteristic."""

    def __init__(self, sim: SimTreadmill, indications: bool = True) -> None:
        self.sim = sim
        self.got: list[tuple[float, str, bytes]] = []
        sim.connect(lambda u, v: self.got.append((sim.now, uuids.short_name(u), v)), lambda r: None)
        for char in (uuids.TREADMILL_DATA, uuids.MACHINE_STATUS, uuids.TRAINING_STATUS):
            sim.subscribe(char, "notify")
        if indications:
            sim.subscribe(uuids.CONTROL_POINT, "indicate")

    def write(self, data: bytes) -> int:
        """Write, wait for the indication, return its result code."""
        n = len(self.of("2ad9"))
        self.sim.write(uuids.CONTROL_POINT, data)
        self.sim.advance_to(self.sim.now + 0.2)
        answers = self.of("2ad9")
        assert len(answers) == n + 1
        return decode_control_response(answers[-1]).result

    def of(self, char: str) -> list[bytes]:
        return [v for _, c, v in self.got if c == char]

    def speed(self) -> float | None:
        return decode_treadmill_data(self.of("2acd")[-1]).speed_kmh

    def incline(self) -> float | None:
        return decode_treadmill_data(self.of("2acd")[-1]).incline_pct


def started(config: SimConfig | None = None, faults: Faults | None = None) -> Central:
    c = Central(SimTreadmill(config or SimConfig(), faults))
    assert c.write(cp.request_control()) == cp.ResultCode.SUCCESS
    assert c.write(cp.start_or_resume()) == cp.ResultCode.SUCCESS
    c.sim.advance_to(c.sim.now + 4)
    return c


def test_ten_minute_ramp_in_well_under_a_second() -> None:
    wall = time.perf_counter()
    c = started()
    speed, incline = 0.5, 0.0
    while c.sim.now < 600:
        speed = min(5.0, round(speed + 0.1, 1))
        incline = min(10.0, incline + 0.5)
        assert c.write(cp.set_target_speed(speed)) == cp.ResultCode.SUCCESS
        assert c.write(cp.set_target_incline(incline)) == cp.ResultCode.SUCCESS
        c.sim.advance_to(c.sim.now + 5.6)
    elapsed = time.perf_counter() - wall
    print(f"10 simulated minutes in {elapsed * 1000:.0f} ms of wall time")
    assert c.sim.now >= 600
    assert (c.speed(), c.incline()) == (5.0, 10.0)
    assert len(c.of("2acd")) >= 600 * 4 - 10  # 4 Hz of Treadmill Data all along


def test_energy_counts_during_a_workout_only() -> None:
    idle = Central(SimTreadmill())
    idle.sim.advance_to(3600.0)  # on all night, nobody on it
    last = decode_treadmill_data(idle.of("2acd")[-1])
    assert (last.energy_kcal, last.energy_per_hour_kcal) == (0, 0)
    c = started()
    assert c.write(cp.set_target_speed(3.0)) == cp.ResultCode.SUCCESS
    c.sim.advance_to(c.sim.now + 600)
    walked = decode_treadmill_data(c.of("2acd")[-1])
    assert walked.energy_kcal is not None and 20 <= walked.energy_kcal <= 60
    assert c.write(cp.stop()) == cp.ResultCode.SUCCESS
    c.sim.advance_to(c.sim.now + 600)
    after = decode_treadmill_data(c.of("2acd")[-1])
    assert after.energy_kcal is not None
    assert walked.energy_kcal <= after.energy_kcal <= walked.energy_kcal + 1  # kept, not grown
    assert after.energy_per_hour_kcal == 0


def test_control_point_rules() -> None:
    c = Central(SimTreadmill(), indications=False)
    with pytest.raises(AttError) as off:
        c.sim.write(uuids.CONTROL_POINT, cp.request_control())
    assert off.value.code == 0xFD  # indications off: nothing executes
    c.sim.subscribe(uuids.CONTROL_POINT, "indicate")
    assert c.write(cp.start_or_resume()) == cp.ResultCode.CONTROL_NOT_PERMITTED
    c.sim.write(uuids.CONTROL_POINT, cp.request_control())
    with pytest.raises(AttError) as busy:
        c.sim.write(uuids.CONTROL_POINT, cp.start_or_resume())
    assert busy.value.code == 0xFE  # one procedure at a time
    c.sim.advance_to(c.sim.now + 0.2)
    assert c.write(bytes([0x04, 10])) == cp.ResultCode.OP_CODE_NOT_SUPPORTED  # resistance
    assert c.write(bytes([0x15])) == cp.ResultCode.OP_CODE_NOT_SUPPORTED
    assert c.write(bytes([0x02, 0x96])) == cp.ResultCode.INVALID_PARAMETER  # short
    assert c.write(cp.set_target_speed(9.0)) == cp.ResultCode.INVALID_PARAMETER  # out of range
    assert c.write(cp.set_target_speed(1.55)) == cp.ResultCode.INVALID_PARAMETER  # off grid
    assert c.write(cp.stop()) == cp.ResultCode.OPERATION_FAILED  # already stopped
    assert c.write(cp.start_or_resume()) == cp.ResultCode.SUCCESS
    assert c.write(cp.start_or_resume()) == cp.ResultCode.OPERATION_FAILED  # already started


def test_lenient_mode_answers_success_like_real_units() -> None:
    c = started(SimConfig(lenient=True))
    assert c.write(cp.start_or_resume()) == cp.ResultCode.SUCCESS


def test_training_status_sequence_and_status_before_indication() -> None:
    c = started()
    statuses = [decode_training_status(v).status for v in c.of("2ad3")]
    assert statuses == [0x0E, 0x0D]  # pre-workout, then manual mode
    n = len(c.got)
    assert c.write(cp.set_target_speed(1.5)) == cp.ResultCode.SUCCESS
    order = [ch for _, ch, _ in c.got[n:] if ch != "2acd"]
    assert order == ["2ada", "2ad9"]  # FTMS.md §8.3 rule 8: status first
    assert c.write(cp.stop()) == cp.ResultCode.SUCCESS
    assert decode_training_status(c.of("2ad3")[-1]).status == 0x0F


def test_slow_incline_motor() -> None:
    times = {}
    for rate in (0.5, 0.05):
        c = started(SimConfig(incline_rate_pct_per_s=rate))
        assert c.write(cp.set_target_incline(2.0)) == cp.ResultCode.SUCCESS
        t0 = c.sim.now
        while (c.incline() or 0.0) < 2.0:
            c.sim.advance_to(c.sim.now + 0.25)
        times[rate] = c.sim.now - t0
    assert times[0.5] == pytest.approx(4.0, abs=0.5)
    assert times[0.05] == pytest.approx(40.0, abs=1.0)


def test_vendor_extension_bytes() -> None:
    c = started(faults=Faults(vendor_extension=True))
    c.sim.advance_to(c.sim.now + 1)
    frame = decode_treadmill_data(c.of("2acd")[-1])
    assert frame.flags & 0x2000
    assert len(frame.extra) == 3
    assert frame.extra[2] == 0


def test_elapsed_time_freezes_on_pause() -> None:
    c = started()
    c.sim.advance_to(c.sim.now + 10)
    assert c.write(cp.pause()) == cp.ResultCode.SUCCESS
    before = decode_treadmill_data(c.of("2acd")[-1]).elapsed_s
    c.sim.advance_to(c.sim.now + 30)
    assert decode_treadmill_data(c.of("2acd")[-1]).elapsed_s == before
    assert c.speed() == 0.0
