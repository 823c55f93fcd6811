"""``--strategy gp``: Optuna's GPSampler, its models fitted on a bounded set of trials.

The sampler fits a Gaussian process per objective and per constraint on
every complete trial, and a fit costs O(n^3): measured on ``combined.yaml``
(13 categorical choices, 2 objectives, 2 constraints; one core), a proposal
takes 0.8 s of CPU with 50 trials told, 1.4 s with 200, 2.7 s with 400 and
16 s with 800. Budget breakers are told too (their constraints teach the
models where the budgets bite), so a search of 100 evaluations in a tight
space can tell it thousands of trials and would crawl.

:class:`BoundedGPSampler` therefore shows the models at most
``MAX_MODEL_TRIALS`` complete trials, one per distinct point (a duplicate
proposal is told the values of the trial it repeats, and teaches nothing):
the feasible points (they carry the objective values and make the front),
the most recent of them when they are more than the bound allows, and budget
breakers spread evenly over the study's history, the newest included, for
which at least a quarter of the bound is kept. Both rules come from one
measured failure, on ``combined.yaml`` at the zero-shot budget of
``benchmarks/search_quality.py`` (3.5 % of random points feasible): with
the newest trials of any kind shown, duplicates (over half of GP's
proposals there) filled the bound, the constraint models saw 14 of 64
breakers, and the proposals went from 1 in 10 over a budget to all of them,
300 in a row. Which trials are shown follows from the study alone, so a
resumed or parallel run proposes as an uninterrupted one would.

Where the acquisition's best point is one the study already holds, the
sampler proposes a random point instead (Optuna's independent sampler):
in the same search, once GP had found 69 of the front's points, it
proposed only points it held, 150 in a row, and the search made no
progress until its proposal limit stopped it.
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
    """The complete ``trials`` the models are fitted on, by number (see the module docstring)."""
    first: dict[tuple, FrozenTrial] = {}
    for trial in trials:
        first.setdefault(tuple(sorted(trial.params.items())), trial)
    distinct = sorted(first.values(), key=lambda t: t.number)
    feasible = [t for t in distinct if all(v <= 0 for v in t.constraints.values())]
    infeasible = [t for t in distinct if any(v > 0 for v in t.constraints.values())]
    room_for_feasible = bound - min(len(infeasible), bound // 4)
    kept = feasible[-room_for_feasible:] if room_for_feasible > 0 else []
    kept += evenly_spaced(infeasible, bound - len(kept))
    return sorted(kept, key=lambda t: t.number)


def evenly_spaced(items: Sequence[FrozenTrial], count: int) -> list[FrozenTrial]:
    """``count`` of ``items`` at evenly spaced positions, the first and the last included (all when they fit)."""
    if count >= len(items):
        return list(items)
    if count <= 1:
        return list(items[len(items) - count :])
    picks = {round(i * (len(items) - 1) / (count - 1)) for i in range(count)}
    return [items[i] for i in sorted(picks)]


class BoundedGPSampler(optuna.samplers.GPSampler):
    """GPSampler whose models see :func:`model_trials` of the study's complete trials, and which proposes a random
    point where the models would propose one the study already holds (see the module docstring)."""

    def __init__(self, *, seed: int, n_startup_trials: int, max_model_trials: int = MAX_MODEL_TRIALS) -> None:
        if max_model_trials < n_startup_trials:
            raise SearchError(f"`max_model_trials >= n_startup_trials` must hold, but got ({max_model_trials=}, "
                             f"{n_startup_trials=})")  # fmt: skip
        # the random point for a held proposal is intended: no warning per parameter each time
        super().__init__(seed=seed, n_startup_trials=n_startup_trials, warn_independent_sampling=False)
        self.max_model_trials = max_model_trials

    def _sample_relative_impl(
        self,
        study: optuna.Study,
        completed_trials: list[FrozenTrial],
        running_trials: list[FrozenTrial],
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        params = super()._sample_relative_impl(
            study, model_trials(completed_trials, self.max_model_trials), running_trials, search_space
        )
        names = sorted(search_space)
        held = {tuple(t.params.get(n) for n in names) for t in (*completed_trials, *running_trials)}
        # a point the study holds already: the models see nothing better, so a random point explores instead
        return {} if tuple(params.get(n) for n in names) in held else params
