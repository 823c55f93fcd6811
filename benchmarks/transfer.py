"""Transfer: does a digits search make a Fashion-MNIST search on sim-npu-p32 cheaper?

    .venv/bin/python benchmarks/transfer.py       # resumable: every search is an Optuna study; rerun to go on

1. Source: search ``combined.yaml`` on digits (multishot).
2. ``edgenas analyze`` it, ``edgenas space derive`` a narrower space from it.
3. Target: search Fashion-MNIST five ways, same recipe and seed:
   from scratch (combined.yaml); warm-started with the source's Pareto
   architectures (``--warm-start``); in the derived space; derived + warm
   start; and in the derived space with a quarter of the trial budget.
4. Report (``results/transfer.md``, ``results/transfer.png``): hypervolume of
   (validation accuracy, latency) after each trial, the trials each variant
   needs to reach 95% of the from-scratch search's best hypervolume, and how
   close the quarter-budget derived-space search gets to the full search.

Recipe (``Recipe`` below), sized for ~30 min on two shared CPU cores:
multishot, 2 epochs on 512 training images in batches of 16, no pruning, a
hard latency budget of 0.2 ms (about 1.4x the baseline; budget breakers are
never trained and the budget is the hypervolume's reference latency). The
Fashion-MNIST set is a stratified 3,000-image subset of the training IDX
file (300 per class; 10% validation, 20% test), written as ``.npz``: the full
set's 6,000 validation and 10,000 test images would cost more per candidate
than its training does.

Work files (studies, the subset, the derived space) go to ``--work-dir``
(default ``build/transfer``, not committed); the derived space and the
source's insights are copied next to the report.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import optuna  # noqa: E402

from nas.datasets import FASHION_MNIST_DIR, read_idx  # noqa: E402
from nas.insights import analyze_study, derive_from_study, warm_start_archs  # noqa: E402
from nas.search import run_search  # noqa: E402
from search_spaces import shipped_space_path  # noqa: E402
from search_spaces.diff import diff_space_files  # noqa: E402

logger = logging.getLogger("transfer")

DEVICE = "sim-npu-p32"
COMBINED = shipped_space_path("combined")
TARGET_FRACTION = 0.95


@dataclass(frozen=True)
class Recipe:
    mode: str = "multishot"
    epochs: int = 2
    train_limit: int = 512
    # 64 optimiser steps: nas.training warms the lr up over 20 steps, so the search's default batch of 64
    # (16 steps) leaves every network at chance; 16 x 64 reaches 0.91 (digits) / 0.72 (Fashion-MNIST subset).
    batch_size: int = 16
    lr: float = 0.05  # nas.training's default; steadier early-epoch accuracy than 0.1
    # No early stopping: with 2 epochs, successive halving judges at epoch 1, where small fast networks still
    # trail; it pruned most of them in a first run, so the front held only slow networks (see the report).
    pruner: str = "none"
    latency_budget_ms: float = 0.2  # ~1.4x baseline.yaml on sim-npu-p32
    population_size: int = 8  # NSGA-II: 3 generations per search
    source_trials: int = 24
    target_trials: int = 20
    per_class: int = 300  # Fashion-MNIST subset
    seed: int = 0


@dataclass(frozen=True)
class Variant:
    name: str
    study: str
    warm: bool
    derived: bool
    budget_share: float = 1.0


VARIANTS = (
    Variant("from scratch", "fmnist-scratch", warm=False, derived=False),
    Variant("warm start", "fmnist-warm", warm=True, derived=False),
    Variant("derived space", "fmnist-derived", warm=False, derived=True),
    Variant("derived space + warm start", "fmnist-derived-warm", warm=True, derived=True),
    Variant("derived space, 1/4 budget", "fmnist-derived-quarter", warm=False, derived=True, budget_share=0.25),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("build/transfer"))
    parser.add_argument("--report", type=Path, default=Path("results/transfer.md"))
    parser.add_argument("--seed", type=int, default=Recipe.seed)
    parser.add_argument("--source-trials", type=int, default=Recipe.source_trials)
    parser.add_argument("--target-trials", type=int, default=Recipe.target_trials)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    recipe = Recipe(seed=args.seed, source_trials=args.source_trials, target_trials=args.target_trials)
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    started = time.monotonic()
    search(recipe, work, study="digits-source", dataset="digits", space=COMBINED, trials=recipe.source_trials)
    timings["digits-source"] = time.monotonic() - started
    insights = analyze_study(work / "digits-source")
    derived = work / "derived.yaml"
    if not derived.exists():
        derive_from_study(insights, name="transfer_derived").document.save(derived)
    warm = warm_start_archs(work / "digits-source")
    data = fashion_subset(work / "fashion-mnist-3k.npz", per_class=recipe.per_class, seed=recipe.seed)
    for variant in VARIANTS:
        started = time.monotonic()
        search(
            recipe,
            work,
            study=variant.study,
            dataset="npz",
            data_dir=data,
            space=derived if variant.derived else COMBINED,
            trials=round(recipe.target_trials * variant.budget_share),
            warm_start=warm if variant.warm else (),
            baseline=False,  # at 2 epochs baseline.yaml stays near chance on Fashion-MNIST; it costs a training
        )
        timings[variant.study] = time.monotonic() - started
    curves = {v.study: hypervolume_curve(work / v.study, v.study, recipe.latency_budget_ms) for v in VARIANTS}
    write_report(args.report, recipe, work, insights, warm, curves, derived)
    logger.info("wrote %s (this run: %s)", args.report, {k: round(v) for k, v in timings.items()})
    return 0


def search(recipe: Recipe, work: Path, *, study: str, dataset: str, space: Path, trials: int, **options) -> None:
    logger.info("search %s: %s on %s, %d trials", study, space.name, dataset, trials)
    run_search(
        space=space,
        device=DEVICE,
        dataset=dataset,
        study=study,
        trials=trials,
        mode=recipe.mode,
        epochs=recipe.epochs,
        train_limit=recipe.train_limit,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        pruner=recipe.pruner,
        latency_budget_ms=recipe.latency_budget_ms,
        population_size=recipe.population_size,
        seed=recipe.seed,
        results_dir=work,
        **options,
    )


def fashion_subset(path: Path, *, per_class: int, seed: int) -> Path:
    """A stratified subset of Fashion-MNIST's training images as ``.npz`` (written once)."""
    if path.exists():
        return path
    images = read_idx(FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz").astype(np.int64)
    rng = np.random.default_rng(seed)
    picks = np.sort(
        np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)])
    )
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, x=images[picks], y=labels[picks])
    tmp.replace(path)
    return path


