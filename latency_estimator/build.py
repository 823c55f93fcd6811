"""Building a device's estimator, top to bottom: profile -> train -> save; and the one way to obtain one.

:func:`obtain_estimator` is what every user of an estimator calls: it loads the device's saved estimator, and
when there is none builds one (by default only for a simulated device, which is cheap to profile) under a file
lock, into a scratch folder renamed into place when whole, so that workers starting together on a checkout
without an estimator build it once and all use it. :func:`build_estimator` profiles
(:func:`~latency_estimator.profiling.profile_device`), trains (:func:`train_from_dataset`) and saves.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from latency_estimator.batch import SubgraphBatch
from latency_estimator.dataset import MeasurementDataset
from latency_estimator.devices import get_device
from latency_estimator.devices.base import Device
from latency_estimator.errors import EstimatorError
from latency_estimator.estimator import FORMAT_VERSION, LatencyEstimator, default_estimator_dir
from latency_estimator.machine import differences_from_here
from latency_estimator.overhead import NetworkTotals, OverheadModel, fit_overhead
from latency_estimator.passes import ProgressFn
from latency_estimator.profiling import profile_device
from latency_estimator.regressor import compare_candidates, fit_subgraph_model
from latency_estimator.subgraph import Subgraph, decompose_arch, weight_mb
from search_spaces import ArchConfig

__all__ = [
    "UNASKED_BUILD_SAMPLES",
    "build_estimator",
    "network_sums",
    "network_weights",
    "obtain_estimator",
    "train_estimator",
    "train_from_dataset",
]

logger = logging.getLogger(__name__)

# Subgraphs an estimator built unasked profiles (a simulated device: seconds, about 1 % held-out error);
# `edgenas latency profile` takes the device's own `default_samples`.
UNASKED_BUILD_SAMPLES = 400


def obtain_estimator(
    device: str | Device,
    *,
    build_if_missing: bool | None = None,
    directory: str | Path | None = None,
    samples: int = UNASKED_BUILD_SAMPLES,
) -> LatencyEstimator:
    """The saved estimator of ``device`` in ``directory`` (default: :func:`default_estimator_dir`), trained for
    the device's profile as it stands now. When the folder holds none and ``build_if_missing`` (default: the
    device is :attr:`~Device.simulated`), one is profiled with ``samples`` subgraphs, trained and saved (logged);
    else :class:`EstimatorError` says how to build it. An estimator measured on another CPU model or runtime
    version than this machine's is used with a logged warning."""
    device = get_device(device) if isinstance(device, str) else device
    folder = Path(directory or default_estimator_dir(device.name))
    build = device.simulated if build_if_missing is None else build_if_missing
    if build and not folder.exists():
        with _build_lock(folder):
            if not folder.exists():  # another worker may have built it while this one waited
                logger.info("no estimator for %s in %s: profiling the device and training one", device.name, folder)
                _build_in_place(device, folder, samples=samples)
    if not (folder / LatencyEstimator.META_FILE).exists():
        raise EstimatorError(
            f"{folder}: no latency estimator for device {device.name!r} here; build one with "
            f"`edgenas latency profile --device {device.name}` then `edgenas latency train --device {device.name}`"
        )
    estimator = LatencyEstimator.load(folder, device=device.name, profile=device.profile.to_dict())
    if not device.simulated:
        _warn_if_measured_elsewhere(estimator, folder)
    return estimator


