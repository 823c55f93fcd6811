"""Tuning a legalised Relax module with MetaSchedule, task by task, into a reusable database folder.

The rooms: :mod:`deploy.tuning_schedule` shares the model's budget out over
its tasks (by FLOPs) and orders the rounds (breadth first, within a time
budget); :mod:`deploy.tuning_db` is the database folder (where it lives, the
trials each task has had, applying it); :mod:`deploy.tuning_measure` builds
and measures candidates. This module drives them: one ``tune_tasks`` call per
round, the budget file written after each, one XGBoost cost model shared by
all tasks of a run. A later run goes on where an earlier one stopped.
MetaSchedule's round-by-round log goes to ``<database>/logs/tuning.log``.
MetaSchedule's start-up (its tensor intrinsics: :mod:`deploy.tensor_intrinsics` loads the tuned target's
alone, ~0.5 s for x86 instead of ~60 s for every target's) is paid and timed before the first round
(``TuningReport.startup_seconds``), so that the pace of the rounds under a time budget leaves it out.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.tensor_intrinsics import load_tensor_intrinsics
from deploy.tuning_db import drop_torn_lines, read_budgets, task_key, write_budgets
from deploy.tuning_measure import Measurer, in_process_builder, runner
from deploy.tuning_schedule import Pace, TuningBudget, rounds, task_trials

__all__ = ["TuningReport", "tune_module"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuningReport:
    tasks: int  # fused TIR functions of the model
    tuned_tasks: int  # tuned in this run
    reused_tasks: int  # already tuned with at least this budget in the database
    trials: int  # the model's budget, as shared out over its tasks
    measured: int  # candidates measured in this run (new database records)
    seconds: float
    database: str
    skipped_tasks: int = 0  # short of their budget: the time budget was spent first (a later run goes on)
    startup_seconds: float = 0.0  # of ``seconds``: MetaSchedule's start-up, paid once per process

    def summary(self) -> str:
        skipped = f", {self.skipped_tasks} left for a later run (time budget spent)" if self.skipped_tasks else ""
        startup = f" (MetaSchedule start-up {self.startup_seconds:.1f} s)" if self.startup_seconds >= 0.1 else ""
        return (
            f"{self.tuned_tasks} of {self.tasks} tasks tuned ({self.trials} trials for the model), "
            f"{self.reused_tasks} reused from {self.database}{skipped}; {self.measured} candidates measured "
            f"in {self.seconds:.1f} s{startup}"
        )


def tune_module(
    mod: Any,
    *,
    target: Any,
    trials: int | TuningBudget,
    database: str | Path,
    measurer: Measurer | None = None,
    seed: int = 0,
) -> TuningReport:
    """Tune the fused TIR functions of a legalised Relax module; returns a :class:`TuningReport`.

    ``trials`` (or a :class:`TuningBudget`) is the budget for the whole model, shared over its tasks.
    """
    from tvm.s_tir import meta_schedule as ms

    budget = trials if isinstance(trials, TuningBudget) else TuningBudget(trials=trials)
    measurer = measurer or Measurer()
    start = time.perf_counter()
    db_dir = Path(database)
    db_dir.mkdir(parents=True, exist_ok=True)
    drop_torn_lines(db_dir)
    tasks = ms.relax_integration.extract_tasks(mod, target)
    wanted = task_trials(tasks, budget.trials, weighting=budget.weighting)
    budgets = read_budgets(db_dir)
    keys = [task_key(task, target) for task in tasks]
    todo = sorted(
        (index for index, key in enumerate(keys) if budgets.get(key, 0) < wanted[index]),
        key=lambda index: -wanted[index],
    )
    db = ms.database.JSONDatabase(work_dir=str(db_dir))
    before = len(db)
    deadline = None if budget.minutes is None else start + budget.minutes * 60
    touched: set[int] = set()
    startup = 0.0
    if todo:
        missing = sum(wanted[i] - budgets.get(keys[i], 0) for i in todo)
        logger.info("tuning %d of %d tasks, %d trials in all", len(todo), len(tasks), missing)

        def record(index: int, trials: int) -> None:
            touched.add(index)
            budgets[keys[index]] = budgets.get(keys[index], 0) + trials
            write_budgets(db_dir, budgets)

        startup = _run_tuner(
            [(index, tasks[index], wanted[index] - budgets.get(keys[index], 0)) for index in todo],
            db=db,
            db_dir=db_dir,
            measurer=measurer,
            seed=seed,
            deadline=deadline,
            record=record,
        )
    measured = len(ms.database.JSONDatabase(work_dir=str(db_dir))) - before
    report = TuningReport(
        tasks=len(tasks),
        tuned_tasks=len(touched),
        reused_tasks=len(tasks) - len(todo),
        trials=budget.trials,
        measured=measured,
        seconds=time.perf_counter() - start,
        database=str(db_dir),
        skipped_tasks=sum(budgets.get(keys[i], 0) < wanted[i] for i in todo),
        startup_seconds=startup,
    )
    logger.info("tuning: %s", report.summary())
    return report


def _run_tuner(
    todo: list[tuple[int, Any, int]],
    *,
    db: Any,
    db_dir: Path,
    measurer: Measurer,
    seed: int,
    deadline: float | None,
    record: Any,
) -> float:
    """Tune ``(index, task, trials)`` one task at a time, in the rounds of :func:`~deploy.tuning_schedule.rounds`
    (at most MetaSchedule's own round each), calling ``record(index, trials)`` after each round; stop starting
    rounds once ``deadline`` (a ``time.perf_counter()`` value) has passed. Returns the seconds of MetaSchedule's
    start-up, paid before the first round so that the rounds' pace does not count it.

    A round is one ``tune_tasks`` call: its evolutionary search starts from the database's best
    candidates of the task, as MetaSchedule's next round would, and the XGBoost cost model is shared.
    """
    from tvm.s_tir import meta_schedule as ms

    startup = _metaschedule_startup(todo[0][1].target)
    with (
        _tuning_log(db_dir) as task_logger,
        tempfile.TemporaryDirectory(prefix="edgenas-candidates-") as scratch,
        runner(measurer) as candidate_runner,
    ):
        builder = in_process_builder(Path(scratch), measurer.linker)
        cost_model = ms.cost_model.XGBModel(adaptive_training=True)
        seeds = np.random.RandomState(seed=seed).randint(1, 2**30, size=1 + max(i for i, _, _ in todo)).tolist()
        tasks = {index: task for index, task, _ in todo}
        pace = Pace()
        left = {index: trials for index, _, trials in todo}
        for index, chunk in rounds([index for index, _, _ in todo], left, pace=pace, deadline=deadline):
            task = tasks[index]
            round_start = time.perf_counter()
            # The search population follows this round's size, not the task's whole budget:
            # a population of 512 costs over a minute of search per round on a loaded 2-core host.
            context = _tune_context(task, index=index, trials=chunk, seed=seeds[index], parent_logger=task_logger)
            ms.tune.tune_tasks(
                tasks=[context],
                task_weights=[float(task.weight)],
                work_dir=str(db_dir),
                max_trials_global=chunk,
                max_trials_per_task=chunk,
                num_trials_per_iter=chunk,
                builder=builder,
                runner=candidate_runner,
                database=db,
                cost_model=cost_model,
                task_scheduler="round-robin",
            )
            record(index, chunk)
            pace.add(chunk, time.perf_counter() - round_start)
            seeds[index] += 1  # the next round of this task draws other candidates
    return startup


def _metaschedule_startup(target: Any) -> float:
    """Seconds spent importing the tensor intrinsics that every ``TuneContext`` needs (0 once imported)."""
    start = time.perf_counter()
    load_tensor_intrinsics(target)
    seconds = time.perf_counter() - start
    if seconds >= 1:
        logger.info("MetaSchedule start-up (tensor intrinsics): %.1f s", seconds)
    return seconds


def _tune_context(task: Any, *, index: int, trials: int, seed: int, parent_logger: logging.Logger) -> Any:
    """The TuneContext of one task, logging to a child of ``parent_logger``.

    MetaSchedule's own helper configures its loggers with ``logging.config.dictConfig`` on every
    call, which fails the second time in a process whose handlers have no names (under pytest).
    Its default postprocessors for CPUs include ``RewriteLayout``, which packs the buffers that
    the lowering marked layout-free (the weights, see :mod:`deploy.lowering`).
    """
    from tvm.s_tir import meta_schedule as ms

    return ms.TuneContext(
        mod=task.dispatched[0],
        target=task.target,
        space_generator="post-order-apply",
        search_strategy=_search_strategy(trials),
        task_name=task.task_name,
        logger=parent_logger.getChild(f"task_{index}_{task.task_name[:100]}"),
        rand_state=seed,
        num_threads="physical",
    ).clone()


@contextmanager
def _tuning_log(db_dir: Path) -> Iterator[logging.Logger]:
    """Send MetaSchedule's task and scheduler logs to ``<database>/logs/tuning.log`` while tuning.

    They are verbose (every round, every candidate), so they do not reach the console.
    """
    (db_dir / "logs").mkdir(exist_ok=True)
    handler = logging.FileHandler(db_dir / "logs" / "tuning.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger("tvm.s_tir.meta_schedule"), logging.getLogger(f"{__name__}.tasks")]
    saved = [(item.level, item.propagate) for item in loggers]
    for item in loggers:
        item.addHandler(handler)
        item.setLevel(logging.DEBUG)
        item.propagate = False
    logger.info("MetaSchedule log: %s", handler.baseFilename)
    try:
        yield loggers[1]
    finally:
        for item, (level, propagate) in zip(loggers, saved):
            item.removeHandler(handler)
            item.setLevel(level)
            item.propagate = propagate
        handler.close()


def _search_strategy(per_task: int) -> Any:
    """Evolutionary search that scales with the round: a population of 8 candidates per trial (64 to 512) and one
    generation per 16 trials (1 to 4, MetaSchedule's default).

    MetaSchedule's default population (512) costs 20-50 s of search per task and round on a
    2-core machine, far more than measuring a handful of trials. A small round spends most of its
    time evolving (4 generations: ~6 s of a ~10 s round of 8 trials), so one generation there lets
    a time budget measure more candidates: the demo's 3 minutes tuned 28 of 28 tasks with it, 24 with 4
    (AMD EPYC Zen 3, 1.95 ms against 3.64 ms). Large budgets keep the defaults.
    """
    from tvm.s_tir import meta_schedule as ms

    population = min(512, max(64, 8 * per_task))
    return ms.search_strategy.EvolutionarySearch(
        population_size=population,
        init_min_unmeasured=min(50, population // 2),
        genetic_num_iters=min(4, max(1, per_task // 16)),
    )
