"""Latency-estimator benchmark: build a device's estimator from scratch, evaluate it, time it.

    python benchmarks/latency_estimator.py --device sim-npu-p16
    python benchmarks/latency_estimator.py --device cpu-ort          # on a quiet machine: it times real runs

Steps, each kept in ``results/latency-estimator-<device>/`` so that a rerun
resumes where an interrupted one stopped (``--fresh`` starts over):

1. **build** — profile (stratified + adaptive subgraph sampling, a handful of
   whole networks) and train, timed; the time of an interrupted build is
   summed over the runs that finished it.
2. **evaluate** — ``--models`` networks sampled from the shipped spaces (never
   the overhead networks), the baseline and the reference mobile networks, and
   ``--dense-models`` held-out detection and segmentation networks from the dense
   spaces at 128x128 (skipped, with a note, for an estimator built before dense
   networks were estimated), measured end to end; the measurements are appended
   to a CSV as they come.
3. **throughput** — batched prediction of 10,000 sampled architectures on one
   core, first with an empty piece cache, then warm.
4. **ZigZag** — for sim-npu devices, the figure of ``benchmarks/zigzag_compare.py`` when it has been run.

``--retrain`` trains again on the measurements an earlier build took (after a
change to the regressor): the build time is then that build's profiling plus
the new training, and the throughput is measured again.

Writes ``results/latency-estimator-<device>.md`` (every figure, the target
it answers, and this command), ``.csv`` (one row per evaluated network) and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from latency_estimator.build import train_from_dataset  # noqa: E402
from latency_estimator.dataset import MeasurementDataset  # noqa: E402
from latency_estimator.devices import get_device  # noqa: E402
from latency_estimator.devices.base import PassPlan  # noqa: E402
from latency_estimator.errors import EstimatorError  # noqa: E402
from latency_estimator.estimator import LatencyEstimator  # noqa: E402
from latency_estimator.evaluation import (  # noqa: E402
    CLASSIFICATION_SOURCES,
    DENSE_SOURCE,
    Evaluation,
    accuracy_metrics,
    evaluate_estimator,
    measure_networks,
    plot_scatter,
    weight_size_bins,
    write_csv,
)
from latency_estimator.networks import searchable_spaces  # noqa: E402
from latency_estimator.profiling import profile_device  # noqa: E402
from latency_estimator.spec import DENSE_PROFILED_KINDS  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
# Per implementation: evaluation networks and targets (None: report only).
# cpu-ort profiles inside whole networks, so every profiled network is also an overhead network (``networks``
# is then unused); profiled one by one, it needed 36 networks to fit a weight-size term.
# ``dense_models``: held-out detection and segmentation networks (128x128), with the same ±10 % target.
SETUPS = {
    "sim-npu": {
        "models": 200, "dense_models": 200, "networks": 12, "within_10pct": 0.99, "kendall_tau": None, "build_s": 60,
    },
    "onnxruntime-cpu": {
        "models": 100, "dense_models": 40, "networks": 36, "within_10pct": 0.95, "kendall_tau": 0.9, "build_s": 900,
    },
    "tvm": {  # ~9 s/network
        "models": 40, "dense_models": 10, "networks": 12, "within_10pct": None, "kendall_tau": None, "build_s": None,
    },
}  # fmt: skip
REPORT_ONLY = {
    "models": 100, "dense_models": 20, "networks": 12, "within_10pct": None, "kendall_tau": None, "build_s": None,
}  # fmt: skip
MAX_CPU_ORT_SAMPLES = 3000
THROUGHPUT_ARCHS = 10_000
THROUGHPUT_TARGET = 10_000  # architectures per second, batched, one core


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", required=True)
    parser.add_argument("--samples", type=int, default=None, help="subgraph measurements (default per device)")
    parser.add_argument("--networks", type=int, default=None, help="whole networks for the overhead term")
    parser.add_argument("--models", type=int, default=None, help="sampled evaluation networks (default per device)")
    parser.add_argument(
        "--dense-models", type=int, default=None, help="held-out dense evaluation networks (default per device)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="delete earlier results of this device and start over")
    parser.add_argument("--retrain", action="store_true", help="train again on the measurements already taken")
    args = parser.parse_args()
    if args.fresh and args.retrain:
        parser.error("--fresh measures everything again; --retrain keeps the measurements: choose one")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    device = get_device(args.device)
    setup = SETUPS.get(device.profile.device, REPORT_ONLY)
    work = RESULTS / f"latency-estimator-{device.name}"
    if args.fresh and work.exists():
        shutil.rmtree(work)
    state = State(work / "state.json")
    defaults = {
        "samples": device.default_samples,
        "models": setup["models"],
        "networks": setup["networks"],
        "dense_models": setup["dense_models"],
    }
    samples, models, networks, dense_models = run_sizes(parser, args, state, defaults).values()
    if args.retrain:
        if not state.get("build"):
            parser.error(f"{device.name}: no finished build in {work} to train again; run without --retrain")
        retrain(state, work / "estimator", seed=args.seed)
    build(device, state, work / "estimator", samples=samples, networks=networks, seed=args.seed)
    estimator = LatencyEstimator.load(work / "estimator", device=device.name, profile=device.profile.to_dict())
    load_before = load_average()
    dense_note = dense_refusal(estimator)
    evaluation = evaluate_estimator(
        estimator,
        device,
        models=models,
        seed=args.seed + 1,
        measurements=work / "evaluation-measured.csv",
        dense_models=0 if dense_note else dense_models,
    )
    if not device.deterministic and not state.get("evaluation_load"):  # a rerun that only rewrites the report
        # measures nothing: the load of the run that measured is kept
        state.set("evaluation_load", [load_before, load_average()])
    if not device.deterministic and not state.get("second_measurement"):
        state.set("second_measurement", second_measurement(device, evaluation))
    throughput = state.get("throughput") or state.set("throughput", measure_throughput(work / "estimator", args.seed))
    command = f"python benchmarks/latency_estimator.py --device {device.name} --samples {samples} --models {models}"
    command += f" --networks {networks} --dense-models {dense_models}" + (f" --seed {args.seed}" if args.seed else "")
    report = write_report(
        device, evaluation, state.data, throughput, setup=setup, command=command, dense_note=dense_note
    )
    print(f"report written to {report}")
    return 0


def dense_refusal(estimator: LatencyEstimator) -> str:
    """Why dense networks are not evaluated (an estimator built before dense networks were estimated), or ""."""
    try:
        estimator.require_kinds(DENSE_PROFILED_KINDS)
    except EstimatorError as exc:
        return str(exc)
    return ""


def run_sizes(parser: argparse.ArgumentParser, args: argparse.Namespace, state: State, defaults: dict) -> dict:
    """--samples, --models, --networks and --dense-models: as given, else as the data here were measured with,
    else the defaults.
    A size other than the data's is a one-line error: a rerun would mix two runs."""
    recorded = state.get("sizes") or {}
    for name, value in recorded.items():
        given = getattr(args, name)
        if given is not None and given != value:
            parser.error(f"{args.device}'s data were measured with --{name} {value}; add --fresh to start over")
    sizes = {
        name: next(v for v in (getattr(args, name), recorded.get(name), default) if v is not None)
        for name, default in defaults.items()
    }
    return state.set("sizes", sizes)


