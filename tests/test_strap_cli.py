"""``retrotread scan`` and ``probe`` find and read a heart-rate strap (subprocesses against a
simulated treadmill and strap behind a fake BlueZ in another process)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.blehelpers import bluez_server, cli


@pytest.fixture(scope="module")
def bluez_env() -> Iterator[dict[str, str]]:
    with bluez_server("retrotread.sim.strap:treadmill_and_strap") as env:
        yield env


def test_scan_lists_the_strap_after_the_treadmills(bluez_env: dict[str, str]) -> None:
    p = cli(bluez_env, "scan", "--timeout", "1.5", "--no-connect")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0].split() == ["NAME", "ADDRESS", "RSSI", "SPEED", "INCLINE"]
    assert lines[1].split()[:2] == ["RETRO-SIM", "C0:FF:EE:00:00:01"]
    strap = lines.index("") + 1
    assert lines[strap].split() == ["HEART-RATE", "STRAP", "ADDRESS", "RSSI"]
    assert lines[strap + 1].split() == ["RETRO-HR", "C0:FF:EE:00:00:02", "-62"]
    j = cli(bluez_env, "scan", "--timeout", "1.5", "--no-connect", "--json")
    rows = json.loads(j.stdout)
    assert [r.get("kind", "treadmill") for r in rows] == ["treadmill", "strap"]
    assert rows[1] == {
        "kind": "strap",
        "name": "RETRO-HR",
        "address": "C0:FF:EE:00:00:02",
        "rssi": -62,
    }


def test_probe_reads_a_strap(bluez_env: dict[str, str]) -> None:
    p = cli(bluez_env, "probe", "C0:FF:EE:00:00:02", "--seconds", "2.5")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "kind:     heart-rate strap (Heart Rate Service)" in out
    assert "location: chest" in out
    beats = [line for line in out.splitlines() if line.strip().startswith("heart rate")]
    assert beats and all("contact" in b and "bpm" in b for b in beats)
    j = cli(bluez_env, "probe", "C0:FF:EE:00:00:02", "--seconds", "2.5", "--json")
    doc = json.loads(j.stdout)
    assert (doc["kind"], doc["name"], doc["location"]) == ("strap", "RETRO-HR", "chest")
    assert doc["device_info"] == {"manufacturer": "retrotread", "model": "SIM-HR"}
    assert doc["heart_rate"] and all(60 <= h["heart_rate_bpm"] <= 100 for h in doc["heart_rate"])
    assert all(h["sensor_contact"] is True for h in doc["heart_rate"])
