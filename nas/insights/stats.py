"""The numbers behind the insights: parameter importances, choices on the Pareto front, per-stage
statistics of the Pareto architectures and the latency breakdown of a network by stage.

Everything here is computed from real trials and the device's latency
estimator; :mod:`nas.insights.findings` turns it into plain language.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import optuna

from nas.insights.study import InsightsError, StudyRecord, TrialRecord
from search_spaces import ArchConfig, SearchSpace

__all__ = [
    "EVALUATORS",
    "MIN_TRIALS",
    "Breakdown",
    "ChoiceUsage",
    "Importance",
    "StageStats",
    "choice_usage",
    "compute_importances",
    "latency_breakdown",
    "stage_latency_ms",
    "stage_stats",
]

logger = logging.getLogger(__name__)

Choice = int | float | str
# Fewer trials than this and an importance estimate is noise; the objective is reported as skipped.
MIN_TRIALS = 8
EVALUATORS = ("fanova", "ped-anova")
FUSED, IBN = "fused_ibn", "ibn"


# ----- importances ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Importance:
    """Optuna parameter importances for one objective (empty ``values`` and a ``note`` when skipped)."""

    objective: str
    n_trials: int
    values: dict[str, float]  # parameter -> importance (sums to 1), most important first
    note: str = ""


def compute_importances(record: StudyRecord, *, evaluator: str = "fanova", seed: int = 0) -> list[Importance]:
    """Latency over every candidate whose latency was estimated; the first objective over complete ones.

    Each is computed on its own single-objective copy of those trials, one per
    architecture. Parameters with one choice are never suggested, so never appear.
    """
    objectives = [
        ("latency_ms", "minimize", [(t, t.latency_ms) for t in record.evaluated()]),
        (record.value_name, "maximize", [(t, t.value) for t in record.completed()]),
    ]
    return [_importance(name, direction, rows, evaluator, seed) for name, direction, rows in objectives]


def _importance(
    name: str, direction: str, rows: list[tuple[TrialRecord, float | None]], evaluator: str, seed: int
) -> Importance:
    rows = [(t, v) for t, v in rows if v is not None and t.trial.params]
    if len(rows) < MIN_TRIALS:
        note = f"only {len(rows)} trial(s) with a {name} value; importances need at least {MIN_TRIALS}"
        return Importance(objective=name, n_trials=len(rows), values={}, note=note)
    study = optuna.create_study(direction=direction)
    study.add_trials(
        [
            optuna.trial.create_trial(params=t.trial.params, distributions=t.trial.distributions, value=float(v))
            for t, v in rows
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA's "low values are better" reminder: the sign is handled below
        values = optuna.importance.get_param_importances(
            study, evaluator=_evaluator(evaluator, seed), target=_target(direction, evaluator)
        )
    return Importance(objective=name, n_trials=len(rows), values=dict(values))


def _evaluator(name: str, seed: int) -> optuna.importance.BaseImportanceEvaluator:
    if name == "fanova":
        return optuna.importance.FanovaImportanceEvaluator(seed=seed)
    if name == "ped-anova":
        return optuna.importance.PedAnovaImportanceEvaluator()
    raise InsightsError(f"unknown importance evaluator {name!r}; allowed: {', '.join(EVALUATORS)}")


def _target(direction: str, evaluator: str):
    # PED-ANOVA asks which choices lead to LOW values; fANOVA decomposes variance and ignores the sign.
    sign = -1.0 if direction == "maximize" and evaluator == "ped-anova" else 1.0
    return lambda trial: sign * trial.value


# ----- choices on the Pareto front --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChoiceUsage:
    """How often each choice of one parameter was tried, and how often it is on the Pareto front."""

    name: str
    choices: tuple[Choice, ...]  # as the space lists them (channels before the depth multiplier)
    pareto: dict[Choice, int]
    tried: dict[Choice, int]
    n_pareto: int
    n_tried: int

    @property
    def searched(self) -> bool:
        return len(self.choices) > 1


def choice_usage(
    space: SearchSpace, *, pareto: Sequence[ArchConfig], tried: Sequence[Mapping[str, Choice]]
) -> dict[str, ChoiceUsage]:
    """Per parameter of ``space``: Pareto architectures using each choice, and tried points using it.

    ``tried``: the points (parameter -> choice) of the evaluated candidates.
    A Pareto architecture must be in the space.
    """
    points = []
    for arch in pareto:
        point = space.point_of(arch)
        if point is None:
            raise InsightsError(f"Pareto architecture {arch.arch_id} is not in {space.source}; was the file edited?")
        points.append(point)
    usage = {}
    for name, choices in space.parameters().items():
        on_front = Counter(point[name] for point in points)
        sampled = Counter(point[name] for point in tried if name in point)
        if len(choices) == 1:
            sampled = Counter({choices[0]: len(tried)})
        usage[name] = ChoiceUsage(
            name=name,
            choices=choices,
            pareto={c: on_front[c] for c in choices},
            tried={c: sampled[c] for c in choices},
            n_pareto=len(points),
            n_tried=len(tried),
        )
    return usage


# ----- latency by stage ---------------------------------------------------------------------------------------------
def stage_latency_ms(estimator, arch: ArchConfig) -> dict[str, float]:
    """Estimated latency of each part, run alone: ``stem``, ``stage 0`` ... ``stage N``, ``head``."""
    parts = {"stem": 0.0, **{f"stage {i}": 0.0 for i in range(len(arch.stages))}, "head": 0.0}
    for piece in estimator.predict(arch).breakdown:
        root, _, rest = piece.name.partition(".")
        label = f"stage {rest.split('.')[0]}" if root == "stages" else root
        parts[label] += piece.latency_ms
    return parts


@dataclass(frozen=True)
class Breakdown:
    """Latency by part of the baseline and of one searched architecture, on the study's device."""

    labels: tuple[str, ...]
    baseline_ms: tuple[float, ...]
    best_ms: tuple[float, ...]
    baseline_total_ms: float  # the estimator's network latency (parts + overhead term)
    best_total_ms: float
    best_trial: int
    best_arch_id: str
    best_reason: str  # why this architecture was picked
    baseline_arch_id: str


