"""``retrotread scan``: nearby FTMS treadmills, whether speed and incline can be set, and
heart-rate straps."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from retrotread.clock import RealClock
from retrotread.errors import RetrotreadError
from retrotread.link.bleak_transport import BleakTransport, Found, scan
from retrotread.link.ftms_client import FtmsTreadmill


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=8.0, help="seconds to scan (default 8)")
    parser.add_argument("--adapter", help="Bluetooth adapter, e.g. hci0")
    parser.add_argument(
        "--no-connect",
        action="store_true",
        help="do not connect to read what each treadmill can do (faster)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


async def _capabilities(found: Found, adapter: str | None) -> tuple[bool | None, bool | None]:
    transport = BleakTransport(address=found.address, adapter=adapter, scan_timeout_s=5.0)
    treadmill = FtmsTreadmill(transport, RealClock())
    try:
        async with asyncio.timeout(20):
            caps = await treadmill.connect()
        return caps.can_set_speed, caps.can_set_incline
    except (RetrotreadError, TimeoutError):
        return None, None
    finally:
        await treadmill.disconnect()


async def _run(args: argparse.Namespace) -> int:
    found = await scan(args.timeout, args.adapter)
    treadmills = [f for f in found if f.kind == "treadmill" and f.is_treadmill is not False]
    straps = [
        {"name": f.name, "address": f.address, "rssi": f.rssi} for f in found if f.kind == "strap"
    ]
    rows: list[dict[str, Any]] = []
    for f in treadmills:
        speed: bool | None = None
        incline: bool | None = None
        if not args.no_connect:
            speed, incline = await _capabilities(f, args.adapter)
        rows.append(
            {
                "name": f.name,
                "address": f.address,
                "rssi": f.rssi,
                "speed": speed,
                "incline": incline,
            }
        )
    if args.json:
        # Treadmills as before; heart-rate straps after them, marked by "kind".
        print(json.dumps(rows + [{"kind": "strap", **s} for s in straps], indent=2))
        return 0 if rows or straps else 1
    if not rows:
        print(
            f"No FTMS treadmill found in {args.timeout:g} s. Is it switched on, in range, and not "
            "connected to another app?",
            file=sys.stderr,
        )
        _print_straps(straps)
        return 0 if straps else 1

    def yn(v: bool | None) -> str:
        return "?" if v is None else ("yes" if v else "no")

    print(f"{'NAME':<24} {'ADDRESS':<18} {'RSSI':>5}  {'SPEED':<5} {'INCLINE':<7}")
    for r in rows:
        rssi = "" if r["rssi"] is None else str(r["rssi"])
        print(
            f"{(r['name'] or '(no name)'):<24} {r['address']:<18} {rssi:>5}  "
            f"{yn(r['speed']):<5} {yn(r['incline']):<7}"
        )
    _print_straps(straps)
    return 0


def _print_straps(straps: list[dict[str, Any]]) -> None:
    """Heart-rate straps, for ``[heart_rate] address`` (none: nothing printed)."""
    if not straps:
        return
    print(f"\n{'HEART-RATE STRAP':<24} {'ADDRESS':<18} {'RSSI':>5}")
    for s in straps:
        rssi = "" if s["rssi"] is None else str(s["rssi"])
        print(f"{(s['name'] or '(no name)'):<24} {s['address']:<18} {rssi:>5}")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
