"""Evaluation: predicted against measured end-to-end latency on unseen networks.

The networks are ``models`` architectures sampled from the shipped spaces
(never one the estimator's overhead term was fitted on), the baseline, and
the reference mobile networks of ``reference_networks/`` (MobileNetV2,
MnasNet-B1-like, EfficientNet-Lite0-like, FBNet-B-like, scaled to 32x32);
with ``dense_models``, that many detection and segmentation networks from the
dense spaces at 128x128 too (source ``dense:<space>``).
Each is measured end to end by the device (a real run, or a whole-network
simulation), a timed device's in passes keeping each network's fastest
(:mod:`latency_estimator.passes`), and compared with
:meth:`LatencyEstimator.predict_many`.

Figures: share within ±10 % and ±5 %, RMSPE, MAPE, Kendall τ, Spearman ρ,
and a predicted-vs-measured scatter plot. Measurements can be kept in a CSV
file so that an interrupted evaluation resumes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from latency_estimator.csv_rows import read_csv_rows, write_csv_rows
from latency_estimator.devices.base import Device, Measurement
from latency_estimator.errors import EstimatorError
from latency_estimator.estimator import LatencyEstimator
from latency_estimator.machine import warn_if_busy
from latency_estimator.networks import distinct_networks, reference_networks
from latency_estimator.passes import ProgressFn, Timed, fastest_of_passes
from latency_estimator.subgraph import decompose_arch, weight_mb
from search_spaces import ArchConfig, baseline_arch

__all__ = [
    "AccuracyMetrics",
    "Evaluation",
    "EvaluatedNetwork",
    "accuracy_metrics",
    "evaluate_estimator",
    "plot_scatter",
    "weight_size_bins",
]

logger = logging.getLogger(__name__)

WEIGHT_BINS_MB = (2, 4, 8, 16)  # upper edges of the weight-size bins of reports; the last bin is open
CSV_FIELDS = ("name", "source", "arch_id", "measured_ms", "predicted_ms", "spread", "passes", "runner_up_ms", "arch")


@dataclass(frozen=True)
class AccuracyMetrics:
    count: int
    within_10pct: float  # share of networks with |predicted / measured - 1| <= 0.10
    within_5pct: float
    rmspe: float  # root mean squared percentage error, as a fraction
    mape: float
    max_abs_error: float
    kendall_tau: float
    spearman_rho: float


def accuracy_metrics(predicted_ms: np.ndarray, measured_ms: np.ndarray) -> AccuracyMetrics:
    predicted_ms, measured_ms = np.asarray(predicted_ms, float), np.asarray(measured_ms, float)
    if predicted_ms.shape != measured_ms.shape or len(measured_ms) < 2:
        raise EstimatorError(
            f"need as many predictions as measurements, at least 2, but got {len(predicted_ms)} and {len(measured_ms)}"
        )
    error = predicted_ms / measured_ms - 1
    return AccuracyMetrics(
        count=len(error),
        within_10pct=float(np.mean(np.abs(error) <= 0.10)),
        within_5pct=float(np.mean(np.abs(error) <= 0.05)),
        rmspe=float(np.sqrt(np.mean(np.square(error)))),
        mape=float(np.mean(np.abs(error))),
        max_abs_error=float(np.max(np.abs(error))),
        kendall_tau=float(stats.kendalltau(predicted_ms, measured_ms).statistic),
        spearman_rho=float(stats.spearmanr(predicted_ms, measured_ms).statistic),
    )


@dataclass(frozen=True)
class EvaluatedNetwork:
    name: str  # arch id for sampled networks, the file stem for reference ones
    source: str  # "space:<name>", "baseline" or "reference"
    arch: ArchConfig
    predicted_ms: float
    timed: Timed  # its fastest pass, the passes behind it and the second-fastest

    @property
    def measured_ms(self) -> float:
        return self.timed.fastest.latency_ms

    @property
    def spread(self) -> float:
        return self.timed.fastest.spread

    @property
    def passes(self) -> int:
        return self.timed.passes

    @property
    def error(self) -> float:
        return self.predicted_ms / self.measured_ms - 1


@dataclass(frozen=True)
class Evaluation:
    device: str
    networks: tuple[EvaluatedNetwork, ...]

    def metrics(self, *, sources: tuple[str, ...] | None = None) -> AccuracyMetrics:
        """Metrics over all networks, or over those whose source starts with one of ``sources``."""
        chosen = [n for n in self.networks if sources is None or n.source.startswith(sources)]
        return accuracy_metrics(np.array([n.predicted_ms for n in chosen]), np.array([n.measured_ms for n in chosen]))

    @property
    def has_dense(self) -> bool:
        return any(n.source.startswith(DENSE_SOURCE) for n in self.networks)

    def metrics_dict(self) -> dict[str, dict[str, float]]:
        figures = {
            "all": asdict(self.metrics()),
            "sampled": asdict(self.metrics(sources=("space:",))),
        }
        if self.has_dense:
            figures["classification"] = asdict(self.metrics(sources=CLASSIFICATION_SOURCES))
            figures["dense"] = asdict(self.metrics(sources=(DENSE_SOURCE,)))
        return figures


DENSE_SOURCE = "dense:"
CLASSIFICATION_SOURCES = ("space:", "baseline", "reference")


def evaluation_networks(
    parallelism_factor: int,
    *,
    models: int,
    seed: int = 1,
    exclude: set[str] = frozenset(),
    dense_models: int = 0,
) -> list[tuple[str, str, ArchConfig]]:
    """(name, source, arch): ``models`` distinct sampled architectures not in ``exclude``, the baseline,
    the reference networks, and ``dense_models`` distinct dense ones not in ``exclude``."""
    # A stream apart from profiling's and the overhead term's.
    drawn = distinct_networks(parallelism_factor, count=models, stream=(seed, 104729), exclude=exclude)
    sampled = [(arch.arch_id, f"space:{space}", arch) for space, arch in drawn]
    fixed = [("baseline", "baseline", baseline_arch(parallelism_factor=parallelism_factor))]
    fixed += [(name, "reference", arch) for name, arch in reference_networks().items()]
    dense = distinct_networks(
        parallelism_factor, count=dense_models, stream=(seed, 104743), exclude=exclude, dense=True
    )
    return sampled + fixed + [(arch.arch_id, f"{DENSE_SOURCE}{space}", arch) for space, arch in dense]


def evaluate_estimator(
    estimator: LatencyEstimator,
    device: Device,
    *,
    models: int,
    seed: int = 1,
    measurements: str | Path | None = None,
    progress: ProgressFn | None = None,
    dense_models: int = 0,
) -> Evaluation:
    """Measure every evaluation network on ``device`` (reusing rows already in the
    ``measurements`` CSV, appending new ones) and compare with the estimator; ``dense_models`` adds that many
    held-out detection and segmentation networks."""
    if device.name != estimator.device:
        raise EstimatorError(f"the estimator is for device {estimator.device!r}, not {device.name!r}")
    warn_if_busy(device)
    exclude = set(estimator.metadata.get("training", {}).get("networks", []))
    chosen = evaluation_networks(
        device.parallelism_factor, models=models, seed=seed, exclude=exclude, dense_models=dense_models
    )
    predicted = estimator.predict_many([arch for _, _, arch in chosen])
    timed = measure_networks(device, chosen, cache=Path(measurements) if measurements else None, progress=progress)
    networks = tuple(
        EvaluatedNetwork(name, source, arch, float(predicted_ms), timed[arch.arch_id])
        for (name, source, arch), predicted_ms in zip(chosen, predicted, strict=True)
    )
    return Evaluation(device=device.name, networks=networks)


def measure_networks(
    device: Device,
    chosen: list[tuple[str, str, ArchConfig]],
    *,
    cache: Path | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Timed]:
    """arch id -> how every (name, source, arch) timed in the device's passes.
    With ``cache``, what an earlier run measured there is reused, and the file is rewritten after every
    measurement (its rows for other networks kept)."""
    by_id = {arch.arch_id: (name, source, arch) for name, source, arch in chosen}
    rows = _read_rows(cache) if cache else {}
    done = {
        arch_id: Timed(
            Measurement(float(row["measured_ms"]), float(row["spread"]), 1),
            int(row["passes"]),
            float(row["runner_up_ms"]),
        )
        for arch_id, row in rows.items()
        if arch_id in by_id
    }

    def save(results: dict[str, Timed]) -> None:
        for arch_id, timed in results.items():
            rows[arch_id] = _row(*by_id[arch_id], timed, None)
        write_csv_rows(cache, CSV_FIELDS, list(rows.values()))

    return fastest_of_passes(
        list(by_id),
        lambda arch_id: device.measure_network(by_id[arch_id][2]),
        device.network_passes,
        done=done,
        save=save if cache else None,
        progress=progress,
    )


def _row(name: str, source: str, arch: ArchConfig, timed: Timed, predicted_ms: float | None) -> dict[str, str]:
    return {
        "name": name,
        "source": source,
        "arch_id": arch.arch_id,
        "measured_ms": f"{timed.fastest.latency_ms:.6g}",
        "predicted_ms": "" if predicted_ms is None else f"{predicted_ms:.6g}",
        "spread": f"{timed.fastest.spread:.4g}",
        "passes": str(timed.passes),
        "runner_up_ms": f"{timed.runner_up_ms:.6g}",
        "arch": json.dumps(arch.to_dict(), separators=(",", ":")),
    }


def _read_rows(path: Path) -> dict[str, dict[str, str]]:
    required = tuple(field for field in CSV_FIELDS if field != "predicted_ms")  # the cache holds measurements only
    rows = read_csv_rows(path, CSV_FIELDS, required=required, added={"passes": "1", "runner_up_ms": "inf"})
    return {row["arch_id"]: row for row in rows}


def write_csv(evaluation: Evaluation, path: str | Path) -> Path:
    """One row per network: name, source, arch id, measured and predicted ms, spread, passes, second-fastest pass,
    ArchConfig JSON."""
    path = Path(path)
    rows = [_row(n.name, n.source, n.arch, n.timed, n.predicted_ms) for n in evaluation.networks]
    write_csv_rows(path, CSV_FIELDS, rows)
    return path


def plot_scatter(evaluation: Evaluation, path: str | Path, *, title: str | None = None) -> Path:
    """Predicted against measured latency (log-log), the y = x line and the ±10 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    measured = np.array([n.measured_ms for n in evaluation.networks])
    predicted = np.array([n.predicted_ms for n in evaluation.networks])
    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=120)
    low, high = 0.9 * min(measured.min(), predicted.min()), 1.1 * max(measured.max(), predicted.max())
    line = np.array([low, high])
    ax.plot(line, line, color="black", linewidth=0.8, label="predicted = measured")
    ax.fill_between(line, 0.9 * line, 1.1 * line, color="grey", alpha=0.2, label="±10 %")
    labels = {"space:": "sampled from the shipped spaces", DENSE_SOURCE: "dense (detection, segmentation)"}
    for source, marker in (("space:", "o"), ("baseline", "s"), ("reference", "^"), (DENSE_SOURCE, "x")):
        chosen = [n for n in evaluation.networks if n.source.startswith(source)]
        if chosen:
            label = labels.get(source, source)
            ax.scatter(
                [n.measured_ms for n in chosen], [n.predicted_ms for n in chosen], s=14, marker=marker, label=label
            )
    for n in evaluation.networks:
        if n.source == "reference":
            ax.annotate(n.name, (n.measured_ms, n.predicted_ms), fontsize=6, xytext=(3, -8), textcoords="offset points")
    metrics = evaluation.metrics()
    ax.set(xscale="log", yscale="log", xlim=(low, high), ylim=(low, high))
    ax.set(xlabel="measured latency (ms)", ylabel="predicted latency (ms)")
    for axis in (ax.xaxis, ax.yaxis):  # label 1-2-5 steps, not every minor tick
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    summary = f"{metrics.within_10pct:.0%} within ±10 %, Kendall τ {metrics.kendall_tau:.3f}"
    ax.set_title(title or f"{evaluation.device}: {summary}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def weight_size_bins(archs: list[ArchConfig]) -> list[tuple[str, np.ndarray]]:
    """The networks grouped by fp32 weight size, for reports: ``(label, mask)`` per non-empty bin. On a CPU, weights
    that outgrow the caches are streamed from memory every run, and accuracy falls with weight size
    (``results/latency-estimator-cpu-ort.md``)."""
    weights = np.array([weight_mb(decompose_arch(arch)) for arch in archs])
    edges = (0.0, *WEIGHT_BINS_MB, np.inf)
    bins = []
    for low, high in zip(edges[:-1], edges[1:]):
        label = f"> {low:g} MB" if high == np.inf else f"{low:g}–{high:g} MB"
        chosen = (weights > low) & (weights <= high)
        if chosen.any():
            bins.append((label, chosen))
    return bins
