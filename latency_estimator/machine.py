"""The machine a timed device runs on: how busy it is, and what it runs (CPU model, runtime versions), so that
measurements say where they came from and an estimator measured elsewhere says so when it is used."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from latency_estimator.devices.base import Device, cpu_model

__all__ = [
    "differences_from_here",
    "runtime_versions",
    "warn_if_busy",
]

RUNTIMES = ("onnxruntime", "tvm")  # the versions that change how fast a network runs

logger = logging.getLogger(__name__)


def warn_if_busy(device: Device) -> None:
    """Log a warning when a timed device shares a busy machine: other processes
    slow a run by up to 2x for seconds at a time (measured on a shared 2-core VM),
    and no per-run statistic removes that."""
    if device.deterministic or not hasattr(os, "getloadavg"):
        return
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.75 * cores:
        logger.warning(
            "%s: the machine is busy (load %.1f on %d cores); timings will carry other processes' load. "
            "Measure on a quiet machine for figures worth keeping.",
            device.name,
            load,
            cores,
        )


def runtime_versions() -> dict[str, str]:
    """The versions a measurement dataset records beside its numbers."""
    import onnxruntime
    import xgboost

    return {"onnxruntime": onnxruntime.__version__, "xgboost": xgboost.__version__, "numpy": np.__version__}


def differences_from_here(measured_on: dict[str, Any]) -> list[str]:
    """How the machine an estimator's measurements were taken on (its ``measured_on`` metadata) differs from this
    one: CPU model and runtime versions, as ``what: there -> here``; empty when they agree or were not recorded."""
    differences = []
    there_cpu, here_cpu = measured_on.get("cpu_model"), cpu_model()
    if there_cpu and there_cpu != here_cpu:
        differences.append(f"CPU {there_cpu!r} -> {here_cpu!r}")
    there_versions, here_versions = measured_on.get("versions") or {}, runtime_versions()
    for runtime in RUNTIMES:
        there, here = there_versions.get(runtime), here_versions.get(runtime)
        if there and here and there != here:
            differences.append(f"{runtime} {there} -> {here}")
    return differences