class State:
    """What the finished steps found, in a JSON file beside their data."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def get(self, key: str):
        return self.data.get(key)

    def set(self, key: str, value):
        self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")
        return value


def build(device, state: State, directory: Path, *, samples: int, networks: int, seed: int) -> None:
    """Profile and train from scratch, timed; an interrupted build resumes and its times add up."""
    if state.get("build"):
        return
    start = time.perf_counter()
    state.set("build_load", [load_average()])
    try:
        dataset = profile_device(device, samples=samples, directory=directory, networks=networks, seed=seed)
        profiled = time.perf_counter()
        estimator = train_from_dataset(dataset, seed=seed)
        estimator.save(directory)
    finally:  # keep the time spent so far, so that a resumed build reports the whole cost
        state.set("build_partial_s", (state.get("build_partial_s") or 0.0) + time.perf_counter() - start)
    train_s = time.perf_counter() - profiled
    state.set(
        "build",
        {
            "seconds": state.get("build_partial_s"),
            "train_seconds": train_s,
            "subgraph_measurements": len(dataset.rows),
            "network_measurements": len(dataset.network_rows),
            "adaptive_measurements": dataset.count("adaptive"),
            "in_network": device.profiles_in_network,
            "network_timing": device.network_passes.describe(),
            **trained(estimator),
            "measured_on": MeasurementDataset.load(directory).metadata.get("cpu_model"),
            "load": [*state.get("build_load"), load_average()],
        },
    )


def retrain(state: State, directory: Path, *, seed: int) -> None:
    """Train again on the build's measurements; the build's time keeps its profiling and takes the new training."""
    start = time.perf_counter()
    estimator = train_from_dataset(MeasurementDataset.load(directory), seed=seed)
    estimator.save(directory)
    old = state.get("build")
    train_s = time.perf_counter() - start
    seconds = old["seconds"] - old["train_seconds"] + train_s
    state.set("build", {**old, "seconds": seconds, "train_seconds": train_s, **trained(estimator)})
    state.set("throughput", None)  # another model: timed again


def trained(estimator: LatencyEstimator) -> dict:
    """What training chose, for the report."""
    meta = estimator.metadata
    return {
        "chosen": f"{meta['prior']['form']}/{meta['layout']}/{meta['loss']}",
        "candidates": meta["training"]["candidates"],
        "overhead": meta["overhead"],
    }


def network_timing(info: dict) -> str:
    """How the build timed whole networks (a state written before ``network_timing`` has ``network_passes``)."""
    if "network_timing" in info:
        return info["network_timing"]
    passes, gap_s = info.get("network_passes", (1, 0.0))
    return PassPlan(passes, gap_s, passes).describe()


def load_average() -> float | None:
    """The 1-minute load average: other processes' load inflates real timings, so the report states it."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def second_measurement(device, evaluation: Evaluation) -> dict[str, float]:
    """Every evaluated network measured again, the same way, right after the first time: how far the device's own
    numbers move between two measurements minutes apart is a floor under any estimator's error on that device."""
    logging.getLogger("latency_estimator").info("measuring the %d networks a second time", len(evaluation.networks))
    again = measure_networks(device, [(n.name, n.source, n.arch) for n in evaluation.networks])
    return {arch_id: timed.fastest.latency_ms for arch_id, timed in again.items()}


