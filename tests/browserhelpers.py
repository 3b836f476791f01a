"""Headless Chromium from Debian, driven by Selenium through Debian's own chromedriver:
nothing is downloaded, nothing leaves the machine (every host name but the loopback
address fails to resolve)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Selenium would otherwise report usage statistics and look for a driver to download.
os.environ["SE_AVOID_STATS"] = "true"

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHONE = {"width": 390, "height": 844, "pixelRatio": 2}  # a phone held upright

# Records what the page asks the browser to say and to vibrate, instead of doing it.
RECORD_SPEECH_AND_VIBRATION = """
window.__spoken = [];
window.__vibrated = [];
window.speechSynthesis.speak = (u) => { window.__spoken.push(u.text); };
navigator.vibrate = (pattern) => { window.__vibrated.push(pattern); return true; };
"""

# Records every text the page's message line shows (a later one may replace it at once).
RECORD_MESSAGES = """
window.__messages = [];
new MutationObserver(() => {
  window.__messages.push(document.getElementById("message").textContent);
}).observe(document.getElementById("message"), {
  childList: true, characterData: true, subtree: true,
});
"""


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium with a phone's screen and a throw-away profile."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    assert not missing, f"{missing}: run 'bash scripts/bootstrap test' (Debian chromium packages)"
    profile = tempfile.mkdtemp(prefix="retrotread-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(
    driver: webdriver.Chrome, what: Callable[[], Any], timeout: float = 15, message: str = ""
) -> Any:
    """Poll ``what`` until it returns something truthy; that value."""
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda _d: what(), message or getattr(what, "__name__", "")
    )


def screenshot_dir(default: Path) -> Path:
    """Where the browser tests put their screenshots: $RETROTREAD_SCREENSHOTS, else
    ``default`` (the test's temporary directory)."""
    chosen = os.environ.get("RETROTREAD_SCREENSHOTS")
    out = Path(chosen) if chosen else default
    out.mkdir(parents=True, exist_ok=True)
    return out
