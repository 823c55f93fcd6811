"""Search quality: hypervolume per strategy and seed, against the exact front (zero-shot) and on Fashion-MNIST.

    .venv/bin/python benchmarks/search_quality.py --part zeroshot     # exact part: minutes
    .venv/bin/python benchmarks/search_quality.py --part multishot    # Fashion-MNIST trainings: hours, resumable
    .venv/bin/python benchmarks/search_quality.py --part report       # rewrite the report from the saved figures

Top to bottom:

1. **Zero-shot, exact.** Every network of ``combined.yaml`` on ``sim-npu-p32`` is enumerated (one batched
   estimator call, analytic params) and the true Pareto front of (``params`` proxy up, estimated latency down)
   under the budgets (latency <= the baseline's estimate, params <= ``ZS_MAX_PARAMS``) is computed. Each strategy
   runs ``nas.search.run_search`` in zeroshot mode with the ``params`` proxy; after 20, 60 and 100 evaluations the
   hypervolume of its feasible evaluated candidates is divided by the true front's.
2. **Multishot on Fashion-MNIST**: the ablation's search recipe (2 epochs on 2,000 images, no pruner) on the same
   space and latency budget; hypervolume of (validation accuracy up, latency down) after 10, 20 and 40 trainings.
3. ``results/search-quality.md``, ``.json`` (every figure), ``.csv`` (one row per strategy, seed and checkpoint)
   and ``.png`` (hypervolume against evaluations, one line per strategy).

Hypervolume: both objectives are scaled to [0, 1] and minimised (``1 - params / max_params`` or ``1 -
accuracy``, and ``latency / latency budget``), reference point (1, 1). Every run resumes: studies live in
``results/search-quality/<part>/<strategy>-s<seed>/study.db``; a finished run's figures are kept in
``results/search-quality.json`` and not recomputed.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402

from benchmarks._final_training import REPO, SearchRecipe, use_committed_estimators, write_search_data  # noqa: E402
from latency_estimator import (
    get_device,  # noqa: E402
    obtain_estimator,  # noqa: E402
)
from nas.search import ProposalsExhausted, run_search  # noqa: E402
from nas.search.counting import counts_toward_budget, tally  # noqa: E402
from search_spaces import baseline_arch, count_arch, load_space, shipped_space_path  # noqa: E402

logger = logging.getLogger("search_quality")

DEVICE = "sim-npu-p32"
SPACE = "combined"
STRATEGIES = ("random", "evolution", "tpe", "gp", "surrogate")
SEEDS = (0, 1, 2)
ZS_MAX_PARAMS = 600_000  # the params budget of the zero-shot part (2/3 of the baseline's 899k)
ZS_CHECKPOINTS = (20, 60, 100)
MS_CHECKPOINTS = (10, 20, 40)
# The ablation's search recipe (2 epochs on 2,000 images). 1 epoch on 1,000 images was tried: validation accuracy
# 0.10-0.23 after it, too little training to rank candidates by.
MS_RECIPE = SearchRecipe()
OUT = REPO / "results"
STATE = OUT / "search-quality"


# ----- hypervolume --------------------------------------------------------------------------------------------
def hypervolume(points: Sequence[tuple[float, float]], reference: tuple[float, float] = (1.0, 1.0)) -> float:
    """Area dominated by ``points`` (both coordinates minimised) and bounded by ``reference``.

    A sweep along the first coordinate: each point that improves on the best
    second coordinate so far adds the rectangle from it to the reference.
    """
    area, best_y = 0.0, reference[1]
    for x, y in sorted(p for p in points if p[0] < reference[0] and p[1] < reference[1]):
        if y < best_y:
            area += (reference[0] - x) * (best_y - y)
            best_y = y
    return area


def scaled(value: float, latency_ms: float, value_max: float, latency_budget_ms: float) -> tuple[float, float]:
    """(1 - value / value_max, latency / budget): both minimised, in [0, 1] for a feasible point."""
    return 1.0 - value / value_max, latency_ms / latency_budget_ms


# ----- zero-shot, exact ---------------------------------------------------------------------------------------
def latency_budget_ms() -> float:
    parallelism = get_device(DEVICE).profile.parallelism_factor
    return float(obtain_estimator(DEVICE).predict(baseline_arch(parallelism_factor=parallelism)).latency_ms)


def budget_of_record(state: dict[str, Any]) -> float:
    """The latency budget the recorded runs were searched and scored under (the baseline's estimate when the exact
    front was computed), so that a run resumed or added later, on a rebuilt estimator whose baseline estimate moved
    by a fraction of a percent, is searched and scored under the same budget; this estimator's estimate when none."""
    return state.get("zeroshot_truth", {}).get("latency_budget_ms") or latency_budget_ms()


