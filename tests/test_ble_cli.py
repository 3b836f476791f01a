"""``retrotread scan`` and ``probe`` as subprocesses against a fake BlueZ in another process."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.blehelpers import bluez_server, cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bluez_env() -> Iterator[dict[str, str]]:
    with bluez_server("--count", "2") as env:
        yield env


def test_scan_lists_both_treadmills(bluez_env: dict[str, str]) -> None:
    p = cli(bluez_env, "scan", "--timeout", "1.5")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0].split() == ["NAME", "ADDRESS", "RSSI", "SPEED", "INCLINE"]
    rows = sorted(line.split() for line in lines[1:])
    assert [(r[0], r[1], r[3], r[4]) for r in rows] == [
        ("RETRO-SIM-1", "C0:FF:EE:00:00:01", "yes", "yes"),
        ("RETRO-SIM-2", "C0:FF:EE:00:00:02", "yes", "yes"),
    ]


def test_probe_prints_capabilities_and_live_data(bluez_env: dict[str, str]) -> None:
    p = cli(bluez_env, "probe", "C0:FF:EE:00:00:02", "--seconds", "1.5", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["name"] == "RETRO-SIM-2"
    assert doc["speed_range"] == [0.5, 8.0, 0.1]
    assert doc["incline_range"] == [0.0, 12.0, 0.5]
    assert doc["device_info"]["model"] == "SIM-1"
    assert len(doc["telemetry"]) >= 3  # 4 Hz for 1.5 s
    assert doc["telemetry"][-1]["speed_kmh"] == 0.0
    text = cli(bluez_env, "probe", "C0:FF:EE:00:00:01", "--seconds", "0.5")
    assert "speed:    settable, 0.5-8 km/h by 0.1" in text.stdout


def test_probe_unknown_address_is_one_clear_line(bluez_env: dict[str, str]) -> None:
    p = cli(bluez_env, "probe", "C0:FF:EE:99:99:99", "--timeout", "1")
    assert p.returncode == 2
    assert p.stderr.strip() == (
        "retrotread: error: treadmill C0:FF:EE:99:99:99 not found "
        "(is it on and not connected to another app?)"
    )


def test_no_bluetooth_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/none"}
    p = cli(env, "scan", "--timeout", "1")
    assert p.returncode == 2
    assert p.stderr.startswith("retrotread: error: Bluetooth is not available")
    assert len(p.stderr.strip().splitlines()) == 1
