"""STOP through the phone page: a tap in a real browser (headless Chromium) -> FTMS Stop
(08 01) at the simulated treadmill, mid-ramp, over many taps.

Two clocks, both the machine's wall clock: the tap as the page saw it (the pointerdown
event's time stamp) and the Stop op code arriving at the treadmill's control point. The
second row adds what WebDriver takes to deliver the tap (the click sent from here), an
upper bound a finger does not pay.

Run: .venv/bin/python bench/web_stop.py [--trials 30]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import _common

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' browser set-up

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from retrotread.clock import RealClock
from retrotread.config import Config, MqttConfig, SessionsConfig, WebConfig
from retrotread.servers import free_port
from retrotread.service.app import Daemon
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import SimConfig, SimTreadmill
from tests.browserhelpers import RECORD_MESSAGES, chromium, wait_for


class StampedSim(SimTreadmill):
    """Records the wall-clock time each Stop arrives."""

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.stop_at: list[float] = []

    def write(self, uuid: str, data: bytes, with_response: bool = True) -> None:
        if data == b"\x08\x01":
            self.stop_at.append(time.time())
        super().write(uuid, data, with_response)


def serve(daemon: Daemon, ready: Future[None], done: threading.Event) -> None:
    """The daemon on its own loop in this thread until ``done``."""

    async def main() -> None:
        stop = asyncio.Event()
        serving = asyncio.create_task(daemon.run(stop))
        while not (daemon.web.listening.is_set() and daemon.treadmill.is_connected):
            await asyncio.sleep(0.01)
        ready.set_result(None)
        while not done.is_set():
            await asyncio.sleep(0.05)
        stop.set()
        await serving

    asyncio.run(main())


def run(trials: int, tmp: Path) -> tuple[list[float], list[float]]:
    port = free_port()
    config = Config(
        mqtt=MqttConfig(enabled=False),
        sessions=SessionsConfig(dir=tmp / "sessions"),
        web=WebConfig(listen=f"127.0.0.1:{port}", token_file=tmp / "web-token"),
    )
    sim = StampedSim(SimConfig(pre_workout_s=0.2, data_interval_s=0.1, accel_kmh_per_s=5.0))
    daemon = Daemon(config, InProcessTransport(sim), RealClock(), sim=sim)
    ready: Future[None] = Future()
    done = threading.Event()
    thread = threading.Thread(target=serve, args=(daemon, ready, done), daemon=True)
    thread.start()
    ready.result(30)
    token = (tmp / "web-token").read_text().strip()
    page_ms: list[float] = []
    driver_ms: list[float] = []
    try:
        with chromium() as d:
            d.get(f"http://127.0.0.1:{port}/t/{token}/")
            state = lambda: d.find_element(By.ID, "state").get_attribute("textContent")  # noqa: E731
            said = lambda: list(d.execute_script("return window.__messages"))  # noqa: E731
            speed = lambda: d.find_element(By.ID, "speed").get_attribute("textContent")  # noqa: E731
            wait_for(d, lambda: state() == "idle", 30)
            d.execute_script(RECORD_MESSAGES)  # a cue may replace "Start: done" at once
            Select(d.find_element(By.ID, "profile")).select_by_value("first-steps")
            stop = d.find_element(By.ID, "stop")
            for _ in range(trials):
                wait_for(d, lambda: state() in ("idle", "stopped") and speed() == "0.0", 30)
                start = d.find_element(By.ID, "start")
                d.execute_script("arguments[0].scrollIntoView({block: 'center'})", start)
                # Just after a stop the belt may still coast down: that start is refused by
                # name, and tapped again, as a person would.
                for _ in range(50):
                    n = len(said())
                    start.click()
                    answer = wait_for(
                        d,
                        lambda n=n: next((m for m in said()[n:] if m.startswith("Start")), None),
                        10,
                    )
                    if answer == "Start: done":
                        break
                    time.sleep(0.2)
                wait_for(d, lambda: sim.state == "running" and sim.speed_kmh >= 0.3, 30)
                time.sleep(0.3)  # mid-ramp: setpoints are being written
                n = len(sim.stop_at)
                t0 = time.time()
                stop.click()
                wait_for(d, lambda n=n: len(sim.stop_at) > n, 10)
                arrived = sim.stop_at[n]
                tap = d.execute_script("return window.retrotread.stopTaps.at(-1)") / 1000
                page_ms.append((arrived - tap) * 1000)
                driver_ms.append((arrived - t0) * 1000)
                wait_for(d, lambda: daemon.runner.session is None, 30)
    finally:
        done.set()
        thread.join(30)
    return page_ms, driver_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        page_ms, driver_ms = run(args.trials, Path(tmp))
    _common.table(
        "STOP on the phone page -> 08 01 at the simulated treadmill (in-process)",
        [
            ("tap seen by the page -> 08 01 (ms)", page_ms, ""),
            ("click sent by WebDriver -> 08 01 (ms)", driver_ms, ""),
        ],
    )


if __name__ == "__main__":
    main()
