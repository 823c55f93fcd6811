"""MetaSchedule tuning with a reusable database folder.

A tuning database (``--tuning-db``) is a MetaSchedule JSON database plus
``edgenas-tuning.json``, which records the trial budget each task (a fused
TIR function for one target, keyed by its structural hash) has received.
A task is tuned only when the requested budget exceeds what it already got,
so tuning the same shapes twice measures nothing; networks that share layer
shapes share tuning.

The model's trial budget goes where the time goes: each task gets a share
proportional to its floating-point work (FLOPs x how often it is called; at
least :data:`MIN_TRIALS_PER_TASK`), and tasks are tuned one at a time,
breadth first: every task gets a first round of up to :data:`FIRST_PASS`
trials, the heaviest first, before any task gets more (an untuned kernel is
10-100x slower than a tuned one, so a time budget spent on a few tasks leaves
the model slow); then the rest, heaviest first. Each task is tuned in rounds of at most 64 trials (MetaSchedule's own
round); the budget file counts the trials each task has had so far and is
written after every round, and MetaSchedule appends every measured candidate
to the database at once, so an interrupted tuning run loses at most the round
it was in; the next run goes on there. With a
time budget (``minutes``) the rounds are sized to what fits in the time left
at the pace of the rounds so far (the first, which always runs, has 8 trials),
and no other round starts once it is spent; the round in progress finishes, so the budget is exceeded by
at most one (small) round. A later run goes on where it stopped. One XGBoost
cost model is shared by all tasks of a run.

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

__all__ = ["Measurer", "TuningBudget", "TuningReport", "apply_database", "default_tuning_db", "tune_module"]

logger = logging.getLogger(__name__)

BUDGET_FILE = "edgenas-tuning.json"
MAX_TRIALS_PER_ITER = 64  # MetaSchedule's default batch of candidates per round
FIRST_PASS = 8  # trials every task gets before any task gets more (breadth first)
MIN_TRIALS_PER_TASK = 4  # a task's first candidates: well below that, a schedule is a random draw
DB_ENV = "EDGENAS_TUNING_DB"  # folder that holds the per-target default databases
WEIGHTINGS = ("flops", "even")


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

    def summary(self) -> str:
        skipped = f", {self.skipped_tasks} left for a later run (time budget spent)" if self.skipped_tasks else ""
        return (
            f"{self.tuned_tasks} of {self.tasks} tasks tuned ({self.trials} trials for the model), "
            f"{self.reused_tasks} reused from {self.database}{skipped}; {self.measured} candidates measured "
            f"in {self.seconds:.1f} s"
        )


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


@dataclass(frozen=True)
class Measurer:
    """Where candidates run: this host (default), or a board behind a TVM RPC tracker."""

    num_threads: int = 1  # TVM threads on this host (a board uses its server's default)
    rpc_tracker: str | None = None  # HOST:PORT
    rpc_key: str | None = None
    linker: str | None = None  # cross compiler for the board's libraries; None: this host's


def default_tuning_db(target_name: str) -> Path:
    """The persistent tuning database of a deploy target: ``$EDGENAS_TUNING_DB/<target>``, by default
    ``~/.cache/edgenas/tvm/<target>``. Every deploy for that target reads and extends it."""
    root = os.environ.get(DB_ENV) or Path.home() / ".cache" / "edgenas" / "tvm"
    return Path(root) / target_name


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
    _drop_torn_lines(db_dir)
    tasks = ms.relax_integration.extract_tasks(mod, target)
    wanted = task_trials(tasks, budget.trials, weighting=budget.weighting)
    budgets = _read_budgets(db_dir)
    keys = [_task_key(task, target) for task in tasks]
    todo = sorted(
        (index for index, key in enumerate(keys) if budgets.get(key, 0) < wanted[index]),
        key=lambda index: -wanted[index],
    )
    db = ms.database.JSONDatabase(work_dir=str(db_dir))
    before = len(db)
    deadline = None if budget.minutes is None else start + budget.minutes * 60
    touched: set[int] = set()
    if todo:
        missing = sum(wanted[i] - budgets.get(keys[i], 0) for i in todo)
        logger.info("tuning %d of %d tasks, %d trials in all", len(todo), len(tasks), missing)

        def record(index: int, trials: int) -> None:
            touched.add(index)
            budgets[keys[index]] = budgets.get(keys[index], 0) + trials
            _write_budgets(db_dir, budgets)

        _run_tuner(
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
    )
    logger.info("tuning: %s", report.summary())
    return report


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


def _run_tuner(
    todo: list[tuple[int, Any, int]],
    *,
    db: Any,
    db_dir: Path,
    measurer: Measurer,
    seed: int,
    deadline: float | None,
    record: Any,
) -> None:
    """Tune ``(index, task, trials)`` one task at a time, in rounds of at most :data:`MAX_TRIALS_PER_ITER`
    trials (MetaSchedule's own round), calling ``record(index, trials)`` after each round; stop starting
    rounds once ``deadline`` (a ``time.perf_counter()`` value) has passed.

    A round is one ``tune_tasks`` call: its evolutionary search starts from the database's best
    candidates of the task, as MetaSchedule's next round would, and the XGBoost cost model is shared.
    """
    from tvm.s_tir import meta_schedule as ms

    with (
        _tuning_log(db_dir) as task_logger,
        tempfile.TemporaryDirectory(prefix="edgenas-candidates-") as scratch,
        _runner(measurer) as runner,
    ):
        builder = _in_process_builder(Path(scratch), measurer.linker)
        cost_model = ms.cost_model.XGBModel(adaptive_training=True)
        seeds = np.random.RandomState(seed=seed).randint(1, 2**30, size=1 + max(i for i, _, _ in todo)).tolist()
        pace = _Pace()
        left = {index: trials for index, _, trials in todo}
        # Breadth first: an untuned kernel is 10-100x slower than a tuned one, so every task gets a first
        # round (FIRST_PASS trials) before any task gets more; then the rest, heaviest task first.
        for first_pass in (True, False):
            for index, task, _ in todo:
                while left[index] > 0:
                    want = min(left[index], FIRST_PASS) if first_pass else left[index]
                    chunk = pace.round_size(want, deadline)
                    if chunk == 0:
                        logger.info("time budget spent; a later run goes on with the tasks left")
                        return
                    round_start = time.perf_counter()
                    # The search population follows this round's size, not the task's whole budget:
                    # a population of 512 costs over a minute of search per round on a loaded 2-core host.
                    context = _tune_context(
                        task, index=index, trials=chunk, seed=seeds[index], parent_logger=task_logger
                    )
                    ms.tune.tune_tasks(
                        tasks=[context],
                        task_weights=[float(task.weight)],
                        work_dir=str(db_dir),
                        max_trials_global=chunk,
                        max_trials_per_task=chunk,
                        num_trials_per_iter=chunk,
                        builder=builder,
                        runner=runner,
                        database=db,
                        cost_model=cost_model,
                        task_scheduler="round-robin",
                    )
                    left[index] -= chunk
                    record(index, chunk)
                    pace.add(chunk, time.perf_counter() - round_start)
                    seeds[index] += 1  # the next round of this task draws other candidates
                    if first_pass:
                        break


class _Pace:
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


def _drop_torn_lines(db_dir: Path) -> None:
    """Cut a line that a killed tuning run left half-written from the end of the database files.

    MetaSchedule appends one JSON line per workload and per measured candidate; a record is written
    after its workload, so a torn last line of the workload file has no records pointing at it.
    """
    for name in ("database_workload.json", "database_tuning_record.json"):
        path = db_dir / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        lines = data.splitlines(keepends=True)
        if not lines:
            continue
        try:
            json.loads(lines[-1])
            if lines[-1].endswith(b"\n"):
                continue
            path.write_bytes(data + b"\n")  # a complete last line without its newline
        except ValueError:
            logger.warning("%s: dropped a half-written last line (an interrupted tuning run)", path)
            path.write_bytes(b"".join(lines[:-1]))


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
