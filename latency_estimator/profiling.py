"""Profiling: measure sampled subgraph configurations on a device and keep every number.

``profile_device`` fills a measurement dataset (:class:`~latency_estimator.dataset.MeasurementDataset`) in
two rounds of subgraphs, with a handful of whole networks measured in between for the estimator's overhead term:

1. **coverage** (``1 - adaptive_share`` of the samples): stratified by (kind, input resolution), from the pool
   of subgraphs that occur in the shipped spaces and synthetic ones (:mod:`latency_estimator.coverage`);
2. **adaptive**: a quick regressor is cross-validated on what round 1 measured; the remaining samples go to
   the strata where its error is highest.

A device that can time subgraphs inside whole networks is profiled that way instead
(:mod:`latency_estimator.profiling_in_networks`). Every measurement is appended and flushed at once, so an
interrupted run keeps what it measured; a rerun with the same arguments continues where it stopped
(``samples`` is the total the dataset should hold). Afterwards the networks are timed again in the device's
further passes (:mod:`latency_estimator.passes`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from latency_estimator.coverage import SubgraphSampler, adaptive_weights, coverage_for
from latency_estimator.dataset import MeasurementDataset
from latency_estimator.devices.base import Device
from latency_estimator.errors import DeviceError, EstimatorError
from latency_estimator.estimator import default_estimator_dir
from latency_estimator.machine import warn_if_busy
from latency_estimator.networks import overhead_networks
from latency_estimator.passes import ProgressFn, fastest_of_passes
from latency_estimator.profiling_in_networks import profile_in_networks
from latency_estimator.spec import SubgraphSpec
from search_spaces import ArchConfig

__all__ = [
    "ProfileSettings",
    "profile_device",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileSettings:
    samples: int  # total subgraph measurements the dataset should hold
    networks: int = 12  # whole networks measured for the overhead term ("a handful")
    seed: int = 0
    adaptive_share: float = 0.25  # of the samples go to the adaptive round

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise EstimatorError(f"`samples >= 1` must hold, but got samples={self.samples}")
        if self.networks < 0:
            raise EstimatorError(f"`networks >= 0` must hold, but got networks={self.networks}")
        if not 0.0 <= self.adaptive_share < 1.0:
            raise EstimatorError(f"`0 <= adaptive_share < 1` must hold, but got adaptive_share={self.adaptive_share}")


def profile_device(
    device: Device,
    *,
    samples: int,
    directory: str | Path | None = None,
    networks: int = 12,
    seed: int = 0,
    adaptive_share: float = 0.25,
    progress: ProgressFn | None = None,
) -> MeasurementDataset:
    """Measure on ``device`` until the dataset in ``directory`` (default: the
    device's estimator folder) holds ``samples`` subgraphs and ``networks`` networks."""
    settings = ProfileSettings(samples=samples, networks=networks, seed=seed, adaptive_share=adaptive_share)
    available, reason = device.is_available()
    if not available:
        raise DeviceError(f"device {device.name!r} is not available here: {reason}")
    dataset = MeasurementDataset.open(directory or default_estimator_dir(device.name), device=device)
    dataset.write_metadata()
    warn_if_busy(device)
    if device.profiles_in_network:
        profile_in_networks(
            device, dataset, samples=samples, seed=seed, adaptive_share=adaptive_share, progress=progress
        )
    else:
        _profile_one_by_one(device, dataset, settings, progress)
    before = len(dataset.rows)  # the retiming's measurements follow the subgraphs' on the progress bar
    then = (lambda done, total: progress(before + done, before + total)) if progress else None
    _retime_networks(device, dataset, then)
    dataset.write_metadata()
    return dataset


def _profile_one_by_one(
    device: Device, dataset: MeasurementDataset, settings: ProfileSettings, progress: ProgressFn | None
) -> None:
    """Subgraphs timed alone (stratified, then adaptive), and among them the overhead term's networks."""
    seed = settings.seed
    sampler = SubgraphSampler(coverage_for(device.parallelism_factor, seed=seed), seed=seed)
    measured_ids = {row["arch_id"] for row in dataset.network_rows}
    archs = [
        a
        for a in overhead_networks(device.parallelism_factor, count=settings.networks, seed=seed)
        if a.arch_id not in measured_ids
    ]
    coverage_count = settings.samples - round(settings.samples * settings.adaptive_share)
    todo = sampler.plan(coverage_count - dataset.count("coverage"), exclude=dataset.keys())
    adaptive_count = max(0, settings.samples - len(dataset.rows) - len(todo))
    session = _Session(device, dataset, archs, subgraphs=len(todo) + adaptive_count, progress=progress)
    session.measure(todo, round_name="coverage")
    remaining = settings.samples - len(dataset.rows)
    if remaining > 0:
        weights = adaptive_weights(dataset, sampler.coverage)
        adaptive = SubgraphSampler(sampler.coverage, seed=seed + len(dataset.rows))
        session.measure(adaptive.plan(remaining, weights=weights, exclude=dataset.keys()), round_name="adaptive")
    session.finish()


class _Session:
    """Measures subgraphs and, spread evenly among them, the whole networks: on a
    timed device both then see the same machine conditions on average."""

    def __init__(
        self,
        device: Device,
        dataset: MeasurementDataset,
        archs: list[ArchConfig],
        *,
        subgraphs: int,
        progress: ProgressFn | None,
    ) -> None:
        self.device, self.dataset, self.pending = device, dataset, list(archs)
        self.every = max(1, subgraphs // (len(archs) + 1))
        self.progress, self.total, self.done = progress, subgraphs + len(archs), 0

    def measure(self, specs: list[SubgraphSpec], *, round_name: str) -> None:
        logger.info("measuring %d subgraphs on %s (%s round)", len(specs), self.device.name, round_name)
        for spec in specs:
            self.dataset.append_subgraph(spec, self.device.measure_subgraph(spec.subgraph()), round_name=round_name)
            self._tick()
            if self.pending and self.done % self.every == 0:
                self._network()

    def finish(self) -> None:
        while self.pending:
            self._network()

    def _network(self) -> None:
        arch = self.pending.pop(0)
        self.dataset.append_network(arch, self.device.measure_network(arch))
        self._tick()

    def _tick(self) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total)


def _retime_networks(device: Device, dataset: MeasurementDataset, progress: ProgressFn | None) -> None:
    """Time every measured network in the device's further passes, keeping its fastest (a timed device's networks
    were each timed once, some of them in one of the machine's slow episodes)."""
    plan = device.network_passes
    if plan.max_passes == 1 or not dataset.network_rows:
        return
    archs = {arch.arch_id: arch for arch, _ in dataset.networks()}
    logger.info("timing the %d networks again: %s", len(archs), plan.describe())
    fastest_of_passes(
        list(archs),
        lambda arch_id: device.measure_network(archs[arch_id]),
        plan,
        done=dataset.timed_networks(),
        save=dataset.update_networks,
        progress=progress,
    )
