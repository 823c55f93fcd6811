"""Latency of a compiled model (TVM) or an ONNX model (ONNX Runtime) on this host.

Both report the median of ``repeats`` samples (:mod:`deploy.latency`). Threads
are set explicitly (default 1) so figures from different runtimes compare.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from deploy.compile import CompiledModel
from deploy.latency import LatencyStats, latency_stats, runs_per_sample
from deploy.session import INPUT_NAME, ort_session
from deploy.threads import set_tvm_threads

__all__ = ["time_compiled", "time_onnxruntime"]


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
