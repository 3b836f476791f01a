"""The progress plot: backward minutes, top incline, learned speed and pain over the weeks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from retrotread.coach.report import Report

ACTION_COLOURS = {
    "advance": "#2a9d8f",
    "complete": "#2a9d8f",
    "stay": "#8ab17d",
    "hold": "#e9c46a",
    "step-back": "#e76f51",
    None: "#adb5bd",
}
ACTION_LABELS = {
    "advance": "advanced",
    "stay": "stayed (level not yet done)",
    "hold": "held (early end, slow-down, pain rise, hard)",
    "step-back": "stepped back (pain, two holds, gap)",
}


def plot_progress(report: Report, out: Path) -> dict[str, int]:
    """Write the PNG; returns how many points each panel drew (for checks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(4, 1, figsize=(8.0, 11.0), dpi=130, sharex=True)
    drawn: dict[str, int] = {}
    points, weeks = report.points, report.weeks

    ax = axes[0]
    for w in weeks:
        ax.bar(w.start, w.backward_min, width=6.6, align="edge", color="#dee2e6", zorder=1)
        if w.sessions:
            ax.text(
                w.start + timedelta(days=3.3),
                w.backward_min,
                f"{w.backward_min:g} min\n{w.sessions} sess.",
                ha="center",
                va="bottom",
                fontsize=8,
                color="#495057",
            )
    colours = [ACTION_COLOURS.get(p.action, ACTION_COLOURS[None]) for p in points]
    ax.bar(
        [p.when for p in points],
        [p.backward_min for p in points],
        width=0.8,
        color=colours,
        zorder=2,
    )
    for p in points:
        if p.before is not None:  # stepped back before it: days away, or pain given before
            label = "days away" if p.before == "gap" else "pain before"
            ax.annotate(
                f"↓ {label}",
                (p.when, p.backward_min),
                xytext=(0, 14),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color=ACTION_COLOURS["step-back"],
            )
    ax.set_ylabel("Backward min\n(week / session)", fontsize=11)
    handles = [Patch(color=ACTION_COLOURS[k], label=v) for k, v in ACTION_LABELS.items()]
    fig.legend(
        handles=handles,
        fontsize=8,
        loc="upper center",
        ncol=2,
        bbox_to_anchor=(0.5, 0.965),
        title="each session's bar: what the coach did after it",
        title_fontsize=8,
        frameon=False,
    )
    top = max([w.backward_min for w in weeks] + [1.0])
    ax.set_ylim(0, top * 1.25)
    previous = None
    for p in points:
        if p.plan and p.plan != previous:
            ax.axvline(p.when, color="#495057", linewidth=0.8, linestyle=":", zorder=0)
            ax.text(p.when, top * 1.2, f" {p.plan}", fontsize=8, va="top", color="#495057")
            previous = p.plan
    drawn["backward"] = len(points)

    series = (
        ("Top incline (%)", [(p.when, p.max_incline_pct) for p in points], "#2ca02c", "steps-post"),
        (
            "Backward speed\nlearned (km/h)",
            [(p.when, p.speed_kmh) for p in points if p.speed_kmh is not None],
            "#1f77b4",
            "default",
        ),
    )
    for ax, (label, xy, colour, style) in zip(axes[1:3], series, strict=True):
        if xy:
            ax.plot(
                [x for x, _ in xy],
                [y for _, y in xy],
                color=colour,
                linewidth=2,
                marker="o",
                markersize=3,
                drawstyle=style,
            )
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
        ax.set_ylabel(label, fontsize=11)
        drawn[label] = len(xy)
    axes[1].set_ylim(bottom=0, top=max([p.max_incline_pct for p in points] + [1.0]) + 1)
    speeds = [p.speed_kmh for p in points if p.speed_kmh is not None]
    if speeds:
        axes[2].set_ylim(max(0.0, min(speeds) - 0.5), max(speeds) + 0.5)

    ax = axes[3]
    before = [(p.when, p.pain_before) for p in points if p.pain_before is not None]
    after = [(p.when, p.pain_after) for p in points if p.pain_after is not None]
    if before:
        ax.scatter(
            [x for x, _ in before],
            [y for _, y in before],
            marker="v",
            color="#6c757d",
            label="before",
            zorder=3,
        )
    if after:
        ax.plot(
            [x for x, _ in after],
            [y for _, y in after],
            color="#d62728",
            marker="o",
            linewidth=1.5,
            label="after",
            zorder=3,
        )
    ax.axhline(5, color="#e76f51", linestyle="--", linewidth=1)
    ax.text(
        0.995,
        5.15,
        "5: steps back",
        transform=ax.get_yaxis_transform(),
        ha="right",
        fontsize=8,
        color="#e76f51",
    )
    ax.set_ylim(-0.3, 10.3)
    ax.set_ylabel("Knee pain (0-10)", fontsize=11)
    if before or after:
        ax.legend(fontsize=8, loc="upper left")
    drawn["pain"] = len(before) + len(after)

    for ax in axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=10)
    monday = mdates.WeekdayLocator(byweekday=mdates.MO)  # type: ignore[no-untyped-call]
    axes[-1].xaxis.set_major_locator(monday)
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))  # type: ignore[no-untyped-call]
    first = points[0].when.strftime("%d %b %Y") if points else "no sessions"
    last_level = next((p for p in reversed(points) if p.level), None)
    now_at = f" · last: {last_level.plan}, {last_level.level}" if last_level else ""
    fig.suptitle(f"{report.walker}: {len(points)} sessions since {first}{now_at}", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    fig.savefig(out)
    plt.close(fig)
    return drawn
