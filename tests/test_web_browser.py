"""The phone page in a real browser (headless Chromium) against the daemon on the
simulator: live numbers, Start, the turn-around cue shown and spoken, STOP, history, a
refused token, and a daemon that dies or freezes under the page. Screenshots of each state
go to $RETROTREAD_SCREENSHOTS (else the test's temporary directory)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from retrotread.coach.walkers import WalkerConfig
from retrotread.session.log import read_session
from tests.broker import free_port
from tests.browserhelpers import (
    RECORD_MESSAGES,
    RECORD_SPEECH_AND_VIBRATION,
    chromium,
    screenshot_dir,
    wait_for,
)
from tests.clihelpers import RETROTREAD, ROOT
from tests.webhelpers import TURN_PROFILE, DaemonThread


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


def text(driver: webdriver.Chrome, element_id: str) -> str:
    """What the element holds (as written, before CSS changes its case)."""
    return str(driver.find_element(By.ID, element_id).get_attribute("textContent")).strip()


def shown(driver: webdriver.Chrome, element_id: str) -> bool:
    return bool(driver.find_element(By.ID, element_id).is_displayed())


def tap(driver: webdriver.Chrome, element: WebElement) -> None:
    """Scroll ``element`` clear of the STOP bar, as a thumb would, then tap it once it
    stands still: a line the page adds above it (a coach's cue as a session starts) moves
    it, and WebDriver's click goes to where it was (a tap on nothing, 1 run in 3)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    seen: list[dict[str, Any]] = []

    def still() -> bool:
        seen.append(element.rect)
        return len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]

    wait_for(driver, still, 5)
    element.click()


def snap(driver: webdriver.Chrome, path: Path) -> None:
    """A screenshot of the page as it opens: from the top."""
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(path))


def open_page(driver: webdriver.Chrome, url: str) -> None:
    driver.get(url)
    wait_for(driver, lambda: text(driver, "link-daemon") == "retrotread: connected")
    driver.execute_script(RECORD_SPEECH_AND_VIBRATION)
    driver.execute_script(RECORD_MESSAGES)


def messages(driver: webdriver.Chrome) -> list[str]:
    """Every text the page's message line has shown since it was opened."""
    return list(driver.execute_script("return window.__messages"))


def test_the_page_drives_a_session(browser: webdriver.Chrome, tmp_path: Path) -> None:
    shots = screenshot_dir(tmp_path / "shots")
    with DaemonThread(tmp_path, speedup=4.0) as rig:
        d = browser
        open_page(d, rig.base)
        wait_for(d, lambda: text(d, "state") == "idle")
        assert text(d, "link-treadmill") == "treadmill: connected"
        assert not shown(d, "banner")  # nothing says "not connected" while it is
        assert shown(d, "stop") and text(d, "stop") == "STOP"
        # Installable as an app (the manifest, its icons; 127.0.0.1 counts as secure).
        assert d.execute_cdp_cmd("Page.getInstallabilityErrors", {}) == {"installabilityErrors": []}
        assert d.execute_cdp_cmd("Page.getAppManifest", {})["errors"] == []
        snap(d, shots / "web-idle.png")

        # Start: the profile runs, and the treadmill gets FTMS Start (07).
        Select(d.find_element(By.ID, "profile")).select_by_value("turn-test")
        tap(d, d.find_element(By.ID, "start"))
        wait_for(d, lambda: rig.daemon.runner.state_name() == "running")
        wait_for(d, lambda: any(w.data == b"\x07" for w in rig.sim.accepted))
        wait_for(d, lambda: "Start: done" in messages(d))  # a cue may follow it at once

        # Live speed, changing as the belt ramps up (each speed with the phase shown beside
        # it, read at the same instant).
        seen: dict[str, str] = {}

        def speeds() -> bool:
            value, phase = d.execute_script(
                "return ['speed', 'phase'].map((i) => document.getElementById(i).textContent)"
            )
            if value not in ("–", "0.0"):
                seen.setdefault(value, phase)
            return len(seen) >= 3

        wait_for(d, speeds, 20, "the speed on the page did not change")
        assert all(0 < float(v) <= 1.0 for v in seen)
        assert next(iter(seen.values())).endswith("warm-up")  # the first speeds: the warm-up
        snap(d, shots / "web-running.png")

        # The turn-around: full screen, spoken, felt.
        wait_for(d, lambda: shown(d, "turn"), 30, "no turn-around screen")
        turn = next(e for e in _events(rig) if e["type"] == "turn_required")
        assert text(d, "turn-text") == turn["message"]
        wait_for(d, lambda: turn["message"] in d.execute_script("return window.__spoken"))
        assert d.execute_script("return window.__vibrated.length") >= 1
        assert shown(d, "stop")  # STOP stays on screen over it
        snap(d, shots / "web-turn.png")
        tap(d, d.find_element(By.ID, "turn-resume"))
        wait_for(d, lambda: not shown(d, "turn"))
        wait_for(d, lambda: rig.daemon.runner.state_name() == "running")
        wait_for(d, lambda: "Face the rear" in " ".join(d.execute_script("return __spoken")))

        # STOP: one tap, the treadmill gets 08 01.
        before = rig.stops()
        d.find_element(By.ID, "stop").click()
        wait_for(d, lambda: rig.stops() == before + 1, 10, "STOP did not reach the treadmill")
        assert rig.sim.accepted[-1].data == b"\x08\x01"
        wait_for(d, lambda: "Stop: done" in messages(d))
        wait_for(d, lambda: text(d, "state") == "stopped")
        snap(d, shots / "web-stopped.png")
        # From the keyboard (or a switch): Enter on STOP stops too.
        said = len(messages(d))
        d.find_element(By.ID, "stop").send_keys(Keys.ENTER)
        wait_for(d, lambda: rig.stops() == before + 2, 10, "Enter on STOP did nothing")
        wait_for(d, lambda: "Stop: done" in messages(d)[said:])

        # History: the session just walked, and its plot.
        tap(d, d.find_element(By.ID, "history-toggle"))
        wait_for(d, lambda: len(d.find_elements(By.CSS_SELECTOR, "#history li button")) == 1)
        entry = d.find_element(By.CSS_SELECTOR, "#history li button")
        assert "Turn test" in entry.text and "stopped" in entry.text
        tap(d, entry)
        wait_for(
            d, lambda: d.execute_script("return document.getElementById('plot').naturalWidth") > 0
        )
        snap(d, shots / "web-history.png")


