"""Export a session for training apps: CSV, TCX (Garmin TrainingCenterDatabase v2), FIT.

Treadmill activities carry no GPS: time, distance, speed, heart rate, laps per phase.
FIT is written with fit-tool (a maintained library), never by hand.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from retrotread.session.analysis import PhaseStats, Sample, SessionView, heart_rates, mean_bpm

TCX_NS = "http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"
TPX_NS = "http://www.garmin.com/xmlschemas/ActivityExtension/v2"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"


def to_csv(view: SessionView) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(
        [
            "time",
            "t_s",
            "phase",
            "direction",
            "speed_kmh",
            "incline_pct",
            "distance_m",
            "heart_rate_bpm",
            "energy_kcal",
        ]
    )
    for s in view.samples:
        w.writerow(
            [
                _iso(view.started_at + timedelta(seconds=s.t)),
                f"{s.t:.2f}",
                s.phase or "",
                s.direction or "",
                _f(s.speed_kmh),
                _f(s.incline_pct),
                _f(s.distance_m),
                s.heart_rate_bpm or "",
                s.energy_kcal if s.energy_kcal is not None else "",
            ]
        )
    return out.getvalue()


def _f(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


def _iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def _laps(view: SessionView) -> list[tuple[PhaseStats | None, list[Sample]]]:
    """One lap per phase; a log without phases is one lap."""
    if not view.phases:
        return [(None, view.samples)]
    laps: list[tuple[PhaseStats | None, list[Sample]]] = []
    for ph in view.phases:
        laps.append((ph, [s for s in view.samples if ph.start_t <= s.t < ph.end_t]))
    return laps


def _xml_text(value: str) -> str:
    """``value`` without the characters XML 1.0 cannot hold at all, even escaped."""
    return _NOT_XML.sub("", value)


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def to_tcx(view: SessionView) -> str:
    """A TCX activity (Sport "Other": TCX has no walking) with one lap per phase.

    Built as an element tree, so the text is escaped and the document well-formed
    whatever a profile's name or title holds.
    """
    ET.register_namespace("", TCX_NS)
    ET.register_namespace("tpx", TPX_NS)
    ET.register_namespace("xsi", XSI_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None, ns: str = TCX_NS) -> ET.Element:
        child = ET.SubElement(parent, f"{{{ns}}}{tag}")
        if text is not None:
            child.text = _xml_text(text)
        return child

    def bpm(parent: ET.Element, tag: str, value: int) -> None:
        sub(sub(parent, tag), "Value", str(value))

    start = view.started_at
    root = ET.Element(f"{{{TCX_NS}}}TrainingCenterDatabase")
    activity = sub(sub(root, "Activities"), "Activity")
    activity.set("Sport", "Other")
    sub(activity, "Id", _iso(start))
    for ph, samples in _laps(view):
        t0 = ph.start_t if ph else (samples[0].t if samples else 0.0)
        dur = ph.duration_s if ph else (samples[-1].t - samples[0].t if samples else 0.0)
        dist = ph.distance_m if ph else view.distance_m
        hrs = heart_rates(samples)
        speeds = [s.speed_kmh for s in samples if s.speed_kmh is not None]
        energy = [s.energy_kcal for s in samples if s.energy_kcal is not None]
        cal = (max(energy) - min(energy)) if energy else 0
        lap = sub(activity, "Lap")
        lap.set("StartTime", _iso(start + timedelta(seconds=t0)))
        sub(lap, "TotalTimeSeconds", f"{dur:.1f}")
        sub(lap, "DistanceMeters", f"{dist:.1f}")
        if speeds:
            sub(lap, "MaximumSpeed", f"{max(speeds) / 3.6:.3f}")
        sub(lap, "Calories", str(max(0, min(65535, cal))))
        mean = mean_bpm(hrs)
        if mean is not None:
            bpm(lap, "AverageHeartRateBpm", mean)
            bpm(lap, "MaximumHeartRateBpm", max(hrs))
        active = ph is None or (ph.mean_speed_kmh or 0) >= 0.0
        sub(lap, "Intensity", "Active" if active else "Resting")
        sub(lap, "TriggerMethod", "Manual")
        if samples:
            track = sub(lap, "Track")
            for s in samples:
                point = sub(track, "Trackpoint")
                sub(point, "Time", _iso(start + timedelta(seconds=s.t)))
                if s.distance_m is not None:
                    sub(point, "DistanceMeters", f"{s.distance_m:.1f}")
                if s.heart_rate_bpm:
                    bpm(point, "HeartRateBpm", s.heart_rate_bpm)
                if s.speed_kmh is not None:
                    tpx = sub(sub(point, "Extensions"), "TPX", ns=TPX_NS)
                    sub(tpx, "Speed", f"{s.speed_kmh / 3.6:.3f}", ns=TPX_NS)
        if ph is not None:
            sub(lap, "Notes", f"{ph.name} ({ph.direction})")
    notes = f"{view.title}: backward walking on a treadmill, recorded by retrotread"
    if view.interrupted:
        notes += " (interrupted session)"
    sub(activity, "Notes", notes)
    creator = sub(activity, "Creator")
    creator.set(f"{{{XSI_NS}}}type", "Device_t")
    sub(creator, "Name", "retrotread")
    sub(creator, "UnitId", "0")
    sub(creator, "ProductID", "0")
    version = sub(creator, "Version")
    sub(version, "VersionMajor", "0")
    sub(version, "VersionMinor", "1")
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def to_fit(view: SessionView) -> bytes:
    """A FIT activity: walking on a treadmill, records, one lap per phase, session, activity."""
    from fit_tool.fit_file_builder import FitFileBuilder
    from fit_tool.profile.messages.activity_message import ActivityMessage
    from fit_tool.profile.messages.event_message import EventMessage
    from fit_tool.profile.messages.file_id_message import FileIdMessage
    from fit_tool.profile.messages.lap_message import LapMessage
    from fit_tool.profile.messages.record_message import RecordMessage
    from fit_tool.profile.messages.session_message import SessionMessage
    from fit_tool.profile.profile_type import (
        Event,
        EventType,
        FileType,
        Manufacturer,
        Sport,
        SubSport,
    )

    def ms(t: float) -> int:
        return round((view.started_at + timedelta(seconds=t)).timestamp() * 1000)

    builder = FitFileBuilder(auto_define=True, min_string_size=50)
    fid = FileIdMessage()
    fid.type = FileType.ACTIVITY
    fid.manufacturer = Manufacturer.DEVELOPMENT.value
    fid.product = 0
    fid.serial_number = 0x52455452
    fid.time_created = ms(0)
    builder.add(fid)
    first = view.samples[0].t if view.samples else 0.0
    last = view.samples[-1].t if view.samples else 0.0
    ev = EventMessage()
    ev.event = Event.TIMER
    ev.event_type = EventType.START
    ev.timestamp = ms(first)
    builder.add(ev)
    for s in view.samples:
        rec = RecordMessage()
        rec.timestamp = ms(s.t)
        if s.distance_m is not None:
            rec.distance = s.distance_m
        if s.speed_kmh is not None:
            rec.speed = s.speed_kmh / 3.6
        if s.heart_rate_bpm:
            rec.heart_rate = s.heart_rate_bpm
        builder.add(rec)
    ev = EventMessage()
    ev.event = Event.TIMER
    ev.event_type = EventType.STOP_ALL
    ev.timestamp = ms(last)
    builder.add(ev)

    def span(msg: Any, t0: float, dur: float, distance: float, hrs: list[int]) -> None:
        """What a lap and the session both carry: times, distance, sport, heart rate."""
        msg.timestamp = ms(t0 + dur)
        msg.start_time = ms(t0)
        msg.total_elapsed_time = dur
        msg.total_timer_time = dur
        msg.total_distance = distance
        msg.sport = Sport.WALKING
        msg.sub_sport = SubSport.TREADMILL
        if hrs:
            msg.avg_heart_rate = mean_bpm(hrs)
            msg.max_heart_rate = max(hrs)
        builder.add(msg)

    for ph, samples in _laps(view):
        t0 = ph.start_t if ph else first
        dur = ph.duration_s if ph else last - first
        distance = ph.distance_m if ph else view.distance_m
        span(LapMessage(), t0, dur, distance, heart_rates(samples))
    ses = SessionMessage()
    ses.num_laps = max(1, len(view.phases))
    span(ses, first, last - first, view.distance_m, view.heart_rates)
    act = ActivityMessage()
    act.timestamp = ms(last)
    act.total_timer_time = last - first
    act.num_sessions = 1
    builder.add(act)
    data: bytes = builder.build().to_bytes()
    return data


def export(view: SessionView, fmt: str, out: Path) -> Path:
    if fmt == "csv":
        out.write_text(to_csv(view), encoding="utf-8")
    elif fmt == "tcx":
        out.write_text(to_tcx(view), encoding="utf-8")
    elif fmt == "fit":
        out.write_bytes(to_fit(view))
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return out