def repeatability_lines(device, evaluation: Evaluation, again: dict[str, float] | None) -> list[str]:
    if not again:
        return []
    how = device.network_passes.describe()
    first = np.array([n.measured_ms for n in evaluation.networks])
    second = np.array([again[n.arch.arch_id] for n in evaluation.networks])
    predicted = np.array([n.predicted_ms for n in evaluation.networks])
    between, against_second = accuracy_metrics(second, first), accuracy_metrics(predicted, second)
    return [
        "## Repeatability of the measurements themselves",
        "",
        f"Every evaluated network was measured a second time, the same way ({how}), right after the first "
        "(same code, same settings).",
        "",
        "| comparison | within ±10 % | within ±5 % | RMSPE | Kendall τ |",
        "|---|---|---|---|---|",
        f"| second measurement vs first | {between.within_10pct:.1%} | {between.within_5pct:.1%} | "
        f"{between.rmspe:.2%} | {between.kendall_tau:.3f} |",
        f"| estimator vs second measurement | {against_second.within_10pct:.1%} | "
        f"{against_second.within_5pct:.1%} | {against_second.rmspe:.2%} | {against_second.kendall_tau:.3f} |",
        "",
        f"Median second / first: {np.median(second / first):.3f}. Where the two measurements disagree, no "
        "estimator trained on earlier measurements can agree with both.",
        "",
    ]


