"""``latency-breakdown.png``: where the time goes, baseline next to the best searched architecture."""

from __future__ import annotations

from pathlib import Path

from nas.insights.stats import Breakdown
from nas.search.plots import save_figure

__all__ = ["plot_breakdown"]


def plot_breakdown(path: str | Path, breakdown: Breakdown, *, device: str) -> Path:
    """Two stacked bars (µs), one segment per part (stem, each stage, head), same colour in both bars.

    The dashed line is the estimator's network latency: the parts plus its per-network overhead term.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    bars = [
        (f"baseline\n{breakdown.baseline_arch_id}", breakdown.baseline_ms, breakdown.baseline_total_ms),
        (f"{breakdown.best_reason}\ntrial {breakdown.best_trial}", breakdown.best_ms, breakdown.best_total_ms),
    ]
    colours = plt.get_cmap("tab10" if len(breakdown.labels) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for x, (_, parts, total) in enumerate(bars):
        bottom = 0.0
        for k, (label, ms) in enumerate(zip(breakdown.labels, parts)):
            ax.bar(x, ms * 1000, bottom=bottom, width=0.55, color=colours(k), label=label if x == 0 else None)
            if ms * 1000 > 0.04 * max(sum(breakdown.baseline_ms), sum(breakdown.best_ms)) * 1000:
                ax.text(x, bottom + ms * 500, f"{ms * 1000:.1f}", ha="center", va="center", fontsize=7)
            bottom += ms * 1000
        ax.hlines(total * 1000, x - 0.32, x + 0.32, colors="black", linestyles="--", lw=1)
        ax.text(
            x,
            max(bottom, total * 1000),
            f"{total * 1000:.1f} µs network\n{bottom:.1f} µs parts",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(range(len(bars)), [name for name, _, _ in bars])
    ax.set_ylabel(f"estimated latency on {device} (µs, parts run alone)")
    ax.set_title("Latency by part: baseline vs searched")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="part")
    save_figure(fig, path)
    return path
