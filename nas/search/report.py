"""``report.md``: the settings, the trial counts, the Pareto table and best vs baseline."""

from __future__ import annotations

from collections import Counter
from typing import Any

from nas.search.records import ParetoPoint, TrialRow, settings_command
from nas.search.settings import SearchSettings
from nas.task_metrics import first_objective_label, task_metric

__all__ = ["best_vs_baseline", "empty_front_hint", "latency_change", "render_report"]

STATE_ORDER = (
    "COMPLETE",
    "INFEASIBLE",
    "PRUNED",
    "SCREENED",
    "FAIL",
    "SURPLUS",
    "RUNNING",
    "WAITING",
)


def render_report(
    settings: SearchSettings,
    rows: list[TrialRow],
    front: list[ParetoPoint],
    baseline: dict | None,
    extra: dict[str, Any],
    space_note: tuple[int, int | None] | None = None,
) -> str:
    """``space_note``: the study's target evaluations and, when the space was enumerated, its feasible networks
    (None: the target is ``settings.trials``)."""
    target, feasible_in_space = space_note or (settings.trials, None)
    task = str(extra.get("task", "classification"))
    value_name = first_objective_label(task=task, mode=settings.mode, proxy=settings.proxy)
    lines = [
        f"# Search `{settings.study}`",
        "",
        "Regenerate or resume with:",
        "",
        f"    {settings_command(settings)}",
        "",
        *_settings_section(settings, extra, task, feasible_in_space),
        *_trials_section(rows, target),
        "## Pareto front",
        "",
        *_pareto_table(
            front, value_name, task_metric(task).header("test"), empty_front_hint(rows, settings) if rows else ""
        ),
        "",
        "## Best vs baseline",
        "",
        *_baseline_section(front, baseline, settings, value_name, task),
    ]
    return "\n".join(lines) + "\n"