def latency_breakdown(estimator, *, baseline: ArchConfig, best: ArchConfig, best_trial: int, reason: str) -> Breakdown:
    base_parts, best_parts = stage_latency_ms(estimator, baseline), stage_latency_ms(estimator, best)
    labels = tuple(dict.fromkeys([*base_parts, *best_parts]))
    return Breakdown(
        labels=labels,
        baseline_ms=tuple(base_parts.get(label, 0.0) for label in labels),
        best_ms=tuple(best_parts.get(label, 0.0) for label in labels),
        baseline_total_ms=estimator.predict(baseline).latency_ms,
        best_total_ms=estimator.predict(best).latency_ms,
        best_trial=best_trial,
        best_arch_id=best.arch_id,
        best_reason=reason,
        baseline_arch_id=baseline.arch_id,
    )


# ----- per stage ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageStats:
    """One stage across the Pareto architectures."""

    stage: int
    output_size: int  # feature-map side after the stage (of the first Pareto architecture)
    n_pareto: int
    fusable: bool  # the space offers both ibn and fused_ibn here
    fused: int  # Pareto architectures with a fused IBN here
    channels: dict[int, int]  # output channels (after the depth multiplier) -> Pareto architectures
    kernels: dict[int, int]
    aligned: int  # Pareto architectures whose channels here are a multiple of P
    fused_ms: tuple[float, ...]  # per Pareto architecture: this stage's latency as fused IBN ...
    ibn_ms: tuple[float, ...]  # ... and as IBN, all else equal (empty when not fusable)
    value_fused: float | None  # mean first objective of complete trials with this stage fused
    value_ibn: float | None

    @property
    def fusion_change(self) -> float | None:
        """Median relative change of the stage's latency when fused instead of IBN (-0.31 = 31% faster)."""
        if not self.ibn_ms:
            return None
        return statistics.median(f / i - 1.0 for f, i in zip(self.fused_ms, self.ibn_ms))


def stage_stats(record: StudyRecord, estimator) -> list[StageStats]:
    archs = [p.arch for p in record.pareto]
    if not archs:
        return []
    sizes = _output_sizes(archs[0])
    return [_one_stage(record, estimator, archs, i, sizes[i]) for i in range(len(record.space.stages))]


def _one_stage(record: StudyRecord, estimator, archs: list[ArchConfig], i: int, size: int) -> StageStats:
    p = record.parallelism_factor
    fusable = {FUSED, IBN} <= set(record.space.stages[i].block)
    fused_ms, ibn_ms = [], []
    if fusable:
        for arch in archs:
            fused_ms.append(stage_latency_ms(estimator, _with_block(arch, i, FUSED))[f"stage {i}"])
            ibn_ms.append(stage_latency_ms(estimator, _with_block(arch, i, IBN))[f"stage {i}"])
    completed = record.completed()
    return StageStats(
        stage=i,
        output_size=size,
        n_pareto=len(archs),
        fusable=fusable,
        fused=sum(a.stages[i].block == FUSED for a in archs),
        channels=dict(sorted(Counter(a.stages[i].channels for a in archs).items())),
        kernels=dict(sorted(Counter(a.stages[i].kernel for a in archs).items())),
        aligned=sum(a.stages[i].channels % p == 0 for a in archs),
        fused_ms=tuple(fused_ms),
        ibn_ms=tuple(ibn_ms),
        value_fused=_mean([t.value for t in completed if t.arch.stages[i].block == FUSED]),
        value_ibn=_mean([t.value for t in completed if t.arch.stages[i].block == IBN]),
    )


def _with_block(arch: ArchConfig, i: int, block: str) -> ArchConfig:
    stages = list(arch.stages)
    stages[i] = dataclasses.replace(stages[i], block=block)
    return dataclasses.replace(arch, stages=tuple(stages))


def _output_sizes(arch: ArchConfig) -> list[int]:
    size, sizes = -(-arch.resolution // arch.stem.stride), []
    for stage in arch.stages:
        size = -(-size // stage.stride)
        sizes.append(size)
    return sizes


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None
