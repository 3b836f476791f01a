"""Wiring: config -> treadmill link, supervisor, runner, MQTT bridge; commands -> runner.

The one place that knows every part. Everything it builds is plain objects with injected
clocks, so tests and ``demo`` build the same daemon the service runs. ``daemon_for``
builds it on the transport asked for (Bluetooth, the simulator in-process, or the
simulator behind the fake BlueZ) and ``run_daemon`` runs it: ``run``, ``run --profile``
and ``demo`` all go through these two.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from retrotread.backoff import Backoff
from retrotread.clock import Clock, RealClock, ScaledClock
from retrotread.config import Config
from retrotread.errors import ConfigError, ProfileError, RetrotreadError
from retrotread.link.ftms_client import FtmsTreadmill
from retrotread.link.strap import HeartRateStrap
from retrotread.link.transport import GattTransport
from retrotread.mqtt.commands import (
    ChooseWalker,
    Command,
    CommandError,
    Feedback,
    Finish,
    Pause,
    Resume,
    Set,
    Skip,
    Start,
    Stop,
)
from retrotread.mqtt.desk import CommandDesk
from retrotread.profiles.loader import ProfileSet, load_profiles
from retrotread.profiles.model import Profile, check_profile
from retrotread.service.coaching import Coaching
from retrotread.service.cues import CueCommand
from retrotread.service.quiet import QuietIdle
from retrotread.service.runner import SessionRunner
from retrotread.service.supervisor import LinkState, Supervisor
from retrotread.session.store import check_sessions_dir, describe_pruned, prune_sessions

if TYPE_CHECKING:
    from retrotread.sim.strap import SimStrap
    from retrotread.sim.treadmill import SimTreadmill

log = logging.getLogger(__name__)

T = TypeVar("T")
TransportKind = Literal["bluetooth", "simulator", "simulator-over-bluez"]


@dataclass
class Health:
    """What the daemon tells systemd and the log about itself."""

    link: str = "starting"
    broker: str = "off"
    state: str = "idle"
    treadmill: str | None = None
    strap: str | None = None
    """The heart-rate strap's link state, or None without a strap."""
    recording: str | None = None
    """Why the running session is not being recorded, or None."""
    storage: str | None = None
    """What is wrong with the sessions directory, or None."""

    def status_line(self) -> str:
        who = self.treadmill or "treadmill"
        if self.link == "connected":
            text = f"connected to {who}, {self.state}"
        else:
            text = f"looking for {who} ({self.link})"
        if self.broker != "off":
            text += f"; MQTT {self.broker}"
        if self.strap is not None and self.strap != "connected":
            text += f"; heart-rate strap {self.strap}"  # news only when it is not there
        if self.recording:
            text += f"; NOT RECORDING: {self.recording}"
        elif self.storage:
            text += f"; {self.storage}"
        return text


