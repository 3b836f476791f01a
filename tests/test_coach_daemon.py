"""Six simulated weeks through the real daemon: MQTT commands to a real Mosquitto, the
simulator through real FTMS bytes, session logs on disk and a virtual clock.

The daemon runs on a ``VirtualClock`` (belt physics, runner, watchdog, engine), its wall
clock is that virtual time plus whole days between sessions, and the phone is a real MQTT
client. The walker is played by the test: start today's session over MQTT, change the
speed or stop at the simulator's console, report pain and effort over MQTT.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrotread.clock import VirtualClock
from retrotread.coach.walkers import WalkerConfig
from retrotread.config import Config, MqttConfig, SafetyConfig, SessionsConfig
from retrotread.profiles.model import Profile, check_profile
from retrotread.service.app import Daemon
from retrotread.session.log import list_sessions, read_session
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import SimConfig, SimTreadmill
from tests.broker import Broker
from tests.coachhelpers import T0
from tests.test_daemon_mqtt import BASE, Phone

SIM = SimTreadmill(SimConfig())
SPEED, INCLINE = SIM.speed_range, SIM.incline_range
MWF = [7 * week + d for week in range(6) for d in (0, 2, 4)]  # six weeks, 18 sessions


def last(phone: Phone, topic: str) -> Any:
    """The latest payload the phone heard on ``<base>/<topic>``."""
    values = phone.on(topic)
    return values[-1] if values else None


@dataclass
class Rig:
    daemon: Daemon
    sim: SimTreadmill
    clock: VirtualClock
    phone: Phone
    days: float = 0.0  # days added to the virtual wall clock
    day: float = -2.0  # the day (after T0) of the last session
    results: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0  # commands sent (their ids)

    def wall(self) -> float:
        return T0.timestamp() + self.days * 86400 + self.clock.monotonic()

    async def drive(
        self, pred: Callable[[], bool], limit_s: float = 3600, step: float = 1.0
    ) -> None:
        """Advance virtual time (letting real socket I/O in between) until ``pred``."""
        end = self.clock.monotonic() + limit_s
        while not pred():
            assert self.clock.monotonic() < end, "not reached within the simulated time limit"
            await self.clock.advance(step)
            await asyncio.sleep(0.0005)

    async def command(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.sent += 1
        cid = f"coach{self.sent}"
        assert self.phone.client is not None
        await self.phone.client.publish(f"{BASE}/cmd", json.dumps({**payload, "id": cid}), qos=1)
        found: list[dict[str, Any]] = []

        def answered() -> bool:
            found[:] = [r for r in self.phone.on("cmd/result") if r["id"] == cid]
            return bool(found)

        await self.drive(answered, limit_s=120, step=0.05)
        self.results.append(found[0])
        return found[0]

    async def walk(
        self,
        payload: dict[str, Any],
        *,
        console_kmh: float | None = None,
        console_stop: bool = False,
        feedback: dict[str, Any] | None = None,
        day: float | None = None,
    ) -> dict[str, Any]:
        """One session on ``day`` after T0 (else two days after the last one): start it,
        play the walker at the console, report how it went."""
        self.day = day if day is not None else self.day + 2
        self.days = self.day - self.clock.monotonic() / 86400
        result = await self.command({"action": "start", **payload})
        assert result["ok"], result
        runner = self.daemon.runner
        if console_kmh is not None or console_stop:
            # In the first backward bout, once the belt has reached its speed.
            def in_backward_bout() -> bool:
                step = getattr(runner.session, "step", None)
                return (
                    step is not None
                    and getattr(step, "direction", None) == "backward"
                    and step.state == "running"
                    and (self.sim.speed_kmh or 0) > 0.5
                    and getattr(step, "phase_remaining_s", 0) < 25
                    and getattr(step, "phase_remaining_s", 0) > 5
                )

            await self.drive(in_backward_bout, step=0.25)
            if console_stop:
                self.sim.stop_at_console()
            else:
                assert console_kmh is not None
                self.sim.set_speed_at_console(console_kmh)
        # The session is over once its log is closed and the belt has come to rest (the
        # runner follows the belt running down after its own stop as a console start).
        await self.drive(
            lambda: (
                runner.session is None
                and runner.belt.value == "stopped"
                and self.sim.speed_kmh == 0
            ),
            limit_s=4 * 3600,
            step=5.0,
        )
        log = read_session(runner.last_log)
        if feedback is not None:
            topic = f"walker/{log.header['walker']}"
            heard = len(self.phone.on(topic))
            assert (await self.command({"action": "feedback", **feedback}))["ok"]

            # The status is worked out off the event loop: wait until it is out.
            def out() -> bool:
                values = self.phone.on(topic)
                pain = feedback.get("pain", values[-1]["last_pain"] if values else None)
                return len(values) > heard and values[-1]["last_pain"] == pain

            await self.drive(out, limit_s=60, step=0.05)
        return {"log": log, "result": result}


@asynccontextmanager
async def coach_rig(
    broker: Broker, tmp_path: Path, walkers: list[WalkerConfig], safety: SafetyConfig
) -> AsyncIterator[Rig]:
    config = Config(
        mqtt=MqttConfig(host="127.0.0.1", port=broker.port, device_id="t1"),
        sessions=SessionsConfig(dir=tmp_path / "sessions"),
        safety=safety,
        walker=walkers,
    )
    clock = VirtualClock()
    # Telemetry once a second (real units send 2-5 Hz): six weeks of it in fewer samples.
    sim = SimTreadmill(SimConfig(pre_workout_s=1.0, data_interval_s=1.0))
    daemon = Daemon(config, InProcessTransport(sim), clock, sim=sim, turn_countdown_s=3.0)
    async with Phone(broker.port) as phone:
        rig = Rig(daemon, sim, clock, phone)
        daemon.runner.wall = rig.wall  # the session dates: virtual time plus whole days
        if daemon.bridge is not None:
            daemon.bridge.backoff.initial_s = 0.1
            daemon.bridge.backoff.max_s = 0.3
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        try:
            await rig.drive(lambda: daemon.treadmill.is_connected and daemon.bridge.connected)
            yield rig
        finally:
            stop.set()
            await rig.drive(task.done, limit_s=60, step=0.1)
            await task


def backward_min(log: Any) -> float:
    return round(
        sum(p["duration_s"] for p in log.header["profile"]["phase"] if p["direction"] == "backward")
        / 60,
        2,
    )


def level(log: Any) -> tuple[str, str, int]:
    plan = log.header["plan"]
    return plan["name"], plan["stage"], plan["level"]


def assert_within_limits(log: Any, limits: SafetyConfig, walker: WalkerConfig) -> None:
    profile = Profile.model_validate(log.header["profile"])
    cap = min(limits.max_speed_kmh, walker.max_speed_kmh or 99)
    assert profile.max_speed_kmh <= cap
    check_profile(profile, _limits(log.header["limits"]), SPEED, INCLINE)
    speeds = [r["speed_kmh"] for r in log.of("telemetry") if r.get("speed_kmh") is not None]
    assert max(speeds) <= cap + 0.05  # the belt itself never went faster
    assert log.header["limits"]["max_speed_kmh"] == cap  # the walker's limits ran the session


def _limits(data: dict[str, Any]) -> SafetyConfig:
    keys = ("max_speed_kmh", "max_incline_pct", "speed_step_kmh", "incline_step_pct")
    return SafetyConfig(**{k: data[k] for k in keys}, step_interval_s=data["step_interval_s"])


async def test_six_weeks_flat_then_hill_through_the_daemon(broker: Broker, tmp_path: Path) -> None:
    anna = WalkerConfig(name="anna", max_speed_kmh=2.5, plan="retro-start")
    safety = SafetyConfig()
    async with coach_rig(broker, tmp_path, [anna], safety) as rig:
        # Before anything: the hill plan is closed, and the refusal says who, what and why.
        refused = await rig.command({"action": "start", "plan": "retro-hill", "walker": "anna"})
        assert refused["ok"] is False
        assert refused["error"].startswith(
            "walker 'anna', plan 'retro-hill': refused by rule 'requires': this plan opens once "
            "plan 'retro-start' is completed (anna has not started it)"
        )
        walked = []
        right = {"rating": "right", "pain": 1}
        days = iter(MWF)
        # Week 1: Monday, Wednesday, Friday. On Wednesday and Friday anna speeds the belt up
        # to 2.2 km/h at the console in her first backward bout (not a slow-down: no hold).
        first = {"plan": "retro-start", "walker": "anna"}
        walked.append(await rig.walk(first, feedback={"walker": "anna", **right}, day=next(days)))
        walked.append(
            await rig.walk({"walker": "anna"}, console_kmh=2.2, feedback=right, day=next(days))
        )
        pain_2 = {"rating": "right", "pain": 2}
        walked.append(
            await rig.walk({"today": True}, console_kmh=2.2, feedback=pain_2, day=next(days))
        )
        # The retained walker topic after week 1.
        status = last(rig.phone, "walker/anna")
        assert (status["plan"], status["stage"], status["level"]) == ("retro-start", "flat", 4)
        assert status["learned_speed_kmh"] == 2.2
        assert (status["last_pain"], status["sessions_this_week"]) == (2, 3)
        assert status["today"]["backward_min"] == 4.0
        assert status["today"]["backward_speed_kmh"] == 2.2
        assert last(rig.phone, "walker")["walkers"] == ["anna"]
        # Weeks 2-3: every session completed.
        for _ in range(5):
            walked.append(await rig.walk({"today": True}, feedback=right, day=next(days)))
        # The hill is still closed: the last flat level is not walked yet.
        refused = await rig.command({"action": "start", "plan": "retro-hill", "walker": "anna"})
        assert "refused by rule 'requires'" in refused["error"]
        assert "(anna is at flat, level 9 of 9 of it)" in refused["error"]
        walked.append(await rig.walk({"today": True}, feedback=right, day=next(days)))
        flat = walked[:9]
        assert [level(w["log"]) for w in flat] == [("retro-start", "flat", n) for n in range(1, 10)]
        # Backward minutes grow as the plan says: two to ten over three weeks.
        doses = [2, 2.5, 3, 4, 5, 6, 7, 8.5, 10]
        assert [backward_min(w["log"]) for w in flat] == doses
        walked_back = [w["log"].footer["summary"]["backward_s"] / 60 for w in flat]
        assert all(abs(a - b) < 0.5 for a, b in zip(walked_back, doses, strict=True))
        # Her console choice became her speed, within her limit (2.5).
        speeds = [w["log"].header["plan"]["speed_kmh"] for w in flat]
        assert speeds == [1.8, 1.8, 2.0] + [2.2] * 6
        assert [w["log"].outcome for w in flat] == ["completed"] * 9
        # Weeks 4-6: "start today" goes on to the hill plan by itself (retro-start's next).
        for day in days:
            walked.append(await rig.walk({"today": True}, feedback=right, day=day))
        hill = walked[9:]
        assert [level(w["log"])[0] for w in hill] == ["retro-hill"] * 9
        assert [level(w["log"])[2] for w in hill] == [1, 2, 3, 4, 5, 6, 7, 7, 7]
        top_inclines = [
            max(p["incline_pct"] for p in w["log"].header["profile"]["phase"]) for w in hill
        ]
        assert top_inclines == [2, 3, 4, 5, 6, 7, 8, 8, 8]
        for w, top in zip(hill, top_inclines, strict=True):
            inclines = [r["incline_pct"] for r in w["log"].of("telemetry") if r.get("incline_pct")]
            assert max(inclines) >= top - 0.5  # the belt itself went up the hill
            phases = w["log"].header["profile"]["phase"]
            up = [p["speed_kmh"] for p in phases if p["incline_pct"] > 0]
            flat_back = [
                p["speed_kmh"]
                for p in phases
                if p["direction"] == "backward" and p["incline_pct"] == 0
            ]
            assert max(up) < min(flat_back)  # slower on the hill
        started = [w["log"].header["started_at"][:10] for w in (walked[0], walked[-1])]
        assert started == ["2026-11-02", "2026-12-11"]  # six calendar weeks, Monday to Friday
        for w in walked:
            assert_within_limits(w["log"], safety, anna)
        status = last(rig.phone, "walker/anna")
        assert (status["plan"], status["complete"]) == ("retro-hill", True)
        # Home Assistant sees the coach's entities in the device.
        config = next(v for t, v, _ in rig.phone.got if t == "homeassistant/device/t1/config")
        cmps = config["cmps"]
        assert cmps["walker"]["options"] == ["anna"]
        assert cmps["start_today"]["payload_press"] == '{"action": "start", "today": true}'
        assert {"plan_level", "today_backward", "sessions_week", "felt_hard", "pain_after"} <= set(
            cmps
        )


async def test_early_stops_pain_and_a_gap_through_the_daemon(
    broker: Broker, tmp_path: Path
) -> None:
    ben = WalkerConfig(name="ben")
    other = WalkerConfig(name="carla", max_speed_kmh=2.0)
    safety = SafetyConfig(max_speed_kmh=4.0)
    async with coach_rig(broker, tmp_path, [ben, other], safety) as rig:
        assert (await rig.command({"action": "walker", "walker": "ben"}))["ok"]
        walked = []
        for _ in range(4):  # levels 1-4 completed
            walked.append(
                await rig.walk(
                    {"today": True, "plan": "retro-start"}, feedback={"rating": "right", "pain": 1}
                )
            )
        # Level 5: stopped at the treadmill (hold), then stopped over MQTT... also a hold.
        walked.append(await rig.walk({"today": True, "plan": "retro-start"}, console_stop=True))
        walked.append(await rig.walk({"today": True, "plan": "retro-start"}, console_stop=True))
        # Two holds in a row: back to level 4. Completed, but knee pain 5 afterwards.
        walked.append(
            await rig.walk(
                {"today": True, "plan": "retro-start"}, feedback={"rating": "hard", "pain": 5}
            )
        )
        # Pain 5: back to level 3. Then two weeks away: back one more, to level 2.
        walked.append(
            await rig.walk(
                {"today": True, "plan": "retro-start"}, feedback={"pain": 2}, day=rig.day + 14
            )
        )
        levels = [level(w["log"])[2] for w in walked]
        assert levels == [1, 2, 3, 4, 5, 5, 4, 2]
        assert [w["log"].outcome for w in walked[4:6]] == ["stopped_by_treadmill"] * 2
        # The reasons name their rules, in the retained topic and in the profile.
        why = walked[-1]["log"].header["profile"]["description"]
        assert "[rule gap]" in why and "14 days since the last session of this plan" in why
        desc7 = walked[7]["log"].header["profile"]["description"]
        assert "knee pain 5/10 after the session" in desc7 and "[rule pain-high]" in desc7
        desc6 = walked[6]["log"].header["profile"]["description"]
        assert "2 holds in a row" in desc6 and "[rule holds-in-a-row]" in desc6
        # Pain given with the start steps today down a level, and is stored before.
        walked.append(await rig.walk({"today": True, "plan": "retro-start", "pain": 6}))
        assert level(walked[-1]["log"])[2] == 2  # level 3 after the last completed, minus one
        sidecar = walked[-1]["log"].path.with_name(walked[-1]["log"].path.stem + ".feedback.ndjson")
        assert json.loads(sidecar.read_text())["when"] == "before"
        # Pain 8 before: no session today.
        rest = await rig.command(
            {"action": "start", "today": True, "plan": "retro-start", "pain": 8}
        )
        assert rest["ok"] is False and "refused by rule 'pain-rest'" in rest["error"]
        # Bad input is refused as for every command, and changes nothing.
        for bad, expected in (
            (
                {"action": "feedback", "walker": "ben", "pain": 11},
                "pain: input should be less than or equal to 10",
            ),
            ({"action": "feedback", "walker": "ben"}, "feedback needs 'rating'"),
            (
                {"action": "feedback", "walker": "zed", "pain": 1},
                "unknown walker 'zed'; known walkers: ben, carla",
            ),
            ({"action": "start", "plan": "nope", "walker": "ben"}, "unknown plan 'nope'"),
            ({"action": "walker", "walker": "zed"}, "unknown walker 'zed'"),
            (
                {"action": "feedback", "walker": "carla", "pain": 1},
                "walker 'carla' has no session in the last 24 hours",
            ),
        ):
            result = await rig.command(bad)
            assert result["ok"] is False and expected in result["error"], (bad, result)
        # carla's own limit (2 km/h) shapes her session; ben's history is not hers.
        carla = await rig.walk({"walker": "carla", "plan": "retro-start"})
        assert level(carla["log"])[2] == 1
        assert_within_limits(carla["log"], safety, other)
        # A plain "start" (HA's Start button) runs her session again: hers, under her limits.
        again = await rig.walk({})
        assert again["log"].header["walker"] == "carla"
        assert again["log"].header["plan"] == carla["log"].header["plan"]
        assert_within_limits(again["log"], safety, other)
        for w in walked:
            assert_within_limits(w["log"], safety, ben)
        assert last(rig.phone, "walker")["walker"] == "carla"  # the current walker followed
    logs = [read_session(p) for p in list_sessions(tmp_path / "sessions")]
    assert [lg.header.get("walker") for lg in logs].count("ben") == len(walked)
    assert [lg.header.get("walker") for lg in logs].count("carla") == 2


async def test_a_profile_started_without_a_walker_is_the_current_walkers(
    broker: Broker, tmp_path: Path
) -> None:
    """Home Assistant's profile select sends only the profile: with walkers configured the
    session is the current walker's, under their (tighter) limits, never the house's; and
    knee pain given alone with a start goes to their plan session, not lost."""
    ben = WalkerConfig(name="ben")
    carla = WalkerConfig(name="carla", max_speed_kmh=2.6)
    safety = SafetyConfig(max_speed_kmh=4.0)
    async with coach_rig(broker, tmp_path, [ben, carla], safety) as rig:
        assert (await rig.command({"action": "walker", "walker": "carla"}))["ok"]
        hers = await rig.walk({"profile": "first-steps"})
        assert hers["log"].header["walker"] == "carla"
        assert hers["log"].header["limits"]["max_speed_kmh"] == 2.6
        # Too fast for her: refused by her limit, with her name (the house's would allow it).
        refused = await rig.command({"action": "start", "profile": "build-up"})
        assert refused["ok"] is False and "for walker 'carla'" in refused["error"]
        assert rig.daemon.runner.session is None
        assert (await rig.command({"action": "walker", "walker": "ben"}))["ok"]
        his = await rig.walk({"profile": "build-up"})
        assert his["log"].header["walker"] == "ben"
        assert his["log"].header["limits"]["max_speed_kmh"] == 4.0
        # Pain alone: ben's plan session today, the pain stored as before it.
        pained = await rig.walk({"pain": 3})
        assert pained["log"].header["walker"] == "ben"
        assert pained["log"].header["plan"] is not None
        path = pained["log"].path
        sidecar = path.with_name(path.stem + ".feedback.ndjson")
        report = json.loads(sidecar.read_text().splitlines()[0])
        assert (report["when"], report["pain"]) == ("before", 3)
