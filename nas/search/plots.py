"""``pareto.png``: the validation score (accuracy, mAP or mIoU; or the proxy score) against estimated latency."""

from __future__ import annotations

import os
from pathlib import Path

from nas.search.records import ParetoPoint, TrialRow
from nas.search.settings import SearchSettings
from nas.task_metrics import task_metric

__all__ = ["plot_pareto", "save_figure"]


def plot_pareto(
    path: Path,
    rows: list[TrialRow],
    front: list[ParetoPoint],
    settings: SearchSettings,
    baseline: dict | None,
    *,
    task: str = "classification",
) -> None:
    """Feasible trials, the Pareto front, the baseline, and the region over the latency budget shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    _draw_points(ax, rows, front, settings, baseline)
    _mark_infeasible(ax, rows)
    _shade_budget(ax, rows, settings)
    ax.set_xlabel(f"estimated latency on {settings.device} (ms)")
    label = task_metric(task).label
    ax.set_ylabel(
        f"proxy {settings.proxy} (higher is better)" if settings.mode == "zeroshot" else f"validation {label}"
    )
    ax.set_title(f"{settings.study}: {Path(settings.space).name}, {settings.mode}, {settings.strategy}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` (120 dpi) through a temporary name, and close it.

    A reader (or a second worker writing the same file) never sees half a PNG.
    """
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def _draw_points(ax, rows: list[TrialRow], front: list[ParetoPoint], settings: SearchSettings, baseline) -> None:
    value_key = "proxy_score" if settings.mode == "zeroshot" else "val_accuracy"
    done = [r for r in rows if r.state == "COMPLETE" and getattr(r, value_key) is not None]
    label = "trained, feasible" if settings.trains else "scored, feasible"
    values = [getattr(r, value_key) for r in done]
    ax.scatter([r.latency_ms for r in done], values, s=16, c="tab:blue", alpha=0.6, label=label)
    if front:
        latencies, values = [p.latency_ms for p in front], [p.value for p in front]
        ax.step(latencies, values, where="post", c="tab:red", lw=1.5)
        ax.scatter(latencies, values, s=36, c="tab:red", label="Pareto front", zorder=3)
    if baseline is not None:
        label = "baseline" + (" (breaks a budget)" if baseline.get("violations") else "")
        ax.scatter([baseline["latency_ms"]], [baseline["value"]], marker="*", s=180, c="black", label=label, zorder=4)


def _mark_infeasible(ax, rows: list[TrialRow]) -> None:
    """Budget breakers have no score (never trained): a rug of their latencies along the bottom."""
    from matplotlib.transforms import blended_transform_factory

    latencies = [r.latency_ms for r in rows if r.state == "INFEASIBLE" and r.latency_ms is not None]
    if latencies:
        transform = blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter(latencies, [0.03] * len(latencies), transform=transform, marker="x", s=14, c="tab:gray",
                   alpha=0.7, label=f"over a budget, never trained ({len(latencies)})")  # fmt: skip


def _shade_budget(ax, rows: list[TrialRow], settings: SearchSettings) -> None:
    budget = settings.latency_budget_ms
    if budget is None:
        return
    latencies = [r.latency_ms for r in rows if r.latency_ms is not None]
    right = max([budget * 1.3, *latencies]) * 1.05
    ax.axvspan(budget, right, color="tab:gray", alpha=0.18, label=f"over latency budget ({budget:g} ms)")
    ax.axvline(budget, color="tab:gray", lw=1, ls="--")
    left, _ = ax.get_xlim()
    ax.set_xlim(left=min(left, 0.0), right=right)
