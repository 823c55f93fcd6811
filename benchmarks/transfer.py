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


def hypervolume_curve(folder: Path, study_name: str, latency_ref_ms: float) -> list[float]:
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
    return curve


def trials_to_reach(curve: list[float], target: float) -> int | None:
    return next((n for n, value in enumerate(curve, 1) if value >= target), None)


# ----- report ---------------------------------------------------------------------------------------------------
def write_report(path: Path, recipe: Recipe, work: Path, insights, warm: list, curves: dict, derived: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(derived, path.with_name("transfer-derived-space.yaml"))
    shutil.copyfile(work / "digits-source" / "insights.md", path.with_name("transfer-digits-insights.md"))
    plot_curves(path.with_suffix(".png"), curves, recipe)
    scratch = curves["fmnist-scratch"]
    target = TARGET_FRACTION * max(scratch)
    quarter = round(recipe.target_trials / 4)
    rows = []
    for v in VARIANTS:
        curve = curves[v.study]
        reached = trials_to_reach(curve, target)
        rows.append(
            f"| {v.name} | {'yes' if v.warm else 'no'} | {len(curve)} | {max(curve):.4f} | "
            f"{reached if reached is not None else f'not in {len(curve)}'} | "
            f"{curve[min(quarter, len(curve)) - 1]:.4f} | {_share(max(curve), max(scratch))} |"
        )
    lines = _report_header(recipe, insights, warm, derived) + [
        "## Results",
        "",
        f"Hypervolume of (validation accuracy, latency) over the feasible trained candidates, reference point "
        f"(accuracy 0, latency {recipe.latency_budget_ms} ms = the budget), normalised to [0, 1]. "
        f"Target: {TARGET_FRACTION:.0%} of the from-scratch search's best, {target:.4f}. Trials count every "
        "candidate (warm-started, budget breakers and pruned ones included).",
        "",
        f"| variant | warm start | trials | best hypervolume | trials to reach {TARGET_FRACTION:.0%} of scratch "
        f"| hypervolume after {quarter} trials | best vs scratch |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"![hypervolume per trial]({path.with_suffix('.png').name})",
        "",
        *_conclusions(curves, recipe, target),
    ]
    path.write_text("\n".join(lines) + "\n")


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


def _conclusions(curves: dict, recipe: Recipe, target: float) -> list[str]:
    scratch_best = max(curves["fmnist-scratch"])
    quarter = curves["fmnist-derived-quarter"]
    lines = [
        "## Reading",
        "",
        f"- The derived space with a quarter of the budget ({len(quarter)} trials) reaches "
        f"{_share(max(quarter), scratch_best)} of the full from-scratch search's best hypervolume "
        f"({recipe.target_trials} trials).",
    ]
    for study, label in (("fmnist-warm", "warm start"), ("fmnist-derived-warm", "derived space + warm start")):
        reached = trials_to_reach(curves[study], target)
        scratch = trials_to_reach(curves["fmnist-scratch"], target)
        if reached is not None and scratch is not None:
            lines.append(f"- With the {label}, {reached} trials reach the target; from scratch, {scratch}.")
    lines += [
        "- One seed per variant and about a dozen trained candidates per search: differences of a few "
        "hypervolume points are within the noise of a 2-epoch recipe; rerun with `--seed 1` for a second draw.",
    ]
    return lines


def _share(value: float, reference: float) -> str:
    return f"{value / reference:.1%}" if reference > 0 else "n/a (scratch found no feasible trained candidate)"


def plot_curves(path: Path, curves: dict, recipe: Recipe) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant in VARIANTS:
        curve = curves[variant.study]
        ax.step(range(1, len(curve) + 1), curve, where="post", label=variant.name)
    ax.axhline(TARGET_FRACTION * max(curves["fmnist-scratch"]), color="grey", ls="--", lw=1, label="95% of scratch")
    ax.set_xlabel("trials")
    ax.set_ylabel(f"hypervolume (accuracy x latency under {recipe.latency_budget_ms} ms)")
    ax.set_title("Fashion-MNIST on sim-npu-p32: transfer from a digits search")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
