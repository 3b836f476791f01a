"""``retrotread probe ADDRESS``: connect and print what a treadmill supports (or what a
heart-rate strap is), then live data."""

from __future__ import annotations

import argparse
import asyncio
import json

from retrotread.clock import RealClock
from retrotread.errors import WrongDevice
from retrotread.ftms.heart_rate import HeartRateMeasurement
from retrotread.link.bleak_transport import BleakTransport
from retrotread.link.events import (
    Capabilities,
    LinkEvent,
    StatusChanged,
    Telemetry,
    TrainingChanged,
)
from retrotread.link.ftms_client import FtmsTreadmill
from retrotread.link.strap import HeartRateSample, HeartRateStrap


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "address", metavar="ADDRESS", help="Bluetooth address, e.g. C0:FF:EE:00:00:01"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="seconds of live data (default 5)"
    )
    parser.add_argument("--adapter", help="Bluetooth adapter, e.g. hci0")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to look for it")
    parser.add_argument("--pace-width", type=int, choices=[1, 2], default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON document")


async def _run(args: argparse.Namespace) -> int:
    transport = BleakTransport(
        address=args.address, adapter=args.adapter, scan_timeout_s=args.timeout
    )
    treadmill = FtmsTreadmill(transport, RealClock(), pace_width=args.pace_width)
    events: list[LinkEvent] = []
    treadmill.add_listener(events.append)
    try:
        caps = await treadmill.connect()
    except WrongDevice:
        # Not a treadmill: a heart-rate strap, perhaps (for ``[heart_rate] address``).
        return await _probe_strap(args)
    try:
        if not args.json:
            _print_caps(caps)
            print(f"\nlive data for {args.seconds:g} s:")
        printed = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + args.seconds
        while loop.time() < end and treadmill.is_connected:
            await asyncio.sleep(0.1)
            if not args.json:
                for e in events[printed:]:
                    line = _describe(e)
                    if line:
                        print("  " + line)
                printed = len(events)
        if args.json:
            doc = caps.to_dict()
            doc["telemetry"] = [e.record.to_dict() for e in events if isinstance(e, Telemetry)]
            print(json.dumps(doc, indent=2))
    finally:
        await treadmill.disconnect()
    return 0


async def _probe_strap(args: argparse.Namespace) -> int:
    transport = BleakTransport(
        address=args.address, adapter=args.adapter, scan_timeout_s=args.timeout, kind="strap"
    )
    strap = HeartRateStrap(transport, RealClock())
    samples: list[HeartRateSample] = []
    strap.add_listener(lambda e: samples.append(e) if isinstance(e, HeartRateSample) else None)
    try:
        info = await strap.connect()
        if not args.json:
            print(f"name:     {info.name}")
            print(f"address:  {info.address}")
            print("kind:     heart-rate strap (Heart Rate Service)")
            for key, value in info.device_info.items():
                print(f"{key + ':':<10}{value}")
            print(f"location: {info.location or 'not reported'}")
            for w in info.warnings:
                print(f"warning:  {w}")
            print(f"\nlive data for {args.seconds:g} s:")
        printed = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + args.seconds
        while loop.time() < end and strap.is_connected:
            await asyncio.sleep(0.1)
            if not args.json:
                for sample in samples[printed:]:
                    print("  " + _describe_heart(sample.measurement))
                printed = len(samples)
        if args.json:
            doc = {"kind": "strap", **info.to_dict()}
            doc["heart_rate"] = [s.measurement.to_dict() for s in samples]
            print(json.dumps(doc, indent=2))
    finally:
        await strap.disconnect()
    return 0


def _describe_heart(m: HeartRateMeasurement) -> str:
    parts = [f"heart rate {m.heart_rate_bpm} bpm"]
    if m.sensor_contact is not None:
        parts.append("contact" if m.sensor_contact else "NO skin contact")
    if m.rr_intervals_ms:
        parts.append("RR " + " ".join(f"{ms:.0f}" for ms in m.rr_intervals_ms) + " ms")
    if m.energy_expended_kj is not None:
        parts.append(f"energy {m.energy_expended_kj} kJ")
    return ", ".join(parts)


def _print_caps(caps: Capabilities) -> None:
    print(f"name:     {caps.name}")
    print(f"address:  {caps.address}")
    for key, value in caps.device_info.items():
        print(f"{key + ':':<10}{value}")
    for label, r, able, unit in (
        ("speed", caps.speed_range, caps.can_set_speed, "km/h"),
        ("incline", caps.incline_range, caps.can_set_incline, "%"),
    ):
        span = f", {r.minimum:g}-{r.maximum:g} {unit} by {r.increment:g}" if r else ""
        print(f"{label + ':':<10}{'settable' if able else 'not settable'}{span}")
    if caps.features is not None:
        feats = caps.features.to_dict()
        print("features: " + ", ".join(feats["machine_features"]))
        print("targets:  " + ", ".join(feats["target_setting_features"]))
    for w in caps.warnings:
        print(f"warning:  {w}")


def _describe(e: LinkEvent) -> str | None:
    if isinstance(e, Telemetry):
        r = e.record
        parts = [f"speed {r.speed_kmh} km/h"]
        if r.incline_pct is not None:
            parts.append(f"incline {r.incline_pct} %")
        if r.distance_m is not None:
            parts.append(f"distance {r.distance_m} m")
        if r.heart_rate_bpm is not None:
            parts.append(f"heart rate {r.heart_rate_bpm} bpm")
        return ", ".join(parts)
    if isinstance(e, StatusChanged):
        return f"status: {e.status.name}"
    if isinstance(e, TrainingChanged):
        return f"training status: {e.training.name}"
    return None


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
