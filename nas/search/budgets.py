"""Hard budgets: latency (estimated), parameters and peak activation memory (analytic).

All three are known before any training, so a candidate over a budget is
never trained. Optuna's constraints are soft (they only steer the sampler), so
the study records each budget as a constraint (``trial.set_constraint``,
value ``measured / budget - 1``: <= 0 feasible, and the relative excess
otherwise) and edgenas itself refuses to train a candidate with any positive
value.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from search_spaces import ArchConfig, SearchSpace, count_arch
from search_spaces.errors import EdgeNasError

__all__ = [
    "Budgets",
    "LatencyFn",
    "Measured",
    "SearchError",
    "Violation",
    "check_reachable",
    "every_feasible_arch",
    "feasible_archs",
    "measure",
    "random_sized_choices",
    "random_sized_point",
    "spread_feasible_archs",
]

logger = logging.getLogger(__name__)

# Estimated latency in ms of each architecture, in order.
LatencyFn = Callable[[Sequence[ArchConfig]], np.ndarray]
KIB = 1024
SCARCE_SHARE = 0.02  # below this feasible share, warn: most proposals will be budget breakers (instant, untrained)
REPAIR_STEPS = 64  # a repair that has not fitted after this many changes gives up
SPREAD_POOL = 768  # random-size candidates behind a spread start population (one batched estimator call)
ENUMERABLE_SIZE = 20_000  # a space with at most this many combinations of choices is enumerated (about a second)


class SearchError(EdgeNasError):
    """Bad search settings (unknown strategy or mode, a budget <= 0 or unreachable, a mismatched study)."""


@dataclass(frozen=True)
class Measured:
    """What is known of a candidate before training."""

    latency_ms: float
    params: int
    peak_activation_bytes: int  # at the device's data type, batch 1

    @property
    def peak_memory_kib(self) -> float:
        return self.peak_activation_bytes / KIB


@dataclass(frozen=True)
class Violation:
    budget: str  # "latency", "params" or "peak_memory"
    measured: float
    limit: float
    unit: str

    @property
    def excess(self) -> float:
        """Relative excess over the budget (0.25 = 25 % over)."""
        return self.measured / self.limit - 1.0

    def describe(self) -> str:
        measured, limit = _fmt(self.measured), _fmt(self.limit)
        return f"{self.budget} {measured} {self.unit} > budget {limit} {self.unit} (+{self.excess:.0%})"


@dataclass(frozen=True)
class Budgets:
    """Hard limits; None means unlimited. ``max_peak_memory_kb`` is in KiB (1024 bytes)."""

    latency_ms: float | None = None
    max_params: int | None = None
    max_peak_memory_kb: float | None = None

    def __post_init__(self) -> None:
        for name in ("latency_ms", "max_params", "max_peak_memory_kb"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise SearchError(f"budget `{name}` must be a positive number or None, but got {name}={value!r}")

    def limits(self, measured: Measured) -> list[tuple[str, float, float | None, str]]:
        """(constraint name, measured value, limit, unit) for every budget."""
        return [
            ("latency", measured.latency_ms, self.latency_ms, "ms"),
            ("params", float(measured.params), self.max_params, "params"),
            ("peak_memory", measured.peak_memory_kib, self.max_peak_memory_kb, "KiB"),
        ]

    def constraints(self, measured: Measured) -> dict[str, float]:
        """Optuna constraint values of the set budgets: <= 0 feasible, else the relative excess."""
        return {name: value / limit - 1.0 for name, value, limit, _ in self.limits(measured) if limit is not None}

    def violations(self, measured: Measured) -> list[Violation]:
        return [
            Violation(name, value, limit, unit)
            for name, value, limit, unit in self.limits(measured)
            if limit is not None and value > limit
        ]

    def any(self) -> bool:
        return any(v is not None for v in (self.latency_ms, self.max_params, self.max_peak_memory_kb))

    def describe(self) -> str:
        parts = [
            f"latency <= {_fmt(self.latency_ms)} ms" if self.latency_ms is not None else None,
            f"params <= {self.max_params:,}" if self.max_params is not None else None,
            f"peak memory <= {_fmt(self.max_peak_memory_kb)} KiB" if self.max_peak_memory_kb is not None else None,
        ]
        return ", ".join(p for p in parts if p) or "none"


def measure(archs: Sequence[ArchConfig], latency_fn: LatencyFn, *, dtype_bytes: int) -> list[Measured]:
    """Latency (one batched estimator call) and analytic counts of each architecture."""
    latencies = np.asarray(latency_fn(list(archs)), dtype=float)
    counts = [count_arch(arch, dtype_bytes=dtype_bytes) for arch in archs]
    return [
        Measured(latency_ms=float(lat), params=c.params, peak_activation_bytes=c.peak_activation_bytes)
        for lat, c in zip(latencies, counts)
    ]


def check_reachable(
    space: SearchSpace, budgets: Budgets, latency_fn: LatencyFn, *, dtype_bytes: int, seed: int = 0, samples: int = 256
) -> float:
    """Raise SearchError when even the smallest candidates break a budget; return the feasible share.

    The candidates checked are the space's smallest choices (every block-type
    combination, up to ``samples``) plus ``samples`` random points: a budget
    that none of them meets is reported as unreachable, with the best value seen.
    """
    if not budgets.any():
        return 1.0
    rng = np.random.default_rng(seed)
    smallest = _smallest_points(space, samples, rng)
    random = [space.sample(rng) for _ in range(samples)]
    measured = measure(smallest + random, latency_fn, dtype_bytes=dtype_bytes)
    for name, _, limit, unit in budgets.limits(measured[0]):
        if limit is None:
            continue
        best = min(value for m in measured for key, value, _, _ in budgets.limits(m) if key == name)
        if best > limit:
            raise SearchError(
                f"{name} budget {_fmt(limit)} {unit} is unreachable in {space.source}: "
                f"the smallest of {len(measured)} candidates checked needs {_fmt(best)} {unit}"
            )
    share = sum(not budgets.violations(m) for m in measured[len(smallest) :]) / len(random)
    if share < SCARCE_SHARE:
        logger.warning(
            "budgets %s: only %.1f%% of %d random candidates fit them; expect mostly INFEASIBLE trials "
            "(recorded in milliseconds, never trained)",
            budgets.describe(),
            100 * share,
            samples,
        )
    else:
        logger.info("budgets %s: %.1f%% of %d random candidates fit them", budgets.describe(), 100 * share, samples)
    return share


def every_feasible_arch(
    space: SearchSpace, budgets: Budgets, latency_fn: LatencyFn, *, dtype_bytes: int, limit: int = ENUMERABLE_SIZE
) -> list[ArchConfig] | None:
    """Every distinct architecture of ``space`` within the budgets, fastest first.

    None when the space has more than ``limit`` combinations of choices: too
    many to enumerate, and then too many to run out of in a search.
    """
    if space.size() > limit:
        return None
    params = space.parameters()
    distinct: dict[str, ArchConfig] = {}
    for values in itertools.product(*params.values()):
        arch = space.resolve(dict(zip(params, values)))
        distinct.setdefault(arch.arch_id, arch)
    archs = list(distinct.values())
    measured = measure(archs, latency_fn, dtype_bytes=dtype_bytes)
    feasible = [(m.latency_ms, a) for a, m in zip(archs, measured) if not budgets.violations(m)]
    return [arch for _, arch in sorted(feasible, key=lambda p: p[0])]


def feasible_archs(
    space: SearchSpace,
    budgets: Budgets,
    latency_fn: LatencyFn,
    *,
    dtype_bytes: int,
    count: int,
    rng: np.random.Generator,
    attempts: int = 4,
) -> list[ArchConfig]:
    """Up to ``count`` distinct random architectures within the budgets.

    A random point that breaks a budget is repaired: each step makes one
    random change among those that shrink the total violation (a numeric
    choice down to the next smaller value, or another block type) until the
    point fits. Under a tight budget almost no random point fits (combined.yaml
    at 300k params: ~0.2 %); repairing lands just inside the boundary, where
    the larger, more accurate feasible networks are.
    """
    found: dict[str, ArchConfig] = {}
    for _ in range(attempts * count):
        arch = _repaired(space, budgets, latency_fn, dtype_bytes, rng)
        if arch is not None:
            found.setdefault(arch.arch_id, arch)
        if len(found) >= count:
            break
    return list(found.values())


def spread_feasible_archs(
    space: SearchSpace,
    budgets: Budgets,
    latency_fn: LatencyFn,
    *,
    dtype_bytes: int,
    count: int,
    rng: np.random.Generator,
    pool: int = SPREAD_POOL,
) -> list[ArchConfig]:
    """Up to ``count`` distinct feasible architectures spread evenly over the feasible latency range.

    The candidates: the space's smallest points (the fastest end), ``pool``
    points drawn at random *sizes* (each point picks a size level in [0, 1]
    and every numeric choice near that level, so small networks are as likely
    as large ones; plain random points are mostly large) and a few random
    points repaired into the budgets (the boundary). From the feasible ones,
    the latency range from the fastest to the slowest is cut into ``count``
    equal bins and one candidate is drawn from each; bins left empty are
    filled by the candidates farthest in latency from those already taken.
    """
    candidates = _smallest_points(space, 16, rng) + [random_sized_point(space, rng) for _ in range(pool)]
    candidates += [a for a in (_repaired(space, budgets, latency_fn, dtype_bytes, rng) for _ in range(4)) if a]
    unique = list({arch.arch_id: arch for arch in candidates}.values())
    measured = measure(unique, latency_fn, dtype_bytes=dtype_bytes)
    feasible = [(m.latency_ms, a) for a, m in zip(unique, measured) if not budgets.violations(m)]
    if not feasible:
        return feasible_archs(space, budgets, latency_fn, dtype_bytes=dtype_bytes, count=count, rng=rng)
    return _spread(sorted(feasible, key=lambda p: p[0]), count, rng)


def random_sized_point(space: SearchSpace, rng: np.random.Generator) -> ArchConfig:
    """A random point around a random size level: numeric choices near the level's quantile, block types at random."""
    return space.resolve(random_sized_choices(space, rng))


