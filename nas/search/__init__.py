"""The hardware-aware search: an Optuna study scored by accuracy and estimated latency.

One entry point, :func:`run_search` (``edgenas search`` on the command
line). The modules follow the life of a trial:

    settings   SearchSettings: every knob, its default and why
    budgets    hard budgets (latency, params, peak memory), their constraint values, the spread feasible start
    counting   the budget is evaluations (other proposals are free): claims, and whether a worker goes on
    study      storage, study, samplers (evolution = NSGA-II, tpe, random, gp, surrogate), pruners
    surrogate  the predictor-guided sampler: a model of accuracy searched with the latency estimator
    objective  one trial: suggest, measure, refuse budget breakers, screen, claim an evaluation, evaluate, record
    modes      multishot / zeroshot / hybrid evaluators
    resume     interrupted trials (heartbeat, dead workers), one retry, warm-start queueing
    records    TrialRow, ParetoPoint: the trials and the Pareto front as read from the storage
    results    trials.csv, pareto.json + pareto/*.yaml; report.md (report), pareto.png (plots)
    runner     run_search, top to bottom
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search_spaces.lazy_exports import lazy_exports

if TYPE_CHECKING:  # for static tools; at run time a name's module is imported on first use (__getattr__)
    from nas.search.budgets import Budgets, Measured, SearchError, Violation
    from nas.search.modes import Evaluator
    from nas.search.records import ParetoPoint, TrialRow, pareto_front, trained_archs, trial_rows
    from nas.search.results import write_results
    from nas.search.resume import enqueue_archs
    from nas.search.runner import ProposalsExhausted, SearchResult, run_search, run_with_latency_fn
    from nas.search.settings import MODES, PRUNERS, STRATEGIES, SearchSettings

__all__ = [
    "MODES",
    "PRUNERS",
    "STRATEGIES",
    "Budgets",
    "Evaluator",
    "Measured",
    "ParetoPoint",
    "ProposalsExhausted",
    "SearchError",
    "SearchResult",
    "SearchSettings",
    "TrialRow",
    "Violation",
    "enqueue_archs",
    "pareto_front",
    "run_search",
    "run_with_latency_fn",
    "trained_archs",
    "trial_rows",
    "write_results",
]

# The same names by submodule: `import nas.search` loads none of them (optuna, torch).
_EXPORTS = {
    "nas.search.budgets": ("Budgets", "Measured", "SearchError", "Violation"),
    "nas.search.modes": ("Evaluator",),
    "nas.search.records": ("ParetoPoint", "TrialRow", "pareto_front", "trained_archs", "trial_rows"),
    "nas.search.results": ("write_results",),
    "nas.search.resume": ("enqueue_archs",),
    "nas.search.runner": ("ProposalsExhausted", "SearchResult", "run_search", "run_with_latency_fn"),
    "nas.search.settings": ("MODES", "PRUNERS", "STRATEGIES", "SearchSettings"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