def test_a_walker_runs_today_with_the_session_buttons(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """The walker box (who, today's session), then Pause, Resume, Skip and Finish, each
    reaching the treadmill or the runner; refusals, the page's own and another's, shown."""
    walkers = (WalkerConfig(name="anna", plan="retro-start"), WalkerConfig(name="ben"))
    shots = screenshot_dir(tmp_path / "shots")
    daemon = DaemonThread(tmp_path, speedup=4.0, walkers=walkers)
    with daemon as rig:
        d = browser
        runner = rig.daemon.runner
        open_page(d, rig.base)
        wait_for(d, lambda: shown(d, "walker-box") and text(d, "today-info").startswith("Today:"))
        assert shown(d, "walker-choice")  # two walkers: a choice
        assert Select(d.find_element(By.ID, "walker")).first_selected_option.text == "anna"
        Select(d.find_element(By.ID, "walker")).select_by_value("ben")
        wait_for(d, lambda: rig.daemon.coaching.current == "ben")
        wait_for(d, lambda: "Walker: done" in messages(d))
        assert Select(d.find_element(By.ID, "walker")).first_selected_option.text == "ben"
        snap(d, shots / "web-walker.png")

        tap(d, d.find_element(By.ID, "start-today"))
        wait_for(d, lambda: runner.state_name() == "running", 20)
        wait_for(d, lambda: text(d, "state") == "running")
        assert shown(d, "controls") and not shown(d, "start-panel")
        assert text(d, "link-recording") == "recording"
        first = runner.state()["phase_index"]

        tap(d, d.find_element(By.ID, "pause"))
        wait_for(d, lambda: runner.state_name() == "paused")
        wait_for(d, lambda: text(d, "state") == "paused")
        assert b"\x08\x02" in [w.data for w in rig.sim.accepted]  # FTMS Pause
        # Resume, tapped twice at once: the first starts the belt, the second is refused
        # (the belt is on its way, or already running) and the page says so.
        d.execute_script("const b = document.getElementById('resume'); b.click(); b.click();")
        wait_for(d, lambda: runner.state_name() == "running", 20)
        wait_for(d, lambda: any(m.startswith("Resume refused: ") for m in messages(d)))
        refusal = next(m for m in messages(d) if m.startswith("Resume refused: "))
        assert refusal in (
            "Resume refused: already starting: the belt is on its way",
            "Resume refused: not paused: nothing to resume",
        )
        assert "Resume: done" in messages(d)

        tap(d, d.find_element(By.ID, "skip"))
        wait_for(d, lambda: runner.state()["phase_index"] == first + 1)
        wait_for(d, lambda: "Skip: done" in messages(d))
        phases = runner.session.engine.profile.phase  # type: ignore[union-attr]
        if phases[first + 1].direction != phases[first].direction:  # skipped into a turn
            wait_for(d, lambda: shown(d, "turn"), 20)
            assert not d.find_element(By.ID, "finish").is_enabled()  # turn first, or STOP
            tap(d, d.find_element(By.ID, "turn-resume"))
            wait_for(d, lambda: runner.state_name() == "running", 20)
            wait_for(d, lambda: not shown(d, "turn"))
        tap(d, d.find_element(By.ID, "finish"))
        wait_for(d, lambda: runner.state()["phase_index"] == len(phases) - 1)  # the cool-down
        wait_for(d, lambda: "Finish: done" in messages(d))
        assert runner.session is not None and runner.session.engine.finished_early

        # Someone else's refusal (another phone, Home Assistant) is shown here too.
        daemon.loop.call_soon_threadsafe(
            rig.daemon.desk.submit, b'{"action": "dance", "id": "ha-1"}', lambda _r: None
        )
        wait_for(d, lambda: any("refused: unknown action 'dance'" in m for m in messages(d)))
    header = read_session(runner.last_log).header  # type: ignore[arg-type]
    assert header["walker"] == "ben" and header["plan"]["name"] == "retro-start"


def _events(rig: object) -> list[dict[str, object]]:
    """The events the runner published (read from its session log: the page's source)."""
    runner = rig.daemon.runner  # type: ignore[attr-defined]
    return [
        {"type": r["event"], "message": r.get("message")}
        for r in read_session(runner.last_log).of("event")
    ]


def test_a_wrong_or_missing_token_is_refused(browser: webdriver.Chrome, tmp_path: Path) -> None:
    with DaemonThread(tmp_path) as rig:
        d = browser
        root = f"http://127.0.0.1:{rig.port}"
        wrong = rig.base.replace(rig.token, rig.token[::-1])
        for url in (root + "/", wrong, root + "/t/"):
            d.get(url)
            body = d.find_element(By.TAG_NAME, "body").text
            assert "refused: this address needs the token" in body, url
            assert d.find_elements(By.ID, "stop") == []
        assert rig.daemon.web.pages == set()  # no page was ever served a WebSocket
        d.get(rig.base)
        wait_for(d, lambda: text(d, "link-daemon") == "retrotread: connected")
        assert d.get_cookies() == []


def test_a_daemon_that_freezes_or_dies_is_said(browser: webdriver.Chrome, tmp_path: Path) -> None:
    """SIGSTOP (the connection stays open, nothing comes): the page notices the silence;
    SIGCONT: it reconnects by itself; kill -9: it says so at once and shows no numbers."""
    shots = screenshot_dir(tmp_path / "shots")
    port = free_port()
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "turn-test.toml").write_text(TURN_PROFILE, encoding="utf-8")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[sessions]\ndir = "{tmp_path}/sessions"\n[profiles]\ndirs = ["{profiles}"]\n'
        f'[web]\nlisten = "127.0.0.1:{port}"\n',
        encoding="utf-8",
    )
    exe = [str(RETROTREAD)] if RETROTREAD.exists() else [sys.executable, "-m", "retrotread.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROTREAD_")}
    daemon = subprocess.Popen(
        [*exe, "run", "--simulate", "--no-mqtt", "-c", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        token = _wait_for_token(tmp_path / "web-token", daemon)
        base = f"http://127.0.0.1:{port}/t/{token}/"
        _wait_for_page(base, daemon)
        d = browser
        open_page(d, base)
        wait_for(d, lambda: text(d, "link-treadmill") == "treadmill: connected", 20)
        Select(d.find_element(By.ID, "profile")).select_by_value("turn-test")
        tap(d, d.find_element(By.ID, "start"))
        wait_for(d, lambda: float(text(d, "speed").replace("–", "0")) > 0, 20)

        daemon.send_signal(signal.SIGSTOP)
        wait_for(d, lambda: shown(d, "banner"), 15, "a silent daemon went unnoticed")
        _assert_says_lost(d)
        daemon.send_signal(signal.SIGCONT)
        wait_for(d, lambda: text(d, "link-daemon") == "retrotread: connected", 20)
        assert not shown(d, "banner")

        daemon.kill()
        daemon.wait(10)
        wait_for(d, lambda: shown(d, "banner"), 5, "a dead daemon went unnoticed")
        _assert_says_lost(d)
        snap(d, shots / "web-lost.png")
        # Tapping STOP now says what to do instead of pretending.
        d.find_element(By.ID, "stop").click()
        assert "use the treadmill's own stop button" in text(d, "message")
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGCONT)
            daemon.kill()
            daemon.wait(10)
        if daemon.stderr is not None:
            daemon.stderr.close()


def _assert_says_lost(d: webdriver.Chrome) -> None:
    assert "NOT CONNECTED to retrotread" in text(d, "banner")
    assert "use the treadmill's own stop button" in text(d, "banner")
    assert text(d, "link-daemon") == "retrotread: NOT CONNECTED"
    assert text(d, "stop") == "NO LINK: use the treadmill's STOP"
    for number in ("speed", "incline", "heart", "left", "target"):
        assert text(d, number) == "–", number  # no number from before is shown as now
    assert text(d, "state") == "not connected"
    assert text(d, "link-treadmill") == "treadmill: unknown"  # not what it was before
    assert text(d, "link-recording") == "recording: unknown"
    assert not shown(d, "warning") and not shown(d, "turn")
    for button in ("start", "pause", "resume", "skip", "finish"):
        assert not d.find_element(By.ID, button).is_enabled(), button


def _wait_for_token(path: Path, daemon: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError("the daemon made no token")


def _wait_for_page(url: str, daemon: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    raise AssertionError("the page was not served")