# ----- hypervolume ----------------------------------------------------------------------------------------------
def hypervolume(points: list[tuple[float, float]], latency_ref_ms: float) -> float:
    """Area dominated by (accuracy up, latency down) points, reference (0, latency_ref); normalised to [0, 1]."""
    area, best = 0.0, 0.0
    for accuracy, latency in sorted(points, key=lambda p: (p[1], -p[0])):
        if latency < latency_ref_ms and accuracy > best:
            area += (accuracy - best) * (latency_ref_ms - latency)
            best = accuracy
    return area / latency_ref_ms


@dataclass(frozen=True)
class Curve:
    values: list[float]  # hypervolume after each finished trial, in trial order
    trained: int  # feasible candidates trained to the end

    def at(self, trials: int) -> float:
        return self.values[min(trials, len(self.values)) - 1]


def hypervolume_curve(folder: Path, study_name: str, latency_ref_ms: float) -> Curve:
    """Hypervolume of the feasible, trained candidates after each finished trial, in trial order."""
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{folder / 'study.db'}")
    points, curve = [], []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        outcome = trial.user_attrs.get("outcome")
        if outcome is None or not trial.state.is_finished():
            continue
        if outcome == "COMPLETE" and trial.values:
            points.append((float(trial.values[0]), float(trial.values[1])))
        curve.append(hypervolume(points, latency_ref_ms))
    return Curve(values=curve, trained=len(points))


def trials_to_reach(curve: Curve, target: float) -> int | None:
    return next((n for n, value in enumerate(curve.values, 1) if value >= target), None)