def weight_size_lines(evaluation: Evaluation, again: dict[str, float] | None) -> list[str]:
    """Accuracy, and (on a timed device) the measurements' own repeatability, by the networks' fp32 weight size."""
    predicted = np.array([n.predicted_ms for n in evaluation.networks])
    first = np.array([n.measured_ms for n in evaluation.networks])
    second = np.array([again[n.arch.arch_id] for n in evaluation.networks]) if again else None
    rows = []
    for label, chosen in weight_size_bins([n.arch for n in evaluation.networks]):
        error = predicted[chosen] / first[chosen] - 1
        row = f"| {label} | {chosen.sum()} | {np.mean(np.abs(error) <= 0.10):.1%} | {np.sqrt(np.mean(error**2)):.2%} |"
        if again:
            row += f" {np.mean(np.abs(second[chosen] / first[chosen] - 1) <= 0.10):.1%} |"
        rows.append(row)
    header = "| fp32 weights | networks | estimator within ±10 % | RMSPE |"
    return [
        "## By weight size",
        "",
        header + (" second measurement within ±10 % of the first |" if again else ""),
        "|---|---|---|---|" + ("---|" if again else ""),
        *rows,
        "",
    ]


def measure_throughput(directory: Path, seed: int, *, repeats: int = 5, gap_s: float = 15.0) -> dict[str, float]:
    """Batched predictions per second on one core: a freshly loaded estimator (empty cache), then warm. The best of
    ``repeats`` (each with a newly loaded estimator) at least ``gap_s`` apart: other processes only ever slow a run
    down, and the machine has slow episodes of seconds (results/timing-drift.md)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    parallelism_factor = LatencyEstimator.load(directory).parallelism_factor
    spaces = searchable_spaces(parallelism_factor)
    rng = np.random.default_rng([seed, 31337])
    archs = [spaces[i % len(spaces)].sample(rng) for i in range(2 * THROUGHPUT_ARCHS)]
    cold, warm, single = [], [], []
    for repeat in range(repeats):
        if repeat:
            time.sleep(gap_s)
        estimator = LatencyEstimator.load(directory)
        cold.append(_per_second(lambda e=estimator: e.predict_many(archs[:THROUGHPUT_ARCHS]), THROUGHPUT_ARCHS))
        warm.append(_per_second(lambda e=estimator: e.predict_many(archs[THROUGHPUT_ARCHS:]), THROUGHPUT_ARCHS))
        single.append(_per_second(lambda e=estimator: [e.predict(arch) for arch in archs[:200]], 200))
    return {"cold_archs_per_s": max(cold), "warm_archs_per_s": max(warm), "single_archs_per_s": max(single)}


def _per_second(run, count: int) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def write_report(
    device,
    evaluation: Evaluation,
    state: dict,
    throughput: dict,
    *,
    setup: dict,
    command: str,
    dense_note: str = "",
) -> Path:
    name = device.name
    write_csv(evaluation, RESULTS / f"latency-estimator-{name}.csv")
    plot_scatter(evaluation, RESULTS / f"latency-estimator-{name}.png")
    build_info = state["build"]
    all_m, sampled_m = evaluation.metrics(sources=CLASSIFICATION_SOURCES), evaluation.metrics(sources=("space:",))
    dense_m = evaluation.metrics(sources=(DENSE_SOURCE,)) if evaluation.has_dense else None
    lines = [
        f"# Latency estimator: {name}",
        "",
        f"{device.profile.description}. Measured on {build_info['measured_on']}.",
        "",
        f"Regenerate: `{command}`",
        f"(add `--fresh` to rebuild from scratch; the data lie in `results/latency-estimator-{name}/`).",
        "",
        *load_lines(state),
        "## Targets",
        "",
        "| target | figure | met |",
        "|---|---|---|",
        *target_rows(name, setup, all_m, build_info, throughput, dense=dense_m),
        "",
        "## Accuracy on networks never used in training",
        "",
        "| networks | count | within ±10 % | within ±5 % | RMSPE | MAPE | max error | Kendall τ | Spearman ρ |",
        "|---|---|---|---|---|---|---|---|---|",
        metrics_row("classification: all", all_m),
        metrics_row("sampled from the shipped spaces", sampled_m),
        *dense_rows(evaluation),
        "",
        *([f"Dense networks not evaluated: {dense_note}", ""] if dense_note else []),
        "| fixed network | measured ms | predicted ms | error |",
        "|---|---|---|---|",
        *(
            f"| {n.name} | {n.measured_ms:.4f} | {n.predicted_ms:.4f} | {n.error:+.1%} |"
            for n in evaluation.networks
            if n.source in ("baseline", "reference")
        ),
        "",
        f"Scatter plot: `results/latency-estimator-{name}.png`; "
        f"per-network table: `results/latency-estimator-{name}.csv`.",
        "",
        *repeatability_lines(device, evaluation, state.get("second_measurement")),
        *weight_size_lines(evaluation, state.get("second_measurement")),
        *build_section(build_info),
        "",
        "## Prediction throughput (one core)",
        "",
        "- batched, empty piece cache (a freshly loaded estimator; best of 5 runs 15 s apart): "
        f"{throughput['cold_archs_per_s']:,.0f} archs/s",
        f"- batched, warm cache (the next 10,000 sampled architectures): {throughput['warm_archs_per_s']:,.0f} archs/s",
        f"- one at a time with the per-subgraph breakdown (`predict`): {throughput['single_archs_per_s']:,.0f} archs/s",
        "",
    ]
    path = RESULTS / f"latency-estimator-{name}.md"
    path.write_text("\n".join(lines))
    return path


def load_lines(state: dict) -> list[str]:
    """The machine's load while it measured (a timed device is only as steady as its machine)."""
    build, evaluation = state["build"].get("load"), state.get("evaluation_load")
    if not (build or evaluation):  # a state written before loads were recorded
        return []
    figures = f"build {build[0]} → {build[1]}" if build else "build not recorded"
    figures += f", evaluation {evaluation[0]} → {evaluation[1]}" if evaluation else ""
    return [f"1-minute load average on {os.cpu_count()} cores while measuring: {figures}.", ""]


