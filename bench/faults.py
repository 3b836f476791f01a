"""The fault suite of issue 11: an operator's bad day, at scale, with figures.

  kill -9        the daemon (a process) killed mid-session: is every log readable, and
                 does it hold every telemetry sample MQTT had seen?
  broker         Mosquitto restarted mid-session: log records lost, retained topics back
                 for a new subscriber, seconds until the daemon is connected again
  ble drops      the Bluetooth link dropped mid-session (real bleak, fake BlueZ):
                 reconnects, and belts found running again without a resume (must be 0)
  fuzz + burst   garbage on <base>/cmd (the three payloads that used to kill the daemon
                 among them), then a burst of commands: results received / sent, daemon
                 alive, its RSS before and after
  disk full      the sessions directory fills up mid-session, then has room again: is the
                 gap marked, is the log closed with its footer

Run: .venv/bin/python bench/faults.py            (the full run, a few minutes)
     .venv/bin/python bench/faults.py --quick    (the bounded run the test suite does)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

import _common
from retrotread.config import Config, MqttConfig, SessionsConfig
from retrotread.mqtt.client import mqtt_client
from retrotread.servers import ServerProcess, free_port, mosquitto
from retrotread.service.app import Daemon, clock_for
from retrotread.session.log import SessionLogError, list_sessions, read_session
from retrotread.sim.inprocess import InProcessTransport
from retrotread.sim.treadmill import SimConfig, SimTreadmill

ROOT = Path(__file__).resolve().parents[1]
BASE = "retrotread/bench"


@dataclass
class Row:
    """One experiment: its figures for the table, and whether they are what they must be."""

    name: str
    runs: int
    figures: dict[str, Any] = field(default_factory=dict)
    ok: bool = True
    note: str = ""


# ---------------------------------------------------------------------------- helpers


async def until(pred: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


@contextlib.contextmanager
def broker(workdir: Path) -> Iterator[ServerProcess]:
    # Generous queues: the figures are about the daemon, not Mosquitto's per-client limits.
    extra = ["max_queued_messages 1000000", "max_inflight_messages 0"]
    port = free_port()
    with mosquitto(workdir, port, extra) as server:
        yield server


def port_of(server: ServerProcess) -> int:
    address = server.address
    assert isinstance(address, tuple)
    return address[1]


class Listener:
    """An MQTT client on ``<base>/#`` that keeps what it hears, parsed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.got: list[tuple[str, Any]] = []
        self.client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def _run(self) -> None:
        async with mqtt_client("127.0.0.1", self.port, max_queued_incoming_messages=0) as c:
            self.client = c
            await c.subscribe(f"{BASE}/#", qos=1)
            self._ready.set()
            async for m in c.messages:
                topic = str(m.topic)
                if topic.endswith("/cmd"):
                    continue  # our own commands
                raw = m.payload if isinstance(m.payload, bytes | bytearray) else b""
                try:
                    value: Any = json.loads(raw) if raw and raw[:1] in b"[{" else raw.decode()
                except (ValueError, RecursionError):
                    value = None
                self.got.append((topic.removeprefix(BASE + "/"), value))

    async def __aenter__(self) -> Listener:
        self._task = asyncio.create_task(self._run(), name="listener")
        await asyncio.wait_for(self._ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def on(self, topic: str) -> list[Any]:
        return [v for t, v in self.got if t == topic]

    async def send(self, payload: bytes, qos: int = 1) -> None:
        assert self.client is not None
        await self.client.publish(f"{BASE}/cmd", payload, qos=qos)


def write_config(path: Path, port: int, sessions: Path) -> Path:
    path.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ndevice_id = "bench"\n'
        f'[sessions]\ndir = "{sessions}"\n'
    )
    return path


