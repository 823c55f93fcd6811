"""`make demo`: the whole edgenas pipeline, end to end, on the embedded digits data.

Reads top to bottom like the pipeline it runs:
  1. validate the shipped search spaces and sample networks from each;
  2. train the baseline briefly on digits (the reference every search beats);
  3. build the latency estimator of a simulated neural engine (P=32) and
     predict the baseline's latency, subgraph by subgraph;
  4. search the combined space (channels aligned to P, depth multiplier,
     IBN or fused IBN per stage) with Optuna, scored by that estimator;
  5. final-train the fastest Pareto networks at the baseline's search accuracy
     with the baseline's recipe, fastest first, until one holds the baseline's
     validation accuracy (the test images play no part in the choice);
  6. deploy it: export to ONNX, compile with TVM for this CPU, and run the
     artifact on test images;
  7. compare it with the baseline: latency cut, and test accuracy after the same training.
Steps 4 and 6 go through the `edgenas` command line, exactly as a user types it.
Every figure printed comes from this run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from deploy.artifact import MANIFEST
from nas.cli import main as edgenas
from nas.cli.common import human_bytes
from nas.datasets import load_dataset
from nas.training import TrainConfig, TrainResult, train_arch
from search_spaces import (
    SHIPPED_SPACES,
    ArchConfig,
    EdgeNasError,
    baseline_arch,
    count_arch,
    load_space,
    shipped_space_path,
)

SEED = 0  # one seed for splits, sampling, weights: the demo is reproducible
DEMO_EPOCHS = 5  # the baseline passes 98% test accuracy on digits in 5 epochs
DEVICE = "sim-npu-p32"  # a simulated edge neural engine: its estimator builds in seconds
STUDY = "demo"  # results/demo/: trials.csv, pareto.json, pareto.png, report.md
SEARCH_TRIALS = 16  # trainings: proxy-screened and budget-breaking proposals are free, the most promising train
# Hard budgets: at least 15 % faster than the baseline's estimate on the device, and at most 2/3 of its 899k params,
# so that every network the search trains is a real cut; the question the search answers is which keep accuracy.
LATENCY_BUDGET_FRACTION = 0.85
MAX_PARAMS = 600_000
ISO_ACCURACY_POINTS = 0.5  # "accuracy held": the test accuracy is within this many points of the baseline's
ACCURACY_SLACK = 0.02  # no Pareto network reaches the baseline: deploy the fastest within 2 points of the best
FINAL_TRAININGS = 3  # at most this many candidates are final-trained (a 5-epoch digits training: ~10-20 s each)
DIST = Path("dist/demo")
# `make demo` finishes within DEMO_SECONDS: deploy tunes for what the steps before it left, less DEPLOY_TAIL_SECONDS
# (export, parity checks, the tuned build, latency measurements, the run: 19-26 s here, 2026-12-04), within bounds.
DEMO_SECONDS = 600
DEPLOY_TAIL_SECONDS = 75
TUNE_MINUTES_BOUNDS = (1.0, 6.0)


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def validate_spaces() -> None:
    step("1. Search spaces: validate and sample")
    rng = np.random.default_rng(SEED)
    for name in SHIPPED_SPACES:
        space = load_space(shipped_space_path(name))
        archs = [space.sample(rng) for _ in range(3)]
        macs = [count_arch(a).macs / 1e6 for a in archs]
        print(f"{name:10s} {space.size():>8,} combinations; 3 samples: {', '.join(f'{m:.1f}' for m in macs)} M MACs")
        print(f"{'':10s} e.g. {archs[0].block_string()}")


def train_baseline(epochs: int) -> TrainResult:
    step(f"2. Baseline: train {epochs} epochs on digits")
    arch = baseline_arch()
    counts = count_arch(arch)
    dataset = load_dataset("digits", resolution=arch.resolution, seed=SEED)
    print(dataset.summary())
    _, result = train_arch(arch, dataset, config=TrainConfig(epochs=epochs, seed=SEED), progress=True)
    peak = counts.peak_activation_bytes
    print(f"baseline {arch.arch_id}: {arch.block_string()}")
    print(f"  params                  {counts.params:,}")
    print(f"  MACs                    {counts.macs:,}")
    print(f"  peak activation memory  {peak:,} B ({human_bytes(peak)}, float32, batch 1, at {counts.peak_layer})")
    print(
        f"  test accuracy           {result.test_accuracy:.4f} (val {result.val_accuracy:.4f}, {result.seconds:.1f} s)"
    )
    return result


def estimate_baseline() -> float:
    from latency_estimator import obtain_estimator

    step(f"3. Latency estimator for {DEVICE}")
    start = time.perf_counter()
    estimator = obtain_estimator(DEVICE)  # the search's own way: load it, or build it (seconds)
    print(f"estimator ready in {time.perf_counter() - start:.1f} s")
    prediction = estimator.predict(baseline_arch())
    print(f"baseline predicted latency on {DEVICE}: {prediction.latency_ms:.4f} ms; slowest subgraphs:")
    for item in sorted(prediction.breakdown, key=lambda b: -b.latency_ms)[:4]:
        print(f"  {item.name:20s} {item.kind:10s} {item.latency_ms:.4f} ms")
    return prediction.latency_ms


def search(baseline_ms: float) -> Path:
    step(f"4. Search combined.yaml on {DEVICE} ({SEARCH_TRIALS} trainings, hybrid: proxy screening + short training)")
    budget_ms = round(LATENCY_BUDGET_FRACTION * baseline_ms, 4)
    print(f"latency budget {budget_ms} ms: {1 - LATENCY_BUDGET_FRACTION:.0%} under the baseline's {baseline_ms:.4f} ms")
    command = ["search", "--space", str(shipped_space_path("combined")), "--device", DEVICE, "--dataset", "digits"]
    command += ["--trials", str(SEARCH_TRIALS), "--mode", "hybrid", "--epochs", "3", "--study", STUDY]
    command += ["--latency-budget-ms", str(budget_ms), "--max-params", str(MAX_PARAMS), "--seed", str(SEED)]
    study_dir = Path("results") / STUDY
    if study_dir.exists():  # the study would resume, finished: every demo runs its whole search
        shutil.rmtree(study_dir)
        print(f"removed the previous demo's {study_dir}/: this demo searches from the start")
    print("$ edgenas " + " ".join(command))
    if edgenas(command) != 0:
        raise SystemExit("the search failed")
    return study_dir


def candidates(study_dir: Path) -> list[dict]:
    """The Pareto networks at the baseline's search accuracy (iso-accuracy), fastest first; when none reaches it,
    those within ``ACCURACY_SLACK`` of the best."""
    document = json.loads((study_dir / "pareto.json").read_text())
    pareto, baseline = document["pareto"], document["baseline"]
    matching = [p for p in pareto if baseline is not None and p["value"] >= baseline["value"]]
    if matching:
        fast = min(matching, key=lambda p: p["latency_ms"])
        print(
            f"iso-accuracy: val acc {fast['value']:.4f} >= baseline's {baseline['value']:.4f} at "
            f"{fast['latency_ms']:.4f} ms vs {baseline['latency_ms']:.4f} ms on {DEVICE}: the search cuts latency "
            f"by {1 - fast['latency_ms'] / baseline['latency_ms']:.0%} ({len(matching)} such Pareto networks)"
        )
    else:
        best = max(point["value"] for point in pareto)
        matching = [p for p in pareto if p["value"] >= best - ACCURACY_SLACK]
        print(f"no Pareto network reaches the baseline's val acc; the fastest within {ACCURACY_SLACK:.0%} go on")
    for point in matching:
        point["arch_file"] = study_dir / "pareto" / f"{point['arch_id']}.yaml"
        point["cut"] = 1 - point["latency_ms"] / baseline["latency_ms"] if baseline is not None else float("nan")
    return sorted(matching, key=lambda p: p["latency_ms"])


def final_train(points: list[dict], baseline: TrainResult, epochs: int) -> tuple[dict, Path]:
    """Retrain the candidates as the baseline was trained, fastest first, until one's validation accuracy is within
    ``ISO_ACCURACY_POINTS`` of the baseline's (else the most accurate tried); that one and its weights file."""
    step(f"5. Final training: the fastest candidates, {epochs} epochs each, until one holds the baseline's val acc")
    floor = baseline.val_accuracy - ISO_ACCURACY_POINTS / 100
    print(f"baseline val acc {baseline.val_accuracy:.4f}: a candidate holds it at >= {floor:.4f}")
    tried = []
    for point in points[:FINAL_TRAININGS]:
        arch = ArchConfig.load(point["arch_file"])
        dataset = load_dataset("digits", resolution=arch.resolution, seed=SEED)
        model, result = train_arch(arch, dataset, config=TrainConfig(epochs=epochs, seed=SEED))
        held = result.val_accuracy >= floor
        print(
            f"  {arch.arch_id} at {point['latency_ms']:.4f} ms ({point['cut']:.0%} faster): val acc "
            f"{result.val_accuracy:.4f} ({'holds' if held else 'below'}; {result.seconds:.1f} s)"
        )
        tried.append((result.val_accuracy, point, model))
        if held:
            break
    _, point, model = tried[-1] if tried[-1][0] >= floor else max(tried, key=lambda t: t[0])
    weights = DIST.parent / f"{point['arch_id']}.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), weights)
    return point, weights