def true_front(budget_ms: float) -> dict[str, Any]:
    """Every distinct network of the space, measured; the feasible ones' hypervolume (cached in the state folder)."""
    path = STATE / "zeroshot-true-front.json"
    if path.exists():
        return json.loads(path.read_text())
    device = get_device(DEVICE)
    space = load_space(shipped_space_path(SPACE), parallelism_factor=device.profile.parallelism_factor)
    params = space.parameters()
    names = list(params)
    archs = {}
    for combo in itertools.product(*(params[n] for n in names)):
        arch = space.resolve(dict(zip(names, combo)))
        archs.setdefault(arch.arch_id, arch)
    unique = list(archs.values())
    start = time.perf_counter()
    latencies = obtain_estimator(DEVICE).predict_many(unique)
    counts = [count_arch(a).params for a in unique]
    seconds = time.perf_counter() - start
    feasible = [(p, float(ms)) for p, ms in zip(counts, latencies) if ms <= budget_ms and p <= ZS_MAX_PARAMS]
    front = _front_of(feasible)
    document = {
        "combinations": space.size(),
        "distinct": len(unique),
        "feasible": len(feasible),
        "front": front,
        "hypervolume": hypervolume([scaled(p, ms, ZS_MAX_PARAMS, budget_ms) for p, ms in front]),
        "latency_budget_ms": budget_ms,
        "max_params": ZS_MAX_PARAMS,
        "fastest_feasible_ms": min(ms for _, ms in feasible),
        "measure_seconds": seconds,
    }
    STATE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
    return document


