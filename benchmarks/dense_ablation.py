"""The dense ablation: depth multiplier (V1) x fused-IBN placement (V2) x both (V3) for a detector, and the
Pareto candidates of a segmenter, against their baselines, at the same score.

    .venv/bin/python benchmarks/dense_ablation.py                          # sim-npu-p32; see the recipe below
    .venv/bin/python benchmarks/dense_ablation.py --device cpu-ort
    .venv/bin/python benchmarks/dense_ablation.py --quick                  # 2-3 minutes: proves the pipeline

Top to bottom:

1. detection: one Optuna study per variant (``nas.search.run_search`` on detection_channels.yaml,
   detection_fused_ibn.yaml, detection_combined.yaml) training detectors on digit-scenes with
   :data:`DETECTION_RECIPE`; the first study also trains detection_baseline.yaml with the same recipe, and
   :data:`BUDGET_FACTOR` x the baseline's estimated latency is every study's hard latency budget (slower
   candidates are never trained: they would also take longest to train);
2. per variant, iso-mAP selection (:func:`iso_metric_pick`): the fastest trained candidate (estimated latency)
   whose validation mAP is at least the baseline's minus 0.5 points; when none holds it, the best-scoring one,
   marked; baseline and winners are measured on the device (whole-network simulation, or a real run);
3. segmentation: one study on segmentation.yaml (V3 plus the head's width, depth and kernel) with
   :data:`SEGMENTATION_RECIPE`, the baseline segmentation_baseline.yaml; every Pareto candidate is measured and
   those within 0.5 mIoU points of the baseline (:func:`iso_metric_front`) give the latency change at iso-mIoU;
4. ``results/dense-ablation-<device>.md`` and its figures in ``results/dense-ablation-<device>.json``.

Every step resumes: the studies live in ``results/dense-ablation/<device>/`` (one SQLite study per variant, the
wall time of each in ``state.json``, the estimator that set their budgets in ``estimators/``); a rerun continues
them and rewrites the report. The published results compared with: a person detector whose latency NAS cut by
14 / 35 / 53 % (V1 / V2 / V3) at the same mAP, and segmentation candidates 27-51 % faster at the same mIoU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from latency_estimator import ESTIMATORS_ENV, get_device, obtain_estimator  # noqa: E402
from latency_estimator.subgraph import DENSE_KINDS  # noqa: E402
from nas.search import (  # noqa: E402
    ProposalsExhausted,
    SearchError,
    SearchResult,
    pareto_front,
    run_search,
    trained_archs,
)
from nas.search.results import BASELINE_ATTR  # noqa: E402
from nas.task_metrics import task_metric  # noqa: E402
from search_spaces import ArchConfig, baseline_arch, count_arch, shipped_space_path  # noqa: E402
from search_spaces.errors import one_line  # noqa: E402

logger = logging.getLogger("dense_ablation")
REPO = Path(__file__).resolve().parents[1]

# variant -> (shipped space, what it searches, published latency reduction in %)
DETECTION_VARIANTS = {
    "V1": ("detection_channels", "depth multiplier (+ channels from multiples of P)", 14),
    "V2": ("detection_fused_ibn", "fused-IBN placement per stage", 35),
    "V3": ("detection_combined", "both", 53),
}
SEGMENTATION_SPACE = "segmentation"  # V3 plus the head's width, depth and kernel: the space a user searches
PUBLISHED_SEGMENTATION = (27, 51)  # % latency reduction of the published candidates at iso-mIoU
SLACK = 0.005  # 0.5 points of mAP / mIoU
# Hard latency budget of every study, relative to the task baseline's estimate. Not 1.0 as in benchmarks/ablation.py:
# on sim-npu-p32 the smallest network of detection_channels.yaml is 1.10x the baseline (its channels start at P=32,
# the baseline's at 16), so a budget at the baseline leaves V1 nothing to train. 1.25 admits 7 % of V1's space and
# 84 % of V2's; the networks it admits have 1.4x (V1) to 3x (V3) the baseline's MACs.
BUDGET_FACTOR = 1.25
DATASET = "digit-scenes"


@dataclass(frozen=True)
class DenseRecipe:
    """How every candidate of one study is trained; sized so that a study takes under 90 minutes on one core here
    (see :data:`SECONDS_PER_EPOCH` and the report's recipe section)."""

    trials: int  # trained candidates per study (budget breakers and duplicates are free proposals)
    train_limit: int  # training scenes per candidate
    epochs: int
    eval_limit: int  # val and test scenes scored (val after every epoch, test at the end)
    batch_size: int = 32  # 16 steps per epoch at 512 scenes
    lr: float = 0.1
    # The default strategy (results/search-quality.md): a model of the score proposes what to train next.
    strategy: str = "surrogate"
    seed: int = 0

    def search_options(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "strategy": self.strategy,
            "mode": "multishot",  # dense spaces are searched in multishot mode only
            "epochs": self.epochs,
            "train_limit": self.train_limit,
            "eval_limit": self.eval_limit,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "pruner": "none",  # selection needs fully trained candidates
            "seed": self.seed,
        }

    def describe(self) -> str:
        return (
            f"{self.trials} trained candidates per study, strategy {self.strategy}, multishot, {self.epochs} epochs "
            f"on {self.train_limit:,} {DATASET} training scenes (128x128), batch {self.batch_size}, lr {self.lr} "
            f"(SGD+Nesterov, cosine), no pruner; val and test capped at {self.eval_limit:,} scenes each; "
            f"seed {self.seed}"
        )


# Learning curve of detection_baseline.yaml on 512 scenes (100 val scenes): val mAP@[.5:.95] 0.00 after 2 epochs,
# 0.10 after 3, 0.21 after 5, 0.23 after 6: shorter schedules cannot rank detectors. segmentation_baseline.yaml:
# val mIoU 0.34 after 4 epochs.
DETECTION_RECIPE = DenseRecipe(trials=14, train_limit=512, epochs=6, eval_limit=100)
SEGMENTATION_RECIPE = DenseRecipe(trials=20, train_limit=512, epochs=4, eval_limit=100)
QUICK_RECIPE = DenseRecipe(trials=2, train_limit=32, epochs=1, eval_limit=16, batch_size=16)
# Seconds for one epoch on 512 scenes plus scoring 100 val and 100 test scenes, one core here (taskset -c 0, no other
# load), of a network of median MACs among those the latency budget admits on sim-npu-p32 (1,500 random points per
# space): study -> (candidate, the task's baseline). IBN-only networks train slowest on a CPU (depthwise convs):
# V1's median candidate (1.35x the baseline's MACs) takes 38 s, V3's (3x, mostly fused) 24 s.
SECONDS_PER_EPOCH = {
    "V1": (38.4, 21.9),
    "V2": (24.2, 21.9),
    "V3": (23.9, 21.9),
    "segmentation": (40.2, 26.5),
}


def estimated_minutes(recipe: DenseRecipe, study: str) -> float:
    """The study's expected wall time: its candidates and its baseline, each ``recipe.epochs`` epochs."""
    candidate, baseline = SECONDS_PER_EPOCH[study]
    return recipe.epochs * (recipe.trials * candidate + baseline) / 60


# ----- the one rule: iso-score selection ------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    trial: int
    arch: ArchConfig
    val: float  # the search recipe's validation score (mAP or mIoU)
    test: float | None
    latency_ms: float  # estimated, as the search ranked it


def holds(candidate: Candidate, baseline_val: float, slack: float = SLACK) -> bool:
    """The candidate scores at least the baseline's validation score minus ``slack``."""
    return candidate.val >= baseline_val - slack - 1e-12


def iso_metric_pick(
    candidates: Sequence[Candidate], *, baseline_val: float, slack: float = SLACK
) -> tuple[Candidate, bool] | None:
    """(the fastest candidate holding the score, True), else (the best-scoring one, False); None when empty."""
    if not candidates:
        return None
    holding = [c for c in candidates if holds(c, baseline_val, slack)]
    if holding:
        return min(holding, key=lambda c: (c.latency_ms, -c.val)), True
    return max(candidates, key=lambda c: (c.val, -c.latency_ms)), False


def iso_metric_front(candidates: Sequence[Candidate], *, baseline_val: float, slack: float = SLACK) -> list[Candidate]:
    """The candidates holding the score, fastest first."""
    return sorted((c for c in candidates if holds(c, baseline_val, slack)), key=lambda c: c.latency_ms)


def latency_change_pct(baseline_ms: float, ms: float) -> float:
    """-35.0 = 35 % faster than the baseline."""
    return 100.0 * (ms / baseline_ms - 1.0)


# ----- studies ------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="sim-npu-p32", help="latency_estimator device (%(default)s; or cpu-ort)")
    parser.add_argument("--quick", action="store_true", help="two tiny candidates per study: proves the pipeline")
    parser.add_argument("--work-dir", type=Path, default=REPO / "results" / "dense-ablation")
    parser.add_argument("--out-dir", type=Path, default=REPO / "results")
    return parser.parse_args(argv)


def prepare_estimator(device: str, work: Path) -> None:
    """The device's estimator, with dense subgraph kinds (searches refuse one without); built when missing, and
    kept in ``work`` beside the studies whose latency budgets it set, so that a later run resumes them with it."""
    os.environ.setdefault(ESTIMATORS_ENV, str(work / "estimators"))
    chosen = get_device(device)
    estimator = obtain_estimator(chosen, build_if_missing=True, samples=chosen.default_samples)
    estimator.require_kinds([kind for kind in DENSE_KINDS if kind != "concat"])


def run_study(
    args: argparse.Namespace, work: Path, *, space: str, study: str, recipe: DenseRecipe, task: str, baseline: bool
) -> SearchResult | str:
    """Create or resume one study (or the one-line reason it cannot run); its wall time is added up across runs
    in ``state.json``."""
    parallelism_factor = get_device(args.device).profile.parallelism_factor
    base = baseline_arch(parallelism_factor=parallelism_factor, task=task)
    start = time.perf_counter()
    try:
        result = run_search(
            space=shipped_space_path(space),
            device=args.device,
            dataset=DATASET,
            study=study,
            results_dir=work,
            latency_budget_ms=BUDGET_FACTOR * estimated_ms(args.device, base),
            baseline=baseline,
            **recipe.search_options(),
        )
    except ProposalsExhausted as exc:  # a small space (V2) may hold fewer feasible networks than the trials asked
        logger.warning("%s: %s", study, exc)
        result = exc.result
    except SearchError as exc:  # e.g. the budget is unreachable in this space on this device: reported as such
        logger.warning("%s: %s", study, exc)
        result = one_line(exc)
    _add_seconds(work / "state.json", study, time.perf_counter() - start)
    return result


def estimated_ms(device: str, arch: ArchConfig) -> float:
    return float(obtain_estimator(device).predict(arch).latency_ms)


def _add_seconds(path: Path, study: str, seconds: float) -> None:
    state = json.loads(path.read_text()) if path.exists() else {}
    state[study] = state.get(study, 0.0) + seconds
    path.write_text(json.dumps(state, indent=1) + "\n")


def trained(result: SearchResult) -> list[Candidate]:
    """Fully trained candidates, one per architecture."""
    return [
        Candidate(row.number, arch, row.val_accuracy, row.test_accuracy, row.latency_ms)
        for row, arch in trained_archs(result.study)
    ]


def pareto_candidates(result: SearchResult) -> list[Candidate]:
    return [Candidate(p.trial, p.arch, p.value, p.test_accuracy, p.latency_ms) for p in pareto_front(result.study)]


def numbers(arch: ArchConfig, device: str) -> dict[str, Any]:
    """Estimated and measured latency (ms), params, MACs, peak activation KiB at the device's data type."""
    dev = get_device(device)
    counts = count_arch(arch, dtype_bytes=dev.dtype_bytes)
    return {
        "arch_id": arch.arch_id,
        "block_string": arch.block_string(),
        "estimated_ms": estimated_ms(device, arch),
        "measured_ms": float(dev.measure_network(arch).latency_ms),
        "params": counts.params,
        "macs": counts.macs,
        "peak_kib": counts.peak_activation_bytes / 1024,
        "fused_stages": [i for i, s in enumerate(arch.stages) if s.block == "fused_ibn"],
    }


def baseline_entry(result: SearchResult, device: str, task: str) -> dict[str, Any]:
    attr = result.study.user_attrs[BASELINE_ATTR]
    arch = baseline_arch(parallelism_factor=get_device(device).profile.parallelism_factor, task=task)
    return {"val": attr["value"], "test": attr.get("test_accuracy"), **numbers(arch, device)}


def candidate_entry(c: Candidate, base: dict[str, Any], device: str) -> dict[str, Any]:
    entry = {"trial": c.trial, "val": c.val, "test": c.test, **numbers(c.arch, device)}
    entry["latency_change_pct"] = latency_change_pct(base["measured_ms"], entry["measured_ms"])
    entry["val_delta_points"] = 100 * (c.val - base["val"])
    entry["holds"] = holds(c, base["val"])
    return entry


def detection_figures(args: argparse.Namespace, work: Path, recipe: DenseRecipe) -> dict[str, Any]:
    studies: dict[str, SearchResult | str] = {}
    for v, (space, _, _) in DETECTION_VARIANTS.items():
        # One search-recipe baseline serves the three variants: the first study that runs trains it.
        study = f"dense-{args.device}-det-{v.lower()}"
        first = not any(_has_baseline(r) for r in studies.values())
        studies[v] = run_study(args, work, space=space, study=study, recipe=recipe, task="detection", baseline=first)
    scored = [r for r in studies.values() if _has_baseline(r)]
    if not scored:
        raise SystemExit(f"dense_ablation: no detection study could run: {studies}")
    base = baseline_entry(scored[0], args.device, "detection")
    variants = {}
    for variant, result in studies.items():
        if isinstance(result, str):
            variants[variant] = {"study": f"dense-{args.device}-det-{variant.lower()}", "error": result}
            continue
        pool = trained(result)
        pick = iso_metric_pick(pool, baseline_val=base["val"])
        entry: dict[str, Any] = {"study": result.settings.study, "trained": len(pool)}
        entry["trials"] = len(result.study.trials)
        if pick is not None:
            entry["winner"] = candidate_entry(pick[0], base, args.device)
        variants[variant] = entry
    return {"baseline": base, "variants": variants}


def _has_baseline(result: SearchResult | str) -> bool:
    return isinstance(result, SearchResult) and BASELINE_ATTR in result.study.user_attrs


def segmentation_figures(args: argparse.Namespace, work: Path, recipe: DenseRecipe) -> dict[str, Any]:
    result = run_study(
        args, work, space=SEGMENTATION_SPACE, study=f"dense-{args.device}-seg", recipe=recipe,
        task="segmentation", baseline=True,
    )  # fmt: skip
    if isinstance(result, str):
        return {"study": f"dense-{args.device}-seg", "error": result}
    base = baseline_entry(result, args.device, "segmentation")
    front = pareto_candidates(result)
    entries = [candidate_entry(c, base, args.device) for c in front]
    iso = [e for e in entries if e["holds"]]
    return {
        "study": result.settings.study,
        "trained": len(trained(result)),
        "trials": len(result.study.trials),
        "baseline": base,
        "pareto": entries,
        "iso_metric_change_pct": [min(e["latency_change_pct"] for e in iso), max(e["latency_change_pct"] for e in iso)]
        if iso
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    tag = f"{args.device}-quick" if args.quick else args.device
    work = args.work_dir / tag
    work.mkdir(parents=True, exist_ok=True)
    detection = QUICK_RECIPE if args.quick else DETECTION_RECIPE
    segmentation = QUICK_RECIPE if args.quick else SEGMENTATION_RECIPE
    prepare_estimator(args.device, work)
    figures = {
        "device": args.device,
        "quick": args.quick,
        "command": command(args),
        "recipes": {"detection": dataclasses.asdict(detection), "segmentation": dataclasses.asdict(segmentation)},
        "detection": detection_figures(args, work, detection),
        "segmentation": segmentation_figures(args, work, segmentation),
        "seconds": json.loads((work / "state.json").read_text()),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"dense-ablation-{tag}.json").write_text(json.dumps(figures, indent=1) + "\n")
    report = render(figures, tag=tag, recipes=(detection, segmentation), work=work)
    (args.out_dir / f"dense-ablation-{tag}.md").write_text(report)
    print(report)
    return 0


def command(args: argparse.Namespace) -> str:
    quick = " --quick" if args.quick else ""
    return f".venv/bin/python benchmarks/dense_ablation.py --device {args.device}{quick}"


# ----- the report ---------------------------------------------------------------------------------------------------
def render(figures: dict[str, Any], *, tag: str, recipes: tuple[DenseRecipe, DenseRecipe], work: Path) -> str:
    parts = [
        _header(figures, tag, work),
        _detection_section(figures),
        _segmentation_section(figures),
        _recipe_section(figures, recipes),
    ]
    return "\n\n".join(parts) + "\n"


def _header(figures: dict[str, Any], tag: str, work: Path) -> str:
    return (
        f"# Dense ablation on {figures['device']}: detection V1/V2/V3 and segmentation candidates\n\n"
        f"Regenerate (resumes the studies in `{_shown(work)}/`):\n\n    {figures['command']}\n\n"
        f"Every figure below: `dense-ablation-{tag}.json`. Latency change is on the measured latency "
        f"({_measure_kind(figures['device'])}) against the task's baseline; scores are the search recipe's "
        f"({DATASET}, validation split for selection; test split beside it)."
    )


def _detection_section(figures: dict[str, Any]) -> str:
    det, metric = figures["detection"], task_metric("detection")
    b = det["baseline"]
    lines = [
        f"## Detection: latency change at {metric.short} within 0.5 points of the baseline\n",
        "| variant | searches | est. ms | measured ms | latency vs baseline (published) "
        f"| val {metric.label} % (Δ pts) | test {metric.short} % | params | MACs | peak act. KiB | search wall "
        "| trained / trials | fused stages | block string |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
        f"| baseline | detection_baseline.yaml | {b['estimated_ms']:.4f} | {b['measured_ms']:.4f} | — "
        f"| {100 * b['val']:.2f} | {_pct(b['test'])} | {b['params']:,} | {b['macs']:,} | {b['peak_kib']:.1f} "
        f"| — | — | none | {_code(b['block_string'])} |",
    ]
    seconds = figures["seconds"]
    for variant, (space, what, published) in DETECTION_VARIANTS.items():
        entry = det["variants"][variant]
        wall = f"{seconds.get(entry['study'], 0.0) / 60:.1f} min"
        if "error" in entry:
            lines.append(
                f"| {variant} | {what} ({space}.yaml) | not searched: {entry['error']} | | | | | | | | {wall} |||"
            )
            continue
        counts = f"{entry['trained']} / {entry['trials']}"
        w = entry.get("winner")
        if w is None:
            lines.append(f"| {variant} | {what} | no trained candidate | | | | | | | | {wall} | {counts} | | |")
            continue
        held = "" if w["holds"] else " **not held**"
        lines.append(
            f"| {variant} | {what} ({space}.yaml) | {w['estimated_ms']:.4f} | {w['measured_ms']:.4f} "
            f"| {w['latency_change_pct']:+.1f}% (−{published}%) | {100 * w['val']:.2f} ({w['val_delta_points']:+.2f})"
            f"{held} | {_pct(w['test'])} | {w['params']:,} | {w['macs']:,} | {w['peak_kib']:.1f} | {wall} | {counts} "
            f"| {_fused(w['fused_stages'])} | {_code(w['block_string'])} |"
        )
    lines.append(
        f"\nSelection: the fastest trained candidate (estimated latency) whose val {metric.short} >= the baseline's "
        f"{100 * b['val']:.2f} - 0.5 points; **not held**: no candidate reached that, the best-scoring one is shown."
    )
    lines.append(_detection_reading(det))
    return "\n".join(lines)


def _detection_reading(det: dict[str, Any]) -> str:
    said = []
    for variant, (_, _, published) in DETECTION_VARIANTS.items():
        w = det["variants"][variant].get("winner")
        if w is None:
            said.append(f"{variant}: {det['variants'][variant].get('error', 'no trained candidate')}")
            continue
        change = -w["latency_change_pct"]
        verdict = "matches" if abs(change - published) <= 5 else ("exceeds" if change > published else "falls short of")
        said.append(f"{variant}: {_faster(w['latency_change_pct'])}, {verdict} the published {published}% faster")
    return (
        "\nAs measured: " + "; ".join(said) + ". Differences from the published figures are expected where they "
        "occur: 128x128 digit scenes instead of person detection at a device's resolution, a few short-schedule "
        "candidates per variant instead of a full search, and mAP on about a hundred scenes, whose noise is of the "
        "order of the 0.5-point tolerance."
    )


def _segmentation_section(figures: dict[str, Any]) -> str:
    seg, metric = figures["segmentation"], task_metric("segmentation")
    low, high = PUBLISHED_SEGMENTATION
    if "error" in seg:
        return f"## Segmentation\n\nStudy `{seg['study']}` not searched: {seg['error']}."
    b = seg["baseline"]
    lines = [
        f"## Segmentation: Pareto candidates and their latency change at iso-{metric.short}\n",
        f"Study `{seg['study']}` on {SEGMENTATION_SPACE}.yaml: {seg['trained']} trained of {seg['trials']} trials. "
        f"Baseline segmentation_baseline.yaml: val {metric.short} {100 * b['val']:.2f}, measured "
        f"{b['measured_ms']:.4f} ms.\n",
        f"| trial | val {metric.short} % (Δ pts) | test {metric.short} % | est. ms | measured ms | latency vs baseline "
        f"| iso-{metric.short} | params | MACs | fused stages | block string |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for e in seg["pareto"]:
        lines.append(
            f"| {e['trial']} | {100 * e['val']:.2f} ({e['val_delta_points']:+.2f}) | {_pct(e['test'])} "
            f"| {e['estimated_ms']:.4f} | {e['measured_ms']:.4f} | {e['latency_change_pct']:+.1f}% "
            f"| {'yes' if e['holds'] else 'no'} | {e['params']:,} | {e['macs']:,} | {_fused(e['fused_stages'])} "
            f"| {_code(e['block_string'])} |"
        )
    span = seg["iso_metric_change_pct"]
    if span is None:
        lines.append(f"\nNo Pareto candidate is within 0.5 {metric.short} points of the baseline (published: "
                     f"{low}-{high}% faster at iso-{metric.short}).")  # fmt: skip
    else:
        lines.append(
            f"\nAt iso-{metric.short} (within 0.5 points of the baseline) the Pareto candidates change latency by "
            f"{span[0]:+.1f}% ({_faster(span[0])}) to {span[1]:+.1f}% ({_faster(span[1])}), next to the published "
            f"{low}-{high}% faster."
        )
    return "\n".join(lines)


def _recipe_section(figures: dict[str, Any], recipes: tuple[DenseRecipe, DenseRecipe]) -> str:
    detection, segmentation = recipes
    # The default recipes' estimate, also in quick mode (whose own studies take seconds).
    estimates = {v: estimated_minutes(DETECTION_RECIPE, v) for v in DETECTION_VARIANTS}
    estimates["segmentation"] = estimated_minutes(SEGMENTATION_RECIPE, "segmentation")
    sized = ", ".join(f"{k} {m:.0f} min" for k, m in estimates.items())
    measured = ", ".join(f"`{k}` {v / 60:.1f} min" for k, v in figures["seconds"].items())
    return (
        "## Recipe\n\n"
        f"* Detection (each variant): {detection.describe()}.\n"
        f"* Segmentation: {segmentation.describe()}.\n"
        f"* Latency: the `{figures['device']}` estimator (dense subgraph kinds included); hard latency budget = "
        f"{BUDGET_FACTOR:g}x the task baseline's estimate (candidates slower than that are never trained). Measured: "
        "`get_device(...).measure_network` of the exact architecture.\n"
        "* The default recipes are sized for 90 minutes per study on one core here. Estimated wall time of each "
        "study with them (epochs x (trials x seconds per "
        "epoch of a median-MACs candidate the budget admits + the baseline's), timed on one idle core): "
        f"{sized}. Other load on the core stretches it; candidates with more MACs than the median train slower.\n"
        f"* Wall time of each study so far (all runs): {measured}."
    )


def _faster(change_pct: float) -> str:
    """-35.2 -> '35% faster', +9.3 -> '9% slower'."""
    return f"{-change_pct:.0f}% faster" if change_pct <= 0 else f"{change_pct:.0f}% slower"


def _measure_kind(device: str) -> str:
    return "whole-network simulation" if device.startswith("sim-") else "real ONNX Runtime / device run"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _code(block_string: str) -> str:
    return "`" + block_string.replace("|", "\\|") + "`"


def _fused(stages: list[int]) -> str:
    return ", ".join(f"s{i}" for i in stages) if stages else "none"


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
