"""One trial, top to bottom: pick an architecture, check the budgets, evaluate, record.

Every trial ends with user attributes ``outcome`` and ``reason`` (see
:func:`nas.search.modes.set_outcome`), the architecture (``arch``,
``arch_id``, ``block_string``) and what was measured before training
(``latency_ms``, ``params``, ``peak_memory_kib``, ``dtype_bytes``).

A budget breaker is never trained: it is told COMPLETE with placeholder
values (first objective 0.0, its real latency) and positive constraints, so
the samplers rank it below every feasible trial by its total violation;
edgenas lists it as INFEASIBLE. A candidate that fails (build error,
divergence, out of memory) is recorded as FAIL with the reason and the search
goes on. The same architecture proposed again reuses the earlier result
(``duplicate_of``) instead of being trained twice.

Budget breakers, duplicates and screened candidates are free proposals; only
an evaluation counts toward the study's N (:mod:`nas.search.counting`). A
candidate that passes the screen claims an evaluation first; when the study
(all workers together) already holds N, or another worker has claimed the same
architecture meanwhile, it is recorded as SURPLUS, unevaluated and free
(:func:`nas.search.counting.claim_evaluation`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.search.budgets import Budgets, LatencyFn, Measured, measure
from nas.search.counting import claim_evaluation
from nas.search.modes import Evaluator, set_outcome
from nas.search.resume import mark_worker
from search_spaces import ArchConfig, SearchSpace
from search_spaces.errors import EdgeNasError, one_line

__all__ = ["CANDIDATE_FAILURES", "CandidateFailed", "Objective"]

logger = logging.getLogger(__name__)

# What a candidate may raise while it is built, scored or trained (torch's out-of-memory errors are RuntimeErrors).
CANDIDATE_FAILURES: tuple[type[BaseException], ...] = (
    EdgeNasError,
    RuntimeError,
    MemoryError,
    ValueError,
    ArithmeticError,
)
REUSABLE = ("COMPLETE", "PRUNED", "SCREENED")
T = TypeVar("T")


class CandidateFailed(Exception):
    """A candidate failed; its reason is in the trial's ``reason`` attribute (FAIL)."""


class Objective:
    """The function ``study.optimize`` calls once per trial; returns the objective values."""

    def __init__(
        self,
        *,
        space: SearchSpace,
        budgets: Budgets,
        latency_fn: LatencyFn,
        dtype_bytes: int,
        evaluator: Evaluator,
        memory_objective: bool,
        target: int | None = None,
        screens: bool = True,
    ) -> None:
        self.space, self.budgets, self.latency_fn = space, budgets, latency_fn
        self.dtype_bytes, self.evaluator, self.memory_objective = dtype_bytes, evaluator, memory_objective
        self.target = target  # the study's evaluations (N); None: no claim, every candidate is evaluated
        self.screens = screens  # False when every feasible network of the space is evaluated anyway

    def __call__(self, trial: optuna.Trial) -> list[float]:
        mark_worker(trial)
        arch = self.space.suggest(trial)
        _record_arch(trial, arch)
        measured = measure([arch], self.latency_fn, dtype_bytes=self.dtype_bytes)[0]
        self._record_measured(trial, measured)
        violations = self.budgets.violations(measured)
        if violations:
            set_outcome(trial, "INFEASIBLE", "; ".join(v.describe() for v in violations))
            return self.values(0.0, measured)
        source = _earlier_result(trial, arch.arch_id)
        if source is not None:
            return self._reuse(trial, source, measured)
        if self.screens:
            self._guarded(trial, arch, self.evaluator.screen)
        refusal = None if self.target is None else claim_evaluation(trial, self.target)
        if refusal is not None:
            set_outcome(trial, "SURPLUS", refusal)
            raise optuna.TrialPruned("surplus")  # free; the run's callback decides whether the worker goes on
        value = self._guarded(trial, arch, self.evaluator.evaluate)
        set_outcome(trial, "COMPLETE")
        return self.values(value, measured)

    def values(self, first: float, measured: Measured) -> list[float]:
        values = [first, measured.latency_ms]
        return values + [measured.peak_memory_kib] if self.memory_objective else values

    def _record_measured(self, trial: optuna.Trial, measured: Measured) -> None:
        trial.set_user_attr("latency_ms", measured.latency_ms)
        trial.set_user_attr("params", measured.params)
        trial.set_user_attr("peak_memory_kib", measured.peak_memory_kib)
        trial.set_user_attr("dtype_bytes", self.dtype_bytes)
        for name, value in self.budgets.constraints(measured).items():
            trial.set_constraint(name, value)

    def _guarded(self, trial: optuna.Trial, arch: ArchConfig, step: Callable[[optuna.Trial, ArchConfig], T]) -> T:
        """Run a screening or evaluation step; a failing candidate is recorded as FAIL."""
        try:
            return step(trial, arch)
        except optuna.TrialPruned:
            raise
        except CANDIDATE_FAILURES as exc:
            reason = f"{type(exc).__name__}: {one_line(exc)}"
            set_outcome(trial, "FAIL", reason)
            logger.warning("trial %d (%s) failed: %s", trial.number, arch.arch_id, reason)
            raise CandidateFailed(reason) from exc

    def _reuse(self, trial: optuna.Trial, source: FrozenTrial, measured: Measured) -> list[float]:
        trial.set_user_attr("duplicate_of", source.number)
        for key in ("val_accuracy", "val_history", "test_accuracy", "proxy_score"):
            if key in source.user_attrs:
                trial.set_user_attr(key, source.user_attrs[key])
        outcome = source.user_attrs["outcome"]
        set_outcome(trial, outcome, f"same architecture as trial {source.number}; its result is reused")
        if outcome != "COMPLETE":
            raise optuna.TrialPruned(f"duplicate of trial {source.number}")
        return self.values(source.values[0], measured)


def _record_arch(trial: optuna.Trial, arch: ArchConfig) -> None:
    trial.set_user_attr("arch", arch.to_dict())
    trial.set_user_attr("arch_id", arch.arch_id)
    trial.set_user_attr("block_string", arch.block_string())


def _earlier_result(trial: optuna.Trial, arch_id: str) -> FrozenTrial | None:
    """The first finished trial of the same architecture whose result can be reused."""
    states: Sequence[TrialState] = (TrialState.COMPLETE, TrialState.PRUNED)
    for other in trial.study.get_trials(deepcopy=False, states=states):
        attrs = other.user_attrs
        if attrs.get("arch_id") == arch_id and attrs.get("outcome") in REUSABLE and other.number != trial.number:
            return other
    return None
