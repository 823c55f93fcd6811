"""What profiling must cover, and which subgraph configurations to measure.

:class:`Coverage` holds the subgraphs that occur in the shipped spaces (the *pool*) and, per kind, the ranges
synthetic configurations are drawn from (networks outside the spaces are covered too); :class:`SubgraphSampler`
makes stratified picks over it, by (kind, input resolution): two of every three from the pool while any remain.
:func:`synthetic_network` draws whole reference-like networks from the ranges.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from latency_estimator.networks import dense_spaces_for, reference_networks, shipped_spaces_for
from latency_estimator.spec import PROFILED_KINDS, STAGE_KINDS, SubgraphSpec
from search_spaces import ArchConfig, HeadConfig, StageConfig, StemConfig, count_arch, plan_network

__all__ = [
    "Coverage",
    "KIND_WEIGHT",
    "KindRange",
    "SubgraphSampler",
    "coverage_for",
    "synthetic_network",
]


ARCHS_PER_SPACE = 1000  # sampled per shipped space to find the subgraphs that occur in it (~0.5 s in all)
DENSE_ARCHS_PER_SPACE = 200  # per dense space: their plans are longer, and their backbones repeat the others' blocks
# How many samples a (kind, resolution) stratum gets relative to the others:
# IBN and fused IBN dominate a network's latency and vary most.
# Plain conv blocks occur in no shipped network (only in ONNX models): half weight.
# A dense head's convs vary like the head conv; its resizes and adds are memory-bound and simple: half weight.
KIND_WEIGHT = {
    "stem": 1.0,
    "conv": 0.5,
    "ibn": 2.0,
    "fused_ibn": 2.0,
    "head_conv": 1.0,
    "pool": 0.5,
    "classifier": 0.5,
    "pointwise": 1.0,
    "separable": 1.0,
    "resize": 0.5,
    "add": 0.5,
}


@dataclass(frozen=True)
class KindRange:
    """The values one subgraph kind takes across the covered networks."""

    resolutions: tuple[int, ...]
    in_channels: tuple[int, ...]
    out_channels: tuple[int, ...]
    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    expansions: tuple[float, ...]
    divisors: tuple[int, ...]
    activations: tuple[str, ...]


@dataclass(frozen=True)
class Coverage:
    """What profiling must cover: the pool of subgraphs that occur in the spaces
    and, per kind, the ranges synthetic configurations are drawn from."""

    pool: tuple[SubgraphSpec, ...]
    ranges: dict[str, KindRange]
    network_resolutions: tuple[int, ...] = ()  # of the classification networks: what synthetic networks take

    @classmethod
    def of(
        cls,
        spaces: Sequence,
        *,
        extra: Sequence[ArchConfig],
        archs_per_space: int,
        seed: int,
        dense: Sequence = (),
        dense_archs_per_space: int = DENSE_ARCHS_PER_SPACE,
    ) -> Coverage:
        """``spaces`` (classification) and ``dense`` spaces are sampled in that order; ``extra`` networks add
        to the ranges, not to the pool."""
        rng = np.random.default_rng(seed)
        archs = list(_sample(spaces, archs_per_space, rng))
        resolutions = tuple(sorted({arch.resolution for arch in [*archs, *extra]}))
        archs += list(_sample(dense, dense_archs_per_space, rng))
        pool = _distinct(SubgraphSpec.from_block(block, arch) for arch in archs for block in plan_network(arch))
        seen = pool + _distinct(SubgraphSpec.from_block(block, arch) for arch in extra for block in plan_network(arch))
        ranges = {
            kind: _kind_range([s for s in seen if s.kind == kind])
            for kind in PROFILED_KINDS
            if kind != "conv" and any(s.kind == kind for s in seen)
        }
        ranges["conv"] = _conv_range(ranges)  # no shipped network uses plain conv blocks: borrow the IBN's ranges
        return cls(pool=tuple(pool), ranges=ranges, network_resolutions=resolutions)

    def strata(self) -> list[tuple[str, int]]:
        return [(kind, res) for kind, r in self.ranges.items() for res in r.resolutions]

    def synthetic(self, stratum: tuple[str, int], rng: np.random.Generator) -> SubgraphSpec:
        kind, resolution = stratum
        r = self.ranges[kind]
        in_channels = r.in_channels[0] if kind == "stem" else _channels(r.in_channels, rng)
        same_width = kind in ("pool", "separable", "resize", "add")
        out_channels = in_channels if same_width else _channels(r.out_channels, rng)
        stride = int(rng.choice(r.strides)) if resolution > 1 else 1
        if kind in STAGE_KINDS and rng.random() < 0.3:  # a repeated block: residual, stride 1
            out_channels, stride = in_channels, 1
        return SubgraphSpec(
            kind=kind,
            resolution=resolution,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel=int(rng.choice(r.kernels)),
            stride=stride,
            expansion=float(rng.choice(r.expansions)),
            divisor=int(rng.choice(r.divisors)),
            activation=str(rng.choice(r.activations)),
        )


def _sample(spaces: Sequence, count: int, rng: np.random.Generator) -> Iterator[ArchConfig]:
    for space in spaces:
        for _ in range(count if space.size() > 1 else 1):
            yield space.sample(rng)


def _distinct(specs) -> list[SubgraphSpec]:
    return list(dict.fromkeys(specs))


def _kind_range(specs: list[SubgraphSpec]) -> KindRange:
    values = lambda field: tuple(sorted({getattr(spec, field) for spec in specs}))  # noqa: E731
    return KindRange(
        resolutions=values("resolution"),
        in_channels=values("in_channels"),
        out_channels=values("out_channels"),
        kernels=values("kernel"),
        strides=values("stride"),
        expansions=values("expansion"),
        divisors=values("divisor"),
        activations=values("activation"),
    )


def _conv_range(ranges: dict[str, KindRange]) -> KindRange:
    ibn = ranges["ibn"]
    return dataclasses.replace(ibn, kernels=tuple(sorted({1, *ibn.kernels})), expansions=(1.0,))


def _channels(seen: tuple[int, ...], rng: np.random.Generator) -> int:
    """A channel count seen in the covered networks, or (half the time) a
    log-uniform draw over their range; on a multiple of 8 unless it is small."""
    if rng.random() < 0.5:
        return int(rng.choice(seen))
    low, high = max(1, min(seen)), max(seen)
    value = int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
    return max(low, value if value < 16 or rng.random() < 0.3 else 8 * round(value / 8))


@functools.lru_cache(maxsize=8)
def coverage_for(parallelism_factor: int, *, seed: int = 0) -> Coverage:
    """The coverage of the shipped spaces (for this P: classification, then the dense ones at their resolution)
    and the reference networks."""
    spaces, dense = shipped_spaces_for(parallelism_factor), dense_spaces_for(parallelism_factor)
    extra = list(reference_networks().values())
    return Coverage.of(spaces, extra=extra, archs_per_space=ARCHS_PER_SPACE, seed=seed, dense=dense)


class SubgraphSampler:
    """Stratified picks over :class:`Coverage`: deterministic for a seed, and
    interleaved across strata so that every prefix of a plan is stratified."""

    POOL_PICKS = 2  # of every 3 picks in a stratum come from the pool while it lasts

    def __init__(self, coverage: Coverage, *, seed: int) -> None:
        self.coverage = coverage
        self.seed = seed

    def plan(
        self, count: int, *, weights: dict[tuple[str, int], float] | None = None, exclude=()
    ) -> list[SubgraphSpec]:
        """``count`` new configurations (none of whose keys is in ``exclude``),
        split over strata in proportion to ``weights`` (default: by kind)."""
        rng = np.random.default_rng(self.seed)
        strata = self.coverage.strata()
        weights = weights or {s: KIND_WEIGHT[s[0]] for s in strata}
        quotas = _apportion(count, [weights.get(s, 0.0) for s in strata])
        taken = set(exclude)
        by_stratum = defaultdict(list)
        for spec in self.coverage.pool:
            by_stratum[spec.stratum].append(spec)
        picks = [self._stratum_picks(s, q, by_stratum[s], taken, rng) for s, q in zip(strata, quotas, strict=True)]
        return [spec for row in _interleave(picks) for spec in row]

    def _stratum_picks(self, stratum, quota: int, pool: list, taken: set, rng) -> list[SubgraphSpec]:
        pool = [pool[i] for i in rng.permutation(len(pool))]
        picks: list[SubgraphSpec] = []
        tries = 0
        while len(picks) < quota and tries < 50 * quota:
            tries += 1
            from_pool = pool and len(picks) % 3 < self.POOL_PICKS
            spec = pool.pop() if from_pool else self.coverage.synthetic(stratum, rng)
            if spec.key not in taken:
                taken.add(spec.key)
                picks.append(spec)
        return picks


def _apportion(total: int, weights: list[float]) -> list[int]:
    """Integer shares of ``total`` proportional to ``weights`` (largest remainders)."""
    weights = np.asarray(weights, dtype=float)
    if total <= 0 or weights.sum() <= 0:
        return [0] * len(weights)
    exact = total * weights / weights.sum()
    shares = np.floor(exact).astype(int)
    for i in np.argsort(shares - exact)[: total - shares.sum()]:
        shares[i] += 1
    return shares.tolist()


def _interleave(lists: list[list]) -> Iterator[list]:
    for i in range(max((len(items) for items in lists), default=0)):
        yield [items[i] for items in lists if i < len(items)]


def synthetic_network(coverage: Coverage, rng: np.random.Generator) -> ArchConfig:
    """A mobile CNN outside any one space, drawn from the ranges the spaces and the reference networks cover:
    4-7 stages of IBN (fused IBN one time in three) with widening channels, 1-4 blocks each, the kernels,
    expansions, divisors and activations seen, three stride-2 stages, a 1x1 head conv; redrawn until it is no
    larger than the largest reference network (:data:`SYNTHETIC_MAX_MACS`, :data:`SYNTHETIC_MAX_PARAMS`)."""
    while True:
        arch = _synthetic_draw(coverage, rng)
        counts = count_arch(arch)
        if counts.macs <= SYNTHETIC_MAX_MACS and counts.params <= SYNTHETIC_MAX_PARAMS:
            return arch


SYNTHETIC_MAX_MACS = 150_000_000  # the reference networks at 32x32: 83-115 M MACs
SYNTHETIC_MAX_PARAMS = 4_000_000  # and 2.2-3.4 M parameters


def _synthetic_draw(coverage: Coverage, rng: np.random.Generator) -> ArchConfig:
    stem, ibn, head = coverage.ranges["stem"], coverage.ranges["ibn"], coverage.ranges["head_conv"]
    resolution = int(rng.choice(coverage.network_resolutions or stem.resolutions))
    count = int(rng.integers(4, 8))
    channels = sorted(_channels(ibn.out_channels, rng) for _ in range(count))
    strided = set(rng.choice(np.arange(1, count), size=min(3, count - 1), replace=False).tolist())
    stages = tuple(
        StageConfig(
            block=str(rng.choice(["ibn", "ibn", "fused_ibn"])),
            kernel=int(rng.choice(ibn.kernels)),
            expansion=1.0 if i == 0 else float(rng.choice([e for e in ibn.expansions if e > 1] or [1.0])),
            channels=c,
            depth=int(rng.integers(1, 5)),
            stride=2 if i in strided else 1,
        )
        for i, c in enumerate(channels)
    )
    return ArchConfig(
        input_channels=stem.in_channels[0],
        resolution=resolution,
        channel_divisor=int(rng.choice(ibn.divisors)),
        activation=str(rng.choice(ibn.activations)),
        stem=StemConfig(kernel=int(rng.choice(stem.kernels)), channels=_channels(stem.out_channels, rng), stride=1),
        stages=stages,
        head=HeadConfig(type="classification", channels=_channels(head.out_channels, rng), num_classes=10),
    )
