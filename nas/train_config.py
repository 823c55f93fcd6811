"""TrainConfig: the training recipe, each default with its reason (no torch: the CLI reads the defaults).

The loop that follows it is :mod:`nas.training`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from search_spaces.errors import EdgeNasError

__all__ = ["TrainConfig", "TrainingError"]


class TrainingError(EdgeNasError):
    """Training cannot start (bad config, mismatched model) or diverged."""


@dataclass(frozen=True)
class TrainConfig:
    # A few epochs rank candidates well enough for a search; the winners are retrained longer.
    epochs: int = 5
    # Optional hard cap on optimiser steps (multi-fidelity budgets); the cosine schedule spans it.
    max_steps: int | None = None
    # Small: digits has ~1250 train images, and 128 leaves too few steps for BN nets to learn in
    # 5 epochs (val 0.79 vs 0.98 with 32); on the CPU an epoch costs about the same either way.
    batch_size: int = 32
    # SGD + Nesterov with warm-up and cosine decay beat AdamW (3e-3, 1e-2) on digits in 2-5 epochs;
    # 0.05 gives steadier early-epoch accuracy (what a pruner sees) than 0.1, with the same final one.
    lr: float = 0.05
    momentum: float = 0.9
    # Applied to conv/linear weights only (not BN or biases), the usual MobileNet recipe.
    weight_decay: float = 5e-4
    # Mild smoothing steadies the few-epoch accuracy estimate that the search ranks by.
    label_smoothing: float = 0.1
    # Warm-up of this many steps keeps a high lr from blowing up freshly initialised BN statistics.
    warmup_steps: int = 20
    seed: int = 0
    # "auto": cuda when available, else cpu; or any torch device string ("cpu", "cuda:1").
    device: str = "auto"
    # CPU threads for torch during training; None keeps torch's setting (search workers set 1).
    threads: int | None = None

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "`epochs >= 1`", f"{self.epochs=}")
        _require(self.max_steps is None or self.max_steps >= 1, "`max_steps` None or >= 1", f"{self.max_steps=}")
        _require(self.batch_size >= 1, "`batch_size >= 1`", f"{self.batch_size=}")
        _require(self.lr > 0 and math.isfinite(self.lr), "`lr > 0`", f"{self.lr=}")
        _require(0 <= self.momentum < 1, "`0 <= momentum < 1`", f"{self.momentum=}")
        _require(self.weight_decay >= 0, "`weight_decay >= 0`", f"{self.weight_decay=}")
        _require(0 <= self.label_smoothing < 1, "`0 <= label_smoothing < 1`", f"{self.label_smoothing=}")
        _require(self.warmup_steps >= 0, "`warmup_steps >= 0`", f"{self.warmup_steps=}")
        _require(self.threads is None or self.threads >= 1, "`threads` None or >= 1", f"{self.threads=}")


def _require(ok: bool, rule: str, got: str) -> None:
    if not ok:
        raise TrainingError(f"TrainConfig: {rule} must hold, but got {got}")
