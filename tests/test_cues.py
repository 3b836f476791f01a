"""Spoken cues without Home Assistant (``[cues] command``): real subprocesses, real files.

The command here is a small Python script that records its arguments and standard input
to a file, and can be held (it waits while a "hold" file exists) to play a slow speech
engine. The stop test runs the whole daemon against a real Mosquitto and the simulator and
watches the Stop op code arrive at the simulated treadmill while a cue command still runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from retrotread.clock import ScaledClock
from retrotread.config import Config, CuesConfig, MqttConfig, SessionsConfig, load_config
from retrotread.errors import ConfigError
from retrotread.service.app import Daemon
from retrotread.service.cues import CueCommand
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import SimConfig, SimTreadmill
from tests.broker import Broker
from tests.test_daemon_mqtt import Phone, until

SAY = """\
import json, os, pathlib, sys, time
out, hold = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
heard = sys.stdin.read()
with out.open("a") as f:
    f.write(json.dumps({"start": sys.argv[3:], "pid": os.getpid()}) + "\\n")
while hold.exists():
    time.sleep(0.01)
code = int(os.environ.get("SAY_EXIT", "0"))
if code:
    sys.stderr.write("no voice for that\\n")
    sys.exit(code)
with out.open("a") as f:
    f.write(json.dumps({"done": sys.argv[3:], "stdin": heard, "nice": os.nice(0)}) + "\\n")
