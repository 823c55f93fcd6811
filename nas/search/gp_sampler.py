"""``--strategy gp``: Optuna's GPSampler, its models fitted on a bounded set of trials.

The sampler fits a Gaussian process per objective and per constraint on
every complete trial, and a fit costs O(n^3): measured on ``combined.yaml``
(13 categorical choices, 2 objectives, 2 constraints; one core), a proposal
takes 0.8 s of CPU with 50 trials told, 1.4 s with 200, 2.7 s with 400 and
16 s with 800. Budget breakers are told too (their constraints teach the
models where the budgets bite), so a search of 100 evaluations in a tight
space can tell it thousands of trials and would crawl.

:class:`BoundedGPSampler` therefore shows the models at most
``MAX_MODEL_TRIALS`` complete trials: every trial that meets the budgets
(they carry the objective values and make the front) and, up to the bound,
the most recent budget breakers (the constraints' boundary as the search
sees it now). With feasible trials beyond the bound, the most recent of them.
Which trials are shown follows from the study alone, so a resumed or
parallel run proposes as an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from nas.search.budgets import SearchError

__all__ = ["MAX_MODEL_TRIALS", "BoundedGPSampler", "model_trials"]

# 200 trials cost under twice the floor (the acquisition's optimisation, 0.8 s at 50) and are twice the feasible
# trials a search of 100 evaluations holds.
MAX_MODEL_TRIALS = 200


def model_trials(trials: Sequence[FrozenTrial], bound: int = MAX_MODEL_TRIALS) -> list[FrozenTrial]:
    """The complete ``trials`` the models are fitted on: the feasible ones, then the newest infeasible, by number."""
    feasible = [t for t in trials if all(v <= 0 for v in t.constraints.values())]
    infeasible = [t for t in trials if any(v > 0 for v in t.constraints.values())]
    room = max(0, bound - len(feasible))
    kept = feasible[-bound:] + (infeasible[-room:] if room else [])
    return sorted(kept, key=lambda t: t.number)


class BoundedGPSampler(optuna.samplers.GPSampler):
    """GPSampler whose models see :func:`model_trials` of the study's complete trials."""

    def __init__(self, *, seed: int, n_startup_trials: int, max_model_trials: int = MAX_MODEL_TRIALS) -> None:
        if max_model_trials < n_startup_trials:
            raise SearchError(f"`max_model_trials >= n_startup_trials` must hold, but got ({max_model_trials=}, "
                             f"{n_startup_trials=})")  # fmt: skip
        super().__init__(seed=seed, n_startup_trials=n_startup_trials)
        self.max_model_trials = max_model_trials

    def _sample_relative_impl(
        self,
        study: optuna.Study,
        completed_trials: list[FrozenTrial],
        running_trials: list[FrozenTrial],
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        return super()._sample_relative_impl(
            study, model_trials(completed_trials, self.max_model_trials), running_trials, search_space
        )
