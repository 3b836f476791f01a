"""CPU per telemetry sample, end to end: notification -> decode -> session log -> MQTT.

The daemon runs as the service does (``retrotread run -c FILE``) in its own process, on
the real bleak, with a simulated treadmill behind the fake BlueZ sending Treadmill Data at
``--rates`` (Hz) and a session running: every sample arrives as a D-Bus signal, is
decoded, goes through the runner, is written to the session log (its raw frame too) and
published. The daemon's process CPU over 5 s windows is divided by the telemetry messages
a subscriber received in the same window: microseconds of CPU per sample, median and p99.
That counts everything the daemon does in a session (the runner's 4 Hz tick, setpoints,
state) spread over the samples; at 4 Hz that is much of it, hence a faster rate too, and
the cost of one more sample: the difference between two rates' CPU per second, divided by
the difference in samples per second.

``--profile`` runs the daemon once more, at the last rate, under a sampling profiler
(``_profiled.py``: the Python stack at every profiling tick of process CPU, during the
measuring window only) and prints where the CPU goes: each stack charged to one stage of
the hot path, in µs per sample, and the functions with the most samples of their own.

Floors: the same machine's CPU, at the last rate, for a bare aiomqtt QoS 0 publish of a
telemetry payload, for the same MQTT packet written straight to the broker's socket (the
least any process that relays samples to MQTT spends), and for the paced wake-up alone.
An event loop going idle and waking up costs CPU, far more in a virtual machine, and code
that runs after an idle gap runs slower than the same code run again at once (its caches
are cold): on the development machine a wake-up alone was ~320 µs, and the socket floor
~400 µs a sample. The daemon's figure above the socket floor is its own work per sample.

Run: .venv/bin/python bench/sample_cpu.py [--rates 4 50] [--seconds 60] [--profile [FILE]]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path

import _common
from _daemon import connected, daemon_over_bluez, windows
from retrotread.mqtt.client import mqtt_client, paho_of
from retrotread.servers import free_port, mosquitto
from retrotread.sim.treadmill import SimConfig, SimTreadmill

WINDOW_S = 5.0

Frame = tuple[str, str]

# Each profiled stack is charged to the first stage with a frame in it (file path ends
# with, function name or "" for any): the most specific stages first.
STAGES: list[tuple[str, list[tuple[str, str]]]] = [
    ("FTMS codec: decode the frame", [("retrotread/ftms/treadmill_data.py", "")]),
    ("session log: JSON lines (raw frame, sample), write", [("retrotread/session/log.py", "")]),
    (
        "MQTT: payload to JSON, quiet-idle filter, queue",
        [("retrotread/mqtt/bridge.py", "output"), ("retrotread/service/quiet.py", "")],
    ),
    (
        "MQTT: publish (bridge task, aiomqtt, paho, socket)",
        [("/aiomqtt/", ""), ("/paho/", ""), ("retrotread/mqtt/bridge.py", "")],
    ),
    ("FTMS client: notification -> events", [("retrotread/link/", "")]),
    ("D-Bus in: bleak, dbus-fast", [("/bleak/", ""), ("/dbus_fast/", "")]),
    (
        "runner: the sample (state, stats, payload)",
        [("retrotread/service/runner.py", "_on_telemetry")],
    ),
    (
        "runner: engine tick, heart-rate governor, setpoints",
        [("retrotread/service/runner.py", "_advance")],
    ),
    ("runner: its loop (wake-up, dispatch)", [("retrotread/service/runner.py", "")]),
    (
        "clock sleeps begun, cancelled (runner tick, watchdog)",
        [("retrotread/clock.py", "sleep")],
    ),
    ("other retrotread", [("/retrotread/", "")]),
    ("event loop (asyncio: callbacks, tasks, timers)", [("/asyncio/", ""), ("selectors.py", "")]),
]


# The command line's frames (``main`` -> ``asyncio.run``) are under every stack.
OUTER = "retrotread/cli/"


def stage_of(stack: list[Frame]) -> str:
    stack = [(path, name) for path, name in stack if OUTER not in path]
    for label, marks in STAGES:
        for file_end, func in marks:
            for path, name in stack:
                if file_end in path and func in ("", name):
                    return label
    return "other"


def sim_at(rate_hz: float) -> SimTreadmill:
    return SimTreadmill(SimConfig(pre_workout_s=0.5, data_interval_s=1.0 / rate_hz))


async def one_rate(
    rate_hz: float, seconds: float, tmp: Path, profile: Path | None
) -> tuple[list[float], float, int]:
    """µs per sample of each window, CPU seconds per second, samples in the windows."""
    sim = sim_at(rate_hz)
    async with daemon_over_bluez(tmp, [sim], sim.address, profile=profile) as daemon:
        await daemon.wait_for("state", connected, timeout=120)
        sent = await daemon.command(b'{"action": "start", "profile": "build-up"}')
        await daemon.wait_for(
            "telemetry", lambda p: (json.loads(p)["speed_kmh"] or 0) > 0, sent, timeout=60
        )
        await asyncio.sleep(2)
        if profile is not None:
            daemon.proc.send_signal(signal.SIGUSR1)  # profile the window only
        rows, start, end = await windows(daemon, seconds, WINDOW_S)
        if profile is not None:
            daemon.proc.send_signal(signal.SIGUSR2)
        topic = f"{daemon.base}/telemetry"
        per_sample, t_prev = [], start
        for cpu, _wall, t in rows:
            n = daemon.count(t_prev, t, topic)
            if n:
                per_sample.append(cpu / n * 1e6)
            t_prev = t
        samples = daemon.count(start, end, topic)
        cpu_total = sum(cpu for cpu, _, _ in rows)
        state = [m for m in daemon.messages if m.topic == f"{daemon.base}/state"]
        running = json.loads(state[-1].payload)["state"] if state else "?"
        print(
            f"  {rate_hz:g} Hz{' (profiled)' if profile else ''}: {samples} samples in "
            f"{end - start:.0f} s, {cpu_total:.2f} CPU-s, session {running}",
            flush=True,
        )
    return per_sample, cpu_total / (end - start), samples


def print_profile(path: Path, us_per_sample: float) -> None:
    stages: collections.Counter[str] = collections.Counter()
    own: collections.Counter[Frame] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        count, raw = json.loads(line)
        stack = [(str(f), str(n)) for f, n in raw]
        stages[stage_of(stack)] += count
        own[stack[0]] += count
        total += count
    if not total:
        print("\n(the profiler took no samples)")
        return
    print(
        f"\nWhere the CPU goes ({total} profile samples over the window; each stack charged to "
        f"one stage; µs = share x the {us_per_sample:.0f} µs per sample of the profiled run)"
    )
    print(f"{'stage':<56} {'share':>7} {'µs/sample':>10}")
    for label, count in stages.most_common():
        share = count / total
        print(f"{label:<56} {share:>6.1%} {share * us_per_sample:>10.0f}")
    print(f"\n{'functions with the most samples of their own':<70} {'share':>7}")
    for (file, name), count in own.most_common(20):
        where = "/".join(Path(file).parts[-2:])
        print(f"{where + ' ' + name:<70} {count / total:>6.1%}")


PAYLOAD = (
    b'{"ts":1764637200.123,"session_id":"20261202-010000-6f1c2a","elapsed_s":12.34,'
    b'"speed_kmh":3.2,"incline_pct":0.5,"distance_m":12.3,"target_speed_kmh":3.2,'
    b'"target_incline_pct":0.5,"phase":"warm-up","direction":"forward","heart_rate_bpm":92,'
    b'"energy_kcal":3,"heart_rate_source":"treadmill","hr_cap_state":"off"}'
)


async def floors(rate_hz: float, seconds: float, tmp: Path) -> dict[str, list[float]]:
    """This process's CPU per message at ``rate_hz``, per 1 s batch (µs): a bare aiomqtt
    QoS 0 publish of a telemetry-sized payload; the same packet written straight to the
    broker's socket (no MQTT library: what any relay must at least spend); the paced
    wake-up alone."""
    per = max(1, round(rate_hz))
    out: dict[str, list[float]] = {"aiomqtt": [], "socket": [], "wake": []}
    packet = _common.mqtt_packet(0x30, _common.mqtt_str("bench/telemetry") + PAYLOAD)
    port = free_port()
    with mosquitto(tmp, port):
        async with mqtt_client("127.0.0.1", port) as client:
            paho = paho_of(client)
            assert paho is not None
            sock = paho.socket()
            assert sock is not None
            for _ in range(int(seconds)):
                for case in out:
                    t0 = time.process_time()
                    for _ in range(per):
                        if case == "aiomqtt":
                            await client.publish("bench/telemetry", PAYLOAD, qos=0)
                        elif case == "socket":
                            sock.send(packet)
                        await asyncio.sleep(1.0 / rate_hz)
                    out[case].append((time.process_time() - t0) / per * 1e6)
    return out


async def main(rates: list[float], seconds: float, profile: str | None) -> None:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, rate in enumerate(rates):
            case_dir = Path(tmp) / f"rate-{i}"
            case_dir.mkdir()
            results.append((rate, *await one_rate(rate, seconds, case_dir, None)))
        _common.table(
            f"CPU per telemetry sample, notification -> decode -> log -> MQTT ({WINDOW_S:g} s "
            "windows; fake BlueZ, real bleak)",
            [(f"session at {r:g} Hz (µs per sample)", values, "") for r, values, _, _ in results],
        )
        for rate, values, per_s, _ in results:
            print(
                f"  {rate:g} Hz: median {statistics.median(values):.0f} µs per sample; "
                f"{per_s * 3600:.0f} CPU-s per hour of session"
            )
        if len(results) >= 2:
            (r0, _, c0, _), (r1, _, c1, _) = results[0], results[-1]
            marginal = (c1 - c0) / (r1 - r0) * 1e6
            print(f"  one more sample per second: {marginal:.0f} µs of CPU ({r0:g} -> {r1:g} Hz)")
        floor_dir = Path(tmp) / "floor"
        floor_dir.mkdir()
        floor = await floors(rates[-1], min(seconds, 20.0), floor_dir)
        _common.table(
            f"Floors on this machine at {rates[-1]:g} per second (this process's CPU, 1 s batches)",
            [
                ("bare aiomqtt publish, QoS 0, + the wake-up (µs)", floor["aiomqtt"], ""),
                ("the same packet sent on the socket + the wake-up (µs)", floor["socket"], ""),
                ("the paced wake-up alone (asyncio.sleep) (µs)", floor["wake"], ""),
            ],
        )
        daemon = statistics.median(results[-1][1])
        wire = statistics.median(floor["socket"])
        print(
            f"  the daemon at {rates[-1]:g} Hz above the socket floor: {daemon - wire:.0f} µs per "
            f"sample ({daemon:.0f} - {wire:.0f}; medians): its own work, bleak's D-Bus parsing "
            "and the session log included"
        )
        if profile is not None:
            case_dir = Path(tmp) / "profile"
            case_dir.mkdir()
            prof = Path(profile) if profile else case_dir / "daemon.prof"
            values, _, _ = await one_rate(rates[-1], seconds, case_dir, prof)
            print_profile(prof, statistics.median(values))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", type=float, nargs="+", default=[4.0, 50.0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument(
        "--profile", nargs="?", const="", metavar="FILE", help="profile (and keep it in FILE)"
    )
    a = ap.parse_args()
    asyncio.run(main(a.rates, a.seconds, a.profile))
