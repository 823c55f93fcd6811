"""Networks drawn from the shipped search spaces: the one place that samples distinct architectures for
profiling, the overhead term and evaluation, plus the reference mobile networks and heavy networks.

The classification spaces (32x32) and the dense ones (detection and segmentation at the scenes' 128x128) are
drawn apart: what was drawn from the classification spaces before dense networks were estimated is drawn the
same way now (``dense=False``, the default)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np

from latency_estimator.subgraph import decompose_arch, weight_mb
from search_spaces import DENSE_SPACES, SHIPPED_SPACES, ArchConfig, SearchSpace, load_space, shipped_space_path

__all__ = [
    "HEAVY_MB",
    "HEAVY_TRIES",
    "REFERENCE_DIR",
    "dense_spaces_for",
    "distinct_networks",
    "heavy_network",
    "overhead_networks",
    "reference_networks",
    "searchable_spaces",
    "shipped_spaces_for",
]


REFERENCE_DIR = Path(__file__).resolve().parent / "reference_networks"


def shipped_spaces_for(parallelism_factor: int) -> list[SearchSpace]:
    """The shipped spaces as a device with this P searches them (``multiples_of_p`` ranges re-expanded for P)."""
    return [load_space(shipped_space_path(name), parallelism_factor=parallelism_factor) for name in SHIPPED_SPACES]


def dense_spaces_for(parallelism_factor: int) -> list[SearchSpace]:
    """The shipped detection and segmentation spaces (for this P), at their own resolution."""
    return [load_space(shipped_space_path(name), parallelism_factor=parallelism_factor) for name in DENSE_SPACES]


def searchable_spaces(parallelism_factor: int, *, dense: bool = False) -> list[SearchSpace]:
    """The shipped classification spaces (for this P) that have a choice: the ones networks are drawn from;
    with ``dense``, the dense spaces that have a choice instead."""
    spaces = dense_spaces_for(parallelism_factor) if dense else shipped_spaces_for(parallelism_factor)
    return [space for space in spaces if space.size() > 1]


def distinct_networks(
    parallelism_factor: int,
    *,
    count: int,
    stream: tuple[int, int],
    exclude: Collection[str] = frozenset(),
    vary: Callable[[ArchConfig, int, np.random.Generator], ArchConfig] | None = None,
    dense: bool = False,
) -> list[tuple[str, ArchConfig]]:
    """(space name, arch): up to ``count`` distinct architectures (none of whose ids is in ``exclude``), drawn from
    the :func:`searchable_spaces` (the dense ones with ``dense``) in turn, in at most 100 draws per network.
    ``stream`` seeds the generator: (seed, a number of the caller's own), so that profiling, the overhead term and
    evaluation draw apart. ``vary(arch, found so far, rng)`` may reshape each draw before it is kept."""
    spaces = searchable_spaces(parallelism_factor, dense=dense)
    rng = np.random.default_rng(list(stream))
    found: dict[str, tuple[str, ArchConfig]] = {}
    for attempt in range(100 * count):
        if len(found) >= count:
            break
        space = spaces[attempt % len(spaces)]
        arch = space.sample(rng)
        if vary is not None:
            arch = vary(arch, len(found), rng)
        if arch.arch_id not in exclude:
            found.setdefault(arch.arch_id, (space.name, arch))
    return list(found.values())


def reference_networks() -> dict[str, ArchConfig]:
    """The well-known mobile networks shipped in ``reference_networks/``, by file stem."""
    return {path.stem: ArchConfig.load(path) for path in sorted(REFERENCE_DIR.glob("*.yaml"))}


HEAVY_MB = 16.0
# A draw from the spaces is that heavy one time in ten, so without them profiling saw few networks whose weights no
# longer stay in this CPU's caches from one run to the next, where every subgraph runs slower (the estimator sees
# the network's weight size). cpu-ort, built from scratch with them and that feature: 99.0 % of the evaluation
# networks within ±10 % (over 8 MB of weights: 35 of 36), against 87.6 % (28 of 39) without (2026-11-21).
HEAVY_TRIES = 200  # draws to find a heavy network; none: the heaviest drawn


def heavy_network(spaces: Sequence, rng: np.random.Generator) -> ArchConfig:
    """The first architecture drawn from ``spaces`` in turn with over :data:`HEAVY_MB` of fp32 weights; after
    :data:`HEAVY_TRIES` draws without one, the heaviest drawn."""
    heaviest, most = None, -1.0
    for j in range(HEAVY_TRIES):
        arch = spaces[j % len(spaces)].sample(rng)
        mb = weight_mb(decompose_arch(arch))
        if mb > HEAVY_MB:
            return arch
        if mb > most:
            heaviest, most = arch, mb
    return heaviest


def overhead_networks(parallelism_factor: int, *, count: int, seed: int = 0, dense: int = 0) -> list[ArchConfig]:
    """``count`` distinct architectures drawn in turn from the shipped classification spaces that
    have a choice; every other one keeps only its first stages (a shallower
    network), so that a per-subgraph term can be told from a constant one; then ``dense`` more from the dense
    spaces (whole: their heads read the last stage). Evaluation never reuses them (their ids are in the
    estimator's metadata)."""
    drawn = distinct_networks(parallelism_factor, count=count, stream=(seed, 7919), vary=_shallower_every_other)
    if dense:
        drawn += distinct_networks(parallelism_factor, count=dense, stream=(seed, 7927), dense=True)
    return [arch for _, arch in drawn]


def _shallower_every_other(arch: ArchConfig, found: int, rng: np.random.Generator) -> ArchConfig:
    if found % 2:
        return dataclasses.replace(arch, stages=arch.stages[: rng.integers(1, len(arch.stages))])
    return arch
