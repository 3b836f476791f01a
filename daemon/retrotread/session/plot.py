"""Speed, incline and heart rate over time, phases shaded and labelled; sized for a phone."""

from __future__ import annotations

from pathlib import Path

from retrotread.session.analysis import SessionView


def plot(view: SessionView, out: Path) -> dict[str, int]:
    """Write the PNG; returns how many points each panel drew (for checks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t / 60 for s in view.samples]
    fig, axes = plt.subplots(3, 1, figsize=(7.2, 10.8), dpi=150, sharex=True)
    series: tuple[tuple[str, list[float | None] | list[int | None], str], ...] = (
        ("Speed (km/h)", [s.speed_kmh for s in view.samples], "#1f77b4"),
        ("Incline (%)", [s.incline_pct for s in view.samples], "#2ca02c"),
        ("Heart rate (bpm)", [s.heart_rate_bpm for s in view.samples], "#d62728"),
    )
    sources = view.heart_rate_sources  # the axis says where the heart rate came from
    shown = {"Heart rate (bpm)": f"Heart rate (bpm, {sources[0]})"} if len(sources) == 1 else {}
    drawn: dict[str, int] = {}
    for ax, (label, values, colour) in zip(axes, series, strict=True):
        points = [(x, y) for x, y in zip(t, values, strict=True) if y is not None]
        drawn[label] = len(points)
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], color=colour, linewidth=2)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
        ax.set_ylabel(shown.get(label, label), fontsize=13)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=12)
        for i, ph in enumerate(view.phases):
            shade = "#f4a261" if ph.direction == "backward" else "#e9ecef"
            ax.axvspan(
                ph.start_t / 60, ph.end_t / 60, color=shade, alpha=0.35 if i % 2 else 0.5, lw=0
            )
    cap = view.heart_rate_cap_bpm
    if cap is not None:
        axes[2].axhline(cap, color="#d62728", linestyle="--", linewidth=1.2)
        axes[2].text(0, cap, f" cap {cap}", va="bottom", fontsize=10, color="#d62728")
    top = axes[0]
    ymax = top.get_ylim()[1]
    for ph in view.phases:
        mid = (ph.start_t + ph.end_t) / 120
        arrow = "↓ back" if ph.direction == "backward" else "↑ fwd"
        top.text(
            mid, ymax, f"{ph.name}\n{arrow}", ha="center", va="bottom", fontsize=10, rotation=0
        )
    axes[-1].set_xlabel("Time (min)", fontsize=13)
    status = " — interrupted" if view.interrupted else ""
    fig.suptitle(
        f"{view.title}\n{view.started_at:%Y-%m-%d %H:%M} · {view.distance_m:.0f} m · "
        f"{view.backward_s / 60:.1f} min backward{status}",
        fontsize=14,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(out)
    plt.close(fig)
    return drawn
