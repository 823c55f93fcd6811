"""Resuming: interrupted trials, their one retry, and enqueueing known architectures.

A worker killed mid-trial (SIGKILL, power loss) leaves its trial RUNNING. Two
mechanisms find such trials:

* Optuna's heartbeat (RDB storages: SQLite, PostgreSQL): a trial silent for
  ``2 x heartbeat_s`` is failed by ``fail_stale_trials``, from any worker on
  any machine, which then calls :func:`retry_interrupted`.
* A liveness check (every storage, journal files included): a RUNNING trial
  whose recorded worker is a process on this host that no longer exists is
  failed at once, without waiting for the heartbeat's grace period.

:func:`retry_interrupted` enqueues the interrupted architecture once more (a
WAITING trial with the same parameters, Optuna's ``failed_trial`` /
``retry_history`` system attributes); a retry that is interrupted again is not
retried. Finished trials are never touched.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Sequence

import optuna
import psutil
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from search_spaces import ArchConfig, SearchSpace

__all__ = [
    "ARCH_ATTRS",
    "WORKER_ATTR",
    "enqueue_archs",
    "fail_orphaned_fidelity_trials",
    "mark_worker",
    "recover_interrupted",
    "retry_interrupted",
]

logger = logging.getLogger(__name__)

WORKER_ATTR = "worker"
# What a retry carries over from the interrupted trial (not its outcome: it has none).
ARCH_ATTRS = ("arch", "arch_id", "block_string")


def _this_worker() -> dict[str, object]:
    process = psutil.Process(os.getpid())
    return {"host": socket.gethostname(), "pid": process.pid, "started": process.create_time()}


def mark_worker(trial: optuna.Trial) -> None:
    """Record which process runs ``trial``, for the liveness check."""
    trial.set_user_attr(WORKER_ATTR, _this_worker())


def _worker_is_dead(worker: dict | None) -> bool:
    """True only when ``worker`` was a process on this host that is gone (pid reuse is told apart by start time)."""
    if not worker or worker.get("host") != socket.gethostname():
        return False
    try:
        return abs(psutil.Process(int(worker["pid"])).create_time() - float(worker["started"])) > 1e-3
    except psutil.NoSuchProcess:
        return True


def retry_interrupted(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue an interrupted trial's architecture once (Optuna's heartbeat-stale callback signature)."""
    if trial.system_attrs.get("failed_trial") is not None:
        logger.warning("trial %d was interrupted again; a retried architecture is not retried twice", trial.number)
        return
    if not trial.params:
        logger.info("trial %d was interrupted before choosing an architecture; nothing to retry", trial.number)
        return
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={k: v for k, v in trial.user_attrs.items() if k in ARCH_ATTRS},
            system_attrs={"failed_trial": trial.number, "retry_history": [trial.number]},
        )
    )
    logger.warning("trial %d was interrupted; its architecture is queued for one retry", trial.number)


def recover_interrupted(study: optuna.Study, storage: BaseStorage) -> list[int]:
    """Fail the trials whose worker died, retry each architecture once; the numbers of the trials failed."""
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # A no-op without heartbeat (journal); else fails stale trials and calls retry_interrupted for each.
        optuna.storages.fail_stale_trials(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _worker_is_dead(trial.user_attrs.get(WORKER_ATTR)) and _fail(storage, trial):
            retry_interrupted(study, storage.get_trial(trial._trial_id))
    failed = sorted({t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))} - before)
    if failed:
        logger.warning("marked interrupted trials %s as failed", failed)
    return failed


def _fail(storage: BaseStorage, trial: FrozenTrial) -> bool:
    try:
        return storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # another worker got there first


def fail_orphaned_fidelity_trials(fidelity: optuna.Study, study: optuna.Study, storage: BaseStorage) -> None:
    """Fail fidelity trials left RUNNING by a worker that died (their main trial is no longer running)."""
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    for trial in fidelity.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("trial") not in running:
            _fail(storage, trial)


def enqueue_archs(study: optuna.Study, space: SearchSpace, archs: Sequence[ArchConfig], *, source: str) -> int:
    """Queue known architectures as the next trials (warm start); those outside ``space`` are skipped.

    Each becomes a WAITING trial with the point's searched parameters; the
    sampler is bypassed for it. Returns how many were queued.
    """
    searched = {name for name, choices in space.parameters().items() if len(choices) > 1}
    queued = 0
    for arch in archs:
        point = space.point_of(arch)
        if point is None:
            logger.warning("%s: %s is not in %s; not queued", source, arch.arch_id, space.source)
            continue
        params = {name: value for name, value in point.items() if name in searched}
        study.enqueue_trial(params, user_attrs={"enqueued_from": source}, skip_if_exists=True)
        queued += 1
    logger.info("queued %d of %d architectures from %s", queued, len(archs), source)
    return queued