class Daemon:
    """One treadmill, its sessions, and (optionally) its MQTT face."""

    def __init__(
        self,
        config: Config,
        transport: GattTransport,
        clock: Clock,
        *,
        sim: SimTreadmill | None = None,
        strap: GattTransport | None = None,
        sim_strap: SimStrap | None = None,
        profiles: ProfileSet | None = None,
        mqtt: bool | None = None,
        turn_countdown_s: float | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sim = sim
        self.profile_set = profiles if profiles is not None else load_profiles(config.profiles.dirs)
        for problem in self.profile_set.errors:
            log.warning("profile skipped: %s", problem)
        t = config.treadmill
        self.treadmill = FtmsTreadmill(
            transport,
            clock,
            pace_width=t.pace_width,
            command_timeout_s=t.command_timeout_s,
            stop_wait_s=min(t.stop_wait_s, t.command_timeout_s),
        )
        self.supervisor = Supervisor(
            self.treadmill,
            clock,
            silence_timeout_s=t.silence_timeout_s,
            connect_timeout_s=t.connect_timeout_s + t.scan_timeout_s,
            backoff=Backoff(1.0, t.reconnect_max_backoff_s),
        )
        countdown = t.turn_countdown_s if turn_countdown_s is None else turn_countdown_s
        self.runner = SessionRunner(
            self.treadmill,
            clock,
            safety=config.safety,
            sessions_dir=config.sessions.dir,
            on_reconnect=t.on_reconnect,
            turn_speed_kmh=t.turn_speed_kmh,
            turn_countdown_s=countdown,
        )
        self.coaching = _coaching(config, self.runner, self.treadmill)
        self._heap_frozen_connected = False
        self.health = Health(treadmill=t.name or t.address)
        self._health_listeners: list[Callable[[Health], None]] = []
        self.supervisor.add_state_listener(self._on_link_state)
        self.runner.add_listener(self._on_output)
        self.cues: CueCommand | None = None
        c = config.cues
        if c.command:
            self.cues = CueCommand(c.command, c.events, timeout_s=c.timeout_s)
            self.runner.add_listener(self.cues.output)
        self.sim_strap = sim_strap
        self.strap: HeartRateStrap | None = None
        self.strap_supervisor: Supervisor | None = None
        if strap is not None:
            hr = config.heart_rate
            self.strap = HeartRateStrap(strap, clock)
            self.strap_supervisor = Supervisor(
                self.strap,
                clock,
                silence_timeout_s=hr.silence_timeout_s,
                connect_timeout_s=hr.connect_timeout_s + hr.scan_timeout_s,
                backoff=Backoff(1.0, hr.reconnect_max_backoff_s),
                what="heart-rate strap",
                # Retried, not listened for: a listening scan holds the adapter's one
                # discovery session (per client), and the treadmill's link needs it.
                search=False,
            )
            self.runner.attach_strap(
                self.strap, stale_after_s=hr.stale_after_s, frozen_after_s=hr.frozen_after_s
            )
            self.health.strap = LinkState.STOPPED.value
            self.strap_supervisor.add_state_listener(self._on_strap_state)
        if sim is not None:
            # The simulated walker follows the cues: they face the way each phase says.
            self.runner.add_listener(self._walker_follows_cues)
        # One command desk for every way in (MQTT, the web page): one validation, one
        # queue, one result per command.
        self.desk = CommandDesk(self, max_payload_bytes=config.mqtt.max_payload_bytes, clock=clock)
        self.bridge: Any = None
        self.quiet: QuietIdle | None = None
        use_mqtt = config.mqtt.enabled if mqtt is None else mqtt
        if use_mqtt:
            from retrotread.mqtt.bridge import MqttBridge

            self.bridge = MqttBridge(config.mqtt, self, clock=clock, desk=self.desk)
            self.quiet = QuietIdle(self.bridge.output, clock, config.mqtt.idle_telemetry_s)
            self.runner.add_listener(self.quiet)
            # A restarted Home Assistant shows telemetry sensors as unknown until a sample
            # comes: while idle that could be a whole heartbeat away.
            self.bridge.add_birth_listener(self.quiet.resend)
            self.coaching.add_listener(self.bridge.output)
            self.bridge.add_connection_listener(self._on_broker)
            self.bridge.add_status_listener(self._on_broker_status)
            self.health.broker = "connecting"
        self.web: Any = None
        if config.web.listen is not None:
            from retrotread.web.server import WebServer

            self.web = WebServer(
                config.web,
                self,
                self.desk,
                token_file=config.web_token_file,
                sessions_dir=config.sessions.dir,
            )
            # Every sample, not QuietIdle's: a page is open only while someone looks at it,
            # and what it shows must be the belt as it is now.
            self.runner.add_listener(self.web.output)
            self.coaching.add_listener(self.web.output)
            self.desk.add_listener(self.web.output)  # refusals, whoever sent them

    # ------------------------------------------------------------------ health

    def add_health_listener(self, listener: Callable[[Health], None]) -> None:
        self._health_listeners.append(listener)

    def _health_changed(self) -> None:
        for listener in list(self._health_listeners):
            try:
                listener(self.health)
            except Exception:
                log.exception("health listener failed")

    def _on_link_state(self, state: LinkState) -> None:
        self.health.link = state.value
        caps = self.treadmill.capabilities
        if state == LinkState.CONNECTED and caps is not None:
            self.health.treadmill = caps.name or caps.address
            if not self._heap_frozen_connected and self.runner.session is None:
                # The link's objects (bleak, D-Bus) live as long as the daemon, mostly.
                self._heap_frozen_connected = True
                asyncio.get_running_loop().call_soon(freeze_heap)
        self.runner._publish_state()
        self._health_changed()

    def _on_strap_state(self, state: LinkState) -> None:
        self.health.strap = state.value
        self._health_changed()

    def _walker_follows_cues(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "event" and payload.get("type") == "phase_started" and self.sim is not None:
            self.sim.walker.backward = payload.get("direction") == "backward"

    def _on_output(self, kind: str, payload: dict[str, Any]) -> None:
        if kind != "state":
            return
        s = self.runner.session
        recording = s.log.problem if s is not None and payload.get("recording") is False else None
        if payload.get("state") != self.health.state or recording != self.health.recording:
            self.health.state = str(payload.get("state"))
            self.health.recording = recording
            self._health_changed()

    def _on_broker_status(self, status: str) -> None:
        self.health.broker = status  # e.g. "retrying in 8 s (Connection refused)"
        self._health_changed()

    def _on_broker(self, connected: bool) -> None:
        if connected and self.quiet is not None:
            self.quiet.resend()  # fresh values for whoever missed them while it was away
        if not connected and self.config.mqtt.on_broker_loss == "pause":
            s = self.runner.session
            if s is not None and s.step is not None and s.step.state in ("running", "finishing"):
                log.warning("MQTT broker lost: pausing the session (on_broker_loss = pause)")
                asyncio.get_running_loop().create_task(
                    self._pause_quietly(), name="pause-on-broker-loss"
                )

    async def _pause_quietly(self) -> None:
        with contextlib.suppress(RetrotreadError):
            await self.runner.pause()

    # ------------------------------------------------------------------ CommandHandler

    def state(self) -> dict[str, Any]:
        return self.runner.state()

    def profiles_payload(self) -> list[dict[str, Any]]:
        return [p.summary() for _, p in sorted(self.profile_set.profiles.items())]

    def profiles(self) -> list[dict[str, Any]]:  # CommandHandler protocol name
        return self.profiles_payload()

    def walkers(self) -> list[tuple[str, dict[str, Any]]]:  # CommandHandler, optional
        """The retained walker statuses (kind, payload), published on every connect."""
        return self.coaching.payloads()

    def walker_names(self) -> list[str]:  # CommandHandler, optional: the HA walker select
        return self.coaching.coach.walker_names()

    def device_description(self) -> tuple[str | None, str | None]:
        caps = self.treadmill.capabilities
        if caps is None:
            return (self.health.treadmill, None)
        return (caps.name, caps.device_info.get("model"))

    def resolve_profile(self, name: str | None) -> Profile:
        if name is None:
            last = self.runner.last_profile
            if last is None:
                raise CommandError("start needs 'profile' (no profile has been run yet)")
            assert isinstance(last, Profile)
            return last
        try:
            profile = self.profile_set.get(name)
            caps = self.treadmill.capabilities
            # With the treadmill known, its ranges count too (e.g. a phase below its minimum).
            check_profile(
                profile,
                self.config.safety,
                caps.speed_range if caps else None,
                caps.incline_range if caps and caps.can_set_incline else None,
            )
        except ProfileError as exc:
            raise CommandError(str(exc)) from None
        return profile

    async def start_profile(self, name: str | None) -> str:
        profile = self.resolve_profile(name)
        if name is None:
            # Start again: a walker's session again under their limits, as theirs.
            again = self.coaching.again(profile)
            if again is not None:
                return await self.runner.start(profile, limits=again[0], header=again[1])
        if self.coaching.coach.walkers:
            # Someone walks: the current walker (HA's walker select), under their limits,
            # which only tighten [safety]; never a session of nobody under the house's.
            return await self.coaching.start_profile(profile)
        return await self.runner.start(profile)

    async def handle(self, command: Command) -> None:
        r = self.runner
        r.log_command(command.model_dump(mode="json", exclude_none=True))
        if isinstance(command, Stop):
            await r.stop()
        elif isinstance(command, Start) and command.for_walker:
            await self.coaching.start(command, self.resolve_profile)
        elif isinstance(command, Start):
            await self.start_profile(command.profile)
        elif isinstance(command, Feedback):
            self.coaching.feedback(command)
        elif isinstance(command, ChooseWalker):
            self.coaching.choose(command)
        elif isinstance(command, Pause):
            await r.pause()
        elif isinstance(command, Resume):
            await r.resume()
        elif isinstance(command, Finish):
            await r.finish()
        elif isinstance(command, Skip):
            await r.skip()
        elif isinstance(command, Set):
            await r.set(command.speed_kmh, command.incline_pct)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set; then stop the belt, close the log, go offline."""
        freeze_heap()
        tasks: list[asyncio.Task[None]] = []
        if self.sim is not None:
            tasks.append(asyncio.create_task(self.sim.run(self.clock), name="simulator"))
        if self.sim_strap is not None:
            tasks.append(asyncio.create_task(self.sim_strap.run(self.clock), name="sim-strap"))
        tasks.append(asyncio.create_task(self.runner.run(), name="session-runner"))
        tasks.append(asyncio.create_task(self.supervisor.run(), name="supervisor"))
        if self.strap_supervisor is not None:
            tasks.append(asyncio.create_task(self.strap_supervisor.run(), name="strap-supervisor"))
        tasks.append(asyncio.create_task(self._look_after_sessions(), name="sessions-dir"))
        tasks.append(asyncio.create_task(self.coaching.run(), name="walker-status"))
        if self.cues is not None:
            tasks.append(asyncio.create_task(self.cues.run(), name="cues"))
        if self.bridge is not None:
            tasks.append(asyncio.create_task(self.bridge.run(), name="mqtt"))
        if self.web is not None:
            tasks.append(asyncio.create_task(self.web.run(), name="web"))
        waiter = asyncio.create_task(stop.wait(), name="stop-wait")
        try:
            done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done - {waiter}:
                # A part of the daemon failed (its own bug): the belt is stopped, the log
                # closed and "offline" said, as on SIGTERM, before the error is raised.
                exc = task.exception() or RuntimeError(f"{task.get_name()} ended by itself")
                log.error(
                    "%s failed (%s: %s): stopping the belt, closing the log, going offline",
                    task.get_name(),
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                )
                raise exc
        finally:
            waiter.cancel()
            await self.shutdown(tasks)
            # What was frozen may be garbage now (this daemon, its link): collectable again.
            gc.unfreeze()

    async def _look_after_sessions(self, every_s: float = 60.0) -> None:
        """The sessions directory: checked now and every minute; retention once a day."""
        directory = self.config.sessions.dir
        days = self.config.sessions.retention_days
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        probe = True  # a real write at start-up; after that, ask the file system
        while True:
            try:
                self._storage(check_sessions_dir(directory, probe=probe).problem)
                probe = False
                if days is not None and loop.time() >= next_prune:
                    next_prune = loop.time() + 86400.0
                    current = self.runner.last_log if self.runner.session is not None else None
                    pruned = prune_sessions(
                        directory, days, datetime.now(UTC), keep=[current] if current else []
                    )
                    log.log(
                        logging.WARNING if pruned.skipped else logging.INFO,
                        "%s",
                        describe_pruned(pruned, directory, days),
                    )
            except Exception:  # housekeeping never takes the daemon down
                log.exception("looking after the sessions directory failed")
            await asyncio.sleep(every_s)

    def _storage(self, problem: str | None) -> None:
        if problem == self.health.storage:
            return
        if problem is not None:
            log.error("%s", problem)
        else:
            log.info("sessions directory %s is fine again", self.config.sessions.dir)
        self.health.storage = problem
        self._health_changed()

    async def shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        """Belt stopped and log closed, then ``offline``, then every task, each bounded."""
        log.info("shutting down")
        try:
            await self.runner.shutdown(timeout_s=8.0)
        finally:
            await self.desk.close()  # what still waits is answered before we go offline
            if self.bridge is not None:
                await self.bridge.close()
            if self.web is not None:
                await self.web.close()
            for task in reversed(tasks):
                task.cancel()
            try:
                async with asyncio.timeout(5):
                    await asyncio.gather(*tasks, return_exceptions=True)
            except TimeoutError:
                stuck = [t.get_name() for t in tasks if not t.done()]
                log.error("tasks did not stop in time: %s", ", ".join(stuck))
            with contextlib.suppress(RetrotreadError, TimeoutError):
                async with asyncio.timeout(10):
                    await self.treadmill.disconnect()
            if self.strap is not None:
                with contextlib.suppress(RetrotreadError, TimeoutError):
                    async with asyncio.timeout(10):
                        await self.strap.disconnect()


# ---------------------------------------------------------------------- wiring


def _coaching(config: Config, runner: SessionRunner, treadmill: FtmsTreadmill) -> Coaching:
    from retrotread.coach.coach import Coach

    coach = Coach.from_config(config)
    for problem in coach.plans.errors:
        log.warning("plan skipped: %s", problem)
    return Coaching(coach, runner, treadmill)


def clock_for(config: Config, speedup: float, simulated: bool) -> Clock:
    """Real time, or time compressed ``speedup`` times for a simulated treadmill.

    Compressed, the silence watchdogs (treadmill and strap), the heart-rate staleness and the
    control point's timeouts are kept at one real second or more (a stop's wait at half of
    one): they count clock seconds, and at 120x 5 clock seconds are 42 real milliseconds,
    which a busy event loop can miss without a link being in any trouble.
    """
    if speedup <= 0:
        raise ConfigError("--speedup must be positive")
    if speedup == 1.0:
        return RealClock()
    if not simulated:
        raise ConfigError("--speedup only works with --simulate: a real belt runs in real time")
    t = config.treadmill
    # A copy, not validated again: these clock seconds may exceed what a file may set.
    config.treadmill = t.model_copy(
        update={
            "silence_timeout_s": max(t.silence_timeout_s, min(120.0, speedup * 1.0)),
            "command_timeout_s": max(t.command_timeout_s, min(120.0, speedup * 1.0)),
            "stop_wait_s": max(t.stop_wait_s, min(60.0, speedup * 0.5)),
        }
    )
    hr = config.heart_rate
    config.heart_rate = hr.model_copy(
        update={
            "silence_timeout_s": max(hr.silence_timeout_s, min(120.0, speedup * 1.0)),
            "stale_after_s": max(hr.stale_after_s, min(60.0, speedup * 1.0)),
        }
    )
    return ScaledClock(speedup)


@contextlib.asynccontextmanager
async def daemon_for(
    config: Config,
    clock: Clock,
    transport: TransportKind = "bluetooth",
    *,
    mqtt: bool | None = None,
    turn_countdown_s: float | None = None,
    bus_address: str | None = None,
) -> AsyncIterator[Daemon]:
    """The daemon on the treadmill ``transport`` names; what it holds is released on exit.

    ``simulator-over-bluez`` serves a simulated treadmill behind a fake BlueZ on the
    private D-Bus at ``bus_address``, which this process's bleak must already point at
    (DBUS_SYSTEM_BUS_ADDRESS): the real BLE code path, with no radio.
    """
    async with contextlib.AsyncExitStack() as stack:
        gatt, sim, strap, sim_strap = await _transport(config, transport, bus_address, stack)
        yield Daemon(
            config,
            gatt,
            clock,
            sim=sim,
            strap=strap,
            sim_strap=sim_strap,
            mqtt=mqtt,
            turn_countdown_s=turn_countdown_s,
        )


async def _transport(
    config: Config,
    kind: TransportKind,
    bus_address: str | None,
    stack: contextlib.AsyncExitStack,
) -> tuple[GattTransport, SimTreadmill | None, GattTransport | None, SimStrap | None]:
    """The treadmill's transport and the strap's (None: no strap), and the simulators."""
    from retrotread.link.bleak_transport import BleakTransport

    hr = config.heart_rate
    if kind == "bluetooth":
        t = config.treadmill
        strap = None
        if hr.wanted(simulated=False):
            strap = BleakTransport(
                address=hr.address,
                name=hr.name,
                adapter=hr.adapter or t.adapter,
                scan_timeout_s=hr.scan_timeout_s,
                kind="strap",
            )
        treadmill = BleakTransport(
            address=t.address, name=t.name, adapter=t.adapter, scan_timeout_s=t.scan_timeout_s
        )
        return treadmill, None, strap, None
    from retrotread.sim.strap import SimStrap
    from retrotread.sim.treadmill import SimTreadmill

    sim = SimTreadmill()
    # One simulated walker: the treadmill moves them, the strap reads their heart.
    sim_strap = SimStrap(sim.walker) if hr.wanted(simulated=True) else None
    if kind == "simulator":
        from retrotread.sim.inprocess import InProcessTransport

        strap_link = InProcessTransport(sim_strap) if sim_strap is not None else None
        return InProcessTransport(sim), sim, strap_link, sim_strap
    from retrotread.sim.bluez import FakeBlueZ

    fake = FakeBlueZ(bus_address=bus_address)
    fake.add_peripheral(sim)
    if sim_strap is not None:
        fake.add_peripheral(sim_strap)
    await stack.enter_async_context(fake)
    treadmill = BleakTransport(address=sim.address, scan_timeout_s=5.0)
    if sim_strap is None:
        return treadmill, sim, None, None
    strap = BleakTransport(address=sim_strap.address, scan_timeout_s=5.0, kind="strap")
    return treadmill, sim, strap, sim_strap


async def run_daemon(
    daemon: Daemon,
    job: Awaitable[T] | None = None,
    *,
    companions: Iterable[Coroutine[Any, Any, None]] = (),
) -> T | None:
    """Serve until SIGTERM/SIGINT, until ``job`` is done, or until a part of the daemon
    fails; then shut down (belt stopped, log closed, ``offline``), every wait bounded.

    ``job``'s result, or None when it did not finish. ``companions`` run alongside and
    are cancelled at the end. A part's failure, or the job's, is raised.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    serving = asyncio.create_task(daemon.run(stop), name="daemon")
    stopping = asyncio.create_task(stop.wait(), name="stop-wait")
    working = asyncio.ensure_future(job) if job is not None else None
    if working is not None:
        working.set_name("job")
    others = [asyncio.create_task(c, name=f"companion-{i}") for i, c in enumerate(companions)]
    try:
        waiting = {serving, stopping} | ({working} if working is not None else set())
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        for task in (stopping, working, *others):
            if task is not None and not task.done():
                task.cancel()
        try:
            await serving
        finally:
            rest = [stopping, *others] + ([working] if working is not None else [])
            await asyncio.gather(*rest, return_exceptions=True)
            for sig in handled:
                loop.remove_signal_handler(sig)
    if working is None or not working.done() or working.cancelled():
        return None
    return working.result()


def freeze_heap() -> None:
    """Put what exists now out of the garbage collector's reach, after collecting it.

    A full collection walks every tracked object, and the daemon's modules, models,
    profiles and link hold tens of thousands: in bench/latency.py one took ~49 ms, the
    event loop standing still that long, with a command's answer in the middle of it
    now and then (on a Raspberry Pi, several times longer). What is built at start-up
    and at the first connect lives as long as the daemon; frozen, a full collection
    walks only what came after. Garbage among it is collected first: nothing dead is
    kept. The first connect's link objects that a reconnect replaces stay (once, bounded);
    ``Daemon.run`` unfreezes as it ends.
    """
    gc.collect()
    gc.freeze()