def dense_rows(evaluation: Evaluation) -> list[str]:
    """The held-out dense networks: all of them, then per task."""
    if not evaluation.has_dense:
        return []
    rows = [metrics_row("dense (128x128, held out): all", evaluation.metrics(sources=(DENSE_SOURCE,)))]
    for task in ("detection", "segmentation"):
        chosen = [n for n in evaluation.networks if n.source.startswith(DENSE_SOURCE) and n.arch.task == task]
        if len(chosen) >= 2:
            predicted, measured = np.array([n.predicted_ms for n in chosen]), np.array([n.measured_ms for n in chosen])
            rows.append(metrics_row(f"dense: {task}", accuracy_metrics(predicted, measured)))
    return rows


def target_rows(name: str, setup: dict, metrics, build_info: dict, throughput: dict, *, dense=None) -> list[str]:
    rows = []
    for label, figures in (("", metrics), (" (held-out dense networks)", dense)):
        if figures is None:
            continue
        if setup["within_10pct"] is not None:
            rows.append(
                _row(
                    f"≥ {setup['within_10pct']:.0%} within ±10 %{label}",
                    f"{figures.within_10pct:.1%}",
                    figures.within_10pct >= setup["within_10pct"],
                )
            )
        else:
            rows.append(_row(f"within ±10 %{label} (no target yet)", f"{figures.within_10pct:.1%}", None))
    if setup["kendall_tau"] is not None:
        rows.append(
            _row(
                f"Kendall τ ≥ {setup['kendall_tau']}",
                f"{metrics.kendall_tau:.3f}",
                metrics.kendall_tau >= setup["kendall_tau"],
            )
        )
    if name == "cpu-ort":
        count = build_info["subgraph_measurements"]
        rows.append(
            _row(f"≤ {MAX_CPU_ORT_SAMPLES:,} subgraph measurements", f"{count:,}", count <= MAX_CPU_ORT_SAMPLES)
        )
    seconds = build_info["seconds"]
    if setup["build_s"] is not None:
        rows.append(_row(f"build from scratch ≤ {setup['build_s']} s", f"{seconds:.0f} s", seconds <= setup["build_s"]))
    else:
        rows.append(_row("build from scratch (no target)", f"{seconds:.0f} s", None))
    cold = throughput["cold_archs_per_s"]
    rows.append(
        _row(
            f"≥ {THROUGHPUT_TARGET:,} archs/s batched, one core", f"{cold:,.0f} (cold cache)", cold >= THROUGHPUT_TARGET
        )
    )
    zigzag = RESULTS / f"latency-estimator-zigzag-{name}.md"
    if zigzag.exists():
        rho = next(line for line in zigzag.read_text().splitlines() if line.startswith("| sim-npu vs ZigZag"))
        figure = f"{rho.split('|')[2].strip()} (see `{zigzag.relative_to(RESULTS.parent)}`)"
        rows.append(_row("Spearman ρ vs ZigZag edge_tpu_like, per layer (report)", figure, None))
    return rows


