"""Latency statistics of timed runs: how many runs make a sample, and the median of the samples.

Each sample averages enough back-to-back runs to last ``min_sample_ms`` so that
timer noise stays small next to a sub-millisecond model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["LatencyStats", "latency_stats", "runs_per_sample"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    min_ms: float
    samples_ms: tuple[float, ...]
    runtime: str  # "tvm", "onnxruntime" or "tvm-rpc:<key>"
    num_threads: int

    @property
    def spread(self) -> float:
        """Relative inter-quartile range of the samples."""
        q1, q3 = np.percentile(self.samples_ms, [25, 75])
        return float((q3 - q1) / self.median_ms)


def runs_per_sample(run: Callable[[], object], min_sample_ms: float) -> int:
    """How many back-to-back runs make one timing sample last ``min_sample_ms``."""
    start = time.perf_counter()
    run()
    once_ms = (time.perf_counter() - start) * 1e3
    return max(1, int(np.ceil(min_sample_ms / max(once_ms, 1e-3))))


def latency_stats(samples_ms: tuple[float, ...], *, runtime: str, num_threads: int) -> LatencyStats:
    stats = LatencyStats(
        median_ms=float(np.median(samples_ms)),
        min_ms=float(np.min(samples_ms)),
        samples_ms=samples_ms,
        runtime=runtime,
        num_threads=num_threads,
    )
    logger.info("%s: median %.4f ms (spread %.2f, %d threads)", runtime, stats.median_ms, stats.spread, num_threads)
    return stats
