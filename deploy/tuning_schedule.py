"""How a model's tuning budget is shared out over its tasks, and in which rounds it is spent.

The model's trial budget goes where the time goes: each task gets a share
proportional to its floating-point work (FLOPs x how often it is called; at
least :data:`MIN_TRIALS_PER_TASK`), and tasks are tuned one at a time,
breadth first: every task gets a first round of up to :data:`FIRST_PASS`
trials, the heaviest first, before any task gets more (an untuned kernel is
10-100x slower than a tuned one, so a time budget spent on a few tasks leaves
the model slow); then the rest, heaviest first. Each task is tuned in rounds
of at most :data:`MAX_TRIALS_PER_ITER` trials (MetaSchedule's own round). With
a time budget (``minutes``) the rounds are sized to what fits in the time left
at the pace of the rounds so far (the first, which always runs, has 8 trials),
and no other round starts once it is spent; the round in progress finishes, so
the budget is exceeded by at most one (small) round, and by MetaSchedule's
start-up (once per process, timed apart from the rounds: see :mod:`deploy.tuning`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from deploy.errors import CompileError

__all__ = ["FIRST_PASS", "MAX_TRIALS_PER_ITER", "MIN_TRIALS_PER_TASK", "Pace", "TuningBudget", "rounds", "task_trials"]

logger = logging.getLogger(__name__)

MAX_TRIALS_PER_ITER = 64  # MetaSchedule's default batch of candidates per round
FIRST_PASS = 8  # trials every task gets before any task gets more (breadth first)
MIN_TRIALS_PER_TASK = 4  # a task's first candidates: well below that, a schedule is a random draw
WEIGHTINGS = ("flops", "even")


@dataclass(frozen=True)
class TuningBudget:
    """How much tuning a model gets: ``trials`` shared over its tasks, within ``minutes`` (None: no limit)."""

    trials: int
    minutes: float | None = None
    weighting: str = "flops"  # flops: by each task's share of the model's work; even: the same for every task

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise CompileError(f"`tuning trials >= 1` must hold, but got {self.trials=}")
        if self.minutes is not None and self.minutes <= 0:
            raise CompileError(f"`tuning minutes > 0` must hold, but got {self.minutes=}")
        if self.weighting not in WEIGHTINGS:
            raise CompileError(f"`weighting` must be one of {list(WEIGHTINGS)}, but got {self.weighting=}")


def task_trials(tasks: list, trials: int, *, weighting: str = "flops") -> list[int]:
    """Each task's share of ``trials``: by its FLOPs x calls (``flops``) or the same for all (``even``).

    Every task gets at least :data:`MIN_TRIALS_PER_TASK` (or ``trials / tasks`` when that is less,
    but at least one), so the shares may add up to a little more than ``trials``.
    """
    if not tasks:
        return []
    even = max(1, math.ceil(trials / len(tasks)))
    if weighting == "even":
        return [even] * len(tasks)
    floor = min(MIN_TRIALS_PER_TASK, even)
    work = [max(1.0, _flops(task) * task.weight) for task in tasks]
    total = sum(work)
    return [max(floor, round(trials * share / total)) for share in work]


def _flops(task: Any) -> float:
    from tvm.s_tir.analysis import estimate_tir_flops

    try:
        return float(estimate_tir_flops(task.dispatched[0]))
    # The estimator refuses some loop nests (data-dependent extents); such a task counts as tiny.
    except Exception:  # noqa: BLE001
        return 1.0


def rounds(order: list[int], left: dict[int, int], *, pace: Pace, deadline: float | None) -> Iterator[tuple[int, int]]:
    """``(task index, trials)`` of each round, for the tasks in ``order`` with ``left[index]`` trials to go.

    Breadth first: every task gets a first round (:data:`FIRST_PASS` trials) before any task gets more;
    then the rest, in ``order``. Stops once ``deadline`` (a ``time.perf_counter()`` value) has passed;
    the caller times each round into ``pace`` before asking for the next.
    """
    for first_pass in (True, False):
        for index in order:
            while left[index] > 0:
                want = min(left[index], FIRST_PASS) if first_pass else left[index]
                chunk = pace.round_size(want, deadline)
                if chunk == 0:
                    logger.info("time budget spent; a later run goes on with the tasks left")
                    return
                yield index, chunk
                left[index] -= chunk
                if first_pass:
                    break


class Pace:
    """Round sizes under a time budget: what fits in the time left at the pace of the rounds so far."""

    FIRST_ROUND = 8  # before any round has been timed
    MIN_ROUND = 4

    def __init__(self) -> None:
        self.trials = 0
        self.seconds = 0.0

    def add(self, trials: int, seconds: float) -> None:
        self.trials += trials
        self.seconds += seconds

    def round_size(self, left: int, deadline: float | None) -> int:
        """Trials for the next round (0: the time is spent)."""
        size = min(MAX_TRIALS_PER_ITER, left)
        if deadline is None:
            return size
        if self.trials == 0:  # a budget tunes something, even when MetaSchedule's start-up has used it up
            return min(size, self.FIRST_ROUND)
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return 0
        fits = int(remaining / (self.seconds / self.trials))
        return min(size, max(self.MIN_ROUND, fits))
