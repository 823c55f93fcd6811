"""`edgenas search`: run (or resume) a hardware-aware search; see :func:`nas.search.run_search`."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import TYPE_CHECKING

from nas.cli.common import format_table
from nas.proxy_names import DEFAULT_PROXY, PROXY_NAMES
from nas.search.settings import MODES, PRUNERS, STRATEGIES, SearchSettings

if TYPE_CHECKING:
    from nas.search import SearchResult

# SearchSettings' defaults, read from the class: making one would validate the proxy, which imports torch.
DEFAULTS = argparse.Namespace(**{f.name: f.default for f in dataclasses.fields(SearchSettings)})


def register(subparsers: argparse._SubParsersAction) -> None:
    search = subparsers.add_parser(
        "search",
        help="search a space for accurate networks that are fast on a device (resumable)",
        description="Run an Optuna study; running the same command again resumes it. "
        "Results (trials.csv, pareto.json, pareto/*.yaml, pareto.png, report.md) go to RESULTS_DIR/STUDY/.",
    )
    _what(search)
    _budgets(search)
    _study(search)
    _training(search)
    search.set_defaults(func=search_command)


def _what(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", required=True, help="search-space YAML (loaded at the device's P)")
    parser.add_argument("--device", required=True, help="latency device, e.g. sim-npu-p32, sim-npu-p16, cpu-ort")
    parser.add_argument(
        "--dataset",
        required=True,
        help="digits, fashion-mnist, folder, npz; dense: digit-scenes, fashion-scenes, coco, masks",
    )
    parser.add_argument("--data-dir", default=None, help="data folder or file for fashion-mnist/folder/npz/coco/masks")
    parser.add_argument(
        "--trials",
        type=int,
        default=DEFAULTS.trials,
        help="candidates evaluated (trained, or scored in zeroshot mode), all workers together; budget breakers, "
        "duplicates and screened candidates are free (%(default)s)",
    )
    parser.add_argument("--strategy", choices=STRATEGIES, default=DEFAULTS.strategy, help="sampler (%(default)s)")
    parser.add_argument("--mode", choices=MODES, default=DEFAULTS.mode, help="how candidates are scored (%(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)


def _budgets(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hard budgets (a candidate over one is never trained)")
    group.add_argument("--latency-budget-ms", type=float, default=None, help="estimated latency on the device")
    group.add_argument("--max-params", type=int, default=None, help="parameter count")
    group.add_argument("--max-peak-memory-kb", type=float, default=None, help="peak activation memory, KiB")
    group.add_argument("--memory-objective", action="store_true", help="minimise peak memory as a third objective")


def _study(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("study and storage")
    group.add_argument("--study", default=DEFAULTS.study, help="study name and results folder (%(default)s)")
    group.add_argument(
        "--storage",
        default=None,
        help="Optuna storage: an RDB URL (postgresql://..., sqlite:///...) or a journal file path; "
        "default: sqlite in RESULTS_DIR/STUDY/study.db",
    )
    group.add_argument("--results-dir", default=DEFAULTS.results_dir, help="(%(default)s)")
    group.add_argument(
        "--warm-start",
        metavar="STUDY_DIR",
        default=None,
        help="queue the Pareto architectures of an earlier study's results folder first (transfer)",
    )
    group.add_argument("--population-size", type=int, default=DEFAULTS.population_size, help="NSGA-II (%(default)s)")
    group.add_argument("--mutation-prob", type=float, default=None, help="NSGA-II; default 1/#searched parameters")
    group.add_argument("--crossover-prob", type=float, default=DEFAULTS.crossover_prob, help="NSGA-II (%(default)s)")
    group.add_argument(
        "--no-feasible-start",
        dest="feasible_start",
        action="store_false",
        help="draw the first generation at random from the whole space, not from inside the budgets",
    )
    group.add_argument(
        "--max-proposals-per-evaluation",
        type=int,
        default=DEFAULTS.max_proposals_per_evaluation,
        help="stop (one-line error) when budgets admit so few candidates that this many proposals per evaluation "
        "were made (%(default)s)",
    )
    group.add_argument("--heartbeat-s", type=int, default=DEFAULTS.heartbeat_s, help="trial heartbeat (%(default)s)")
    group.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip evaluating baseline.yaml")


def _training(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("multishot training and zero-shot proxy")
    group.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="per candidate (%(default)s)")
    group.add_argument(
        "--train-limit", type=_limit, default=DEFAULTS.train_limit, help="training images, or 'all' (%(default)s)"
    )
    group.add_argument(
        "--eval-limit", type=_limit, default=DEFAULTS.eval_limit, help="dense datasets: val/test images, or 'all'"
    )
    group.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="(%(default)s)")
    group.add_argument("--lr", type=float, default=DEFAULTS.lr, help="(%(default)s)")
    group.add_argument("--pruner", choices=PRUNERS, default=DEFAULTS.pruner, help="early stopping (%(default)s)")
    group.add_argument("--proxy", choices=PROXY_NAMES, default=DEFAULT_PROXY, help="zero-shot proxy (%(default)s)")
    group.add_argument(
        "--screen-ratio", type=int, default=DEFAULTS.screen_ratio, help="hybrid: train the top 1/K (%(default)s)"
    )
    group.add_argument("--threads", type=int, default=DEFAULTS.threads, help="torch threads per worker (%(default)s)")


def _limit(text: str) -> int | None:
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of images or 'all', got {text!r}") from None


def search_command(args: argparse.Namespace) -> int:
    import optuna

    from nas.insights import warm_start_archs
    from nas.search import run_search, trial_rows
    from nas.search.report import empty_front_hint

    # Optuna's per-trial INFO lines (~500 characters) would flood the progress bar, even with --verbose.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger(OPTUNA_OPTIMIZE_LOGGER).addFilter(_FailedCandidateFilter())
    logging.getLogger("nas").setLevel(logging.INFO if args.verbose else logging.WARNING)
    options = {k: v for k, v in vars(args).items() if k in SearchSettings.__dataclass_fields__}
    warm_start = warm_start_archs(args.warm_start) if args.warm_start else ()
    result = run_search(**options, warm_start=warm_start, progress=True)
    _print_summary(result)
    if not result.pareto:
        print(f"edgenas: {empty_front_hint(trial_rows(result.study), result.settings)}", file=sys.stderr)
        return 1
    return 0


# The logger through which Optuna reports a trial that raised; edgenas already logged the candidate on one line.
OPTUNA_OPTIMIZE_LOGGER = "optuna.study._optimize"


class _FailedCandidateFilter(logging.Filter):
    """Drops Optuna's "Trial N failed ... because of the following error" record (and its traceback) for a
    candidate edgenas has recorded as FAIL; any other failure still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        from nas.search.objective import CandidateFailed

        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, CandidateFailed) and "CandidateFailed(" not in record.getMessage()


def _print_summary(result: SearchResult) -> None:
    from nas.search import trial_rows
    from nas.search.counting import tally
    from nas.task_metrics import first_objective_label

    rows = trial_rows(result.study)
    trained = [row for row in rows if row.trained]
    breaking = sum(row.violates_budget for row in trained)
    states: dict[str, int] = {}
    for row in rows:
        states[row.state] = states.get(row.state, 0) + 1
    print(f"study {result.settings.study}: {len(rows)} trials ({', '.join(f'{n} {s}' for s, n in states.items())})")
    print(f"trained candidates breaking a budget: {breaking} of {len(trained)}")
    print(tally(result.study.get_trials(deepcopy=False)).describe())
    settings = result.settings
    value = first_objective_label(task=result.task, mode=settings.mode, proxy=settings.proxy)
    table = [
        (p.trial, p.arch.arch_id, p.value, p.latency_ms, p.params, round(p.peak_memory_kib, 1)) for p in result.pareto
    ]
    print(f"\nPareto front ({len(table)}):")
    print(format_table(["trial", "arch id", value, "latency ms", "params", "peak KiB"], table))
    print(f"\nresults in {result.results_dir}/ (report.md, trials.csv, pareto.json, pareto.png)")