# ----- report ---------------------------------------------------------------------------------------------------
def write_report(
    path: Path, recipe: Recipe, work: Path, insights, warm: list, curves: dict[str, Curve], derived: Path
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(derived, path.with_name("transfer-derived-space.yaml"))
    shutil.copyfile(work / "digits-source" / "insights.md", path.with_name("transfer-digits-insights.md"))
    plot_curves(path.with_suffix(".png"), curves, recipe)
    best = max(curves["fmnist-scratch"].values)
    target = TARGET_FRACTION * best
    quarter = round(recipe.target_trials / 4)
    rows = [_result_row(v, curves[v.study], best, quarter) for v in VARIANTS]
    lines = _report_header(recipe, insights, warm, derived) + [
        "## Results",
        "",
        f"Hypervolume of (validation accuracy, latency) over the feasible trained candidates, reference point "
        f"(accuracy 0, latency {recipe.latency_budget_ms} ms = the budget), normalised to [0, 1]. "
        f"Target: {TARGET_FRACTION:.0%} of the from-scratch search's best, {target:.4f}. Trials count every "
        "candidate (warm-started, budget breakers and pruned ones included).",
        "",
        f"| variant | warm start | trials (trained) | best hypervolume | best vs scratch | after 1 trial "
        f"| after {quarter} trials | trials to 90% of scratch | trials to {TARGET_FRACTION:.0%} of scratch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"![hypervolume per trial]({path.with_suffix('.png').name})",
        "",
        *_conclusions(curves, recipe, target),
    ]
    path.write_text("\n".join(lines) + "\n")


def _result_row(v: Variant, curve: Curve, scratch_best: float, quarter: int) -> str:
    def reach(fraction: float) -> str:
        n = trials_to_reach(curve, fraction * scratch_best)
        return str(n) if n is not None else f"not in {len(curve.values)}"

    return (
        f"| {v.name} | {'yes' if v.warm else 'no'} | {len(curve.values)} ({curve.trained}) | "
        f"{max(curve.values):.4f} | {_share(max(curve.values), scratch_best)} | {curve.at(1):.4f} | "
        f"{curve.at(quarter):.4f} | {reach(0.90)} | {reach(TARGET_FRACTION)} |"
    )


def _report_header(recipe: Recipe, insights, warm: list, derived: Path) -> list[str]:
    diff = diff_space_files(COMBINED, derived)
    narrowed = [change.describe() for change in diff.parameters]
    return [
        "# Transfer: digits -> Fashion-MNIST on sim-npu-p32",
        "",
        "Regenerate (resumable; about 30 min on two shared CPU cores):",
        "",
        "    .venv/bin/python benchmarks/transfer.py",
        "",
        "## Recipe",
        "",
        "| setting | value |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in asdict(recipe).items()),
        "| source | combined.yaml on digits (1,797 images) |",
        f"| target | Fashion-MNIST, stratified {10 * recipe.per_class:,}-image subset of the training IDX file |",
        "| strategy | evolution (NSGA-II), one seed per variant (the same) |",
        "",
        "## What the source search taught",
        "",
        f"Source study: {len(insights.record.trials)} trials, {len(insights.record.pareto)} Pareto architectures "
        f"(the {len(warm)} warm-start architectures). Findings "
        "([full insights](transfer-digits-insights.md)):",
        "",
        *(f"- {finding.text}" for finding in insights.findings),
        "",
        f"Derived space ([transfer-derived-space.yaml](transfer-derived-space.yaml)), vs combined.yaml: "
        f"{diff.lines()[-1]}.",
        "",
        *(f"    {line}" for line in narrowed),
        "",
    ]


def _conclusions(curves: dict[str, Curve], recipe: Recipe, target: float) -> list[str]:
    scratch = curves["fmnist-scratch"]
    quarter = curves["fmnist-derived-quarter"]
    lines = [
        "## Reading",
        "",
        f"- The derived space with a quarter of the budget ({len(quarter.values)} trials) reaches "
        f"{_share(max(quarter.values), max(scratch.values))} of the full from-scratch search's best hypervolume "
        f"({recipe.target_trials} trials).",
    ]
    for study, label in (("fmnist-warm", "warm start"), ("fmnist-derived-warm", "derived space + warm start")):
        curve = curves[study]
        lines.append(
            f"- With the {label}, the first trial (a source Pareto architecture) already holds "
            f"{_share(curve.at(1), max(scratch.values))} of the from-scratch best; "
            f"{_reached(curve, target)} to reach {TARGET_FRACTION:.0%} of it, from scratch {_reached(scratch, target)}."
        )
    trained = sorted(c.trained for c in curves.values())
    lines.append(
        f"- One seed per variant and {trained[0]}-{trained[-1]} trained candidates per search, each trained for "
        f"{recipe.epochs} epochs: differences of a few hypervolume points are within the noise of the recipe "
        "(rerun with `--seed 1` and a fresh `--work-dir` for a second draw)."
    )
    return lines


def _reached(curve: Curve, target: float) -> str:
    n = trials_to_reach(curve, target)
    return f"{n} trials" if n is not None else f"not reached in {len(curve.values)} trials"


def _share(value: float, reference: float) -> str:
    return f"{value / reference:.1%}" if reference > 0 else "n/a (scratch found no feasible trained candidate)"


def plot_curves(path: Path, curves: dict[str, Curve], recipe: Recipe) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant in VARIANTS:
        values = curves[variant.study].values
        ax.step(range(1, len(values) + 1), values, where="post", label=variant.name)
    best = max(curves["fmnist-scratch"].values)
    ax.axhline(TARGET_FRACTION * best, color="grey", ls="--", lw=1, label=f"{TARGET_FRACTION:.0%} of scratch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trials")
    ax.set_ylabel(f"hypervolume (accuracy x latency under {recipe.latency_budget_ms} ms)")
    ax.set_title("Fashion-MNIST on sim-npu-p32: transfer from a digits search")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
