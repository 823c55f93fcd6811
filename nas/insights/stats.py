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
from search_spaces.dense_head import DenseHeadConfig

__all__ = [
    "EVALUATORS",
    "MIN_TRIALS",
    "Breakdown",
    "ChoiceUsage",
    "HeadChoice",
    "HeadStats",
    "Importance",
    "StageStats",
    "choice_usage",
    "compute_importances",
    "head_latency_ms",
    "head_stats",
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
    if len({float(v) for _, v in rows}) == 1:  # e.g. mAP 0 everywhere after a short schedule: nothing to rank by
        note = f"every one of the {len(rows)} trials has {name} {float(rows[0][1]):.4g}; nothing to rank the choices by"
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
# Parts of a dense head (search_spaces.dense_head), by the second component of a subgraph's name (head.<part>.<i>).
DENSE_HEAD_PARTS = {"lateral": "head neck", "resize": "head neck", "add": "head neck", "tower": "head tower"}
DENSE_HEAD_OUTPUTS = "head outputs"  # the 1x1 output convs (heatmap and box, or the class logits) and their resize


def stage_latency_ms(estimator, arch: ArchConfig) -> dict[str, float]:
    """Estimated latency of each part, run alone: ``stem``, ``stage 0`` ... ``stage N``, then ``head`` (a
    classifier) or ``head neck``, ``head tower``, ``head outputs`` (a dense head: what its choices change)."""
    dense = isinstance(arch.head, DenseHeadConfig)
    heads = ("head neck", "head tower", DENSE_HEAD_OUTPUTS) if dense else ("head",)
    parts = {"stem": 0.0, **{f"stage {i}": 0.0 for i in range(len(arch.stages))}, **dict.fromkeys(heads, 0.0)}
    for piece in estimator.predict(arch).breakdown:
        root, _, rest = piece.name.partition(".")
        label = f"stage {rest.split('.')[0]}" if root == "stages" else root
        if root == "head" and dense:
            label = DENSE_HEAD_PARTS.get(rest.split(".")[0], DENSE_HEAD_OUTPUTS)
        parts[label] += piece.latency_ms
    return parts


def head_latency_ms(estimator, arch: ArchConfig) -> float:
    """The head's estimated latency, its parts run alone (neck, tower and outputs for a dense head)."""
    return sum(ms for label, ms in stage_latency_ms(estimator, arch).items() if label.startswith("head"))


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


# ----- the dense head ----------------------------------------------------------------------------------------------
HEAD_PARAMETERS = ("head.channels", "head.depth", "head.kernel")


@dataclass(frozen=True)
class HeadChoice:
    """One choice of one searched head parameter, across the Pareto architectures."""

    parameter: str  # head.channels (as the space lists it, before the depth multiplier), head.depth, head.kernel
    choice: Choice
    pareto: int  # Pareto architectures with this choice
    head_ms: tuple[float, ...]  # per Pareto architecture: the head's estimated latency with this choice, all else equal
    value: float | None  # mean first objective of complete trials with this choice


@dataclass(frozen=True)
class HeadStats:
    """The dense head across the Pareto architectures: what it taps, what it costs, what its choices change."""

    type: str  # detection or segmentation
    taps: tuple[int, ...]  # stage indices feeding the neck
    tap_sizes: tuple[int, ...]  # feature-map side of each tapped stage
    n_pareto: int
    channels: dict[int, int]  # neck width (after the depth multiplier) -> Pareto architectures
    depth: dict[int, int]
    kernel: dict[int, int]
    head_ms: tuple[float, ...]  # per Pareto architecture, as chosen
    network_ms: tuple[float, ...]  # per Pareto architecture: every part, run alone
    choices: dict[str, tuple[HeadChoice, ...]]  # searched head parameter -> its choices, as the space lists them

    @property
    def share(self) -> float:
        """Median over the Pareto architectures of the head's share of the network's parts."""
        return statistics.median(h / n for h, n in zip(self.head_ms, self.network_ms))

    def change(self, parameter: str) -> float | None:
        """Median relative change of the head's latency from the parameter's first choice to its last."""
        options = self.choices.get(parameter)
        if not options or not options[0].head_ms:
            return None
        return statistics.median(b / a - 1.0 for a, b in zip(options[0].head_ms, options[-1].head_ms))


def head_stats(record: StudyRecord, estimator) -> HeadStats | None:
    """None for a classifier, or before any Pareto architecture."""
    archs = [p.arch for p in record.pareto]
    space = record.space
    if not archs or not isinstance(archs[0].head, DenseHeadConfig):
        return None
    heads = [a.head for a in archs]
    sizes = _output_sizes(archs[0])
    parts = [stage_latency_ms(estimator, a) for a in archs]
    points = [space.point_of(a) for a in archs]  # every Pareto architecture is in the space (choice_usage checks)
    searched = [name for name in HEAD_PARAMETERS if len(space.parameters()[name]) > 1]
    return HeadStats(
        type=heads[0].type,
        taps=heads[0].taps,
        tap_sizes=tuple(sizes[t] for t in heads[0].taps),
        n_pareto=len(archs),
        channels=dict(sorted(Counter(h.channels for h in heads).items())),
        depth=dict(sorted(Counter(h.depth for h in heads).items())),
        kernel=dict(sorted(Counter(h.kernel for h in heads).items())),
        head_ms=tuple(sum(ms for k, ms in p.items() if k.startswith("head")) for p in parts),
        network_ms=tuple(sum(p.values()) for p in parts),
        choices={name: _head_choices(record, estimator, points, name) for name in searched},
    )


def _head_choices(record: StudyRecord, estimator, points: list, name: str) -> tuple[HeadChoice, ...]:
    space, completed = record.space, record.completed()
    out = []
    for choice in space.parameters()[name]:
        variants = [space.resolve({**point, name: choice}) for point in points]
        out.append(
            HeadChoice(
                parameter=name,
                choice=choice,
                pareto=sum(point[name] == choice for point in points),
                head_ms=tuple(head_latency_ms(estimator, arch) for arch in variants),
                value=_mean([t.value for t in completed if t.trial.params.get(name) == choice]),
            )
        )
    return tuple(out)


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