def tuning_minutes(elapsed_s: float) -> float:
    """Deploy's tuning budget: what is left of :data:`DEMO_SECONDS` after ``elapsed_s``, within the bounds.

    Tuning is where the demo's time goes best: into an empty tuning database, three minutes left the winner
    2.47x slower than ONNX Runtime, six minutes 1.48x (AMD EPYC, 2 cores). A second demo reuses the database."""
    low, high = TUNE_MINUTES_BOUNDS
    return round(min(high, max(low, (DEMO_SECONDS - DEPLOY_TAIL_SECONDS - elapsed_s) / 60)), 1)


def deploy(arch_file: Path, weights: Path, tune_minutes: float) -> float | None:
    """Deploy the final-trained winner, tuning for ``tune_minutes``, and run it; its test accuracy."""
    step("6. Deploy: export to ONNX, compile with TVM for this CPU, run")
    arch = ArchConfig.load(arch_file)
    print(f"winner {arch.arch_id}: {arch.block_string()}")
    print(f"tuning budget {tune_minutes:g} min: what the steps before left of the demo's {DEMO_SECONDS // 60} minutes")
    command = ["deploy", "--arch", str(arch_file), "--weights", str(weights), "--dataset", "digits"]
    command += ["--target", "x86_64", "--out", str(DIST), "--tune-minutes", f"{tune_minutes:g}"]
    print("$ edgenas " + " ".join(command))
    started = time.perf_counter()
    if edgenas(command) != 0:
        raise SystemExit("deploy failed")
    print(f"deploy took {time.perf_counter() - started:.0f} s")
    test = load_dataset("digits", resolution=arch.resolution, seed=SEED).test
    batch = DIST.parent / "demo-test-images.npy"
    np.save(batch, test.x[:4].numpy())
    print(f"true labels of the 4 test images: {test.y[:4].tolist()}")
    command = ["run", str(DIST), "--input", str(batch), "--preprocessed", "--top-k", "1"]
    print("$ edgenas " + " ".join(command))
    if edgenas(command) != 0:
        raise SystemExit("run failed")
    return json.loads((DIST / MANIFEST).read_text()).get("test_accuracy")


