"""Export a session for training apps: CSV, TCX (Garmin TrainingCenterDatabase v2), FIT.

Treadmill activities carry no GPS: time, distance, speed, heart rate, laps per phase.
FIT is written with fit-tool (a maintained library), never by hand.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

from retrotread.session.analysis import PhaseStats, Sample, SessionView

TCX_NS = "http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2"
TPX_NS = "http://www.garmin.com/xmlschemas/ActivityExtension/v2"


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


def to_tcx(view: SessionView) -> str:
    """A TCX activity (Sport "Other": TCX has no walking) with one lap per phase."""
    start = view.started_at
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<TrainingCenterDatabase xmlns="{TCX_NS}" xmlns:ns3="{TPX_NS}">',
        "  <Activities>",
        '    <Activity Sport="Other">',
        f"      <Id>{_iso(start)}</Id>",
    ]
    for ph, samples in _laps(view):
        t0 = ph.start_t if ph else (samples[0].t if samples else 0.0)
        dur = ph.duration_s if ph else (samples[-1].t - samples[0].t if samples else 0.0)
        dist = ph.distance_m if ph else view.distance_m
        hrs = [s.heart_rate_bpm for s in samples if s.heart_rate_bpm]
        speeds = [s.speed_kmh for s in samples if s.speed_kmh is not None]
        energy = [s.energy_kcal for s in samples if s.energy_kcal is not None]
        cal = (max(energy) - min(energy)) if energy else 0
        lines.append(f'      <Lap StartTime="{_iso(start + timedelta(seconds=t0))}">')
        lines.append(f"        <TotalTimeSeconds>{dur:.1f}</TotalTimeSeconds>")
        lines.append(f"        <DistanceMeters>{dist:.1f}</DistanceMeters>")
        if speeds:
            lines.append(f"        <MaximumSpeed>{max(speeds) / 3.6:.3f}</MaximumSpeed>")
        lines.append(f"        <Calories>{max(0, min(65535, cal))}</Calories>")
        if hrs:
            lines.append(
                f"        <AverageHeartRateBpm><Value>{round(sum(hrs) / len(hrs))}</Value>"
                "</AverageHeartRateBpm>"
            )
            lines.append(
                f"        <MaximumHeartRateBpm><Value>{max(hrs)}</Value></MaximumHeartRateBpm>"
            )
        active = ph is None or (ph.mean_speed_kmh or 0) >= 0.0
        lines.append(f"        <Intensity>{'Active' if active else 'Resting'}</Intensity>")
        lines.append("        <TriggerMethod>Manual</TriggerMethod>")
        if samples:
            lines.append("        <Track>")
            for s in samples:
                lines.append("          <Trackpoint>")
                lines.append(f"            <Time>{_iso(start + timedelta(seconds=s.t))}</Time>")
                if s.distance_m is not None:
                    lines.append(f"            <DistanceMeters>{s.distance_m:.1f}</DistanceMeters>")
                if s.heart_rate_bpm:
                    hr = s.heart_rate_bpm
                    lines.append(f"            <HeartRateBpm><Value>{hr}</Value></HeartRateBpm>")
                if s.speed_kmh is not None:
                    lines.append(
                        "            <Extensions><ns3:TPX><ns3:Speed>"
                        f"{s.speed_kmh / 3.6:.3f}</ns3:Speed></ns3:TPX></Extensions>"
                    )
                lines.append("          </Trackpoint>")
            lines.append("        </Track>")
        if ph is not None:
            note = f"{ph.name} ({ph.direction})"
            lines.append(f"        <Notes>{escape(note)}</Notes>")
        lines.append("      </Lap>")
    notes = f"{view.title}: backward walking on a treadmill, recorded by retrotread"
    if view.interrupted:
        notes += " (interrupted session)"
    lines += [
        f"      <Notes>{escape(notes)}</Notes>",
        '      <Creator xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Device_t">',
        "        <Name>retrotread</Name>",
        "        <UnitId>0</UnitId>",
        "        <ProductID>0</ProductID>",
        "        <Version><VersionMajor>0</VersionMajor><VersionMinor>1</VersionMinor></Version>",
        "      </Creator>",
        "    </Activity>",
        "  </Activities>",
        "</TrainingCenterDatabase>",
    ]
    return "\n".join(lines) + "\n"


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
    for ph, samples in _laps(view):
        lap = LapMessage()
        t0 = ph.start_t if ph else first
        dur = ph.duration_s if ph else last - first
        lap.timestamp = ms(t0 + dur)
        lap.start_time = ms(t0)
        lap.total_elapsed_time = dur
        lap.total_timer_time = dur
        lap.total_distance = ph.distance_m if ph else view.distance_m
        lap.sport = Sport.WALKING
        lap.sub_sport = SubSport.TREADMILL
        hrs = [s.heart_rate_bpm for s in samples if s.heart_rate_bpm]
        if hrs:
            lap.avg_heart_rate = round(sum(hrs) / len(hrs))
            lap.max_heart_rate = max(hrs)
        builder.add(lap)
    ses = SessionMessage()
    ses.timestamp = ms(last)
    ses.start_time = ms(first)
    ses.total_elapsed_time = last - first
    ses.total_timer_time = last - first
    ses.total_distance = view.distance_m
    ses.sport = Sport.WALKING
    ses.sub_sport = SubSport.TREADMILL
    ses.num_laps = max(1, len(view.phases))
    hrs = view.heart_rates
    if hrs:
        ses.avg_heart_rate = round(sum(hrs) / len(hrs))
        ses.max_heart_rate = max(hrs)
    builder.add(ses)
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
