"""The bounded run of the fault suite (bench/faults.py --quick): every experiment of issue
11 at small scale, judged on its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_fault_suite_holds(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROTREAD_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "faults.py"), "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.exists(), done.stdout + done.stderr
    rows = {r["name"]: r for r in json.loads(out.read_text())}
    failed = [f"{name}: {r['figures']} {r['note']}" for name, r in rows.items() if not r["ok"]]
    assert failed == [], done.stdout + done.stderr
    assert done.returncode == 0
    kill = rows["kill -9 mid-session"]["figures"]
    assert kill["logs readable"] == "2/2"
    assert kill["lost"] == 0
    assert kill["samples on MQTT"] > 0
    broker = rows["broker restarts mid-session"]["figures"]
    assert (broker["records lost"], broker["retained back"]) == (0, "2/2")
    assert broker["profile kept running"] is True
    ble = rows["BLE drops mid-session (fake BlueZ)"]["figures"]
    assert (ble["reconnects"], ble["belt restarts without resume"]) == ("2/2", 0)
    fuzz = rows["fuzzed commands + burst"]["figures"]
    assert fuzz["fuzz results/sent"] == "600/600"
    assert fuzz["burst results/sent"].startswith("300/300 (sent in ")
    assert (fuzz["alive"], fuzz["tracebacks"], fuzz["burst ids answered once"]) == (True, 0, True)
    disk = rows["disk full, then space back"]
    if os.geteuid() == 0:
        assert disk["figures"]["gaps marked"] >= 1
        assert disk["figures"]["said on MQTT (event + state)"] is True
        assert disk["figures"]["footer"] is True
    else:
        assert disk["note"].startswith("skipped")
