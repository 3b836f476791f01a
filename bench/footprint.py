"""The daemon's footprint: CPU, memory and MQTT messages, idle and in a session.

The daemon runs as the service does (``retrotread run -c FILE``) in its own process, and
reaches a simulated treadmill through the fake BlueZ with the real bleak (the simulator,
the fake BlueZ and dbus-daemon run in other processes, as the radio, bluetoothd and the
system bus do on a real box). One daemon goes through four cases:

- treadmill connected, belt still (nobody walking): most of the daemon's day;
- a session at the treadmill's 4 Hz;
- no treadmill (switched off): the daemon listens for its advertisements, nothing else
  advertising nearby;
- the same with ``--neighbours`` other Bluetooth devices advertising nearby (phones,
  watches, tags, twice a second each), whose advertisements the daemon's scan hears too.

For each: CPU as CPU-seconds per hour (and %) over 10 s windows, RSS, and the MQTT
messages the daemon published per hour, per topic. Run:
.venv/bin/python bench/footprint.py [--idle-seconds 120] [--session-seconds 30] [--neighbours 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import _common
from _daemon import DaemonProcess, connected, daemon_over_bluez, disconnected, windows
from retrotread.errors import ATT_REQUEST_NOT_SUPPORTED, AttError
from retrotread.sim.gatt import (
    Advertisement,
    ConnectRefused,
    DisconnectSink,
    GattService,
    NotifySink,
    Subscription,
)
from retrotread.sim.treadmill import SimConfig, SimTreadmill

WINDOW_S = 10.0


class Neighbour:
    """Another Bluetooth device nearby: it advertises (when ``on``) and takes no connection."""

    services: tuple[GattService, ...] = ()
    connected = False

    def __init__(self, i: int) -> None:
        self._address = f"D0:0D:5E:00:00:{i:02X}"
        self._adv = Advertisement(
            local_name=f"neighbour-{i}",
            service_uuids=["0000fe9f-0000-1000-8000-00805f9b34fb"],
            manufacturer_data={0x004C: bytes([0x10, 0x05, i, 0x1C, 0x00, 0x00, 0x00])},
            rssi=-70 - i % 20,
        )
        self.on = False

    @property
    def address(self) -> str:
        return self._address

    def advertisement(self) -> Advertisement | None:
        return self._adv if self.on else None

    def connect(self, sink: NotifySink, on_disconnect: DisconnectSink) -> None:
        raise ConnectRefused("not connectable")

    def disconnect(self) -> None:
        return None

    def read(self, uuid: str) -> bytes:
        raise AttError(ATT_REQUEST_NOT_SUPPORTED, "no GATT server")

    def write(self, uuid: str, data: bytes, with_response: bool = True) -> None:
        raise AttError(ATT_REQUEST_NOT_SUPPORTED, "no GATT server")

    def subscribe(self, uuid: str, mode: Subscription) -> None:
        raise AttError(ATT_REQUEST_NOT_SUPPORTED, "no GATT server")


@dataclass
class Case:
    name: str
    tag: str
    cpu_s_per_h: list[float] = field(default_factory=list)
    cpu_pct: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    per_hour: dict[str, float] = field(default_factory=dict)
    us_per_sample: list[float] = field(default_factory=list)


async def measure(
    daemon: DaemonProcess, name: str, tag: str, seconds: float, *, session: bool = False
) -> Case:
    case = Case(name, tag)
    rows, start, end = await windows(daemon, seconds, WINDOW_S)
    telemetry = f"{daemon.base}/telemetry"
    t_prev = start
    for cpu, wall, t in rows:
        case.cpu_s_per_h.append(cpu / wall * 3600)
        case.cpu_pct.append(cpu / wall * 100)
        case.rss_mib.append(daemon.rss_mib())
        samples = daemon.count(t_prev, t, telemetry)
        if session and samples:  # outside a session most samples are held back
            case.us_per_sample.append(cpu / samples * 1e6)
        t_prev = t
    hours = (end - start) / 3600
    case.per_hour = {topic: n / hours for topic, n in sorted(daemon.per_topic(start, end).items())}
    print(f"  measured: {name}", flush=True)
    return case


def moving(telemetry: bytes) -> bool:
    return bool((json.loads(telemetry)["speed_kmh"] or 0) > 0)


async def run(idle_s: float, session_s: float, neighbours: int, tmp: Path) -> list[Case]:
    # Nobody on the belt: no hand on the pulse grips, no heart rate.
    sim = SimTreadmill(SimConfig(pre_workout_s=0.5, heart_rate=False))
    others = [Neighbour(i + 1) for i in range(neighbours)]
    cases = []
    async with daemon_over_bluez(tmp, [sim, *others], sim.address) as daemon:
        await daemon.wait_for("state", connected)
        await asyncio.sleep(5)  # discovery, retained state, the first samples: settled
        cases.append(await measure(daemon, "treadmill connected, belt still", "still", idle_s))

        sent = await daemon.command(b'{"action": "start", "profile": "build-up"}')
        await daemon.wait_for("telemetry", moving, sent)
        cases.append(
            await measure(daemon, "session, 4 Hz telemetry", "session", session_s, session=True)
        )
        sent = await daemon.command(b'{"action": "stop"}')
        await daemon.wait_for("state", lambda p: json.loads(p)["session_id"] is None, sent)

        sent = time.monotonic()
        sim.go_out_of_reach()
        await daemon.wait_for("state", disconnected, sent)
        # The reconnect try that the drop starts gives up after the scan timeout (10 s);
        # from then on the daemon only listens.
        await asyncio.sleep(15)
        cases.append(
            await measure(daemon, "no treadmill (listening), nothing around", "absent", idle_s)
        )
        if others:
            for other in others:
                other.on = True
            await asyncio.sleep(2)
            label = f"no treadmill, {neighbours} other devices advertising"
            cases.append(await measure(daemon, label, f"absent+{neighbours}", idle_s))
    return cases


async def main(idle_s: float, session_s: float, neighbours: int) -> None:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        cases = await run(idle_s, session_s, neighbours, Path(tmp))
    rows: list[tuple[str, list[float], str]] = []
    for c in cases:
        rows.append((f"{c.name}: CPU-s/h", c.cpu_s_per_h, ""))
    for c in cases:
        rows.append((f"{c.name}: CPU %", c.cpu_pct, ""))
    for c in cases:
        rows.append((f"{c.name}: RSS MiB", c.rss_mib, ""))
    for c in cases:
        if c.us_per_sample:
            rows.append((f"{c.name}: CPU per sample µs", c.us_per_sample, ""))
    _common.table(
        f"Daemon process footprint ({WINDOW_S:g} s windows; fake BlueZ, real bleak; "
        f"{time.monotonic() - t0:.0f} s in all)",
        rows,
    )
    topics = sorted({t for c in cases for t in c.per_hour})
    print("\nMQTT messages the daemon published per hour (counted over each case, scaled)")
    print("  " + "; ".join(f"{c.tag}: {c.name}" for c in cases))
    width = max([10, *(len(t) for t in topics)])
    print(f"{'topic':<{width}} " + " ".join(f"{c.tag:>12}" for c in cases))
    for topic in [*topics, "all topics"]:
        counts = [
            sum(c.per_hour.values()) if topic == "all topics" else c.per_hour.get(topic, 0)
            for c in cases
        ]
        print(f"{topic:<{width}} " + " ".join(f"{n:>12.0f}" for n in counts))
    idle = cases[0]
    if idle.cpu_s_per_h:
        print(
            f"\nidle (connected, still): median {statistics.median(idle.cpu_s_per_h):.1f} "
            "CPU-s per hour of this machine's CPU"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle-seconds", type=float, default=120.0)
    ap.add_argument("--session-seconds", type=float, default=30.0)
    ap.add_argument("--neighbours", type=int, default=10)
    a = ap.parse_args()
    asyncio.run(main(a.idle_seconds, a.session_seconds, a.neighbours))
