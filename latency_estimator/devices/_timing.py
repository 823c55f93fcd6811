"""Wall-clock timing shared by the real devices: warm-up, batched samples,
median, relative IQR, and a retake when the spread is above a threshold."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from latency_estimator.devices.base import Measurement
from latency_estimator.errors import DeviceError

__all__ = ["TimingSettings", "measure_stably", "relative_iqr"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimingSettings:
    warmup_runs: int = 5  # first runs allocate buffers and fill caches: not timed
    samples: int = 15  # timing samples per attempt; the median is kept
    min_sample_ms: float = 0.2  # runs are batched so a sample lasts this long: perf_counter noise and
    # the Python call are then small next to a sub-0.05 ms subgraph
    noise_threshold: float = 0.1  # relative IQR above which an attempt is noisy and taken again
    max_attempts: int = 3  # the least noisy attempt is kept when all are noisy

    def __post_init__(self) -> None:
        for name in ("warmup_runs", "samples", "max_attempts"):
            if getattr(self, name) < 1:
                raise DeviceError(f"`{name} >= 1` must hold, but got {name}={getattr(self, name)}")
        for name in ("min_sample_ms", "noise_threshold"):
            if not getattr(self, name) > 0:
                raise DeviceError(f"`{name} > 0` must hold, but got {name}={getattr(self, name)}")


def measure_stably(run: Callable[[], object], timing: TimingSettings, *, what: str) -> Measurement:
    """Time ``run`` until an attempt's spread is at most ``noise_threshold``."""
    best: Measurement | None = None
    for attempt in range(1, timing.max_attempts + 1):
        latency_ms, spread = _time_once(run, timing)
        current = Measurement(latency_ms=latency_ms, spread=spread, repeats=timing.samples, attempts=attempt)
        if spread <= timing.noise_threshold:
            return current
        logger.debug("%s: attempt %d is noisy (spread %.2f > %.2f)", what, attempt, spread, timing.noise_threshold)
        if best is None or spread < best.spread:
            best = current
    logger.warning(
        "%s: still noisy after %d attempts (spread %.2f > %.2f); keeping the least noisy",
        what,
        timing.max_attempts,
        best.spread,
        timing.noise_threshold,
    )
    return Measurement(latency_ms=best.latency_ms, spread=best.spread, repeats=best.repeats, attempts=attempt)


def relative_iqr(samples_ms: np.ndarray) -> float:
    q1, median, q3 = np.percentile(samples_ms, [25, 50, 75])
    return float((q3 - q1) / median)


def _time_once(run: Callable[[], object], timing: TimingSettings) -> tuple[float, float]:
    warmup = []
    for _ in range(timing.warmup_runs):
        start = time.perf_counter()
        run()
        warmup.append(time.perf_counter() - start)
    batch = max(1, math.ceil(timing.min_sample_ms / 1e3 / max(min(warmup), 1e-9)))
    samples = np.empty(timing.samples)
    for i in range(timing.samples):
        start = time.perf_counter()
        for _ in range(batch):
            run()
        samples[i] = (time.perf_counter() - start) / batch * 1e3
    return float(np.median(samples)), relative_iqr(samples)