def _settings_section(
    settings: SearchSettings, extra: dict[str, Any], task: str, feasible_in_space: int | None
) -> list[str]:
    dtype = settings_dtype(extra)
    rows = [
        ("space", settings.space),
        ("device (latency)", f"{settings.device} (estimated by its XGBoost latency estimator)"),
        ("dataset", settings.dataset),
        ("strategy", _strategy(settings)),
        ("mode", _mode(settings)),
        ("task", task),
        ("objectives", ", ".join(_objectives(settings, task))),
        ("budgets", settings.budgets.describe()),
        ("peak memory data type", dtype),
        ("target evaluations (--trials)", _target(settings.trials, feasible_in_space)),
        ("seed", settings.seed),
    ]
    return ["## Settings", "", "| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]


def _target(trials: int, feasible_in_space: int | None) -> str:
    if feasible_in_space is None:
        return str(trials)
    if feasible_in_space <= trials:
        return f"{feasible_in_space} of {trials} asked: the space holds only {feasible_in_space} feasible networks"
    return f"{trials} (the space holds {feasible_in_space:,} feasible networks)"


def settings_dtype(extra: dict[str, Any]) -> str:
    dtype_bytes = extra.get("dtype_bytes")
    names = {1: "int8", 2: "float16", 4: "float32"}
    return f"{names.get(dtype_bytes, '?')} ({dtype_bytes} byte(s) per activation, from the device profile)"


def _strategy(settings: SearchSettings) -> str:
    if settings.strategy == "evolution":
        mutation = settings.mutation_prob if settings.mutation_prob is not None else "1/#params"
        return (
            f"evolution (NSGA-II, population {settings.population_size}, mutation {mutation}, "
            f"crossover {settings.crossover_prob})"
        )
    return settings.strategy


def _mode(settings: SearchSettings) -> str:
    training = (
        f"{settings.epochs} epochs on {settings.train_limit or 'all'} training images, batch {settings.batch_size}, "
        f"lr {settings.lr}, pruner {settings.pruner}"
    )
    if settings.mode == "zeroshot":
        return f"zeroshot (proxy {settings.proxy}, no training)"
    if settings.mode == "multishot":
        return f"multishot ({training})"
    return f"hybrid (proxy {settings.proxy} screens, top 1/{settings.screen_ratio} trained: {training})"


def _objectives(settings: SearchSettings, task: str) -> list[str]:
    label = task_metric(task).label
    first = f"maximise proxy {settings.proxy}" if settings.mode == "zeroshot" else f"maximise validation {label}"
    return [first, "minimise latency_ms"] + (["minimise peak memory"] if settings.memory_objective else [])


def _budget_line(rows: list[TrialRow], target: int) -> str:
    """What the study paid for (evaluations) and what it proposed for free."""
    proposals = [r for r in rows if r.state not in ("SURPLUS", "RUNNING", "WAITING")]
    evaluated = sum(r.evaluated for r in proposals)
    free = [r for r in proposals if not r.evaluated]
    duplicates = sum(r.duplicate for r in free)
    infeasible = sum(r.state == "INFEASIBLE" for r in free)
    screened = sum(r.state == "SCREENED" and not r.duplicate for r in free)
    trained = sum(r.trained and r.evaluated for r in proposals)
    per = f"{len(proposals) / evaluated:.1f}" if evaluated else "n/a"
    return (
        f"Budget: {evaluated} of {target} evaluations ({trained} trained) from {len(proposals)} proposals "
        f"({per} per evaluation); free proposals: {infeasible} infeasible, {screened} screened, "
        f"{duplicates} duplicates."
    )


def _trials_section(rows: list[TrialRow], target: int) -> list[str]:
    counts = Counter(row.state for row in rows)
    listed = ", ".join(f"{counts[s]} {s}" for s in STATE_ORDER if counts[s])
    trained = [row for row in rows if row.trained]
    breaking = sum(row.violates_budget for row in trained)
    share = f"{breaking / len(trained):.1%}" if trained else "n/a"
    finished = [row.seconds for row in rows if row.seconds is not None]
    return [
        "## Trials",
        "",
        f"{len(rows)} trials: {listed or 'none'}.",
        _budget_line(rows, target),
        f"Trained candidates that break a budget: {breaking} of {len(trained)} ({share}).",
        f"Trial time: {sum(finished):.0f} s in total.",
        "",
    ]


def empty_front_hint(rows: list[TrialRow], settings: SearchSettings) -> str:
    """Why the Pareto front is empty, and what to change."""
    counts = Counter(row.state for row in rows)
    listed = ", ".join(f"{counts[s]} {s}" for s in STATE_ORDER if counts[s]) or "no trials"
    hints = []
    if counts["SCREENED"]:
        hints.append(
            f"hybrid mode trains only the top 1/{settings.screen_ratio} of proxy scores: "
            "raise --trials or lower --screen-ratio"
        )
    if counts["INFEASIBLE"]:
        hints.append("every evaluated candidate breaks a budget: loosen the budgets")
    if counts["FAIL"]:
        hints.append("candidates failed: see the reasons in trials.csv")
    return f"no feasible candidate finished ({listed}){'; ' if hints else ''}{'; '.join(hints)}"


def _pareto_table(front: list[ParetoPoint], value_name: str, test_name: str, hint: str = "") -> list[str]:
    if not front:
        return [f"No feasible trial has finished yet: {hint}." if hint else "No feasible trial has finished yet."]
    header = f"| trial | arch id | {value_name} | {test_name} | latency ms | params | peak KiB | blocks |"
    lines = [header, "|---:|---|---:|---:|---:|---:|---:|---|"]
    for p in front:
        test = f"{p.test_accuracy:.4f}" if p.test_accuracy is not None else "-"
        lines.append(
            f"| {p.trial} | [{p.arch.arch_id}](pareto/{p.arch.arch_id}.yaml) | {p.value:.4f} | {test} | "
            f"{p.latency_ms:.4f} | {p.params:,} | {p.peak_memory_kib:.1f} | `{p.arch.block_string()}` |"
        )
    return lines


def best_vs_baseline(front: list[ParetoPoint], baseline: dict | None) -> dict[str, ParetoPoint | None]:
    """The best-scoring Pareto point, and the fastest one scoring at least the baseline's."""
    best = max(front, key=lambda p: (p.value, -p.latency_ms)) if front else None
    matching = None
    if baseline is not None and baseline.get("value") is not None:
        candidates = [p for p in front if p.value >= baseline["value"]]
        matching = min(candidates, key=lambda p: p.latency_ms) if candidates else None
    return {"best": best, "fastest_matching": matching}


def _baseline_file(task: str) -> str:
    return "baseline.yaml" if task == "classification" else f"{task}_baseline.yaml"


def latency_change(value_name: str, baseline_ms: float, found_ms: float, device: str) -> str:
    """The sentence comparing the fastest network at >= baseline with the baseline, the right way round."""
    change = found_ms / baseline_ms - 1
    where = f"({baseline_ms:.4f} -> {found_ms:.4f} ms on {device})"
    if change < 0:
        return f"At no loss of {value_name}, the search cuts latency by {-change:.0%} {where}."
    if change == 0:
        return f"At no loss of {value_name}, the fastest network found is as fast as the baseline {where}."
    return (
        f"No network found reaches the baseline's {value_name} at lower latency: the fastest that does is "
        f"{change:.0%} slower {where}."
    )


def _baseline_section(
    front: list[ParetoPoint], baseline: dict | None, settings: SearchSettings, value_name: str, task: str
) -> list[str]:
    if baseline is None:
        return ["No baseline was evaluated (`--no-baseline`)."]
    picks = best_vs_baseline(front, baseline)
    lines = [f"| network | {value_name} | latency ms | params | peak KiB |", "|---|---:|---:|---:|---:|"]
    lines.append(
        f"| {_baseline_file(task)} ({baseline['arch_id']}) | {baseline['value']:.4f} | {baseline['latency_ms']:.4f} | "
        f"{baseline['params']:,} | {baseline['peak_memory_kib']:.1f} |"
    )
    best_label = "best proxy score" if settings.mode == "zeroshot" else task_metric(task).best
    for label, point in ((best_label, picks["best"]), ("fastest at >= baseline", picks["fastest_matching"])):
        if point is not None:
            lines.append(
                f"| {label} (trial {point.trial}) | {point.value:.4f} | {point.latency_ms:.4f} | "
                f"{point.params:,} | {point.peak_memory_kib:.1f} |"
            )
    lines.append("")
    if baseline.get("violations"):
        lines.append(f"The baseline itself breaks the budgets: {baseline['violations']}.")
    match = picks["fastest_matching"]
    if match is not None:
        lines.append(latency_change(value_name, baseline["latency_ms"], match.latency_ms, settings.device))
    elif front:
        lines.append(f"No Pareto architecture reaches the baseline's {value_name} yet.")
    return lines
