"""Profiling inside whole networks, on a device that can time subgraphs there (``cpu-ort``, with its per-node
profiler: :meth:`Device.profile_network`).

Networks sampled from the shipped spaces and synthetic reference-like ones in turn, then (adaptive) networks rich
in the worst-predicted strata; each network gives one row per subgraph and its own whole-network row. Alone in a
loop, a subgraph keeps its weights in cache and pays layout reorders at its own edges, which inside a network it
does not.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator

import numpy as np

from latency_estimator.coverage import Coverage, adaptive_weights, coverage_for, synthetic_network
from latency_estimator.dataset import MeasurementDataset
from latency_estimator.devices.base import Device
from latency_estimator.networks import heavy_network, reference_networks, searchable_spaces
from latency_estimator.passes import ProgressFn
from latency_estimator.spec import SubgraphSpec
from search_spaces import ArchConfig, baseline_arch, plan_network

__all__ = [
    "network_stream",
    "profile_in_networks",
]

logger = logging.getLogger(__name__)


SYNTHETIC_EVERY = 3  # every third profiled network is synthetic (reference-like); the others come from the spaces
# On cpu-ort, every sixth gave 68.6 % of the evaluation networks within ±10 % and every second 46.7 %, against 73.3 %
# for every third (one fresh build each, 2026-11-21; runs on this VM also differ by a few points on their own).
HEAVY_EVERY = 6  # every sixth is a heavy network from the spaces: one over HEAVY_MB of fp32 weights
ADAPTIVE_CANDIDATES = 20  # networks drawn per network the adaptive round still needs; the worst-predicted are kept
FIT_TRIES = 500  # networks drawn to find one whose subgraphs still fit in ``samples``; none: profiling is done


def profile_in_networks(
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
    weights = adaptive_weights(dataset, coverage)
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
    turn, with every :data:`SYNTHETIC_EVERY`-th one a :func:`synthetic_network` and every :data:`HEAVY_EVERY`-th
    a :func:`heavy_network`."""
    spaces = searchable_spaces(parallelism_factor)
    rng = np.random.default_rng([seed, 15485863])  # a stream apart from the evaluation's
    for i in itertools.count():
        if i % SYNTHETIC_EVERY == SYNTHETIC_EVERY - 1:
            yield synthetic_network(coverage, rng)
        elif i % HEAVY_EVERY == 0:
            yield heavy_network(spaces, rng)
        else:
            yield spaces[i % len(spaces)].sample(rng)