def _front_of(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated (value up, latency down) points, by latency."""
    front, best = [], -np.inf
    for value, latency in sorted(points, key=lambda p: (p[1], -p[0])):
        if value > best:
            front.append((value, latency))
            best = value
    return front


def run_one(part: str, strategy: str, seed: int, trials: int, options: dict[str, Any]) -> dict[str, Any]:
    """One (strategy, seed) search, created or resumed; its hypervolume curve and counts."""
    start = time.perf_counter()
    stopped = ""
    try:
        study = f"{strategy}-s{seed}"
        run_search(**options, study=study, results_dir=STATE / part, strategy=strategy, seed=seed, trials=trials)
    except ProposalsExhausted as exc:  # the proposal cap: report what it got
        stopped = str(exc)
    return {**read_run(part, strategy, seed), "seconds": time.perf_counter() - start, "stopped": stopped}


def read_run(part: str, strategy: str, seed: int) -> dict[str, Any]:
    """A run's figures from its study (finished or not); ``seconds``: the trials' own durations."""
    key = f"{strategy}-s{seed}"
    study = optuna.load_study(study_name=key, storage=f"sqlite:///{STATE / part / key / 'study.db'}")
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    counts = tally(trials)
    evaluated = [t for t in trials if counts_toward_budget(t)]
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials if t.datetime_complete]
    return {
        "strategy": strategy,
        "seed": seed,
        "evaluated": [_point(t) for t in evaluated],
        "proposals": counts.proposals,
        "infeasible": counts.infeasible,
        "duplicates": counts.duplicates,
        "screened": counts.screened,
        "evaluations": counts.evaluated,
        "over_budget": sum(any(v > 0 for v in t.constraints.values()) for t in evaluated),
        "seconds": sum(durations),
        "stopped": "",
    }


def _point(trial) -> list[float] | None:
    """(value, latency ms) of a feasible evaluated trial; None when it has no value or breaks a budget."""
    if trial.values is None or any(v > 0 for v in trial.constraints.values()):
        return None
    return [float(trial.values[0]), float(trial.user_attrs["latency_ms"])]


def curve(run: dict[str, Any], checkpoints: Sequence[int], value_max: float, budget_ms: float) -> list[float | None]:
    """Hypervolume of the first k evaluations, for each checkpoint k."""
    out: list[float | None] = []
    for k in checkpoints:
        if k > len(run["evaluated"]):
            out.append(None)  # an unfinished run has not got there yet
            continue
        points = [scaled(v, ms, value_max, budget_ms) for v, ms in (p for p in run["evaluated"][:k] if p)]
        out.append(hypervolume(points))
    return out


# ----- the parts ----------------------------------------------------------------------------------------------
def load_state() -> dict[str, Any]:
    path = OUT / "search-quality.json"
    return json.loads(path.read_text()) if path.exists() else {"zeroshot": {}, "multishot": {}}


def save_run(state: dict[str, Any], part: str, key: str, run: dict[str, Any]) -> None:
    """Add one finished run; the file is re-read first (the two parts may run at the same time)."""
    state[part][key] = run
    document = load_state()
    document[part][key] = run
    for extra in ("zeroshot_truth",):
        if extra in state:
            document[extra] = state[extra]
    path = OUT / "search-quality.json"
    tmp = path.with_name(f".search-quality.json.{part}.tmp")
    tmp.write_text(json.dumps(document, indent=1) + "\n")
    tmp.replace(path)


def zeroshot_part(state: dict[str, Any], strategies: Sequence[str], seeds: Sequence[int]) -> None:
    budget = latency_budget_ms()
    truth = true_front(budget)
    state["zeroshot_truth"] = {k: v for k, v in truth.items() if k != "front"}
    options = {
        "space": shipped_space_path(SPACE),
        "device": DEVICE,
        "dataset": "fashion-mnist",
        "mode": "zeroshot",
        "proxy": "params",
        "latency_budget_ms": budget,
        "max_params": ZS_MAX_PARAMS,
        "baseline": False,
    }
    for strategy, seed in itertools.product(strategies, seeds):
        key = f"{strategy}-s{seed}"
        if key in load_state()["zeroshot"]:  # another process of this benchmark may have finished it
            continue
        logger.info("zeroshot %s", key)
        run = run_one("zeroshot", strategy, seed, max(ZS_CHECKPOINTS), options)
        hvs = curve(run, ZS_CHECKPOINTS, ZS_MAX_PARAMS, budget)
        run["hv_ratio"] = [None if hv is None else hv / truth["hypervolume"] for hv in hvs]
        save_run(state, "zeroshot", key, run)


def multishot_part(state: dict[str, Any], strategies: Sequence[str], seeds: Sequence[int]) -> None:
    budget = budget_of_record(state)
    recipe = MS_RECIPE
    data = write_search_data(REPO / "build" / "ablation" / "data", recipe)
    options = {
        **recipe.search_options(data),
        "space": shipped_space_path(SPACE),
        "device": DEVICE,
        "dataset": "fashion-mnist",
        "mode": "multishot",
        "latency_budget_ms": budget,
        "baseline": False,
    }
    for key in ("trials", "strategy", "seed", "screen_ratio", "proxy"):
        options.pop(key)
    for seed, strategy in itertools.product(seeds, strategies):
        key = f"{strategy}-s{seed}"
        if key in load_state()["multishot"]:
            continue
        logger.info("multishot %s", key)
        run = run_one("multishot", strategy, seed, max(MS_CHECKPOINTS), options)
        run["hv"] = curve(run, MS_CHECKPOINTS, 1.0, budget)
        save_run(state, "multishot", key, run)


def with_unfinished(state: dict[str, Any]) -> dict[str, Any]:
    """Add the studies still under way (a killed or running benchmark), marked ``partial``."""
    for part in ("zeroshot", "multishot"):  # runs saved before ``over_budget`` was recorded
        for run in state[part].values():
            if "over_budget" not in run:
                run["over_budget"] = read_run(part, run["strategy"], run["seed"])["over_budget"]
    budget = None
    for part in ("zeroshot", "multishot"):
        for db in sorted((STATE / part).glob("*-s*/study.db")):
            key = db.parent.name
            if key in state[part]:
                continue
            strategy, seed = key.rsplit("-s", 1)
            budget = budget if budget is not None else budget_of_record(state)
            run = {**read_run(part, strategy, int(seed)), "partial": True}
            if part == "multishot":
                run["hv"] = curve(run, MS_CHECKPOINTS, 1.0, budget)
            else:
                truth = state["zeroshot_truth"]["hypervolume"]
                hvs = curve(run, ZS_CHECKPOINTS, ZS_MAX_PARAMS, budget)
                run["hv_ratio"] = [None if hv is None else hv / truth for hv in hvs]
            state[part][key] = run
    return state


# ----- report ---------------------------------------------------------------------------------------------------
def summary(runs: dict[str, Any], field: str) -> dict[str, dict[str, Any]]:
    """Per strategy: mean and per-seed values of ``field`` at each checkpoint (None: no seed got there), costs."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs.values():
        entry = out.setdefault(
            run["strategy"], {"values": [], "proposals": 0, "evaluations": 0, "seconds": 0.0, "partial": 0}
        )
        entry["values"].append(run[field])
        entry["proposals"] += run["proposals"]
        entry["evaluations"] += run["evaluations"]
        entry["seconds"] += run["seconds"]
        entry["partial"] += bool(run.get("partial"))
    for entry in out.values():
        columns = zip(*entry["values"])
        reached = [[v for v in column if v is not None] for column in columns]
        entry["mean"] = [_mean(values) for values in reached]
        entry["reached"] = [len(values) for values in reached]  # seeds that got to each checkpoint
        entry["seeds"] = len(entry["values"])
    return out


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def write_csv(state: dict[str, Any]) -> None:
    with (OUT / "search-quality.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["part", "strategy", "seed", "evaluations", "figure", "value", "proposals", "seconds"])
        for part, field, checkpoints in (("zeroshot", "hv_ratio", ZS_CHECKPOINTS), ("multishot", "hv", MS_CHECKPOINTS)):
            for run in state[part].values():
                for k, value in zip(checkpoints, run[field]):
                    figure = "hypervolume ratio" if part == "zeroshot" else "hypervolume"
                    shown = "" if value is None else f"{value:.4f}"
                    writer.writerow([part, run["strategy"], run["seed"], k, figure, shown, run["proposals"],
                                     f"{run['seconds']:.1f}"])  # fmt: skip


def plot(state: dict[str, Any]) -> None:
    """Hypervolume after every evaluation (mean over the seeds that got there), one line per strategy."""
    budget = budget_of_record(state)
    truth = state.get("zeroshot_truth", {}).get("hypervolume", 1.0)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, part, value_max, scale, label in (
        (axes[0], "zeroshot", ZS_MAX_PARAMS, truth, "hypervolume / true front's"),
        (axes[1], "multishot", 1.0, 1.0, "hypervolume (val acc, latency)"),
    ):
        by_strategy: dict[str, list[list[float]]] = {}
        for run in state[part].values():
            steps = range(1, len(run["evaluated"]) + 1)
            by_strategy.setdefault(run["strategy"], []).append(
                [v / scale for v in curve(run, steps, value_max, budget) if v is not None]
            )
        for strategy, curves in sorted(by_strategy.items()):
            length = max(len(c) for c in curves)
            mean = [float(np.mean([c[i] for c in curves if len(c) > i])) for i in range(length)]
            ax.plot(range(1, length + 1), mean, label=f"{strategy} ({len(curves)} seed{'s' * (len(curves) > 1)})")
        ax.set_xlabel("evaluations (zero-shot scores)" if part == "zeroshot" else "trainings")
        ax.set_ylabel(label)
        ax.set_title(f"{part} on {DEVICE}, {SPACE}.yaml")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "search-quality.png", dpi=120)
    plt.close(fig)


def render(state: dict[str, Any]) -> str:
    truth = state.get("zeroshot_truth", {})
    lines = [
        f"# Search quality on {DEVICE}: hypervolume per strategy",
        "",
        "Regenerate (resumes from `results/search-quality/`; finished runs are read from `search-quality.json`):",
        "",
        "    .venv/bin/python benchmarks/search_quality.py --part zeroshot",
        "    .venv/bin/python benchmarks/search_quality.py --part multishot",
        "",
        "Figures: `search-quality.json` (every run: its evaluated points in order, proposal counts, seconds), "
        "`search-quality.csv` (one row per strategy, seed and checkpoint), `search-quality.png`.",
        "",
        "Budget = evaluations: infeasible, duplicate and screened proposals are recorded and told to the sampler but "
        "do not count. Hypervolume: both objectives scaled to [0, 1] and minimised (1 - value / max, latency / "
        "latency budget), reference point (1, 1).",
        "",
        "## Zero-shot, exact",
        "",
    ]
    if truth:
        lines += [
            f"`{SPACE}.yaml` has {truth['combinations']:,} combinations, {truth['distinct']:,} distinct networks; "
            f"{truth['feasible']:,} meet latency <= {truth['latency_budget_ms']:.4f} ms (the baseline's estimate) and "
            f"params <= {truth['max_params']:,}. Objectives: `params` proxy up, estimated latency down. Fastest "
            f"feasible: {truth['fastest_feasible_ms']:.4f} ms. True front hypervolume {truth['hypervolume']:.4f} "
            f"(enumerated and measured in {truth['measure_seconds']:.0f} s).",
            "",
        ]
    lines += _table(state["zeroshot"], "hv_ratio", ZS_CHECKPOINTS, "hypervolume ratio after")
    lines += ["", "## Multishot on Fashion-MNIST (the ablation's search recipe)", ""]
    recipe = MS_RECIPE
    lines += [
        f"{recipe.epochs} epochs on {recipe.train_limit:,} training images of a seeded Fashion-MNIST subset (val "
        f"{recipe.subset_train // 10:,}), batch 64, lr 0.1, no pruner; multishot mode (every feasible new candidate "
        "trained); latency budget = the baseline's estimate. Objectives: validation accuracy up, latency down.",
        "",
    ]
    lines += _table(state["multishot"], "hv", MS_CHECKPOINTS, "hypervolume after")
    lines += ["", "## Targets (issue 14)", "", *_targets(state), "", "## What was cut", "", *_cuts(state)]
    return "\n".join(lines) + "\n"


def _cuts(state: dict[str, Any]) -> list[str]:
    """The planned runs (every strategy x 3 seeds, both parts) not finished yet, by part."""
    lines = []
    for part, planned in (("zeroshot", max(ZS_CHECKPOINTS)), ("multishot", max(MS_CHECKPOINTS))):
        done = {k for k, r in state[part].items() if not r.get("partial")}
        partial = [f"{k} ({r['evaluations']} of {planned})" for k, r in state[part].items() if r.get("partial")]
        missing = [f"{s}-s{seed}" for s in STRATEGIES for seed in SEEDS if f"{s}-s{seed}" not in state[part]]
        lines.append(
            f"* {part}: finished {len(done)} of {len(STRATEGIES) * len(SEEDS)} runs; unfinished: "
            f"{', '.join(partial) or 'none'}; not started: {', '.join(missing) or 'none'}."
        )
    return lines + [
        "* Every run resumes where it stopped (`results/search-quality/<part>/<run>/study.db`): rerun the commands "
        "above, with `--strategies` and `--seeds` to choose runs. Seconds per evaluation were measured on a shared "
        "2-core machine running several other jobs (load 10-15), so they overstate the cost."
    ]


def _targets(state: dict[str, Any], default: str = "surrogate") -> list[str]:
    zs, ms = summary(state["zeroshot"], "hv_ratio"), summary(state["multishot"], "hv")
    runs = list(state["zeroshot"].values()) + list(state["multishot"].values())

    def at(table: dict, strategy: str, index: int) -> str:
        entry = table.get(strategy)
        if not entry or entry["mean"][index] is None:
            return "not reached yet" if entry else "not run"
        return f"{entry['mean'][index]:.3f} ({entry['reached'][index]} seeds)"

    over = sum(r.get("over_budget", 0) for r in runs)
    trainings = [r["evaluations"] for r in state["multishot"].values()]
    return [
        "| what | measured | target |",
        "|---|---|---|",
        f"| zero-shot hypervolume ratio, {default}, 60 evaluations | {at(zs, default, 1)} | >= 0.95 |",
        f"| zero-shot at 100: {default} vs random | {at(zs, default, 2)} vs {at(zs, 'random', 2)} | above random |",
        f"| multishot hypervolume, {default} at 20 vs random at 40 | {at(ms, default, 1)} vs {at(ms, 'random', 2)} "
        "| >= |",
        f"| trainings per multishot search of 40 | {', '.join(map(str, trainings)) or 'not run'} | 40 |",
        f"| evaluated candidates over a budget (every run) | {over} | 0 |",
    ]


def _table(runs: dict[str, Any], field: str, checkpoints: Sequence[int], what: str) -> list[str]:
    if not runs:
        return ["Not run yet."]
    head = " | ".join(f"{what} {k}" for k in checkpoints)
    lines = [
        f"| strategy | seeds | {head} | per seed at {checkpoints[-1]} | proposals per evaluation | s per evaluation |",
        "|---|---:|" + "---:|" * len(checkpoints) + "---|---:|---:|",
    ]
    for strategy, entry in summary(runs, field).items():
        means = " | ".join("-" if m is None else f"{m:.3f}" for m in entry["mean"])
        seeds = ", ".join("-" if v[-1] is None else f"{v[-1]:.3f}" for v in entry["values"])
        per = entry["proposals"] / max(1, entry["evaluations"])
        seconds = entry["seconds"] / max(1, entry["evaluations"])
        name = f"{strategy} ({entry['partial']} of {entry['seeds']} runs unfinished)" if entry["partial"] else strategy
        lines.append(f"| {name} | {entry['seeds']} | {means} | {seeds} | {per:.1f} | {seconds:.2f} |")
    stopped = [f"{k}: {r['stopped']}" for k, r in runs.items() if r.get("stopped")]
    return lines + ([""] + [f"* stopped early: {s}" for s in stopped] if stopped else [])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["zeroshot", "multishot", "report"], required=True)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    args = parser.parse_args(argv)
    use_committed_estimators(REPO / "build" / "search-quality" / "estimators", DEVICE)
    state = load_state()
    if args.part == "zeroshot":
        zeroshot_part(state, args.strategies, args.seeds)
    elif args.part == "multishot":
        multishot_part(state, args.strategies, args.seeds)
    state = with_unfinished(load_state())
    write_csv(state)
    plot(state)
    (OUT / "search-quality.md").write_text(render(state))
    logger.info("wrote %s", OUT / "search-quality.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