def compare(cut: float, baseline_test: float, winner_test: float | None, epochs: int) -> None:
    """The claim the demo makes, on held-out test images after the same training (not the search's val split)."""
    step("7. Result")
    held = winner_test is not None and winner_test >= baseline_test - ISO_ACCURACY_POINTS / 100
    verdict = "accuracy held" if held else "accuracy NOT held"
    print(
        f"the deployed network runs {cut:.0%} faster than the baseline on {DEVICE}; test accuracy after "
        f"the same {epochs}-epoch training: {_pct(winner_test)} vs the baseline's {_pct(baseline_test)} "
        f"({verdict}: within {ISO_ACCURACY_POINTS} points)"
    )
    if winner_test is not None:
        images = len(load_dataset("digits", resolution=32, seed=SEED).test.y)
        diff = round((winner_test - baseline_test) * images)
        more = "more" if diff > 0 else "fewer"
        print(
            f"on {images} test images one image is {100 / images:.2f} points: the winner gets {abs(diff)} {more} "
            "right than the baseline, and another training seed moves either by a few images"
        )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="training epochs of the baseline and winner")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        validate_spaces()
        baseline = train_baseline(args.epochs)
        winner, weights = final_train(candidates(search(estimate_baseline())), baseline, args.epochs)
        tune_minutes = tuning_minutes(time.perf_counter() - start)
        winner_test = deploy(winner["arch_file"], weights, tune_minutes)
        compare(winner["cut"], baseline.test_accuracy, winner_test, args.epochs)
    except EdgeNasError as exc:
        print(f"edgenas demo: error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(f"\ndemo finished in {seconds:.0f} s; search results in results/{STUDY}/, artifact in {DIST}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
