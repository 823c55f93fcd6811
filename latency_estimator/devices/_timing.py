"""Wall-clock timing shared by the real devices, made robust to a shared, busy machine.

A measurement is a window of short timing samples: after ``warmup_runs``,
runs are batched so that one sample lasts at least ``min_sample_ms`` (timer
resolution and the Python call are then small even for a 5 µs subgraph), and
samples are taken until there are ``samples`` of them *and* ``min_window_ms``
of wall-clock time has passed. The latency is a low percentile
(``percentile``, default the 10th) of the per-run times of those samples.

Why a low percentile and not the median: other processes only ever add time.
On a shared 2-core VM (load 4-6) a 0.5 ms network measured a minute apart
differed by up to 2.2x with the median, while a 10 µs subgraph timed in a
tight loop moved far less, so the median inflated networks much more than
the subgraphs summed to predict them. A low percentile keeps the samples that
ran undisturbed; unlike the minimum it does not hang on one lucky sample.

Why a fixed wall-clock window: a whole network (~0.5 ms a run) and a 5 µs
subgraph then see the machine for the same time, in samples of similar
length, so both are exposed to interference alike and the same statistic
means the same thing for both.

``spread`` is the relative IQR of the samples (IQR / median). An attempt
whose spread is above ``noise_threshold`` is taken again, up to
``max_attempts``; of the attempts, the one with the lowest latency is kept
(interference only adds time), its spread reported.

What no statistic removes: a neighbour that keeps the caches and memory bus
busy slows every run for seconds at a time, a whole network (weights in the
MBs, cold in L2) more than a subgraph looping on hot weights. With two
memory-heavy jobs on a 2-core VM, the 10th percentile of a 0.3 ms network
sat 1.3-1.8x above its best for most of a 30 s trace, and two passes over
105 networks a few seconds apart agreed within ±10 % for only 41-61 % of
them. Measure on a quiet machine for figures worth keeping.
"""

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

MAX_SAMPLES = 100_000  # a bound on one window's samples, whatever the settings


@dataclass(frozen=True)
class TimingSettings:
    warmup_runs: int = 5  # first runs allocate buffers and fill caches: not timed
    samples: int = 15  # at least this many timing samples per attempt
    min_sample_ms: float = 0.2  # runs are batched so a sample lasts this long: perf_counter noise and
    # the Python call are then small next to a sub-0.05 ms subgraph; short enough that most samples
    # fit between other processes' time slices on a busy machine
    min_window_ms: float = 40.0  # samples are taken for at least this long: the same exposure to
    # interference for a 5 µs subgraph and a 1 ms network
    percentile: float = 10.0  # of the samples' per-run times, kept as the latency (0: the minimum)
    noise_threshold: float = 0.1  # relative IQR above which an attempt is noisy and taken again
    max_attempts: int = 3  # the fastest attempt is kept when all are noisy
    # Whole networks (profiled and evaluated) are timed in this many passes, at least ``pass_gap_s`` apart, and
    # keep their fastest (latency_estimator.passes): a slow episode of the machine is then over by a later pass.
    network_passes: int = 1
    pass_gap_s: float = 15.0
    # A network whose fastest pass no other pass confirms within ``pass_agreement`` (relative) is noisy: it is
    # timed in further passes, up to ``max_network_passes`` in all (0: no further passes).
    max_network_passes: int = 0
    pass_agreement: float = 0.03

    def __post_init__(self) -> None:
        for name in ("warmup_runs", "samples", "max_attempts", "network_passes"):
            if getattr(self, name) < 1:
                raise DeviceError(f"`{name} >= 1` must hold, but got {name}={getattr(self, name)}")
        for name in ("min_sample_ms", "noise_threshold"):
            if not getattr(self, name) > 0:
                raise DeviceError(f"`{name} > 0` must hold, but got {name}={getattr(self, name)}")
        if self.max_network_passes < 0:
            raise DeviceError(
                f"`max_network_passes >= 0` must hold, but got max_network_passes={self.max_network_passes}"
            )
        if not self.pass_agreement > 0:
            raise DeviceError(f"`pass_agreement > 0` must hold, but got pass_agreement={self.pass_agreement}")
        if not self.pass_gap_s >= 0:
            raise DeviceError(f"`pass_gap_s >= 0` must hold, but got pass_gap_s={self.pass_gap_s}")
        if not self.min_window_ms >= 0:
            raise DeviceError(f"`min_window_ms >= 0` must hold, but got min_window_ms={self.min_window_ms}")
        if not 0 <= self.percentile <= 50:
            raise DeviceError(f"`0 <= percentile <= 50` must hold, but got percentile={self.percentile}")


def measure_stably(run: Callable[[], object], timing: TimingSettings, *, what: str) -> Measurement:
    """Time ``run`` until an attempt's spread is at most ``noise_threshold``; keep the fastest attempt."""
    best: Measurement | None = None
    for attempt in range(1, timing.max_attempts + 1):
        latency_ms, spread, count = _time_once(run, timing)
        if best is None or latency_ms < best.latency_ms:
            best = Measurement(latency_ms=latency_ms, spread=spread, repeats=count, attempts=attempt)
        if spread <= timing.noise_threshold:
            break
        logger.debug("%s: attempt %d is noisy (spread %.2f > %.2f)", what, attempt, spread, timing.noise_threshold)
    else:
        logger.debug(  # the norm on a busy machine (warn_if_busy says so once); the fastest attempt is kept
            "%s: still noisy after %d attempts (spread %.2f > %.2f); keeping the fastest",
            what,
            timing.max_attempts,
            spread,
            timing.noise_threshold,
        )
    return Measurement(latency_ms=best.latency_ms, spread=best.spread, repeats=best.repeats, attempts=attempt)


def relative_iqr(samples_ms: np.ndarray) -> float:
    q1, median, q3 = np.percentile(samples_ms, [25, 50, 75])
    return float((q3 - q1) / median)


def _time_once(run: Callable[[], object], timing: TimingSettings) -> tuple[float, float, int]:
    """(latency in ms, spread, sample count) of one window."""
    batch = _batch_size(run, timing)
    samples: list[float] = []
    deadline = time.perf_counter() + timing.min_window_ms / 1e3
    while len(samples) < MAX_SAMPLES and (len(samples) < timing.samples or time.perf_counter() < deadline):
        start = time.perf_counter()
        for _ in range(batch):
            run()
        samples.append((time.perf_counter() - start) / batch * 1e3)
    times_ms = np.array(samples)
    return float(np.percentile(times_ms, timing.percentile)), relative_iqr(times_ms), len(times_ms)


def _batch_size(run: Callable[[], object], timing: TimingSettings) -> int:
    """Runs per sample, from the fastest warm-up run: a sample then lasts about ``min_sample_ms``."""
    fastest = math.inf
    for _ in range(timing.warmup_runs):
        start = time.perf_counter()
        run()
        fastest = min(fastest, time.perf_counter() - start)
    return max(1, math.ceil(timing.min_sample_ms / 1e3 / max(fastest, 1e-9)))