def _row(target: str, figure: str, met: bool | None) -> str:
    return f"| {target} | {figure} | {'—' if met is None else ('yes' if met else '**no**')} |"


def metrics_row(label: str, m) -> str:
    return (
        f"| {label} | {m.count} | {m.within_10pct:.1%} | {m.within_5pct:.1%} | {m.rmspe:.2%} | {m.mape:.2%} | "
        f"{m.max_abs_error:.1%} | {m.kendall_tau:.3f} | {m.spearman_rho:.3f} |"
    )


def build_section(info: dict) -> list[str]:
    overhead = info["overhead"]
    lines = [
        "## Building the estimator",
        "",
        f"- {info['subgraph_measurements']:,} subgraph measurements ({info['adaptive_measurements']} in the adaptive "
        f"round), {info['network_measurements']} whole-network measurements for the overhead term",
        *(
            [
                f"- every subgraph was timed inside one of those {info['network_measurements']} networks (ONNX "
                "Runtime's per-node profiler; shares scaled to add up to the unprofiled network latency), "
                "not alone in a loop"
            ]
            if info.get("in_network")
            else []
        ),
        *(
            [
                f"- every network, profiled or evaluated, was timed as {network_timing(info)}, keeping its "
                "fastest: the machine has slow episodes of seconds (`results/timing-drift.md`)"
            ]
            if network_timing(info) != "one measurement"
            else []
        ),
        f"- build time from scratch: {info['seconds']:.1f} s (training {info['train_seconds']:.1f} s)",
        f"- kept prior/layout/loss: **{info['chosen']}** (lowest held-out subgraph MAPE of these):",
        "",
        "| prior/layout/loss | held-out MAPE | RMSPE | within ±10 % |",
        "|---|---|---|---|",
        *(
            f"| {k} | {v['mape']:.2%} | {v['rmspe']:.2%} | {v['within_10pct']:.1%} |"
            for k, v in info["candidates"].items()
        ),
        "",
        f"- overhead term: **{overhead['form']}** (scale {overhead['scale']:.4g}, "
        f"constant {overhead['constant']:.4g} ms, per subgraph {overhead['per_subgraph']:.4g} ms); "
        "leave-one-out RMSPE per form: " + ", ".join(f"{k} {v:.2%}" for k, v in overhead["loo_rmspe"].items()),
    ]
    return lines


if __name__ == "__main__":
    sys.exit(main())