def random_sized_choices(space: SearchSpace, rng: np.random.Generator) -> dict:
    """The choices (every parameter) of :func:`random_sized_point`."""
    level = rng.random()
    point = {}
    for name, choices in space.parameters().items():
        if isinstance(choices[0], str) or len(choices) == 1:
            point[name] = choices[rng.integers(len(choices))]
            continue
        ordered = sorted(choices)
        index = int(np.clip(np.rint(level * (len(ordered) - 1) + rng.normal(0.0, 0.5)), 0, len(ordered) - 1))
        point[name] = ordered[index]
    return point


def _spread(feasible: list[tuple[float, ArchConfig]], count: int, rng: np.random.Generator) -> list[ArchConfig]:
    """One candidate per equal latency bin (``feasible`` sorted by latency), then the farthest from those taken."""
    latencies = np.array([ms for ms, _ in feasible])
    low, high = latencies[0], latencies[-1]
    edges = np.linspace(low, high, count + 1)
    chosen = [0]  # the fastest feasible network always starts
    for lo, hi in zip(edges[:-1], edges[1:]):
        members = [i for i in np.flatnonzero((latencies >= lo) & (latencies <= hi)) if i not in chosen]
        if members and len(chosen) < count:
            chosen.append(int(members[rng.integers(len(members))]))
    while len(chosen) < min(count, len(feasible)):
        gaps = np.min(np.abs(latencies[:, None] - latencies[chosen][None, :]), axis=1)
        gaps[chosen] = -1.0
        chosen.append(int(np.argmax(gaps)))
    return [feasible[i][1] for i in sorted(chosen)]


