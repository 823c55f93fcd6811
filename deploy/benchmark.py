"""Latency of a compiled model (TVM) or an ONNX model (ONNX Runtime) on this host.

Both report the median of ``repeats`` samples; each sample averages enough
back-to-back runs to last ``min_sample_ms`` so that timer noise stays small
next to a sub-millisecond model. Threads are set explicitly (default 1) so
figures from different runtimes compare.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.compile import CompiledModel
from deploy.errors import CompileError
from deploy.export import INPUT_NAME

__all__ = ["LatencyStats", "set_tvm_threads", "time_compiled", "time_onnxruntime"]

logger = logging.getLogger(__name__)

_AFFINITY_BIG = 1  # TVM's ThreadGroup::kBig: on x86 every core counts as "big"


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    min_ms: float
    samples_ms: tuple[float, ...]
    runtime: str  # "tvm" or "onnxruntime"
    num_threads: int

    @property
    def spread(self) -> float:
        """Relative inter-quartile range of the samples."""
        q1, q3 = np.percentile(self.samples_ms, [25, 75])
        return float((q3 - q1) / self.median_ms)


def set_tvm_threads(num_threads: int) -> None:
    """Size TVM's CPU thread pool (the same as TVM_NUM_THREADS, but at any time)."""
    import tvm

    if num_threads < 1:
        raise CompileError(f"`num_threads >= 1` must hold, but got {num_threads=}")
    tvm.get_global_func("runtime.config_threadpool")(_AFFINITY_BIG, num_threads)


def time_compiled(
    compiled: CompiledModel,
    *,
    repeats: int = 20,
    min_sample_ms: float = 20.0,
    num_threads: int = 1,
    seed: int = 0,
) -> LatencyStats:
    """Median latency (ms) of one batch-1 inference of a compiled model on this host."""
    import tvm

    vm, device = compiled.vm(), compiled.device()
    if compiled.target.device == "cpu":
        set_tvm_threads(num_threads)
    data = np.random.default_rng(seed).standard_normal(compiled.input_shape, dtype=np.float32)
    x = tvm.runtime.tensor(data, device)
    vm["main"](x)  # warm-up: first call allocates the VM's buffers
    number = runs_per_sample(lambda: vm["main"](x), min_sample_ms)
    evaluator = vm.time_evaluator("main", device, number=number, repeat=repeats)
    samples = tuple(float(s) * 1e3 for s in evaluator(x).results)
    return latency_stats(samples, runtime="tvm", num_threads=num_threads)


def time_onnxruntime(
    onnx_path: str | Path,
    *,
    input_shape: tuple[int, ...],
    repeats: int = 20,
    min_sample_ms: float = 20.0,
    num_threads: int = 1,
    seed: int = 0,
) -> LatencyStats:
    """Median latency (ms) of one inference with ONNX Runtime's CPU provider."""
    from deploy.runtime import ort_session

    session = ort_session(onnx_path, num_threads=num_threads)
    feed = {INPUT_NAME: np.random.default_rng(seed).standard_normal(input_shape, dtype=np.float32)}
    session.run(None, feed)  # warm-up
    number = runs_per_sample(lambda: session.run(None, feed), min_sample_ms)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            session.run(None, feed)
        samples.append((time.perf_counter() - start) / number * 1e3)
    return latency_stats(tuple(samples), runtime="onnxruntime", num_threads=num_threads)


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