def start_daemon(config: Path, log: Path, speedup: float = 1.0) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "retrotread.cli", "--log-level", "INFO", "run", "--simulate"]
    if speedup != 1.0:
        argv += ["--speedup", str(speedup)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETROTREAD_")}
    with open(log, "ab") as err:
        return subprocess.Popen(
            [*argv, "-c", str(config)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def serving_now(phone: Listener) -> bool:
    """This daemon is up: "online", then a state saying the treadmill is connected.

    The retained messages of a killed predecessor (its last state, the will's "offline")
    come first and do not count.
    """
    online = [i for i, (t, v) in enumerate(phone.got) if t == "availability" and v == "online"]
    return bool(online) and any(
        t == "state" and isinstance(v, dict) and v.get("connected")
        for t, v in phone.got[online[-1] :]
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_process_daemon(
    config: Config, speedup: float, sim: SimTreadmill | None = None
) -> tuple[Daemon, SimTreadmill]:
    sim = sim or SimTreadmill(SimConfig(pre_workout_s=1.0))
    clock = clock_for(config, speedup, simulated=True)
    return Daemon(config, InProcessTransport(sim), clock, sim=sim), sim


@contextlib.asynccontextmanager
async def serving(daemon: Daemon) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop), name="daemon")
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


# ---------------------------------------------------------------------------- kill -9


async def kill9(runs: int, tmp: Path) -> Row:
    row = Row("kill -9 mid-session", runs)
    sessions = tmp / "sessions"
    readable = seen = lost = 0
    with broker(tmp) as server:
        port = port_of(server)
        cfg = write_config(tmp / "kill.toml", port, sessions)
        rng = random.Random(9)
        for i in range(runs):
            async with Listener(port) as phone:
                proc = start_daemon(cfg, tmp / "kill.log", speedup=5.0)
                try:
                    if not await until(lambda: serving_now(phone), 30):
                        row.ok, row.note = False, "daemon did not come up"
                        break
                    await phone.send(
                        json.dumps({"action": "start", "profile": "build-up", "id": i}).encode()
                    )
                    if not await until(lambda: len(phone.on("telemetry")) > 20, 30):
                        row.ok, row.note = False, "no session telemetry"
                        break
                    await asyncio.sleep(rng.uniform(0.2, 1.5))
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(10)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                await asyncio.sleep(0.2)  # the last messages already on the wire
                sid = next((t["session_id"] for t in phone.on("telemetry") if t["session_id"]), "")
                on_mqtt = {
                    t["elapsed_s"] for t in phone.on("telemetry") if t and t["session_id"] == sid
                }
            newest = list_sessions(sessions)[-1]
            try:
                log = read_session(newest)
            except SessionLogError:
                continue
            if log.header is not None and log.header.get("session_id") == sid:
                readable += 1
            in_log = {r.get("elapsed_s") for r in log.of("telemetry")}
            seen += len(on_mqtt)
            lost += len(on_mqtt - in_log)
    row.figures = {"logs readable": f"{readable}/{runs}", "samples on MQTT": seen, "lost": lost}
    row.ok = row.ok and readable == runs and lost == 0 and seen > 0
    return row


# ---------------------------------------------------------------------------- broker restarts


async def broker_restarts(runs: int, tmp: Path) -> Row:
    row = Row("broker restarts mid-session", runs)
    sessions = tmp / "broker-sessions"
    recover: list[float] = []
    retained_ok = 0
    with broker(tmp) as server:
        port = port_of(server)
        config = Config(
            mqtt=MqttConfig(host="127.0.0.1", port=port, device_id="bench"),
            sessions=SessionsConfig(dir=sessions),
        )
        daemon, sim = in_process_daemon(config, 1.0)
        published: set[float] = set()
        counting = True

        def count(kind: str, payload: dict[str, Any]) -> None:
            if counting and kind == "telemetry" and payload.get("session_id"):
                published.add(payload["elapsed_s"])

        daemon.runner.add_listener(count)
        bridge = daemon.bridge
        assert bridge is not None
        async with serving(daemon):
            await until(lambda: daemon.treadmill.is_connected and bridge.connected, 20)
            await daemon.start_profile("build-up")
            await until(lambda: sim.speed_kmh > 0.3, 20)
            for _ in range(runs):
                server.stop()
                await until(lambda: not bridge.connected, 10)
                await asyncio.sleep(0.5)
                server.start()
                back_from = time.monotonic()
                if not await until(lambda: bridge.connected, 60):
                    row.ok, row.note = False, "the daemon did not reconnect"
                    break
                recover.append(time.monotonic() - back_from)
                async with Listener(port) as fresh:
                    want = {"availability", "state", "profiles"}
                    await until(lambda w=want: w <= {t for t, _ in fresh.got}, 5)
                    if (
                        want <= {t for t, _ in fresh.got}
                        and fresh.on("availability")[0] == "online"
                    ):
                        retained_ok += 1
            still_running = daemon.runner.state_name() in ("running", "finishing", "paused")
            log_path = daemon.runner.last_log
            counting = False
            await daemon.runner.stop()
        assert log_path is not None
        logged = {r.get("elapsed_s") for r in read_session(log_path).of("telemetry")}
    lost = len(published - logged)
    row.figures = {
        "samples": len(published),
        "records lost": lost,
        "retained back": f"{retained_ok}/{runs}",
        "s to reconnect (median/max)": f"{_median(recover):.1f}/{max(recover, default=0):.1f}",
        "profile kept running": still_running,
    }
    row.ok = row.ok and lost == 0 and bool(published) and retained_ok == runs and still_running
    return row


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else float("nan")


# ---------------------------------------------------------------------------- BLE drops


async def ble_drops(runs: int, tmp: Path) -> Row:
    from retrotread.link.bleak_transport import BleakTransport
    from retrotread.sim.bluez import FakeBlueZ
    from retrotread.sim.dbus_bus import PrivateBus

    row = Row("BLE drops mid-session (fake BlueZ)", runs)
    reconnects = restarted_alone = 0
    async with PrivateBus() as bus:
        saved = {k: os.environ.get(k) for k in bus.environ()}
        os.environ.update(bus.environ())
        try:
            sim = SimTreadmill(SimConfig(pre_workout_s=1.0))
            async with FakeBlueZ(bus_address=bus.address) as fake:
                fake.add_peripheral(sim)
                config = Config(
                    mqtt=MqttConfig(enabled=False), sessions=SessionsConfig(dir=tmp / "ble")
                )
                clock = clock_for(config, 10.0, simulated=True)
                transport = BleakTransport(address=sim.address, scan_timeout_s=5.0)
                daemon = Daemon(config, transport, clock, sim=sim, mqtt=False)
                async with serving(daemon):
                    await until(lambda: daemon.treadmill.is_connected, 30)
                    await daemon.start_profile("build-up")
                    await until(lambda: sim.speed_kmh > 0.3, 30)
                    for _ in range(runs):
                        losses = daemon.supervisor.losses
                        fake.drop_link(sim.address)
                        if not await until(
                            lambda n=losses: (
                                daemon.supervisor.losses > n and daemon.treadmill.is_connected
                            ),
                            30,
                        ):
                            row.ok, row.note = False, "no reconnect"
                            break
                        reconnects += 1
                        # SPEC §2: after a reconnect the belt waits for resume.
                        await until(lambda: daemon.runner.state_name() == "paused", 5)
                        await asyncio.sleep(0.3)
                        if sim.state == "running" and sim.speed_kmh > 0:
                            restarted_alone += 1
                        with contextlib.suppress(Exception):
                            await daemon.runner.resume()
                        await until(lambda: sim.speed_kmh > 0.3, 20)
                    await daemon.runner.stop()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    row.figures = {
        "reconnects": f"{reconnects}/{runs}",
        "belt restarts without resume": restarted_alone,
    }
    row.ok = row.ok and reconnects == runs and restarted_alone == 0
    return row


# ---------------------------------------------------------------------------- fuzz + burst

DEEP = b"[" * 2000 + b"]" * 2000
HUGE_INT = b'{"action": "set", "speed_kmh": ' + b"7" * 400 + b"}"
SURROGATE_DANCE = b'{"action": "dance", "id": "\\ud800"}'
SURROGATE_PAUSE = b'{"action": "pause", "id": "\\ud800"}'
CRASHERS = [DEEP, HUGE_INT, SURROGATE_DANCE, SURROGATE_PAUSE]
ACTIONS = ["start", "stop", "pause", "resume", "finish", "skip", "set", "dance", "", "START"]


def fuzz_payloads(n: int, rng: random.Random) -> list[bytes]:
    """``n`` payloads: the crashers, then broken JSON, wrong types, huge and odd values."""

    def value() -> Any:
        return rng.choice(
            [
                None,
                True,
                rng.randint(-(10**6), 10**6),
                rng.uniform(-1e6, 1e6),
                "x" * rng.randint(0, 300),
                [],
                {"a": [1, {"b": None}]},
                "first-steps",
                rng.random() * 40,
            ]
        )

    def command() -> dict[str, Any]:
        cmd: dict[str, Any] = {"action": rng.choice(ACTIONS)}
        for key in rng.sample(["id", "profile", "speed_kmh", "incline_pct", "extra"], 2):
            cmd[key] = value()
        return cmd

    def one() -> bytes:
        kind = rng.randrange(12)
        if kind == 0:
            return rng.randbytes(rng.randint(0, 200))
        if kind == 1:
            text = json.dumps(command())
            return text[: rng.randint(0, len(text))].encode()
        if kind == 2:
            depth = rng.randint(5, 3000)
            return b'{"action": "stop", "id": ' + b"[" * depth + b"]" * depth + b"}"
        if kind == 3:
            digits = rng.randint(14, 2000)
            return b'{"action": "set", "speed_kmh": ' + b"9" * digits + b"}"
        if kind == 4:
            lit = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"])
            return b'{"action": "set", "speed_kmh": ' + lit + b', "id": 1}'
        if kind == 5:
            cp = rng.randint(0xD800, 0xDFFF)
            where = rng.choice(["id", "action", "profile"])
            return f'{{"action": "pause", "{where}": "\\u{cp:04x}"}}'.encode()
        if kind == 6:
            return json.dumps({"action": "start", "profile": "p" * rng.randint(100, 6000)}).encode()
        if kind == 7:
            return json.dumps(value()).encode()
        if kind == 8:
            return json.dumps(command(), ensure_ascii=False).encode("utf-8", "surrogatepass")
        return json.dumps(command()).encode()

    payloads = list(CRASHERS)
    while len(payloads) < n:
        payloads.append(one())
    return payloads


async def raw_burst(port: int, topic: str, payloads: list[bytes]) -> float:
    """Publish ``payloads`` (QoS 0) in one write on a bare MQTT connection: a real burst,
    as fast as the loopback takes it, with no client library pacing it. Seconds taken."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connect = _common.mqtt_str("MQTT") + bytes([4, 0x02]) + (30).to_bytes(2, "big")
    writer.write(_common.mqtt_packet(0x10, connect + _common.mqtt_str("bench-burst")))
    await writer.drain()
    await reader.readexactly(4)  # CONNACK
    started = time.monotonic()
    writer.write(b"".join(_common.mqtt_packet(0x30, _common.mqtt_str(topic) + p) for p in payloads))
    await writer.drain()
    took = time.monotonic() - started
    writer.write(_common.mqtt_packet(0xE0, b""))  # DISCONNECT
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    return took


async def fuzz_and_burst(n: int, burst: int, tmp: Path) -> Row:
    row = Row("fuzzed commands + burst", 1)
    rng = random.Random(11)
    with broker(tmp) as server:
        port = port_of(server)
        cfg = write_config(tmp / "fuzz.toml", port, tmp / "fuzz-sessions")
        async with Listener(port) as phone:
            proc = start_daemon(cfg, tmp / "fuzz.log")
            try:
                await until(lambda: serving_now(phone), 30)
                rss_before = rss_mib(proc.pid)
                payloads = fuzz_payloads(n, rng)
                for i in range(0, n, 20):  # 20 QoS 1 publishes in flight at a time
                    await asyncio.gather(*(phone.send(p) for p in payloads[i : i + 20]))
                await until(lambda: len(phone.on("cmd/result")) >= n, 120)
                fuzz_got = len(phone.on("cmd/result"))
                kinds = [
                    {"action": "pause"},
                    {"action": "resume"},
                    {"action": "set", "speed_kmh": 1.0},
                    {"action": "dance"},
                    {"action": "skip", "x": 1},
                ]
                burst_payloads = [
                    json.dumps({**kinds[i % 5], "id": f"b{i}"}).encode() for i in range(burst)
                ]
                burst_s = await raw_burst(port, f"{BASE}/cmd", burst_payloads)
                await until(lambda: len(phone.on("cmd/result")) >= n + burst, 120)
                await asyncio.sleep(1.0)  # anything extra would show now
                results = phone.on("cmd/result")
                burst_ids = [r["id"] for r in results[fuzz_got:] if isinstance(r, dict)]
                await phone.send(b'{"action": "stop", "id": "alive?"}')
                alive = proc.poll() is None and await until(
                    lambda: any(
                        isinstance(r, dict) and r["id"] == "alive?" for r in phone.on("cmd/result")
                    ),
                    20,
                )
                rss_after = rss_mib(proc.pid) if proc.poll() is None else float("nan")
            finally:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(20)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    tracebacks = (tmp / "fuzz.log").read_text().count("Traceback")
    row.figures = {
        "fuzz results/sent": f"{fuzz_got}/{n}",
        "burst results/sent": f"{len(results) - fuzz_got}/{burst} (sent in {burst_s:.3f} s)",
        "burst ids answered once": len(burst_ids) == len(set(burst_ids)) == burst,
        "answered 'slow down'": sum(
            "too many commands" in str(r.get("error")) for r in results if isinstance(r, dict)
        ),
        "alive": alive,
        "RSS MiB before/after": f"{rss_before:.0f}/{rss_after:.0f}",
        "tracebacks": tracebacks,
    }
    row.ok = (
        fuzz_got == n
        and len(results) - fuzz_got == burst
        and len(set(burst_ids)) == burst
        and alive
        and tracebacks == 0
    )
    return row


# ---------------------------------------------------------------------------- disk full


def mount_small_fs(mnt: Path) -> bool:
    """A 2 MB tmpfs at ``mnt``; False where mounting is not allowed (needs root)."""
    mnt.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
    )
    return done.returncode == 0


def unmount(mnt: Path) -> None:
    subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)


def fill(filler: Path) -> None:
    """Write ``filler`` until the disk refuses another byte."""
    for size in (4096, 1):
        with open(filler, "ab", buffering=0) as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * size)


async def disk_full(tmp: Path) -> Row:
    row = Row("disk full, then space back", 1)
    mnt = tmp / "small-fs"
    if not mount_small_fs(mnt):
        row.note = "skipped: mounting a small tmpfs needs root"
        return row
    try:
        with broker(tmp) as server:
            port = port_of(server)
            config = Config(
                mqtt=MqttConfig(host="127.0.0.1", port=port, device_id="bench"),
                sessions=SessionsConfig(dir=mnt / "sessions"),
            )
            daemon, sim = in_process_daemon(config, 5.0)
            statuses: list[str] = []
            daemon.add_health_listener(lambda h: statuses.append(h.status_line()))
            async with Listener(port) as phone, serving(daemon):
                await until(lambda: daemon.treadmill.is_connected, 20)
                await daemon.start_profile("build-up")
                await until(lambda: sim.speed_kmh > 0.3, 20)
                filler = mnt / "filler"
                fill(filler)
                session = daemon.runner.session
                assert session is not None
                noticed = await until(lambda: not session.log.recording, 20)
                await asyncio.sleep(2.0)
                filler.unlink()
                back = await until(lambda: session.log.recording, 20)
                await asyncio.sleep(0.5)
                log_path = daemon.runner.last_log
                await daemon.runner.stop()
                await until(lambda: daemon.runner.session is None, 10)
                said = any(
                    isinstance(e, dict) and e.get("reason") == "recording"
                    for e in phone.on("event")
                ) and any(
                    isinstance(v, dict) and v.get("recording") is False for v in phone.on("state")
                )
                marked = [e for e in phone.on("event") if e and e.get("type") == "recording_gap"]
        assert log_path is not None
        log = read_session(log_path)
        gaps = log.gaps
    finally:
        unmount(mnt)
    # A full disk still takes a short line that fits the file's last block, so one stretch
    # of trouble can be marked as a few gaps: each is a real hole, honestly marked.
    row.figures = {
        "noticed": noticed,
        "said on MQTT (event + state)": said,
        "in systemd STATUS": any("NOT RECORDING" in x for x in statuses),
        "recording again": back,
        "gaps marked": len(gaps),
        "s not recorded": round(sum(float(g["to"]) - float(g["from"]) for g in gaps), 1),
        "records lost": sum(int(g["lost"]) for g in gaps),
        "footer": log.footer is not None,
        "cut lines": int(log.cut_tail) + len(log.bad_lines),
    }
    row.figures["gap events on MQTT"] = len(marked)
    row.ok = (
        noticed
        and said
        and back
        and len(gaps) >= 1
        and len(marked) == len(gaps)
        and log.footer is not None
        and not log.cut_tail
    )
    return row


# ---------------------------------------------------------------------------- main


async def main(quick: bool) -> list[Row]:
    scale = (
        {"kill": 2, "broker": 2, "ble": 2, "fuzz": 600, "burst": 300}
        if quick
        else {"kill": 10, "broker": 20, "ble": 100, "fuzz": 10_000, "burst": 2_000}
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="retrotread-faults-") as t:
        tmp = Path(t)
        for name, run in (
            ("kill", lambda d: kill9(scale["kill"], d)),
            ("broker", lambda d: broker_restarts(scale["broker"], d)),
            ("ble", lambda d: ble_drops(scale["ble"], d)),
            ("fuzz", lambda d: fuzz_and_burst(scale["fuzz"], scale["burst"], d)),
            ("disk", disk_full),
        ):
            work = tmp / name
            work.mkdir()
            started = time.monotonic()
            row = await run(work)
            row.figures["took s"] = round(time.monotonic() - started, 1)
            rows.append(row)
            print_row(row)
            shutil.rmtree(work, ignore_errors=True)
    return rows


def print_row(row: Row) -> None:
    figures = ", ".join(f"{k}: {v}" for k, v in row.figures.items())
    verdict = "ok" if row.ok else "FAILED"
    print(
        f"{row.name:<32} x{row.runs:<5} {verdict:<6} {figures}{'  ' + row.note if row.note else ''}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the bounded run (CI)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    print(f"{'experiment':<32} {'runs':<6} {'result':<6} figures")
    rows = asyncio.run(main(args.quick))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    sys.exit(0 if all(r.ok for r in rows) else 1)