def _repaired(
    space: SearchSpace, budgets: Budgets, latency_fn: LatencyFn, dtype_bytes: int, rng: np.random.Generator
) -> ArchConfig | None:
    params = space.parameters()
    point = {name: choices[rng.integers(len(choices))] for name, choices in params.items()}
    arch = space.resolve(point)
    violation = _violation(budgets, measure([arch], latency_fn, dtype_bytes=dtype_bytes)[0])
    for _ in range(REPAIR_STEPS):
        if violation <= 0:
            return arch
        moves = [(m, space.resolve(m)) for m in _moves(point, params)]
        moves = [(m, a) for m, a in moves if a != arch]  # choices that round to the same network change nothing
        measured = measure([a for _, a in moves], latency_fn, dtype_bytes=dtype_bytes)
        scored = [(m, a, _violation(budgets, x)) for (m, a), x in zip(moves, measured)]
        # Strictly better moves first; else sideways ones (several choices can round to the same channels).
        better = [s for s in scored if s[2] < violation] or [s for s in scored if s[2] == violation]
        if not better:
            return None
        point, arch, violation = better[rng.integers(len(better))]
    return arch if violation <= 0 else None


def _moves(point: dict, params: dict) -> list[dict]:
    """Points one change away: a numeric choice one step smaller, or a block type swapped."""
    moves = []
    for name, choices in params.items():
        value = point[name]
        if isinstance(value, str):
            moves += [{**point, name: other} for other in choices if other != value]
        elif value > min(choices):
            moves.append({**point, name: max(c for c in choices if c < value)})
    return moves


def _violation(budgets: Budgets, measured: Measured) -> float:
    return sum(max(0.0, v) for v in budgets.constraints(measured).values())


def _smallest_points(space: SearchSpace, limit: int, rng: np.random.Generator) -> list[ArchConfig]:
    """The smallest numeric choice everywhere, with every block-type combination (sampled beyond ``limit``)."""
    params = space.parameters()
    base = {name: min(choices) if not isinstance(choices[0], str) else choices[0] for name, choices in params.items()}
    block_names = [name for name, choices in params.items() if name.endswith(".block") and len(choices) > 1]
    combos = list(itertools.islice(itertools.product(*(params[n] for n in block_names)), limit))
    if math.prod(len(params[n]) for n in block_names) > limit:
        combos = [tuple(params[n][rng.integers(len(params[n]))] for n in block_names) for _ in range(limit)]
    return [space.resolve({**base, **dict(zip(block_names, combo))}) for combo in combos]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 1000 else f"{value:.4g}"
