"""Replay, history, export and plot, on a session recorded by the real runner."""

from __future__ import annotations

import asyncio
import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import fitdecode
import pytest
import xmlschema

from retrotread.config import MqttConfig
from retrotread.mqtt.client import mqtt_client
from retrotread.mqtt.replay import publish_replay
from retrotread.session.analysis import load
from retrotread.session.export import to_csv, to_fit, to_tcx
from retrotread.session.log import read_session
from retrotread.session.plot import plot
from retrotread.session.replay import check_codec, check_commands, replay_messages
from retrotread.sim.rerun import rerun_control_point
from tests.broker import Broker, free_port
from tests.clihelpers import run_cli as cli
from tests.runhelpers import phase, profile, run_rig

ROOT = Path(__file__).resolve().parents[1]
XSD = ROOT / "tests" / "data" / "TrainingCenterDatabasev2.xsd"
PROFILE = profile(
    phase("warm-up", 2.0, duration=40, ramp=20),
    phase("back", 1.5, duration=40, ramp=20, direction="backward"),
    phase("hill", 1.4, duration=40, ramp=20, incline=3.0, direction="backward"),
    phase("cool-down", 1.8, duration=30, ramp=20),
    name="tools",
)


async def _record(directory: Path) -> Path:
    async with run_rig(directory, turn_countdown_s=3) as r:
        await r.call(r.runner.start(PROFILE))
        await r.until(lambda: r.runner.session is None, 400, step=0.25)
        assert r.runner.last_outcome == "completed"
        assert r.runner.last_log is not None
        return r.runner.last_log


@pytest.fixture(scope="module")
def session_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return asyncio.run(_record(tmp_path_factory.mktemp("rec")))


def test_analysis_matches_the_profile(session_log: Path) -> None:
    v = load(session_log)
    assert [p.name for p in v.phases] == ["warm-up", "back", "hill", "cool-down"]
    assert [p.direction for p in v.phases] == ["forward", "backward", "backward", "forward"]
    assert v.phases[2].mean_incline_pct is not None
    assert v.phases[2].mean_incline_pct > 1.5
    assert 75 <= v.backward_s <= 95  # 80 s of backward phases (+ the turn wait)
    assert v.distance_m == pytest.approx(max(s.distance_m or 0 for s in v.samples))


async def test_replay_to_mqtt_in_order_with_values(session_log: Path, broker: Broker) -> None:
    log = read_session(session_log)
    expected = list(log.of("telemetry"))
    got: list[dict[str, Any]] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async with mqtt_client("127.0.0.1", broker.port) as c:
            await c.subscribe("replay-test/#", qos=1)
            ready.set()
            async for m in c.messages:
                if str(m.topic) == "replay-test/telemetry":
                    got.append(json.loads(bytes(m.payload)))  # type: ignore[arg-type]

    task = asyncio.create_task(listen())
    await asyncio.wait_for(ready.wait(), 5)
    mqtt = MqttConfig(host="127.0.0.1", port=broker.port)
    sent = await publish_replay(mqtt, "replay-test", replay_messages(log), rate=0)
    async with asyncio.timeout(20):
        while len(got) < len(expected):
            await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sent >= len(expected)
    assert [(g["t"], g["speed_kmh"], g["incline_pct"], g["distance_m"]) for g in got] == [
        (e["t"], e["speed_kmh"], e["incline_pct"], e["distance_m"]) for e in expected
    ]
    assert all(g["replay"] is True for g in got)


