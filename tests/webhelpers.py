"""The daemon with its web page on, on the simulator, and a page's WebSocket as a test
client; for the browser tests the same daemon in a thread of its own (Selenium blocks)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Coroutine
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from retrotread.clock import ScaledClock
from retrotread.coach.walkers import WalkerConfig
from retrotread.config import Config, MqttConfig, ProfilesConfig, SessionsConfig, WebConfig
from retrotread.service.app import Daemon
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import SimConfig, SimTreadmill
from tests.broker import free_port
from tests.test_daemon_mqtt import until

T = TypeVar("T")

# Short enough for a test: a forward warm-up, a turn to walk backward, a forward cool-down.
TURN_PROFILE = """
name = "turn-test"
title = "Turn test"

[[phase]]
name = "warm-up"
direction = "forward"
duration_s = 12
speed_kmh = 1.0
incline_pct = 0.0
ramp_s = 10
cue = "Walk forward gently."

[[phase]]
name = "back"
direction = "backward"
duration_s = 30
speed_kmh = 0.8
incline_pct = 0.0
ramp_s = 8
cue = "Face the rear and hold both rails."
"""


@dataclass
class WebRig:
    daemon: Daemon
    sim: SimTreadmill
    token: str
    base: str  # http://127.0.0.1:PORT/t/TOKEN/
    stop: asyncio.Event

    @property
    def port(self) -> int:
        port = self.daemon.web.bound_port
        assert isinstance(port, int)
        return port

    def stops(self) -> int:
        """FTMS Stop (08 01) writes the treadmill accepted."""
        return sum(1 for w in self.sim.accepted if w.data == b"\x08\x01")


def web_config(
    tmp_path: Path,
    *,
    mqtt_port: int | None = None,
    walkers: tuple[WalkerConfig, ...] = (),
    **web: Any,
) -> Config:
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "turn-test.toml").write_text(TURN_PROFILE, encoding="utf-8")
    mqtt = (
        MqttConfig(host="127.0.0.1", port=mqtt_port, device_id="t1")
        if mqtt_port is not None
        else MqttConfig(enabled=False)
    )
    return Config(
        mqtt=mqtt,
        sessions=SessionsConfig(dir=tmp_path / "sessions"),
        profiles=ProfilesConfig(dirs=[profiles]),
        walker=list(walkers),
        web=WebConfig(
            listen=f"127.0.0.1:{free_port()}",
            token_file=tmp_path / "state" / "web-token",
            **web,
        ),
    )


@asynccontextmanager
async def web_rig(
    tmp_path: Path,
    *,
    speedup: float = 10.0,
    mqtt_port: int | None = None,
    walkers: tuple[WalkerConfig, ...] = (),
    **web: Any,
) -> AsyncIterator[WebRig]:
    """The daemon on the simulator, web page on a free port, MQTT only if asked."""
    config = web_config(tmp_path, mqtt_port=mqtt_port, walkers=walkers, **web)
    sim = SimTreadmill(SimConfig(pre_workout_s=0.5, accel_kmh_per_s=3.0))
    daemon = Daemon(config, InProcessTransport(sim), ScaledClock(speedup), sim=sim)
    assert daemon.web is not None
    daemon.web.alive_s = 0.5
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        await until(lambda: daemon.web.listening.is_set() and daemon.treadmill.is_connected, 15)
        token = config.web_token_file.read_text().strip()
        base = f"http://127.0.0.1:{daemon.web.bound_port}/t/{token}/"
        yield WebRig(daemon, sim, token, base, stop)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


class Page:
    """A page's WebSocket: sends commands, remembers every frame it gets."""

    def __init__(self, url: str, **headers: str) -> None:
        self.url = url
        self.headers = headers
        self.frames: list[tuple[str, Any]] = []
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._n = 0

    async def __aenter__(self) -> Page:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.url, headers=self.headers)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        async for m in self.ws:
            if m.type == aiohttp.WSMsgType.TEXT:
                f = json.loads(m.data)
                self.frames.append((f["topic"], f["payload"]))

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    def on(self, topic: str) -> list[Any]:
        return [p for t, p in self.frames if t == topic]

    async def send(self, payload: bytes | str | dict[str, Any]) -> None:
        assert self.ws is not None
        if isinstance(payload, bytes):
            await self.ws.send_bytes(payload)
        else:
            await self.ws.send_str(payload if isinstance(payload, str) else json.dumps(payload))

    async def command(self, payload: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        self._n += 1
        cid = f"p{self._n}"
        await self.send({**payload, "id": cid})
        await until(lambda: any(r["id"] == cid for r in self.on("cmd/result")), timeout)
        return next(r for r in self.on("cmd/result") if r["id"] == cid)


class DaemonThread:
    """``web_rig`` on an event loop in a thread of its own, for a blocking test (Selenium)."""

    def __init__(self, tmp_path: Path, **kw: Any) -> None:
        self.tmp_path = tmp_path
        self.kw = kw
        self.loop = asyncio.new_event_loop()
        self.rig: WebRig | None = None
        self._ready: Future[WebRig] = Future()
        self._done: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="daemon", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())
        self.loop.close()

    async def _serve(self) -> None:
        self._done = asyncio.Event()
        try:
            async with web_rig(self.tmp_path, **self.kw) as rig:
                self._ready.set_result(rig)
                await self._done.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def __enter__(self) -> WebRig:
        self._thread.start()
        self.rig = self._ready.result(timeout=30)
        return self.rig

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run ``coro`` on the daemon's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        if self._done is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._done.set)
        self._thread.join(30)
