"""``run_search``: the whole search, top to bottom.

settings -> space (at the device's P) -> data -> budgets reachable?
         -> storage + study (resume: interrupted trials failed and retried once)
         -> evaluator (zeroshot | multishot | hybrid) -> baseline, once per study
         -> a space that holds only K <= `trials` feasible networks: all K queued, the target is K
         -> study.optimize(Objective) until the study holds `trials` evaluations (proposals that break a budget,
            duplicates and screened candidates are free), or too many proposals per evaluation
         -> results/<study>/: trials.csv, pareto.json + pareto/*.yaml, pareto.png, report.md
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import BaseStorage

from nas.datasets import Dataset
from nas.dense_datasets import DenseDataset
from nas.search.budgets import (
    Budgets,
    LatencyFn,
    SearchError,
    check_reachable,
    every_feasible_arch,
    measure,
    spread_feasible_archs,
)
from nas.search.counting import (
    FEASIBLE_IN_SPACE_ATTR,
    POLL_S,
    Tally,
    evaluation_target,
    holds_claim,
    may_go_on,
    proposals_exhausted,
    tally,
)
from nas.search.modes import DataCache, Evaluator, make_evaluator
from nas.search.objective import CandidateFailed, Objective
from nas.search.results import BASELINE_ATTR, ParetoPoint, check_writable, write_results
from nas.search.resume import enqueue_archs, fail_orphaned_fidelity_trials, recover_interrupted
from nas.search.settings import SearchSettings
from nas.search.sqlite_wal import settle
from nas.search.study import (
    STARTUP_TRIALS,
    make_sampler,
    make_storage,
    open_fidelity_study,
    open_study,
    sampler_seed,
)
from nas.search.surrogate import ProposalContext
from search_spaces import ArchConfig, SearchSpace, baseline_arch, load_space

__all__ = ["ProposalsExhausted", "SearchResult", "run_search", "run_with_latency_fn"]

logger = logging.getLogger(__name__)

JOURNAL_MAX_WAIT_S = 300.0  # how long a worker waits for other workers' trials on a journal file, then stops
PLOT_EVERY_S = 20.0  # pareto.png is the slowest result file; redrawn at most this often (and at the end)
# Free proposals (budget breakers, duplicates, screened) and zero-shot scores take milliseconds: rewriting every
# result file (O(trials)) after each would make a search of thousands of proposals quadratic. A training takes
# longer than this, so in multishot and hybrid mode the files still follow every evaluation.
RESULTS_EVERY_S = 5.0
# Looking for dead workers reads the study three times; a worker that proposes in milliseconds does it at most this
# often (dead workers are found by heartbeat or process id, on a scale of seconds).
RECOVER_EVERY_S = POLL_S / 2


@dataclass(frozen=True, eq=False)
class SearchResult:
    study: optuna.Study
    pareto: list[ParetoPoint]  # feasible, non-dominated, one per architecture, by latency
    results_dir: Path
    settings: SearchSettings
    task: str = "classification"  # the space's task: names the first objective (nas.task_metrics)


class ProposalsExhausted(SearchError):
    """The search stopped short of its evaluations: the budgets (or a small space) admit too few new candidates.

    The result files are written; ``result`` holds the study and its front as they are.
    """

    def __init__(self, message: str, result: SearchResult) -> None:
        super().__init__(message)
        self.result = result


def run_search(
    *,
    space: str | Path,
    device: str,
    dataset: str,
    study: str = "edgenas",
    trials: int = 60,
    strategy: str = "surrogate",
    mode: str = "hybrid",
    latency_budget_ms: float | None = None,
    max_params: int | None = None,
    max_peak_memory_kb: float | None = None,
    memory_objective: bool = False,
    seed: int = 0,
    storage: str | None = None,
    results_dir: str | Path = "results",
    data_dir: str | Path | None = None,
    population_size: int = 16,
    mutation_prob: float | None = None,
    crossover_prob: float = 0.9,
    feasible_start: bool = True,
    epochs: int = 3,
    train_limit: int | None = 768,
    eval_limit: int | None = None,
    batch_size: int = 64,
    lr: float = 0.1,
    pruner: str = "successive-halving",
    proxy: str | None = None,
    screen_ratio: int = 4,
    threads: int | None = 1,
    heartbeat_s: int = 10,
    baseline: bool = True,
    max_proposals_per_evaluation: int = 200,
    warm_start: Sequence[ArchConfig] = (),
    progress: bool = False,
) -> SearchResult:
    """Search ``space`` for accurate networks that are fast on ``device``; returns the study and its Pareto front.

    ``trials`` is the number of candidates *evaluated* (trained, or scored in
    zeroshot mode), all workers together: proposals that break a budget,
    duplicates and screened-out candidates are recorded and told to the
    sampler but cost nothing from it (:mod:`nas.search.counting`). Running it
    again with the same ``study`` (and ``results_dir``/``storage``) resumes:
    trials already finished are kept, an interrupted one is retried once, and
    the run stops when the study holds ``trials`` evaluations.
    Every argument is described in :class:`nas.search.SearchSettings` (same
    names and defaults); ``proxy=None`` picks ``nas.proxies.DEFAULT_PROXY``.
    ``warm_start`` architectures are queued as the first new trials.
    ``progress`` shows a progress bar on stderr.

    Raises :class:`SearchError` (and other one-line ``EdgeNasError``) for bad
    settings: unknown strategy, mode, device or dataset, a budget <= 0 or one
    that even the smallest candidates break, a study created with other settings;
    and, once the result files are written, :class:`ProposalsExhausted` (a
    SearchError holding the result) when the search made
    ``max_proposals_per_evaluation`` proposals per evaluation (budgets that
    admit almost nothing, or fewer feasible networks in the space than ``trials``).
    """
    options = {k: v for k, v in locals().items() if k not in ("warm_start", "progress")}
    options.update(space=str(space), results_dir=str(results_dir), data_dir=None if data_dir is None else str(data_dir))
    if options["proxy"] is None:
        del options["proxy"]
    settings = SearchSettings(**options)
    task = load_space(settings.space).task
    latency_fn, dtype_bytes, parallelism_factor = estimator_for(settings.device, task=task)
    return run_with_latency_fn(
        settings,
        latency_fn=latency_fn,
        dtype_bytes=dtype_bytes,
        parallelism_factor=parallelism_factor,
        warm_start=warm_start,
        progress=progress,
    )


def estimator_for(device: str, *, task: str = "classification") -> tuple[LatencyFn, int, int]:
    """(batched latency function, activation bytes of the device's data type, parallelism factor P); a simulated
    device without an estimator gets one built (seconds). For a dense ``task``, an estimator built before dense
    networks were estimated is refused here, in one line that says to rebuild it."""
    from latency_estimator.build import obtain_estimator
    from latency_estimator.devices import get_device
    from latency_estimator.subgraph import DENSE_KINDS

    chosen = get_device(device)
    estimator = obtain_estimator(chosen)
    if task != "classification":
        estimator.require_kinds([kind for kind in DENSE_KINDS if kind != "concat"])
    return estimator.predict_many, chosen.dtype_bytes, chosen.parallelism_factor


def run_with_latency_fn(
    settings: SearchSettings,
    *,
    latency_fn: LatencyFn,
    dtype_bytes: int,
    parallelism_factor: int,
    warm_start: Sequence[ArchConfig] = (),
    progress: bool = False,
) -> SearchResult:
    """:func:`run_search` with the latency source given (tests pass a stand-in)."""
    space = load_space(settings.space, parallelism_factor=parallelism_factor)
    data = DataCache(settings)
    _check_fits(space, data, settings)
    if space.task != "classification" and settings.mode != "multishot":
        raise SearchError(
            f"{space.source}: a {space.task} space is searched in multishot mode only (the zero-shot "
            f"proxies score classifiers), but got mode {settings.mode!r}"
        )
    check_reachable(space, settings.budgets, latency_fn, dtype_bytes=dtype_bytes, seed=settings.seed)
    check_writable(settings.study_dir)  # before the first trial: a report that cannot be written would be lost
    context = ProposalContext(space, settings.budgets, latency_fn, dtype_bytes)
    study, storages, fidelity = _open_studies(settings, context, task=space.task)
    storage = storages[0]
    try:
        reference = _feasible_sampler(space, settings.budgets, latency_fn, dtype_bytes, settings.seed)
        _queue_known(study, settings, context, warm_start, reference)
        evaluator = make_evaluator(settings, data, fidelity, reference, latency_fn)
        evaluator.prepare(study)
        if settings.baseline and BASELINE_ATTR not in study.user_attrs:
            _evaluate_baseline(study, settings, evaluator, latency_fn, dtype_bytes, parallelism_factor, space)
        objective = Objective(
            space=space,
            budgets=settings.budgets,
            latency_fn=latency_fn,
            dtype_bytes=dtype_bytes,
            evaluator=evaluator,
            memory_objective=settings.memory_objective,
            target=evaluation_target(study, settings.trials),
            screens=not whole_space_queued(study, settings),
        )
        extra = {"dtype_bytes": dtype_bytes, "parallelism_factor": parallelism_factor, "task": space.task}
        _optimize(study, storage, objective, settings, extra, progress)
        if fidelity is not None:  # a worker killed mid-training left its fidelity trial RUNNING
            fail_orphaned_fidelity_trials(fidelity, study, storage)
        front = write_results(study, settings, extra=extra)
        result = SearchResult(
            study=study, pareto=front, results_dir=settings.study_dir, settings=settings, task=space.task
        )
        _raise_if_exhausted(result)
        return result
    finally:
        settle(*storages)  # study.db one self-contained file again (nas.search.sqlite_wal)


def _open_studies(
    settings: SearchSettings, context: ProposalContext, *, task: str
) -> tuple[optuna.Study, tuple[BaseStorage, ...], optuna.Study | None]:
    """The study (interrupted trials failed and queued for their retry), its storage (then the fidelity study's, when
    that is another) and, when training, its fidelity study."""
    storage, where = make_storage(settings)
    study = open_study(settings, storage, optuna.samplers.RandomSampler(), task=task)
    logger.info("study %r in %s", settings.study, where)
    study.sampler = make_sampler(settings, sampler_seed(settings, len(study.trials)), context)
    recover_interrupted(study, storage)
    if not settings.trains:
        return study, (storage,), None
    plain = _plain_storage(settings, storage)
    fidelity = open_fidelity_study(settings, plain)
    fail_orphaned_fidelity_trials(fidelity, study, storage)
    return study, (storage,) if plain is storage else (storage, plain), fidelity


def _queue_known(
    study: optuna.Study,
    settings: SearchSettings,
    context: ProposalContext,
    warm_start: Sequence[ArchConfig],
    reference: Callable[[int], list[ArchConfig]],
) -> None:
    """Warm-start architectures first; then the whole space when it holds no more than N feasible networks, or else,
    in a new study under budgets, feasible random ones."""
    fresh = not study.trials
    space = context.space
    if warm_start:
        enqueue_archs(study, space, warm_start, source="warm start")
    if FEASIBLE_IN_SPACE_ATTR not in study.user_attrs and _queue_whole_space(study, settings, context):
        return
    if fresh and settings.feasible_start and settings.budgets.any() and settings.strategy != "random":
        # No more than the study will run: the rest would be left WAITING once the target is reached.
        count = min(population_size_of(settings), settings.trials)
        enqueue_archs(study, space, reference(count), source="feasible start, spread in latency")


def _queue_whole_space(study: optuna.Study, settings: SearchSettings, context: ProposalContext) -> bool:
    """Enumerate a small space; when it holds K <= N feasible networks, queue every one not yet evaluated and make
    K the study's target (a sampler would otherwise propose duplicates until the proposals run out). Records K on
    the study either way; True when the whole space was queued."""
    space, budgets = context.space, context.budgets
    feasible = every_feasible_arch(space, budgets, context.latency_fn, dtype_bytes=context.dtype_bytes)
    if feasible is None:
        return False
    study.set_user_attr(FEASIBLE_IN_SPACE_ATTR, len(feasible))
    if len(feasible) > settings.trials:
        logger.info("%s holds %d feasible networks under %s", space.source, len(feasible), budgets.describe())
        return False
    seen = {t.user_attrs.get("arch_id") for t in study.get_trials(deepcopy=False)}
    enqueue_archs(study, space, [a for a in feasible if a.arch_id not in seen], source="the whole feasible space")
    logger.warning(
        "%s holds only %d distinct networks within the budgets %s: all are evaluated, and the search ends after "
        "%d evaluations instead of %d",
        space.source,
        len(feasible),
        budgets.describe(),
        len(feasible),
        settings.trials,
    )
    return True


def whole_space_queued(study: optuna.Study, settings: SearchSettings) -> bool:
    """True when the study evaluates every feasible network of its space (no screening then: all of them train)."""
    return study.user_attrs.get(FEASIBLE_IN_SPACE_ATTR, math.inf) <= settings.trials


def _plain_storage(settings: SearchSettings, storage):
    """The same storage without heartbeat (a journal has none; an RDB URL is opened once more)."""
    return make_storage(settings, heartbeat=False)[0] if isinstance(storage, optuna.storages.RDBStorage) else storage


def population_size_of(settings: SearchSettings) -> int:
    """Trials the sampler draws at random before it learns: NSGA-II's first generation, the others' start-up."""
    return settings.population_size if settings.strategy == "evolution" else STARTUP_TRIALS[settings.strategy]


def _check_fits(space: SearchSpace, data: DataCache, settings: SearchSettings) -> None:
    dataset = data.dataset(space.resolution[0])
    if space.task != "classification":
        _check_fits_dense(space, dataset, settings)
        return
    if not isinstance(dataset, Dataset):
        raise SearchError(f"{space.source} is a classification space, but {settings.dataset!r} is a dense dataset")
    if (space.input_channels, space.head.num_classes) != (dataset.channels, dataset.num_classes):
        raise SearchError(
            f"{space.source} takes {space.input_channels}-channel images into {space.head.num_classes} classes, "
            f"but dataset {settings.dataset!r} has {dataset.channels} channel(s) and {dataset.num_classes} classes"
        )


def _check_fits_dense(space: SearchSpace, dataset: DenseDataset | Dataset, settings: SearchSettings) -> None:
    if not isinstance(dataset, DenseDataset) or space.task not in dataset.tasks:
        raise SearchError(
            f"{space.source} is a {space.task} space, but dataset {settings.dataset!r} has no {space.task} labels"
        )
    classes = dataset.num_classes(space.task)
    if (space.input_channels, space.head.num_classes) != (dataset.channels, classes):
        raise SearchError(
            f"{space.source} takes {space.input_channels}-channel images into {space.head.num_classes} classes, "
            f"but dataset {settings.dataset!r} has {dataset.channels} channel(s) and {classes} {space.task} classes"
        )


def _feasible_sampler(space: SearchSpace, budgets: Budgets, latency_fn: LatencyFn, dtype_bytes: int, seed: int):
    """``count -> up to count distinct feasible architectures spread over the feasible latency range`` (per seed)."""

    def sample(count: int) -> list[ArchConfig]:
        rng = np.random.default_rng(seed + 1)
        return spread_feasible_archs(space, budgets, latency_fn, dtype_bytes=dtype_bytes, count=count, rng=rng)

    return sample


def _evaluate_baseline(
    study: optuna.Study,
    settings: SearchSettings,
    evaluator: Evaluator,
    latency_fn: LatencyFn,
    dtype_bytes: int,
    parallelism_factor: int,
    space: SearchSpace,
) -> None:
    """Score or train baseline.yaml once per study, with the search's own recipe (no pruning)."""
    arch = baseline_arch(parallelism_factor=parallelism_factor, task=space.task)
    fits = (arch.input_channels, arch.head.num_classes, arch.resolution) == (
        space.input_channels,
        space.head.num_classes,
        arch.resolution if space.task == "classification" else space.resolution[0],
    )
    if not fits:
        logger.warning("baseline.yaml does not fit %s; no baseline in the report", space.source)
        return
    measured = measure([arch], latency_fn, dtype_bytes=dtype_bytes)[0]
    logger.info("evaluating the baseline %s", arch.arch_id)
    values = evaluator.reference(arch)
    study.set_user_attr(
        BASELINE_ATTR,
        {
            "arch_id": arch.arch_id,
            "block_string": arch.block_string(),
            **values,
            "latency_ms": measured.latency_ms,
            "params": measured.params,
            "peak_memory_kib": measured.peak_memory_kib,
            "violations": "; ".join(v.describe() for v in settings.budgets.violations(measured)),
        },
    )


def exhausted(counts: Tally, target: int, settings: SearchSettings) -> bool:
    return counts.evaluated < target and proposals_exhausted(counts, settings.max_proposals_per_evaluation)


def _raise_if_exhausted(result: SearchResult) -> None:
    study, settings = result.study, result.settings
    counts = tally(study.get_trials(deepcopy=False))
    if exhausted(counts, evaluation_target(study, settings.trials), settings):
        raise ProposalsExhausted(
            f"search {settings.study!r} stopped after {counts.proposals:,} proposals for {counts.evaluated} of "
            f"{settings.trials} evaluations ({counts.infeasible:,} infeasible, {counts.duplicates:,} duplicates, "
            f"{counts.screened:,} screened; the limit is {settings.max_proposals_per_evaluation} proposals per "
            f"evaluation): the budgets {settings.budgets.describe()} admit almost nothing in this space; "
            "loosen them or search another space",
            result,
        )


def go_on(study: optuna.Study, storage, settings: SearchSettings, recover: Callable[[], object] | None = None) -> bool:
    """Whether this worker starts another trial (:func:`nas.search.counting.may_go_on`), unless proposals ran away.

    Optuna runs queued trials oldest first, so a retry may come after
    architectures queued earlier (the feasible start); past the target those
    are recorded as SURPLUS, unevaluated, and the retry is evaluated.
    """
    target = evaluation_target(study, settings.trials)
    if exhausted(tally(study.get_trials(deepcopy=False)), target, settings):
        return False
    return may_go_on(
        study,
        target=target,
        recover=recover or (lambda: recover_interrupted(study, storage)),
        # A journal file has no heartbeat: a worker lost on another machine leaves its trial RUNNING for good.
        max_wait_s=None if isinstance(storage, optuna.storages.RDBStorage) else JOURNAL_MAX_WAIT_S,
    )


def _optimize(
    study: optuna.Study, storage, objective: Objective, settings: SearchSettings, extra: dict[str, Any], progress: bool
) -> None:
    if not go_on(study, storage, settings):
        counts = tally(study.get_trials(deepcopy=False)).describe()
        target = evaluation_target(study, settings.trials)
        logger.info("study %r (%s of %d): no trial for this worker", settings.study, counts, target)
        return
    callbacks = _Callbacks(study, storage, settings, extra, progress)
    try:
        # No n_trials: the callback stops the run when the study (all workers together) reaches the target.
        study.optimize(objective, catch=(CandidateFailed,), callbacks=[callbacks])
    finally:
        callbacks.close(study)


class _Callbacks:
    """After each trial: rewrite results, update the bar, stop unless :func:`go_on`."""

    def __init__(self, study: optuna.Study, storage, settings: SearchSettings, extra: dict, progress: bool) -> None:
        self.storage, self.settings, self.extra = storage, settings, extra
        self.last_plot = self.last_write = self.last_recover = time.monotonic()
        done = tally(study.get_trials(deepcopy=False)).evaluated
        self.bar = _progress_bar(settings, evaluation_target(study, settings.trials), done) if progress else None
        self.best = "best: none feasible yet"

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if time.monotonic() - self.last_write >= RESULTS_EVERY_S:
            self._write(study)
        elif self.bar is not None and holds_claim(trial):
            self.bar.update(1)
        if not go_on(study, self.storage, self.settings, recover=lambda: self._recover(study)):
            study.stop()

    def _recover(self, study: optuna.Study) -> None:
        if time.monotonic() - self.last_recover >= RECOVER_EVERY_S:
            recover_interrupted(study, self.storage)
            self.last_recover = time.monotonic()

    def _write(self, study: optuna.Study) -> None:
        now = time.monotonic()
        plot = now - self.last_plot > PLOT_EVERY_S
        front = write_results(study, self.settings, plot=plot, extra=self.extra)
        self.last_write = time.monotonic()
        if plot:
            self.last_plot = self.last_write
        if self.bar is not None:
            self.best = _best_so_far(front)
            self._show(study)

    def _show(self, study: optuna.Study) -> None:
        counts = tally(study.get_trials(deepcopy=False))
        self.bar.update(counts.evaluated - self.bar.n)
        self.bar.set_postfix_str(f"{_counts_so_far(counts)}; {self.best}", refresh=True)

    def close(self, study: optuna.Study) -> None:
        if self.bar is not None:
            self._show(study)  # the counts of the last trials (the files are rewritten after the run)
            self.bar.close()


def _progress_bar(settings: SearchSettings, target: int, done: int):
    from tqdm.auto import tqdm

    desc = f"search {settings.study}"
    return tqdm(total=target, initial=done, desc=desc, unit="eval", dynamic_ncols=True)


def _counts_so_far(counts: Tally) -> str:
    return (
        f"{counts.proposals} proposed, {counts.infeasible} infeasible, {counts.screened} screened, "
        f"{counts.duplicates} dup"
    )


def _best_so_far(front: list[ParetoPoint]) -> str:
    if not front:
        return "best: none feasible yet"
    best = max(front, key=lambda p: p.value)
    return f"best {best.value:.4g} @ {best.latency_ms:.3f} ms, Pareto {len(front)}"