def _build_in_place(device: Device, folder: Path, *, samples: int) -> None:
    """Build into a scratch folder beside ``folder``, then rename it into place: no reader ever sees half of one."""
    scratch = folder.with_name(f".{folder.name}.building-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        _profile_train_save(device, scratch, samples=samples)
        os.rename(scratch, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``.<folder>.lock`` beside the folder: one worker builds, the others wait for it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(f".{folder.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _warn_if_measured_elsewhere(estimator: LatencyEstimator, folder: Path) -> None:
    differences = differences_from_here(estimator.metadata.get("measured_on") or {})
    if differences:
        logger.warning(
            "%s: the %s estimator was measured on another machine (%s); its predictions may not hold here",
            folder,
            estimator.device,
            "; ".join(differences),
        )


def build_estimator(
    device: str | Device,
    *,
    samples: int | None = None,
    directory: str | Path | None = None,
    networks: int = 12,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> LatencyEstimator:
    """Profile (or finish profiling) ``device``, train its estimator and save it
    in ``directory`` (default: :func:`default_estimator_dir`); ``samples``
    defaults to the device's ``default_samples`` (600 on sim-npu: seconds; 3,000 on cpu-ort: minutes)."""
    device = get_device(device) if isinstance(device, str) else device
    directory = Path(directory or default_estimator_dir(device.name))
    samples = device.default_samples if samples is None else samples
    return _profile_train_save(device, directory, samples=samples, networks=networks, seed=seed, progress=progress)


def _profile_train_save(
    device: Device,
    directory: Path,
    *,
    samples: int,
    networks: int = 12,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> LatencyEstimator:
    dataset = profile_device(
        device, samples=samples, directory=directory, networks=networks, seed=seed, progress=progress
    )
    estimator = train_from_dataset(dataset, seed=seed)
    estimator.save(directory)
    return estimator


def train_from_dataset(dataset: MeasurementDataset, *, seed: int = 0) -> LatencyEstimator:
    """Train an estimator on every measurement of ``dataset`` (not saved)."""
    if not dataset.rows:
        raise EstimatorError(
            f"{dataset.directory}: no subgraph measurements to train on; run `edgenas latency profile`"
        )
    subgraphs = [spec.subgraph() for spec in dataset.specs()]
    networks = dataset.networks()
    return train_estimator(
        subgraphs,
        dataset.latency_ms(),
        device_metadata=dataset.metadata,
        networks=networks,
        network_weight_mb=network_weights(dataset, networks),
        seed=seed,
    )


def train_estimator(
    subgraphs: Sequence[Subgraph],
    latency_ms: np.ndarray,
    *,
    device_metadata: dict[str, Any],
    networks: Sequence[tuple[ArchConfig, float]] = (),
    network_weight_mb: np.ndarray | None = None,
    seed: int = 0,
) -> LatencyEstimator:
    """Train on measured subgraphs, then fit the overhead term on whole networks
    ``(arch, measured_ms)``; the prior, layout and loss are chosen on a held-out split.
    ``network_weight_mb`` (per subgraph, for subgraphs timed inside networks: the weight size of that network)
    makes it an estimator that :attr:`~LatencyEstimator.uses_context`."""
    parallelism_factor = int(device_metadata["profile"]["parallelism_factor"])
    batch = SubgraphBatch.of(subgraphs, parallelism_factor)
    if network_weight_mb is not None:
        batch = batch.with_context(network_weight_mb)
    latency_ms = np.asarray(latency_ms, dtype=float)
    candidates = compare_candidates(batch, latency_ms, seed=seed)
    kept = min(candidates, key=lambda name: candidates[name]["mape"])
    logger.info("held-out subgraph MAPE: %s; keeping %s", {k: round(v["mape"], 4) for k, v in candidates.items()}, kept)
    prior, layout, loss = kept.split("/")
    model = fit_subgraph_model(batch, latency_ms, prior=prior, layout=layout, loss=loss, seed=seed)
    training = {"rows": len(batch), "candidates": candidates, "networks": [arch.arch_id for arch, _ in networks]}
    estimator = LatencyEstimator(model=model, overhead=OverheadModel(), metadata=_metadata(device_metadata, training))
    if networks:
        estimator.overhead = fit_overhead(*network_sums(estimator, networks))
        logger.info("overhead term: %s", estimator.overhead)
    return estimator


def network_weights(dataset: MeasurementDataset, networks: list[tuple[ArchConfig, float]]) -> np.ndarray | None:
    """Per subgraph row, the fp32 weight MB of the network it was timed in; ``None`` when the subgraphs were
    timed alone (no network around them)."""
    if not dataset.rows or not all(row["network"] for row in dataset.rows):
        return None
    weight = {arch.arch_id: weight_mb(decompose_arch(arch)) for arch, _ in networks}
    return np.array([weight[row["network"]] for row in dataset.rows])


def network_sums(
    estimator: LatencyEstimator, networks: Sequence[tuple[ArchConfig, float]]
) -> tuple[NetworkTotals, np.ndarray]:
    """What the overhead term is fitted on: the networks' summed subgraph predictions (with their subgraph counts and
    weight sizes), and their measured latencies."""
    decomposed = [decompose_arch(arch) for arch, _ in networks]
    totals = NetworkTotals.of(
        [estimator.subgraph_latency_ms(subgraphs).sum() for subgraphs in decomposed],
        [len(subgraphs) for subgraphs in decomposed],
        [weight_mb(subgraphs) for subgraphs in decomposed],
    )
    return totals, np.array([measured for _, measured in networks])


def _metadata(device_metadata: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "device": device_metadata["device"],
        "profile": device_metadata["profile"],
        "parallelism_factor": device_metadata["profile"]["parallelism_factor"],
        "target": "log(latency_ms / prior_ms)",
        "versions": {"xgboost": xgb.__version__, "numpy": np.__version__},
        "measured_on": {key: device_metadata.get(key) for key in ("cpu_model", "host", "platform", "versions")},
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "training": training,
    }