"""


@dataclass
class Speaker:
    """The recording command: ``template`` runs it with ``{type}`` and ``{text}``."""

    out: Path
    hold: Path
    template: str

    def records(self) -> list[dict[str, object]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines()]

    def done(self) -> list[list[str]]:
        return [r["done"] for r in self.records() if "done" in r]  # type: ignore[misc]

    def started(self) -> list[list[str]]:
        return [r["start"] for r in self.records() if "start" in r]  # type: ignore[misc]


@pytest.fixture
def speaker(tmp_path: Path) -> Speaker:
    script = tmp_path / "say.py"
    script.write_text(SAY)
    out, hold = tmp_path / "spoken.jsonl", tmp_path / "hold"
    args = [sys.executable, str(script), str(out), str(hold)]
    template = " ".join(shlex.quote(a) for a in args) + " {type} {text}"
    return Speaker(out, hold, template)


def cue(kind: str, message: str) -> dict[str, object]:
    return {"ts": 1.0, "type": kind, "message": message}


@asynccontextmanager
async def running(command: CueCommand) -> AsyncIterator[CueCommand]:
    task = asyncio.create_task(command.run(), name="cues")
    try:
        yield command
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_cue_text_is_one_argument_and_never_shell(speaker: Speaker, tmp_path: Path) -> None:
    pwned = tmp_path / "PWNED"
    nasty = (
        f'Face the rear; touch {pwned} $(touch {pwned}) `touch {pwned}` "quoted" '
        "'single' {text} {0} \\ back\nslash"
    )
    command = CueCommand(speaker.template, ["phase_started", "cue", "turn_required"])
    async with running(command):
        command.output("event", cue("session_started", "Starting First steps."))
        command.output("telemetry", {"message": "not an event"})
        command.output("event", cue("phase_started", "Walk forward at an easy pace."))
        command.output("event", cue("turn_required", nasty))
        command.output("event", cue("cue", "   "))  # nothing to say
        await until(lambda: command.spoken == 2)
    flat = " ".join(nasty.split())
    assert speaker.done() == [
        ["phase_started", "Walk forward at an easy pace."],
        ["turn_required", flat],
    ]
    assert [r["stdin"] for r in speaker.records() if "done" in r] == [
        "Walk forward at an easy pace.\n",
        flat + "\n",
    ]
    assert not pwned.exists()
    assert (command.spoken, command.failed, command.dropped) == (2, 0, 0)


async def test_a_failing_command_is_logged_once(
    speaker: Speaker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="retrotread.service.cues")
    monkeypatch.setenv("SAY_EXIT", "3")
    command = CueCommand(speaker.template, ["cue"])
    async with running(command):
        for i in range(3):
            command.output("event", cue("cue", f"cue {i}"))
        await until(lambda: command.failed == 3)
        monkeypatch.setenv("SAY_EXIT", "0")
        command.output("event", cue("cue", "works"))
        await until(lambda: command.spoken == 1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "cue command failed (further failures are logged at debug): "
        f"{sys.executable!r} exited with status 3: no voice for that"
    ]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "cue command works again"
    ]


async def test_a_missing_program_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    command = CueCommand(f"{tmp_path}/no-such-espeak {{text}}", ["cue"])
    async with running(command):
        command.output("event", cue("cue", "one"))
        command.output("event", cue("cue", "two"))
        await until(lambda: command.failed == 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "cue command failed (further failures are logged at debug): "
        f"cannot run '{tmp_path}/no-such-espeak': No such file or directory"
    ]


async def test_a_command_past_its_timeout_is_killed_and_the_next_cue_runs(
    speaker: Speaker,
) -> None:
    speaker.hold.touch()
    command = CueCommand(speaker.template, ["cue"], timeout_s=0.5)
    async with running(command):
        command.output("event", cue("cue", "stuck"))
        await until(lambda: len(speaker.started()) == 1)
        pid = int(speaker.records()[0]["pid"])  # type: ignore[call-overload]
        command.output("event", cue("cue", "after"))
        await until(lambda: command.failed == 1)
        assert not alive(pid)
        speaker.hold.unlink()
        await until(lambda: command.spoken == 1)
    assert speaker.done() == [["cue", "after"]]


async def test_a_full_queue_drops_the_oldest_cues(
    speaker: Speaker, caplog: pytest.LogCaptureFixture
) -> None:
    speaker.hold.touch()
    command = CueCommand(speaker.template, ["cue"], queue_size=4)
    async with running(command):
        command.output("event", cue("cue", "first"))
        await until(lambda: len(speaker.started()) == 1)  # in flight, held
        for i in range(10):
            command.output("event", cue("cue", f"queued {i}"))
        assert command.dropped == 6
        speaker.hold.unlink()
        await until(lambda: command.spoken == 5)
    held = next(r for r in speaker.records() if "done" in r)
    assert held["nice"] == min(19, os.nice(0) + 10)  # speech yields the CPU to the runner
    assert [text for _, text in speaker.done()] == [
        "first",
        "queued 6",
        "queued 7",
        "queued 8",
        "queued 9",
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("cue command busy: dropping older cues")


async def test_shutdown_ends_a_running_command(speaker: Speaker) -> None:
    speaker.hold.touch()
    command = CueCommand(speaker.template, ["cue"])
    async with running(command):
        command.output("event", cue("cue", "held"))
        await until(lambda: len(speaker.started()) == 1)
        pid = int(speaker.records()[0]["pid"])  # type: ignore[call-overload]
        assert alive(pid)
    assert not alive(pid)


# ---------------------------------------------------------------------- the daemon


async def test_a_slow_cue_command_never_delays_stop(
    broker: Broker, tmp_path: Path, speaker: Speaker
) -> None:
    speaker.hold.touch()  # the speech engine hangs until the test lets it go
    config = Config(
        mqtt=MqttConfig(host="127.0.0.1", port=broker.port, device_id="t1"),
        sessions=SessionsConfig(dir=tmp_path / "sessions"),
        cues=CuesConfig(command=speaker.template, timeout_s=600),
    )
    sim = SimTreadmill(SimConfig(pre_workout_s=1.0))
    daemon = Daemon(config, InProcessTransport(sim), ScaledClock(10.0), sim=sim)
    assert daemon.cues is not None
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        async with Phone(broker.port) as phone:
            await until(lambda: daemon.treadmill.is_connected and daemon.bridge.connected)
            assert (await phone.command({"action": "start", "profile": "first-steps"}))["ok"]
            await until(lambda: len(speaker.started()) == 1)  # the warm-up cue, held
            await until(lambda: sim.speed_kmh > 0.5, 20)
            assert phone.client is not None
            t0 = time.perf_counter()
            await phone.client.publish("retrotread/t1/cmd", b'{"action": "stop", "id": "S"}', qos=1)
            while b"\x08\x01" not in sim.writes:
                await asyncio.sleep(0)
            stop_ms = (time.perf_counter() - t0) * 1000
            # The stop reached the treadmill while the cue command was still speaking.
            assert speaker.done() == []
            pid = int(speaker.records()[0]["pid"])  # type: ignore[call-overload]
            assert alive(pid)
            await until(lambda: any(r["id"] == "S" for r in phone.on("cmd/result")))
            assert next(r for r in phone.on("cmd/result") if r["id"] == "S")["ok"] is True
            speaker.hold.unlink()
            await until(lambda: len(speaker.done()) >= 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    warm_up = "Walk forward at an easy pace. Rest your hands lightly on the side rails."
    assert speaker.done()[0] == ["phase_started", warm_up]
    print(f"stop published -> 08 01 at the simulated treadmill: {stop_ms:.1f} ms")


# ---------------------------------------------------------------------- configuration


def test_cues_config_defaults_and_choices(tmp_path: Path) -> None:
    c = load_config(None, {"HOME": str(tmp_path)}).cues
    assert (c.command, c.events, c.timeout_s) == (
        None,
        ["phase_started", "cue", "turn_required"],
        30.0,
    )
    path = tmp_path / "c.toml"
    path.write_text(
        '[cues]\ncommand = "espeak-ng -v en {text}"\nevents = ["turn_required"]\ntimeout_s = 5\n'
    )
    c = load_config(path, {}).cues
    assert (c.command, c.events, c.timeout_s) == ("espeak-ng -v en {text}", ["turn_required"], 5)
    env = {"RETROTREAD_CUES__COMMAND": "spd-say {text}"}
    assert load_config(path, env).cues.command == "spd-say {text}"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'command = "espeak-ng \\"{text}"',
            "cues.command = 'espeak-ng \"{text}': cannot split into arguments: "
            "No closing quotation",
        ),
        ('command = ""', "cues.command = '': is empty"),
        (
            'command = "say {words}"',
            "cues.command = 'say {words}': argument '{words}': unknown placeholder {words} "
            "(use {text} or {type})",
        ),
        (
            'command = "say {text"',
            "cues.command = 'say {text': argument '{text': expected '}' before end of string "
            "(write {{ or }} for a brace)",
        ),
        (
            "command = \"sh -c 'espeak-ng {text}'\"",
            "cues.command = \"sh -c 'espeak-ng {text}'\": puts {text} into a shell command line, "
            "where cue text would run as shell code; a shell script reads the text from "
            "standard input instead",
        ),
        (
            'events = ["cue", "command_refused"]',
            "cues.events = ['cue', 'command_refused']: unknown event type 'command_refused' "
            "(one of: session_started, phase_started, cue, turn_required, override, link_lost, "
            "link_restored, stopped_by_treadmill, session_finished, error, recording_gap, "
            "hr_cap)",
        ),
        ("timeout_s = 0", "cues.timeout_s = 0: Input should be greater than 0"),
        ('voice = "en"', "unknown key 'cues.voice' in [cues]"),
    ],
)
def test_bad_cues_config_is_refused_by_name(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[cues]\n{line}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, {})
    assert str(err.value) == f"{path}: {expected}"
