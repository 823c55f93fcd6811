"""What a study holds, as edgenas reports it: one row per trial, the Pareto front.

Read from the storage by :func:`trial_rows` and :func:`pareto_front`; the
result files (``nas.search.results``), ``report.md`` (``nas.search.report``)
and ``pareto.png`` (``nas.search.plots``) are drawn from these records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.search.counting import counts_toward_budget
from nas.search.settings import SearchSettings
from nas.task_metrics import STORED, task_metric
from search_spaces import ArchConfig

__all__ = [
    "CSV_COLUMNS",
    "ParetoPoint",
    "TrialRow",
    "best_trials",
    "csv_header",
    "pareto_front",
    "settings_command",
    "trial_rows",
]

CSV_COLUMNS = (
    "number",
    "arch_id",
    "block_string",
    "state",
    "reason",
    "val_accuracy",
    "test_accuracy",
    "proxy_score",
    "latency_ms",
    "params",
    "peak_memory_kib",
    "seconds",
    "evaluated",  # 1: this trial used one of the study's N evaluations; 0: a free proposal (nas.search.counting)
)


def csv_header(task: str = "classification") -> list[str]:
    """trials.csv's header: the score columns named after the task (``val_map``, ``test_miou``, ...); the rows'
    values come from the ``val_accuracy`` / ``test_accuracy`` attributes every task stores its score in."""
    metric = task_metric(task)
    names = {stored: metric.column(split) for split, stored in STORED.items()}
    return [names.get(column, column) for column in CSV_COLUMNS]


@dataclass(frozen=True)
class TrialRow:
    """One trial as edgenas reports it.

    ``state``: COMPLETE, INFEASIBLE, PRUNED, SCREENED, FAIL, SURPLUS, RUNNING or WAITING.
    """

    number: int
    arch_id: str
    block_string: str
    state: str
    reason: str
    val_accuracy: float | None
    test_accuracy: float | None
    proxy_score: float | None
    latency_ms: float | None
    params: int | None
    peak_memory_kib: float | None
    seconds: float | None
    trained: bool  # training ran (to the end or until pruned), duplicates excluded
    violates_budget: bool  # any constraint > 0
    evaluated: bool = False  # counts toward the study's N (trained or scored); free proposals do not
    duplicate: bool = False  # the same architecture as an earlier trial, whose result it reuses

    def csv_values(self) -> list[Any]:
        return [int(self.evaluated) if column == "evaluated" else getattr(self, column) for column in CSV_COLUMNS]


@dataclass(frozen=True)
class ParetoPoint:
    """A Pareto-optimal architecture; ``value`` is the validation score of its task, ``test_accuracy`` the test
    score (accuracy, mAP or mIoU: ``nas.task_metrics``); zeroshot: ``value`` is the proxy score."""

    trial: int
    arch: ArchConfig
    value: float
    test_accuracy: float | None
    latency_ms: float
    params: int
    peak_memory_kib: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "arch_id": self.arch.arch_id,
            "block_string": self.arch.block_string(),
            "value": self.value,
            "test_accuracy": self.test_accuracy,
            "latency_ms": self.latency_ms,
            "params": self.params,
            "peak_memory_kib": self.peak_memory_kib,
            "file": f"pareto/{self.arch.arch_id}.yaml",
        }


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    """One row per trial; architectures queued for a later run (WAITING, not a retry) are not trials yet."""
    trials = study.get_trials(deepcopy=False)
    retries = {t.system_attrs["failed_trial"]: t.number for t in trials if "failed_trial" in t.system_attrs}
    queued = {t.number for t in trials if t.state == TrialState.WAITING and "failed_trial" not in t.system_attrs}
    return [_row(t, retries) for t in trials if t.number not in queued]


def trained_archs(study: optuna.Study) -> list[tuple[TrialRow, ArchConfig]]:
    """The fully trained trials (no pruned, screened or duplicate ones), one per architecture, with it."""
    archs = {t.number: t.user_attrs.get("arch") for t in study.get_trials(deepcopy=False)}
    seen: set[str] = set()
    out = []
    for row in trial_rows(study):
        if row.state == "COMPLETE" and row.val_accuracy is not None and row.arch_id not in seen:
            seen.add(row.arch_id)
            out.append((row, ArchConfig.from_dict(archs[row.number], source=f"trial {row.number}")))
    return out


def _row(trial: FrozenTrial, retries: dict[int, int]) -> TrialRow:
    attrs = trial.user_attrs
    state, reason = _state(trial, retries)
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
    return TrialRow(
        number=trial.number,
        arch_id=attrs.get("arch_id", ""),
        block_string=attrs.get("block_string", ""),
        state=state,
        reason=reason,
        val_accuracy=attrs.get("val_accuracy"),
        test_accuracy=attrs.get("test_accuracy"),
        proxy_score=attrs.get("proxy_score"),
        latency_ms=attrs.get("latency_ms"),
        params=attrs.get("params"),
        peak_memory_kib=attrs.get("peak_memory_kib"),
        seconds=seconds,
        trained="val_history" in attrs and "duplicate_of" not in attrs,
        violates_budget=any(v > 0 for v in trial.constraints.values()),
        evaluated=counts_toward_budget(trial),
        duplicate="duplicate_of" in attrs,
    )


def _state(trial: FrozenTrial, retries: dict[int, int]) -> tuple[str, str]:
    outcome = trial.user_attrs.get("outcome")
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return trial.state.name, "retry of interrupted trial" if "failed_trial" in trial.system_attrs else ""
    if outcome is not None and not (trial.state == TrialState.FAIL and outcome != "FAIL"):
        return outcome, trial.user_attrs.get("reason", "")
    if trial.state == TrialState.FAIL:
        retry = retries.get(trial.number)
        then = f"retried as trial {retry}" if retry is not None else "not retried (a retry is retried only once)"
        return "FAIL", f"interrupted: its worker stopped mid-trial (killed or lost); {then}"
    return trial.state.name, ""


def pareto_front(study: optuna.Study) -> list[ParetoPoint]:
    """The feasible, non-dominated trials, one per architecture, by latency."""
    points: dict[str, ParetoPoint] = {}
    for trial in best_trials(study):
        attrs = trial.user_attrs
        arch = ArchConfig.from_dict(attrs["arch"], source=f"trial {trial.number}")
        points.setdefault(
            arch.arch_id,
            ParetoPoint(
                trial=trial.number,
                arch=arch,
                value=float(trial.values[0]),
                test_accuracy=attrs.get("test_accuracy"),
                latency_ms=float(attrs["latency_ms"]),
                params=int(attrs["params"]),
                peak_memory_kib=float(attrs["peak_memory_kib"]),
            ),
        )
    return sorted(points.values(), key=lambda p: (p.latency_ms, -p.value))


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """``study.best_trials`` by trial number, without its deep copy of every trial (result files are rewritten
    every few seconds, and a zero-shot study holds thousands): the complete trials that meet every constraint (in
    a study with constraints) and that no other such trial dominates."""
    trials = study.get_trials(deepcopy=False)
    constrained = any(t.constraints for t in trials)
    complete = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and not (constrained and any(v > 0 for v in t.constraints.values()))
    ]
    signs = [-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions]
    losses = {t.number: tuple(s * v for s, v in zip(signs, t.values)) for t in complete}
    # In lexicographic order a dominating point comes before every point it dominates.
    front: list[tuple[float, ...]] = []
    on_front = set()
    for trial in sorted(complete, key=lambda t: losses[t.number]):
        loss = losses[trial.number]
        if not any(all(a <= b for a, b in zip(f, loss)) and f != loss for f in front):
            front.append(loss)
            on_front.add(trial.number)
    return [t for t in complete if t.number in on_front]


def settings_command(settings: SearchSettings) -> str:
    """The ``edgenas search`` command line that reproduces ``settings`` (defaults left out)."""
    defaults = SearchSettings(space=settings.space, device=settings.device, dataset=settings.dataset)
    parts = [
        "edgenas search",
        f"--space {settings.space}",
        f"--device {settings.device}",
        f"--dataset {settings.dataset}",
    ]
    for key, value in settings.to_dict().items():
        if key in ("space", "device", "dataset") or value == getattr(defaults, key):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif value is not None:
            parts.append(f"{flag} {value}")
    return " ".join(parts)
