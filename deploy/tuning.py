"""MetaSchedule tuning with a reusable database folder.

A tuning database (``--tuning-db``) is a MetaSchedule JSON database plus
``edgenas-tuning.json``, which records the trial budget each task (a fused
TIR function for one target, keyed by its structural hash) has received.
A task is tuned only when the requested budget exceeds what it already got,
so tuning the same shapes twice measures nothing; networks that share layer
shapes share tuning.

Candidates are built in this process rather than in MetaSchedule's popen
builder: each of its builder workers imports ``tvm.s_tir.tensor_intrin``,
which takes 20-40 s per batch of candidates on this machine, while building
a candidate takes ~0.1 s. Candidates are measured by MetaSchedule's local
runner (a worker process) with ``num_threads`` TVM threads, or on a board
through MetaSchedule's RPC runner (libraries linked with the target's cross
compiler). MetaSchedule's round-by-round log goes to ``<database>/logs/tuning.log``.
MetaSchedule's start-up (parsing its tensor intrinsics) costs 20-60 s once per process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import CompileError
from deploy.tracker import check_board, parse_tracker

__all__ = ["Measurer", "TuningReport", "apply_database", "tune_module"]

logger = logging.getLogger(__name__)

BUDGET_FILE = "edgenas-tuning.json"
MAX_TRIALS_PER_ITER = 64  # MetaSchedule's default batch of candidates per round


@dataclass(frozen=True)
class TuningReport:
    tasks: int  # fused TIR functions of the model
    tuned_tasks: int  # tuned in this run
    reused_tasks: int  # already tuned with at least this budget in the database
    trials_per_task: int
    measured: int  # candidates measured in this run (new database records)
    seconds: float
    database: str

    def summary(self) -> str:
        return (
            f"{self.tuned_tasks} of {self.tasks} tasks tuned ({self.trials_per_task} trials each), "
            f"{self.reused_tasks} reused from {self.database}; {self.measured} candidates measured "
            f"in {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class Measurer:
    """Where candidates run: this host (default), or a board behind a TVM RPC tracker."""

    num_threads: int = 1  # TVM threads on this host (a board uses its server's default)
    rpc_tracker: str | None = None  # HOST:PORT
    rpc_key: str | None = None
    linker: str | None = None  # cross compiler for the board's libraries; None: this host's


def tune_module(
    mod: Any, *, target: Any, trials: int, database: str | Path, measurer: Measurer | None = None, seed: int = 0
) -> TuningReport:
    """Tune the fused TIR functions of a legalised Relax module; returns a :class:`TuningReport`.

    ``trials`` is the budget for the whole model, spread evenly over its tasks.
    """
    from tvm.s_tir import meta_schedule as ms

    measurer = measurer or Measurer()
    if trials < 1:
        raise CompileError(f"`tuning trials >= 1` must hold, but got {trials=}")
    start = time.perf_counter()
    db_dir = Path(database)
    db_dir.mkdir(parents=True, exist_ok=True)
    tasks = ms.relax_integration.extract_tasks(mod, target)
    per_task = max(1, math.ceil(trials / max(1, len(tasks))))
    budgets = _read_budgets(db_dir)
    todo = [task for task in tasks if budgets.get(_task_key(task, target), 0) < per_task]
    db = ms.database.JSONDatabase(work_dir=str(db_dir))
    before = len(db)
    if todo:
        logger.info("tuning %d of %d tasks, %d trials each", len(todo), len(tasks), per_task)
        _run_tuner(todo, db=db, db_dir=db_dir, per_task=per_task, measurer=measurer, seed=seed)
        budgets.update({_task_key(task, target): per_task for task in todo})
        _write_budgets(db_dir, budgets)
    measured = len(ms.database.JSONDatabase(work_dir=str(db_dir))) - before
    report = TuningReport(
        tasks=len(tasks),
        tuned_tasks=len(todo),
        reused_tasks=len(tasks) - len(todo),
        trials_per_task=per_task,
        measured=measured,
        seconds=time.perf_counter() - start,
        database=str(db_dir),
    )
    logger.info("tuning: %s", report.summary())
    return report


def apply_database(mod: Any, *, target: Any, database: str | Path) -> Any:
    """Replace each TIR function that the database has a record for by its best schedule."""
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    db_dir = Path(database)
    if not (db_dir / "database_workload.json").is_file():
        raise CompileError(f"{db_dir}: not a tuning database (no database_workload.json)")
    db = ms.database.JSONDatabase(work_dir=str(db_dir), allow_missing=False)
    with tvm.target.Target(target), db:
        return relax.transform.MetaScheduleApplyDatabase()(mod)


def _run_tuner(tasks: list, *, db: Any, db_dir: Path, per_task: int, measurer: Measurer, seed: int) -> None:
    from tvm.s_tir import meta_schedule as ms

    with (
        _tuning_log(db_dir) as task_logger,
        tempfile.TemporaryDirectory(prefix="edgenas-candidates-") as scratch,
        _runner(measurer) as runner,
    ):
        contexts, weights = _tune_contexts(tasks, per_task=per_task, seed=seed, parent_logger=task_logger)
        ms.tune.tune_tasks(
            tasks=contexts,
            task_weights=weights,
            work_dir=str(db_dir),
            max_trials_global=per_task * len(contexts),
            max_trials_per_task=per_task,
            num_trials_per_iter=min(MAX_TRIALS_PER_ITER, per_task),
            builder=_in_process_builder(Path(scratch), measurer.linker),
            runner=runner,
            database=db,
        )


def _tune_contexts(tasks: list, *, per_task: int, seed: int, parent_logger: logging.Logger) -> tuple[list, list]:
    """One TuneContext per task, each logging to a child of ``parent_logger``.

    MetaSchedule's own helper configures its loggers with ``logging.config.dictConfig`` on every
    call, which fails the second time in a process whose handlers have no names (under pytest).
    """
    from tvm.s_tir import meta_schedule as ms

    seeds = np.random.RandomState(seed=seed).randint(1, 2**30, size=len(tasks)).tolist()
    contexts = [
        ms.TuneContext(
            mod=task.dispatched[0],
            target=task.target,
            space_generator="post-order-apply",
            search_strategy=_search_strategy(per_task),
            task_name=task.task_name,
            logger=parent_logger.getChild(f"task_{index}_{task.task_name[:100]}"),
            rand_state=task_seed,
            num_threads="physical",
        ).clone()
        for index, (task, task_seed) in enumerate(zip(tasks, seeds))
    ]
    return contexts, [task.weight for task in tasks]


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


@contextmanager
def _runner(measurer: Measurer) -> Iterator[Any]:
    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50, enable_cpu_cache_flush=False)
    if measurer.rpc_tracker is None:
        with _env("TVM_NUM_THREADS", str(measurer.num_threads)):  # the runner's worker process inherits it
            yield ms.runner.LocalRunner(evaluator_config=evaluator)
        return
    check_board(measurer.rpc_tracker, measurer.rpc_key)
    host, port = parse_tracker(measurer.rpc_tracker)
    config = ms.runner.RPCConfig(
        tracker_host=host, tracker_port=port, tracker_key=measurer.rpc_key, session_timeout_sec=60
    )
    yield ms.runner.RPCRunner(rpc_config=config, evaluator_config=evaluator, max_workers=1)


def _search_strategy(per_task: int) -> Any:
    """Evolutionary search whose population scales with the budget: 8 candidates per trial, 64 to 512.

    MetaSchedule's default population (512) costs 20-50 s of search per task and round on a
    2-core machine, far more than measuring a handful of trials; large budgets keep the default.
    """
    from tvm.s_tir import meta_schedule as ms

    population = min(512, max(64, 8 * per_task))
    return ms.search_strategy.EvolutionarySearch(
        population_size=population, init_min_unmeasured=min(50, population // 2)
    )


def _in_process_builder(scratch: Path, linker: str | None) -> Any:
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build
    from tvm.support import cc

    fcompile = cc.cross_compiler(linker) if linker else None

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs: list) -> list:
            results = []
            for build_input in build_inputs:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DeprecationWarning)  # default_build calls tvm.build
                        module = default_build(build_input.mod, build_input.target, None)
                    # One folder per candidate: the runners' cleanup removes the artifact's folder.
                    path = Path(tempfile.mkdtemp(dir=scratch)) / "candidate.so"
                    module.export_library(str(path), fcompile=fcompile)
                    results.append(BuilderResult(str(path), None))
                # A candidate schedule can fail in any pass or in LLVM, each raising its own
                # exception type; MetaSchedule records the failure and moves on.
                except Exception as exc:  # noqa: BLE001
                    results.append(BuilderResult(None, f"in-process build failed: {exc}"))
            return results

    return InProcessBuilder()


def _task_key(task: Any, target: Any) -> str:
    import tvm
    import tvm_ffi

    mod_hash = tvm_ffi.structural_hash(task.dispatched[0])
    target_json = json.dumps(tvm.target.Target(target).export(), sort_keys=True, default=str)
    return f"{mod_hash:x}-{hashlib.sha256(target_json.encode()).hexdigest()[:12]}"


def _read_budgets(db_dir: Path) -> dict[str, int]:
    path = db_dir / BUDGET_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CompileError(f"{path}: corrupt tuning budget file ({exc})") from None
    return {str(key): int(value) for key, value in data.get("tasks", {}).items()}


def _write_budgets(db_dir: Path, budgets: dict[str, int]) -> None:
    path = db_dir / BUDGET_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": 1, "tasks": budgets}, indent=1, sort_keys=True))
    tmp.replace(path)


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
