"""The Optuna side: storage, study (objectives, settings check on resume), samplers and pruners.

Samplers (``--strategy``): ``evolution`` (NSGA-II), ``tpe``, ``random``,
``gp`` (Optuna's GPSampler: Gaussian process, log expected hypervolume
improvement, constraints) and ``surrogate`` (:mod:`nas.search.surrogate`:
a model of accuracy searched together with the latency estimator).

Objectives: maximise the first value (validation accuracy, or the proxy score
in zeroshot mode), minimise estimated latency, optionally minimise peak
activation memory. Budgets are constraints (``trial.set_constraint``), which
NSGA-II (constrained domination) and TPE (infeasible trials ranked below
feasible ones by total violation) read without further wiring.

Optuna does not report intermediate values of multi-objective trials to a
pruner, so multishot training reports each epoch to a companion
single-objective study, ``<study>.fidelity``, in the same storage; its
pruner (successive halving, Hyperband, median) decides for all workers.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.exc import SQLAlchemyError

from nas.search.budgets import SearchError
from nas.search.gp_sampler import BoundedGPSampler
from nas.search.resume import retry_interrupted
from nas.search.settings import SearchSettings, defining_settings
from nas.search.sqlite_wal import write_ahead
from nas.search.storage_url import is_rdb_url, mask_secrets, mask_url, resolve_rdb_url
from nas.search.surrogate import ProposalContext, SurrogateSampler
from nas.task_metrics import first_objective_column
from search_spaces.errors import one_line

__all__ = [
    "SETTINGS_ATTR",
    "STARTUP_TRIALS",
    "fidelity_study_name",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "metric_names",
    "open_fidelity_study",
    "open_study",
    "sampler_seed",
]

logger = logging.getLogger(__name__)

SETTINGS_ATTR = "edgenas.settings"
SETTINGS_WAIT_S = 10.0  # how long a worker waits for the study's creator to record its settings
TPE_STARTUP_TRIALS = 10  # Optuna's default: random trials before TPE models the good and the bad
# Trials before a model-based sampler leaves its start-up (the feasible start queues this many, spread in latency).
STARTUP_TRIALS = {"tpe": TPE_STARTUP_TRIALS, "gp": 10, "surrogate": 8, "random": 0}
STORAGE_ERRORS: tuple[type[BaseException], ...] = (ImportError, ValueError, OSError)


def make_storage(settings: SearchSettings, *, heartbeat: bool = True) -> tuple[BaseStorage, str]:
    """The storage and its description (password masked): a database URL, or else a journal file.

    Default: SQLite at ``results/<study>/study.db``. RDB storages run Optuna's
    heartbeat, so a trial whose worker died is failed and retried once;
    ``heartbeat=False`` opens the same database without it (for the fidelity
    study, whose trials are asked and told, not run by ``optimize``).
    """
    url = settings.storage
    if url is None:
        settings.study_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{settings.study_dir / 'study.db'}"
    if not is_rdb_url(url):
        return _journal_storage(Path(url)), f"journal file {url}"
    beat = {
        "heartbeat_interval": settings.heartbeat_s,
        "grace_period": 2 * settings.heartbeat_s,
        "heartbeat_stale_trial_callback": retry_interrupted,
    }
    try:
        storage = _open_rdb(resolve_rdb_url(url), **(beat if heartbeat else {}))
    except STORAGE_ERRORS + (SQLAlchemyError,) as exc:
        raise SearchError(mask_secrets(f"cannot open storage {url!r}: {one_line(exc)}", url)) from None
    return storage, mask_url(url) or url


def _open_rdb(url: str, attempts: int = 4, **heartbeat) -> RDBStorage:
    """Open (or create) an RDB storage; a worker that loses the race to create the tables tries again.

    Workers started together on a new database all find it empty and all make
    its tables and record its schema version; all but one fail ("table already
    exists", a duplicate version row). Once that one has finished, opening
    succeeds. Any database error is retried, so a bad URL costs 1.5 s of
    retries before its error.
    """
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat arguments
        for attempt in range(1, attempts):
            try:
                storage = RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
                break
            except SQLAlchemyError:
                time.sleep(0.25 * attempt)
        else:
            storage = RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
    write_ahead(storage)  # an SQLite file commits to its write-ahead log until the run settles it
    return storage


def _journal_storage(path: Path) -> JournalStorage:
    if not path.parent.is_dir():
        raise SearchError(f"{path}: the journal file's folder does not exist")
    try:
        return JournalStorage(JournalFileBackend(str(path)))
    except STORAGE_ERRORS as exc:
        raise SearchError(f"cannot open journal storage {path}: {one_line(exc)}") from None


def metric_names(settings: SearchSettings, *, task: str = "classification") -> list[str]:
    """The objectives' names (Optuna, pareto.json): the first follows the task (``nas.task_metrics``)."""
    first = first_objective_column(task=task, mode=settings.mode, proxy=settings.proxy)
    return [first, "latency_ms"] + (["peak_memory_kib"] if settings.memory_objective else [])


def open_study(
    settings: SearchSettings,
    storage: BaseStorage,
    sampler: optuna.samplers.BaseSampler,
    *,
    task: str = "classification",
) -> optuna.Study:
    """Create the study, or load it and check it was made with the same defining settings."""
    directions = ["maximize", "minimize"] + (["minimize"] if settings.memory_objective else [])
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if settings.study in existing:
        study = optuna.load_study(study_name=settings.study, storage=storage, sampler=sampler)
        _check_same_settings(study, settings)
        logger.info("resuming study %r: %d trials so far", settings.study, len(study.trials))
        return study
    study = optuna.create_study(
        study_name=settings.study, storage=storage, sampler=sampler, directions=directions, load_if_exists=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(metric_names(settings, task=task))
    study.set_user_attr(SETTINGS_ATTR, settings.to_dict())
    return study


def _check_same_settings(study: optuna.Study, settings: SearchSettings) -> None:
    stored = _stored_settings(study)
    if not isinstance(stored, dict):
        raise SearchError(f"study {settings.study!r} exists in the storage but was not created by edgenas search")
    changed = changed_settings(defining_settings(stored), settings.defining())
    if changed:
        diffs = ", ".join(f"{k}: study has {old!r}, got {new!r}" for k, (old, new) in changed.items())
        raise SearchError(
            f"this study ({settings.study!r}) was created with other settings ({diffs}); use another --study"
        )


def _stored_settings(study: optuna.Study, wait_s: float = SETTINGS_WAIT_S) -> Any:
    """The settings the study was created with; a worker that created it an instant ago may not have written them
    yet (Optuna creates the study, then edgenas sets its attribute), so an absent attribute is awaited a little."""
    deadline = time.monotonic() + wait_s
    while (stored := study.user_attrs.get(SETTINGS_ATTR)) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return stored


def changed_settings(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{name: (previous, current)}`` for each defining setting that differs; the mode first.

    When the mode changed, settings only one of the two modes uses are not compared (the mode says it all).
    """
    names = [k for k in previous.keys() | current.keys() if k in previous and k in current or k == "mode"]
    missing = "(not set)"
    changed = {k: (previous.get(k, missing), current.get(k, missing)) for k in names}
    ordered = sorted((k for k, (a, b) in changed.items() if a != b), key=lambda k: (k != "mode", k))
    return {k: changed[k] for k in ordered}


def fidelity_study_name(study_name: str) -> str:
    return f"{study_name}.fidelity"


def open_fidelity_study(settings: SearchSettings, storage: BaseStorage) -> optuna.Study:
    """The single-objective study that multishot training reports its epochs to (``storage``: no heartbeat)."""
    return optuna.create_study(
        study_name=fidelity_study_name(settings.study),
        storage=storage,
        direction="maximize",
        pruner=make_pruner(settings),
        sampler=optuna.samplers.RandomSampler(seed=settings.seed),  # it has no parameters to sample
        load_if_exists=True,
    )


def sampler_seed(settings: SearchSettings, trials_so_far: int) -> int:
    """Seed of this run's sampler: a resumed run must not replay the first run's random proposals.

    With an explicit ``--storage`` several workers may start together on the
    same study; their process ids keep them from proposing identical candidates.
    """
    salt = [settings.seed, trials_so_far] + ([os.getpid()] if settings.storage is not None else [])
    return int(np.random.SeedSequence(salt).generate_state(1)[0])


def make_sampler(
    settings: SearchSettings, seed: int, context: ProposalContext | None = None
) -> optuna.samplers.BaseSampler:
    """The strategy's sampler; ``surrogate`` needs the ``context`` (space, budgets, latency estimator)."""
    if settings.strategy == "surrogate":
        if context is None:
            raise SearchError("strategy 'surrogate' needs the search space and latency estimator (a ProposalContext)")
        return SurrogateSampler(context, seed=seed)
    if settings.strategy == "gp":
        # Multi-objective (log EHVI) with the budgets' constraints, read from trial.set_constraint; its models see a
        # bounded set of trials (nas.search.gp_sampler: a fit is cubic in the trials, budget breakers included).
        return BoundedGPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS["gp"])
    if settings.strategy == "evolution":
        return optuna.samplers.NSGAIISampler(
            population_size=settings.population_size,
            mutation_prob=settings.mutation_prob,
            crossover_prob=settings.crossover_prob,
            seed=seed,
        )
    if settings.strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(settings: SearchSettings) -> optuna.pruners.BasePruner:
    """Epoch-level pruners; resource = epochs of the multishot budget.

    The first decision comes after the next-to-last epoch: in
    results/zero-shot-proxies.md, validation accuracy after epoch 1 of 3 has
    no rank correlation with the final one (the learning rate has just
    peaked), after epoch 2 it has 0.56. Halving (reduction factor 2) rather
    than thirds, as that signal is only moderate.
    """
    first = max(1, settings.epochs - 1)
    if settings.pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=2)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=settings.epochs, reduction_factor=2)
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=first - 1)
    return optuna.pruners.NopPruner()