def test_replay_with_the_broker_down_is_one_line(session_log: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("")  # defaults, not this machine's /etc/retrotread/config.toml
    port = free_port()  # nothing listens there
    p = cli("replay", str(session_log), "--mqtt", "-c", str(config), "--port", str(port))
    assert p.returncode == 2
    assert p.stderr.startswith(f"retrotread: error: MQTT broker localhost:{port}: ")
    assert len(p.stderr.strip().splitlines()) == 1


def test_through_sim_clean_log_has_no_divergence(session_log: Path) -> None:
    log = read_session(session_log)
    assert check_codec(log) == []
    assert check_commands(log, rerun_control_point) == []
    p = cli("replay", str(session_log), "--through-sim")
    assert p.returncode == 0
    assert p.stdout.startswith("no divergence:")


def test_through_sim_pinpoints_an_altered_command(session_log: Path, tmp_path: Path) -> None:
    lines = session_log.read_text().splitlines()
    idx = next(
        i
        for i, line in enumerate(lines)
        if '"type":"tx"' in line and '"hex":"02' in line and i > 50
    )
    rec = json.loads(lines[idx])
    rec["hex"] = "029b00"  # 1.55 km/h: off the 0.1 grid, the simulator must refuse it (0x03)
    lines[idx] = json.dumps(rec)
    altered = tmp_path / "altered.jsonl"
    altered.write_text("\n".join(lines) + "\n")
    found = check_commands(read_session(altered), rerun_control_point)
    assert found
    assert found[0].t == pytest.approx(rec["t"], abs=0.2)
    assert found[0].recorded == "800201"
    assert found[0].rerun == "800203"
    p = cli("replay", str(altered), "--through-sim")
    assert p.returncode == 1
    assert "recorded 800201, re-run 800203" in p.stdout


def test_through_sim_pinpoints_an_altered_frame(session_log: Path, tmp_path: Path) -> None:
    lines = session_log.read_text().splitlines()
    idx = next(i for i, line in enumerate(lines) if '"char":"2acd"' in line and i > 200)
    rec = json.loads(lines[idx])
    data = bytearray(bytes.fromhex(rec["hex"]))
    struct.pack_into("<H", data, 2, 999)  # speed 9.99 km/h in the recorded bytes
    rec["hex"] = data.hex()
    lines[idx] = json.dumps(rec)
    altered = tmp_path / "altered.jsonl"
    altered.write_text("\n".join(lines) + "\n")
    found = check_codec(read_session(altered))
    assert len(found) == 1
    assert found[0].what == "telemetry speed_kmh"
    assert found[0].rerun == "9.99"


def test_tcx_is_well_formed_whatever_the_names_hold(session_log: Path, tmp_path: Path) -> None:
    v = load(session_log)
    v.title = 'Hills & <valleys> "at\x01dawn"'
    v.phases[0].name = "warm-up ]]> </Notes>"
    out = tmp_path / "odd.tcx"
    out.write_text(to_tcx(v))
    xmlschema.XMLSchema(str(XSD)).validate(str(out))
    ns = {"t": "http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"}
    root = ET.parse(out).getroot()
    notes = root.find("t:Activities/t:Activity/t:Notes", ns)
    assert notes is not None and notes.text is not None
    assert notes.text.startswith('Hills & <valleys> "atdawn": backward walking')
    lap_notes = root.find("t:Activities/t:Activity/t:Lap/t:Notes", ns)
    assert lap_notes is not None and lap_notes.text == "warm-up ]]> </Notes> (forward)"


def test_tcx_validates_against_garmin_schema(session_log: Path, tmp_path: Path) -> None:
    v = load(session_log)
    out = tmp_path / "s.tcx"
    out.write_text(to_tcx(v))
    schema = xmlschema.XMLSchema(str(XSD))
    schema.validate(str(out))
    doc = schema.to_dict(str(out))
    laps = doc["Activities"]["Activity"][0]["Lap"]
    assert len(laps) == 4
    total = sum(lap["DistanceMeters"] for lap in laps)
    assert total == pytest.approx(sum(p.distance_m for p in v.phases), abs=0.5)
    points = sum(len(lap["Track"][0]["Trackpoint"]) for lap in laps)
    assert points == sum(1 for s in v.samples if any(p.start_t <= s.t < p.end_t for p in v.phases))


def test_fit_read_back_by_an_independent_reader(session_log: Path, tmp_path: Path) -> None:
    v = load(session_log)
    out = tmp_path / "s.fit"
    out.write_bytes(to_fit(v))
    records, laps, sessions = [], [], []
    with fitdecode.FitReader(str(out)) as reader:
        for frame in reader:
            if isinstance(frame, fitdecode.FitDataMessage):
                if frame.name == "record":
                    records.append(frame)
                elif frame.name == "lap":
                    laps.append(frame)
                elif frame.name == "session":
                    sessions.append(frame)
    assert len(records) == len(v.samples)
    assert len(laps) == 4
    assert len(sessions) == 1
    s = sessions[0]
    assert s.get_value("sport") == "walking"
    assert s.get_value("sub_sport") == "treadmill"
    assert s.get_value("total_distance") == pytest.approx(v.distance_m, abs=0.1)
    assert sum(lap.get_value("total_distance") for lap in laps) == pytest.approx(
        sum(p.distance_m for p in v.phases), abs=0.5
    )
    assert records[-1].get_value("distance") == pytest.approx(v.samples[-1].distance_m, abs=0.1)


def test_csv(session_log: Path) -> None:
    v = load(session_log)
    rows = to_csv(v).splitlines()
    assert rows[0].startswith("time,t_s,phase,direction,speed_kmh")
    assert len(rows) == len(v.samples) + 1


def test_plot_png(session_log: Path, tmp_path: Path) -> None:
    v = load(session_log)
    out = tmp_path / "s.png"
    drawn = plot(v, out)
    header = out.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert (width, height) == (1080, 1620)  # phone-shaped, 150 dpi
    assert drawn["Speed (km/h)"] == len(v.samples)
    assert drawn["Incline (%)"] == len(v.samples)
    assert drawn["Heart rate (bpm)"] > 0


def test_tools_accept_an_interrupted_log(session_log: Path, tmp_path: Path) -> None:
    data = session_log.read_bytes()
    cut = tmp_path / "20260101-080000-tools.jsonl"
    cut.write_bytes(data[: len(data) * 2 // 3] + b'{"type":"telem')
    p = cli("summary", str(cut))
    assert p.returncode == 0, p.stderr
    assert "interrupted" in p.stdout
    assert "note: interrupted: the log has no footer" in p.stderr
    assert "note: the last line was cut off" in p.stderr
    for fmt in ("tcx", "fit", "csv"):
        p = cli("export", str(cut), "--format", fmt, "-o", str(tmp_path / f"cut.{fmt}"))
        assert p.returncode == 0, p.stderr
        assert (tmp_path / f"cut.{fmt}").stat().st_size > 100
    xmlschema.XMLSchema(str(XSD)).validate(str(tmp_path / "cut.tcx"))
    assert cli("plot", str(cut), "-o", str(tmp_path / "cut.png")).returncode == 0
    p = cli("sessions", "--dir", str(tmp_path), "list")
    assert p.returncode == 0
    assert "interrupted (no footer)" in p.stdout
    p = cli("replay", str(cut), "--through-sim")
    assert "note: interrupted" in p.stdout


def test_sessions_list_and_summary_figures(session_log: Path) -> None:
    p = cli("sessions", "--dir", str(session_log.parent), "list")
    assert p.returncode == 0
    line = p.stdout.splitlines()[1]
    assert " tools " in line
    assert "completed" in line
    p = cli("summary", str(session_log))
    assert p.returncode == 0
    assert " 3 hill             backward" in p.stdout
    assert "backward walking:" in p.stdout
