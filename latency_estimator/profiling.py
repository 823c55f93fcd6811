"""Profiling: measure sampled subgraph configurations on a device and keep every number.

``profile_device`` fills a measurement dataset (:class:`~latency_estimator.dataset.MeasurementDataset`) in
two rounds of subgraphs, with a handful of whole networks measured in between for the estimator's overhead term:

1. **coverage** (``1 - adaptive_share`` of the samples): stratified by (kind, input resolution), from the pool
   of subgraphs that occur in the shipped spaces and synthetic ones (:mod:`latency_estimator.coverage`);
2. **adaptive**: a quick regressor is cross-validated on what round 1 measured; the remaining samples go to
   the strata where its error is highest.

A device that can time subgraphs inside whole networks (``cpu-ort``, with its per-node profiler:
:meth:`Device.profile_network`) is profiled that way instead: networks sampled from the shipped spaces and
synthetic reference-like ones in turn, then (adaptive) networks rich in the worst-predicted strata; each network
gives one row per subgraph and its own whole-network row.

Every measurement is appended and flushed at once, so an interrupted run keeps what it measured; a rerun with
the same arguments continues where it stopped (``samples`` is the total the dataset should hold). Afterwards the
networks are timed again in the device's further passes (:mod:`latency_estimator.passes`).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latency_estimator.coverage import KIND_WEIGHT, Coverage, SubgraphSampler, coverage_for, synthetic_network
from latency_estimator.dataset import MeasurementDataset
from latency_estimator.devices.base import Device
from latency_estimator.errors import DeviceError, EstimatorError
from latency_estimator.estimator import default_estimator_dir
from latency_estimator.machine import warn_if_busy
from latency_estimator.networks import heavy_network, overhead_networks, reference_networks, searchable_spaces
from latency_estimator.passes import ProgressFn, fastest_of_passes
from latency_estimator.regressor import cross_validated_errors
from latency_estimator.spec import SubgraphSpec
from search_spaces import ArchConfig, baseline_arch, plan_network

__all__ = [
    "ADAPTIVE_CANDIDATES",
    "FIT_TRIES",
    "HEAVY_EVERY",
    "ProfileSettings",
    "SYNTHETIC_EVERY",
    "network_stream",
    "profile_device",
]

logger = logging.getLogger(__name__)

SYNTHETIC_EVERY = 3  # every third profiled network is synthetic (reference-like); the others come from the spaces
# On cpu-ort, every sixth gave 68.6 % of the evaluation networks within ±10 % and every second 46.7 %, against 73.3 %
# for every third (one fresh build each, 2026-11-21; runs on this VM also differ by a few points on their own).
HEAVY_EVERY = 6  # every sixth is a heavy network from the spaces: one over HEAVY_MB of fp32 weights
DENSE_EVERY = 4  # every fourth (of those neither synthetic nor heavy) comes from the dense spaces, at 128x128
DENSE_OVERHEAD_SHARE = 0.5  # profiled one by one: dense networks for the overhead term, per classification one
ADAPTIVE_CANDIDATES = 20  # networks drawn per network the adaptive round still needs; the worst-predicted are kept
FIT_TRIES = 500  # networks drawn to find one whose subgraphs still fit in ``samples``; none: profiling is done


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
        _profile_in_networks(
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
    dense = round(settings.networks * DENSE_OVERHEAD_SHARE)
    archs = [
        a
        for a in overhead_networks(device.parallelism_factor, count=settings.networks, seed=seed, dense=dense)
        if a.arch_id not in measured_ids
    ]
    coverage_count = settings.samples - round(settings.samples * settings.adaptive_share)
    todo = sampler.plan(coverage_count - dataset.count("coverage"), exclude=dataset.keys())
    adaptive_count = max(0, settings.samples - len(dataset.rows) - len(todo))
    session = _Session(device, dataset, archs, subgraphs=len(todo) + adaptive_count, progress=progress)
    session.measure(todo, round_name="coverage")
    remaining = settings.samples - len(dataset.rows)
    if remaining > 0:
        weights = _adaptive_weights(dataset, sampler.coverage)
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


# Inside whole networks: alone in a loop, a subgraph keeps its weights in cache and pays layout reorders at its own
# edges, which inside a network it does not.
def _profile_in_networks(
    device: Device,
    dataset: MeasurementDataset,
    *,
    samples: int,
    seed: int,
    adaptive_share: float,
    progress: ProgressFn | None,
) -> None:
    """Profile whole networks while their subgraphs fit in ``samples`` rows: first networks from the
    shipped spaces and synthetic ones in turn (coverage), then networks rich in the strata a quick regressor
    predicts worst (adaptive). Every network's own latency goes to ``networks.csv`` for the overhead term, so
    evaluation never sees a profiled network. The baseline and the reference networks are never profiled."""
    coverage = coverage_for(device.parallelism_factor, seed=seed)
    held_out = {baseline_arch(parallelism_factor=device.parallelism_factor).arch_id}
    held_out |= {arch.arch_id for arch in reference_networks().values()}
    stream = network_stream(device.parallelism_factor, coverage, seed=seed)
    coverage_count = samples - round(samples * adaptive_share)
    seen = {row["arch_id"] for row in dataset.network_rows} | held_out  # profiled, or never to be
    tick = (lambda: progress(min(len(dataset.rows), samples), samples)) if progress else None
    logger.info("profiling %d subgraphs inside whole networks on %s", samples, device.name)
    fits = lambda arch: len(dataset.rows) + len(plan_network(arch)) <= samples  # noqa: E731
    while dataset.count("coverage") < coverage_count:
        arch = next((a for a in itertools.islice(stream, FIT_TRIES) if a.arch_id not in seen and fits(a)), None)
        if arch is None:
            return
        seen.add(arch.arch_id)
        _profile_one(device, dataset, arch, round_name="coverage", tick=tick)
    weights = _adaptive_weights(dataset, coverage)
    per_network = max(1, dataset.count("coverage") // max(1, len(dataset.network_rows)))
    needed = math.ceil((samples - len(dataset.rows)) / per_network)
    candidates = []
    for arch in stream:
        if len(candidates) >= ADAPTIVE_CANDIDATES * needed:
            break
        if arch.arch_id not in seen:
            seen.add(arch.arch_id)
            candidates.append(arch)
    candidates.sort(key=lambda arch: -_network_weight(arch, weights))
    for arch in candidates:
        if fits(arch):
            _profile_one(device, dataset, arch, round_name="adaptive", tick=tick)


def _profile_one(device: Device, dataset: MeasurementDataset, arch: ArchConfig, *, round_name: str, tick) -> None:
    """One network: its subgraphs' rows, then its own row (which marks it done: a network interrupted before
    that is profiled again on resume)."""
    profile = device.profile_network(arch)
    for block in plan_network(arch):
        spec = SubgraphSpec.from_block(block, arch)
        dataset.append_subgraph(spec, profile.subgraphs[block.name], round_name=round_name, network=arch.arch_id)
    dataset.append_network(arch, profile.network)
    if tick:
        tick()


def _network_weight(arch: ArchConfig, weights: dict[tuple[str, int], float]) -> float:
    strata = [SubgraphSpec.from_block(block, arch).stratum for block in plan_network(arch)]
    return float(np.mean([weights.get(stratum, 0.0) for stratum in strata]))


def network_stream(parallelism_factor: int, coverage: Coverage, *, seed: int) -> Iterator[ArchConfig]:
    """Endless, deterministic for a seed: architectures sampled from the shipped spaces that have a choice, in
    turn, with every :data:`SYNTHETIC_EVERY`-th one a :func:`synthetic_network`, every :data:`HEAVY_EVERY`-th
    a :func:`heavy_network` and every :data:`DENSE_EVERY`-th of the others from the dense spaces."""
    spaces = searchable_spaces(parallelism_factor)
    dense_spaces = _alternating_tasks(searchable_spaces(parallelism_factor, dense=True))
    rng = np.random.default_rng([seed, 15485863])  # a stream apart from the evaluation's
    dense_rng = np.random.default_rng([seed, 15485867])  # its own stream: the classification draws stay as they were
    others = 0
    for i in itertools.count():
        if i % SYNTHETIC_EVERY == SYNTHETIC_EVERY - 1:
            yield synthetic_network(coverage, rng)
        elif i % HEAVY_EVERY == 0:
            yield heavy_network(spaces, rng)
        else:
            others += 1
            if others % DENSE_EVERY == 0:
                yield dense_spaces[(others // DENSE_EVERY) % len(dense_spaces)].sample(dense_rng)
            else:
                yield spaces[i % len(spaces)].sample(rng)


def _alternating_tasks(spaces: list) -> list:
    """Detection and segmentation spaces in turn (each task's in their own order)."""
    rank = {space.name: [s.name for s in spaces if s.task == space.task].index(space.name) for space in spaces}
    return sorted(spaces, key=lambda space: rank[space.name])


def _adaptive_weights(dataset: MeasurementDataset, coverage: Coverage) -> dict[tuple[str, int], float]:
    """Per stratum: kind weight x cross-validated mean relative error of a quick regressor."""
    specs = dataset.specs()
    errors = cross_validated_errors(
        [spec.subgraph() for spec in specs], dataset.latency_ms(), parallelism_factor=dataset.parallelism_factor
    )
    by_stratum: dict[tuple[str, int], list[float]] = defaultdict(list)
    for spec, error in zip(specs, errors, strict=True):
        by_stratum[spec.stratum].append(float(error))
    weights = {}
    for stratum in coverage.strata():
        seen = by_stratum.get(stratum)
        mean_error = float(np.mean(seen)) if seen else 1.0  # nothing measured there yet: worst case
        weights[stratum] = KIND_WEIGHT[stratum[0]] * mean_error
    logger.info("adaptive round: stratum errors %s", {f"{k}@{r}": round(w, 3) for (k, r), w in weights.items()})
    return weights


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
