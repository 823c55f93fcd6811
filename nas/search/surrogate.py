"""The predictor-guided strategy (``--strategy surrogate``): train only what a model of accuracy says is promising.

Each proposal, :class:`SurrogateSampler`

1. draws ``CANDIDATES`` cheap candidates: random points at random sizes (small
   networks as likely as large ones) and mutations (one or two choices
   changed) of the Pareto points found so far;
2. measures them all in one batched latency-estimator call plus the analytic
   counts (milliseconds), and drops the budget breakers and every
   architecture the study has already proposed;
3. fits a Gaussian process of the first objective (validation accuracy, or
   the proxy score in zeroshot mode) on the study's evaluated trials, from the
   candidate's choices, log params and estimated latency;
4. proposes the candidate whose optimistic accuracy (mean + ``EXPLORATION``
   standard deviations) adds the most hypervolume to the current front of
   (accuracy, latency).

Before ``STARTUP`` evaluations it proposes candidates spread evenly over the
feasible latency range. Its proposals are therefore almost never infeasible
or duplicates, so nearly every proposal is an evaluation. A third objective
(peak memory) is a budget here, not modelled.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from nas.search.budgets import Budgets, LatencyFn, Measured, random_sized_choices
from search_spaces import ArchConfig, SearchSpace, count_arch

__all__ = ["CANDIDATES", "EXPLORATION", "STARTUP", "ProposalContext", "SurrogateSampler", "hypervolume_gain"]

logger = logging.getLogger(__name__)

CANDIDATES = 2000  # per proposal: one batched estimator call (~30 ms) and cached analytic counts
STARTUP = 6  # evaluations before the model is fitted; the feasible start provides them
EXPLORATION = 1.0  # standard deviations of optimism: untried regions of the space still get proposed
MUTATION_SHARE = 0.5  # of the candidates, mutations of the front; the rest random-size points


@dataclass(frozen=True, eq=False)
class ProposalContext:
    """What a sampler needs to judge a candidate before proposing it."""

    space: SearchSpace
    budgets: Budgets
    latency_fn: LatencyFn
    dtype_bytes: int


@dataclass(frozen=True)
class _Candidate:
    point: dict[str, Any]
    arch: ArchConfig
    latency_ms: float
    params: int


class SurrogateSampler(optuna.samplers.BaseSampler):
    """Optuna sampler: every searched choice is proposed jointly in :meth:`sample_relative`."""

    def __init__(self, context: ProposalContext, *, seed: int, candidates: int = CANDIDATES) -> None:
        self.context, self.candidates = context, candidates
        self.rng = np.random.default_rng(seed)
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        self._params = context.space.parameters()
        self._searched = {name: choices for name, choices in self._params.items() if len(choices) > 1}
        self._counts: dict[str, tuple[int, int]] = {}  # arch_id -> (params, peak activation bytes)
        # point -> its network: mutations of the front draw the same points proposal after proposal, and resolving
        # a point and hashing its network cost more than the estimator's batched call
        self._resolved: dict[tuple, ArchConfig] = {}

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {name: CategoricalDistribution(list(choices)) for name, choices in self._searched.items()}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        trials = study.get_trials(deepcopy=False)
        seen = {t.user_attrs.get("arch_id") for t in trials}  # running ones too: another worker's proposal
        observed = _observed(trials)
        pool = [c for c in self._candidate_pool(observed) if c.arch.arch_id not in seen]
        if not pool:
            logger.info("surrogate: no new feasible candidate among %d drawn; a random proposal", self.candidates)
            return {}
        pick = self._spread_pick(pool) if len(observed) < STARTUP else self._most_promising(observed, pool)
        return {name: pick.point[name] for name in search_space}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    # ----- candidates -------------------------------------------------------------------------------------------
    def _candidate_pool(self, observed: list[tuple[FrozenTrial, float]]) -> list[_Candidate]:
        space, parents = self.context.space, _front([t for t, _ in observed], [v for _, v in observed])
        points = []
        for i in range(self.candidates):
            if parents and i < MUTATION_SHARE * self.candidates:
                parent = parents[self.rng.integers(len(parents))]
                points.append(self._mutated({**{n: c[0] for n, c in self._params.items()}, **parent.params}))
            else:
                points.append(random_sized_choices(space, self.rng))
        unique: dict[str, tuple[dict, ArchConfig]] = {}
        for point in points:
            key = tuple(sorted(point.items()))
            if key not in self._resolved:
                self._resolved[key] = space.resolve(point)
            arch = self._resolved[key]
            unique.setdefault(arch.arch_id, (point, arch))
        return self._feasible(list(unique.values()))

    def _mutated(self, point: dict[str, Any]) -> dict[str, Any]:
        names = list(self._searched)
        for name in self.rng.choice(names, size=int(self.rng.integers(1, 3)), replace=False):
            choices = self._searched[name]
            point[name] = choices[self.rng.integers(len(choices))]
        return point

    def _feasible(self, items: Sequence[tuple[dict, ArchConfig]]) -> list[_Candidate]:
        archs = [arch for _, arch in items]
        latencies = np.asarray(self.context.latency_fn(archs), dtype=float)
        out = []
        for (point, arch), latency in zip(items, latencies):
            if arch.arch_id not in self._counts:
                counts = count_arch(arch, dtype_bytes=self.context.dtype_bytes)
                self._counts[arch.arch_id] = (counts.params, counts.peak_activation_bytes)
            params, peak = self._counts[arch.arch_id]
            if not self.context.budgets.violations(Measured(float(latency), params, peak)):
                out.append(_Candidate(point, arch, float(latency), params))
        return out

    # ----- choosing ---------------------------------------------------------------------------------------------
    def _spread_pick(self, pool: list[_Candidate]) -> _Candidate:
        """A candidate at a random latency of the feasible range (the start must not cluster at the budget)."""
        latencies = np.array([c.latency_ms for c in pool])
        target = self.rng.uniform(latencies.min(), latencies.max())
        return pool[int(np.argmin(np.abs(latencies - target)))]

    def _most_promising(self, observed: list[tuple[FrozenTrial, float]], pool: list[_Candidate]) -> _Candidate:
        x_seen = np.array([self._features(t.params, float(t.user_attrs["params"]), _latency(t)) for t, _ in observed])
        y_seen = np.array([v for _, v in observed])
        x_pool = np.array([self._features(c.point, float(c.params), c.latency_ms) for c in pool])
        mean, std = _fit_predict(x_seen, y_seen, x_pool)
        front = np.array([(v, _latency(t)) for t, v in observed])
        latencies = np.array([c.latency_ms for c in pool])
        reference = (float(y_seen.min()) - 1e-9, max(float(latencies.max()), float(front[:, 1].max())) * 1.01)
        gains = hypervolume_gain(mean + EXPLORATION * std, latencies, front, reference)
        if gains.max() <= 0.0:  # nothing promises to improve the front: the most uncertain candidate, to learn
            return pool[int(np.argmax(std))]
        return pool[int(np.argmax(gains))]

    def _features(self, point: dict[str, Any], params: float, latency_ms: float) -> list[float]:
        values = []
        for name, choices in self._searched.items():
            value = point[name]
            if isinstance(choices[0], str):
                values.append(float(choices.index(value)) / max(1, len(choices) - 1))
            else:
                low, high = min(choices), max(choices)
                values.append((float(value) - low) / (high - low))
        return values + [np.log(max(params, 1.0)), latency_ms]


def _latency(trial: FrozenTrial) -> float:
    return float(trial.user_attrs["latency_ms"])


def _observed(trials: Sequence[FrozenTrial]) -> list[tuple[FrozenTrial, float]]:
    """Evaluated, feasible trials with their first objective value."""
    out = []
    for t in trials:
        attrs = t.user_attrs
        evaluated = t.state == TrialState.COMPLETE and attrs.get("outcome") == "COMPLETE"
        evaluated = evaluated and "duplicate_of" not in attrs
        if evaluated and t.values is not None and all(v <= 0 for v in t.constraints.values()):
            out.append((t, float(t.values[0])))
    return out


def _front(trials: list[FrozenTrial], values: list[float]) -> list[FrozenTrial]:
    """The non-dominated trials of (value up, latency down)."""
    points = [(v, _latency(t)) for t, v in zip(trials, values)]
    return [
        t
        for t, (v, lat) in zip(trials, points)
        if not any(v2 >= v and l2 <= lat and (v2 > v or l2 < lat) for v2, l2 in points)
    ]


def _fit_predict(x: np.ndarray, y: np.ndarray, x_new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of a Gaussian process fitted on (x, y), at x_new (features standardised)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    centre, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    kernel = ConstantKernel(1.0) * Matern(length_scale=np.ones(x.shape[1]), nu=2.5) + WhiteKernel(1e-2)
    model = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit((x - centre) / scale, y)
    mean, std = model.predict((x_new - centre) / scale, return_std=True)
    return mean, std


def hypervolume_gain(
    values: np.ndarray, latencies: np.ndarray, front: np.ndarray, reference: tuple[float, float]
) -> np.ndarray:
    """Hypervolume each candidate (value up, latency down) would add to ``front`` (rows: value, latency).

    The region a candidate dominates, up to ``reference`` = (worst value, worst
    latency), less what the front already dominates: for every latency
    between the candidate's and the reference, the candidate's value above
    the best front value at or below that latency.
    """
    ref_value, ref_latency = reference
    order = np.argsort(front[:, 1])
    f_lat, f_best = front[order, 1], np.maximum.accumulate(front[order, 0])
    gains = np.zeros(len(values))
    for i, (value, latency) in enumerate(zip(values, latencies)):
        if value <= ref_value or latency >= ref_latency:
            continue
        cuts = np.concatenate(([latency], f_lat[(f_lat > latency) & (f_lat < ref_latency)], [ref_latency]))
        area = 0.0
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            below = f_best[f_lat <= lo]
            floor = max(ref_value, below[-1]) if below.size else ref_value
            area += max(0.0, value - floor) * (hi - lo)
        gains[i] = area
    return gains
