"""Exactly N: may this worker start another trial, or do the study's finished and running trials fill its target?

Workers on one study each decide after every trial. Counting only finished
trials lets every worker start one more when the study is one short, so
three workers asked for 12 finished 14. Here a worker starts a trial only
while ``counted + running < target``; when the trials other workers are
running would reach the target, it waits for them: a trial that finishes
fills the target, one whose worker died is failed (heartbeat or liveness
check, through ``recover``) and its queued retry is run by whoever is free.

Two workers may pass that check together (both see the same free slot, or
the same queued retry). So a new trial checks once more when it starts, with
its own number already in the storage (:func:`surplus_reason`): if the
others fill the target it is skipped before it chooses an architecture
(PRUNED, user attribute ``surplus``, not counted, listed as SKIPPED).

What counts as a trial is passed in (``counted``, ``pending``), so a change
to the counting scheme keeps this mechanism.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

__all__ = ["POLL_S", "SURPLUS_ATTR", "running_trials", "surplus_reason", "wait_for_slot"]

logger = logging.getLogger(__name__)

POLL_S = 0.5  # how often a waiting worker looks at the storage (one small query)
SURPLUS_ATTR = "surplus"


def running_trials(study: optuna.Study, *, besides: int | None = None) -> int:
    """RUNNING trials, other than trial number ``besides``."""
    return sum(t.number != besides for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def surplus_reason(
    trial: optuna.Trial,
    *,
    target: int,
    counted: Callable[[optuna.Study], int],
    pending: Callable[[optuna.Study], int],
) -> str | None:
    """Why ``trial``, just started, would take the study past ``target``; None when it may run.

    A retry of an interrupted trial always runs (it replaces one that held a slot).
    """
    study = trial.study
    if study._storage.get_trial_system_attrs(trial._trial_id).get("failed_trial") is not None:
        return None
    done, others, retries = counted(study), running_trials(study, besides=trial.number), pending(study)
    if done + others + retries < target:
        return None
    return f"the study's target of {target} is reached by {done} finished, {others} running, {retries} queued trials"


def wait_for_slot(
    study: optuna.Study,
    *,
    target: int,
    counted: Callable[[optuna.Study], int],
    pending: Callable[[optuna.Study], int],
    recover: Callable[[], object],
    max_wait_s: float | None = None,
    poll_s: float = POLL_S,
) -> bool:
    """True when this worker may start a trial; False when the study is (or is about to be) full.

    ``counted``: trials that count towards ``target``; ``pending``: interrupted
    trials queued for their retry (a retry always runs: it replaces a trial
    that held a slot). Waits while other workers' running trials fill the
    target; after ``max_wait_s`` (None: no limit) it gives up and says full,
    which a journal file without heartbeat needs when a worker on another
    machine died mid-trial.
    """
    deadline = None if max_wait_s is None else time.monotonic() + max_wait_s
    waited = False
    while True:
        recover()
        done, retries = counted(study), pending(study)
        if done >= target and not retries:
            return False
        if retries or done + running_trials(study) < target:
            return True
        if deadline is not None and time.monotonic() > deadline:
            logger.warning("other workers' running trials fill the target of %d; this worker stops", target)
            return False
        if not waited:
            logger.info("%d of %d trials done, the rest running on other workers: waiting for them", done, target)
            waited = True
        time.sleep(poll_s)
