"""``edgenas analyze results/<study>``: a search's lessons, written to ``insights.md``.

open the study (results folder + Optuna storage)
  -> parameter importances per objective (Optuna's evaluators)
  -> per stage of the Pareto architectures: fused IBN, channels, kernel, alignment to P,
     and the estimated latency of each stage fused vs IBN
  -> a dense head: what it taps, its share of the latency, what its width/depth/kernel choices change
  -> latency breakdown of the best architecture next to the baseline's (latency-breakdown.png)
  -> findings in plain language, each with its evidence
  -> insights.md
"""

from __future__ import annotations

import logging
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from nas.insights.derive import DerivedSpace, derive_space
from nas.insights.findings import (
    Finding,
    alignment_findings,
    breakdown_findings,
    choice_findings,
    fusion_class,
    fusion_findings,
    head_findings,
    importance_findings,
)
from nas.insights.plots import plot_breakdown
from nas.insights.stats import (
    Breakdown,
    ChoiceUsage,
    HeadStats,
    Importance,
    StageStats,
    choice_usage,
    compute_importances,
    head_stats,
    latency_breakdown,
    stage_stats,
)
from nas.insights.study import StudyRecord, open_study_record
from nas.search.report import best_vs_baseline
from search_spaces import baseline_arch

__all__ = ["INSIGHTS_FILE", "PLOT_FILE", "Insights", "analyze_study", "derive_from_study", "render_insights"]

logger = logging.getLogger(__name__)

INSIGHTS_FILE = "insights.md"
PLOT_FILE = "latency-breakdown.png"


@dataclass(frozen=True, eq=False)
class Insights:
    record: StudyRecord
    importances: list[Importance]
    usage: dict[str, ChoiceUsage]
    stages: list[StageStats]
    breakdown: Breakdown | None
    findings: list[Finding]
    evaluator: str
    head: HeadStats | None = None  # a dense study's head (None for a classifier)

    @property
    def fixed_parameters(self) -> list[str]:
        """Parameters with a single choice: never searched, so absent from the importances."""
        return [name for name, item in self.usage.items() if not item.searched]


def analyze_study(
    folder: str | Path, *, storage: str | None = None, evaluator: str = "fanova", seed: int = 0, write: bool = True
) -> Insights:
    """Compute the insights of the study in ``folder``; with ``write``, write insights.md and the plot there."""
    from latency_estimator import obtain_estimator

    record = open_study_record(folder, storage=storage)
    logger.info("analysing study %r: %d trials, %d Pareto", record.name, len(record.trials), len(record.pareto))
    estimator = obtain_estimator(record.device)  # as the search obtained it
    importances = compute_importances(record, evaluator=evaluator, seed=seed)
    usage = choice_usage(
        record.space, pareto=[p.arch for p in record.pareto], tried=[t.trial.params for t in record.evaluated()]
    )
    stages = stage_stats(record, estimator)
    head = head_stats(record, estimator)
    breakdown = _breakdown(record, estimator)
    findings = [
        *fusion_findings(stages),
        *head_findings(head),
        *choice_findings(usage),
        *alignment_findings(
            stages, parallelism_factor=record.parallelism_factor, align_channels=record.space.align_channels
        ),
        *breakdown_findings(breakdown),
        *importance_findings(importances),
    ]
    insights = Insights(record, importances, usage, stages, breakdown, findings, evaluator, head)
    if write:
        write_insights(insights)
    return insights


def _breakdown(record: StudyRecord, estimator) -> Breakdown | None:
    """The fastest Pareto architecture at least as good as the baseline, else the best-scoring one; the baseline is
    the task's (``baseline.yaml``, ``detection_baseline.yaml``, ...)."""
    picks = best_vs_baseline(list(record.pareto), record.baseline)
    point, reason = picks["fastest_matching"], "fastest at >= baseline"
    if point is None:
        point, reason = picks["best"], record.metric.best
    if point is None:
        return None
    baseline = baseline_arch(parallelism_factor=record.parallelism_factor, task=record.task)
    return latency_breakdown(estimator, baseline=baseline, best=point.arch, best_trial=point.trial, reason=reason)


def write_insights(insights: Insights) -> Path:
    folder = insights.record.folder
    if insights.breakdown is not None:
        plot_breakdown(folder / PLOT_FILE, insights.breakdown, device=insights.record.device)
    path = folder / INSIGHTS_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render_insights(insights))
    os.replace(tmp, path)
    return path


def derive_from_study(insights: Insights, *, name: str, min_share: float = 0.0, min_tried: int = 2) -> DerivedSpace:
    """The derived space of an analysed study; its comments cite the findings (``save`` its ``document``)."""
    record = insights.record
    return derive_space(
        space_path=record.space_path,
        space=record.space,
        pareto=[p.arch for p in record.pareto],
        tried=[t.trial.params for t in record.evaluated()],
        study=record.name,
        name=name,
        min_share=min_share,
        min_tried=min_tried,
        notes={**_fusion_notes(insights.stages), **_head_notes(insights.head)},
    )


def _fusion_notes(stages: list[StageStats]) -> dict[str, str]:
    return {
        f"stages.{s.stage}.block": f"fusing stage {s.stage} changes its estimated latency by "
        f"{_signed_pct(s.fusion_change)}, median of {len(s.ibn_ms)} Pareto architecture(s)"
        for s in stages
        if s.fusion_change is not None
    }


def _head_notes(head: HeadStats | None) -> dict[str, str]:
    if head is None:
        return {}
    notes = {}
    for name, options in head.choices.items():
        change = head.change(name)
        if change is not None:
            notes[name] = (
                f"{_short(options[0].choice)} -> {_short(options[-1].choice)} changes the head's estimated latency "
                f"by {_signed_pct(change)}, median of {head.n_pareto} Pareto architecture(s)"
            )
    return notes


# ----- insights.md --------------------------------------------------------------------------------------------------
def render_insights(insights: Insights) -> str:
    record = insights.record
    lines = [
        f"# Insights: study `{record.name}`",
        "",
        "Regenerate with:",
        "",
        f"    edgenas analyze {record.folder}",
        "",
        *_study_section(insights),
        "## Findings",
        "",
        *(f"{i}. **{f.text}.** Evidence: {f.evidence}." for i, f in enumerate(insights.findings, 1)),
        "",
        *_importance_section(insights),
        *_stage_section(insights),
        *_head_section(insights),
        *_choices_section(insights),
        *_breakdown_section(insights),
    ]
    return "\n".join(lines) + "\n"


def _study_section(insights: Insights) -> list[str]:
    record, s = insights.record, insights.record.settings
    outcomes: dict[str, int] = {}
    for trial in record.trials:
        outcomes[trial.outcome] = outcomes.get(trial.outcome, 0) + 1
    rows = [
        ("space", f"{record.space_path} ({record.space.size():,} combinations, P={record.parallelism_factor})"),
        ("device", record.device),
        ("dataset", s.get("dataset")),
        ("mode / strategy", f"{s.get('mode')} / {s.get('strategy')}"),
        ("first objective", record.value_name),
        ("trials", ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))),
        ("Pareto architectures", len(record.pareto)),
    ]
    return ["## Study", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]


def _importance_section(insights: Insights) -> list[str]:
    lines = [
        "## Which choices matter",
        "",
        f"Optuna parameter importances ({insights.evaluator}), per objective, each normalised to sum to 1. "
        "Latency uses every candidate whose latency was estimated (budget breakers and screened ones too); "
        f"{insights.record.value_name} uses the complete, feasible ones. One trial per architecture.",
        "",
    ]
    for item in insights.importances:
        if item.note:
            lines.append(f"- {item.objective}: skipped, {item.note}.")
    present = [item for item in insights.importances if item.values]
    if present:
        names = list(dict.fromkeys(name for item in present for name in item.values))
        lines += ["", "| parameter | " + " | ".join(f"{i.objective} ({i.n_trials} trials)" for i in present) + " |"]
        lines.append("|---|" + "---:|" * len(present))
        lines += [f"| `{n}` | " + " | ".join(f"{i.values.get(n, 0.0):.3f}" for i in present) + " |" for n in names]
    fixed = insights.fixed_parameters
    if fixed:
        lines += ["", f"Not searched (one choice, so no importance): {', '.join(f'`{n}`' for n in fixed)}."]
    return [*lines, ""]


def _stage_section(insights: Insights) -> list[str]:
    parallelism_factor = insights.record.parallelism_factor
    lines = [
        "## Pareto architectures, per stage",
        "",
        "Fused vs IBN: the stage's estimated latency with fused IBN relative to IBN, all else equal "
        "(median over the Pareto architectures). Mean objective: complete trials with the stage fused / IBN.",
        "",
        f"| stage | output | fused IBN | verdict | channels | kernel | aligned to P={parallelism_factor} "
        "| fused vs IBN latency | mean objective fused / IBN |",
        "|---:|---:|---:|---|---|---|---:|---:|---:|",
    ]
    taps = insights.head.taps if insights.head is not None else ()
    for s in insights.stages:
        change = _signed_pct(s.fusion_change) if s.fusion_change is not None else "-"
        values = f"{_num(s.value_fused)} / {_num(s.value_ibn)}"
        verdict = fusion_class(s) if s.fusable else "not searched"
        tapped = " (head tap)" if s.stage in taps else ""
        lines.append(
            f"| {s.stage} | {s.output_size}x{s.output_size}{tapped} | {s.fused}/{s.n_pareto} | {verdict} "
            f"| {_counts(s.channels)} | {_counts(s.kernels)} | {s.aligned}/{s.n_pareto} | {change} | {values} |"
        )
    if not insights.stages:
        lines.append("| - | no Pareto architecture yet | | | | | | | |")
    return [*lines, ""]


def _head_section(insights: Insights) -> list[str]:
    head = insights.head
    if head is None:
        return []
    taps = ", ".join(f"stage {t} ({s}x{s})" for t, s in zip(head.taps, head.tap_sizes))
    lines = [
        f"## The {head.type} head",
        "",
        f"Taps (fixed by the space): {taps}. Estimated latency of the head (neck + tower + outputs, parts run alone): "
        f"{head.share:.0%} of the network's parts, median of {head.n_pareto} Pareto architecture(s). "
        f"On the front: neck width {_counts(head.channels)}, depth {_counts(head.depth)}, "
        f"kernel {_counts(head.kernel)}.",
        "",
    ]
    if not head.choices:
        return [*lines, "The space searches no head choice.", ""]
    lines += [
        "Per searched head choice: the head's estimated latency with that choice, all else of each Pareto "
        f"architecture equal (median), and the mean {insights.record.value_name} of complete trials that chose it.",
        "",
        f"| parameter | choice | Pareto | head µs (median) | mean {insights.record.value_name} |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, options in head.choices.items():
        for c in options:
            median = statistics.median(c.head_ms) * 1000
            cells = f"{_short(c.choice)} | {c.pareto}/{head.n_pareto} | {median:.2f} | {_num(c.value)}"
            lines.append(f"| `{name}` | {cells} |")
    return [*lines, ""]


def _choices_section(insights: Insights) -> list[str]:
    lines = [
        "## Choices on the Pareto front",
        "",
        "Per searched parameter (channels before the depth multiplier, as the space lists them): "
        "Pareto architectures using each choice / candidates that tried it. "
        "`edgenas space derive` drops choices tried but never on the front.",
        "",
        "| parameter | choices: Pareto / tried |",
        "|---|---|",
    ]
    for item in insights.usage.values():
        if item.searched:
            cells = ", ".join(f"{_short(c)}: {item.pareto[c]}/{item.tried[c]}" for c in item.choices)
            lines.append(f"| `{item.name}` | {cells} |")
    return [*lines, ""]


def _breakdown_section(insights: Insights) -> list[str]:
    b = insights.breakdown
    if b is None:
        return ["## Where the time goes", "", "No Pareto architecture yet.", ""]
    lines = [
        "## Where the time goes",
        "",
        f"Estimated latency on {insights.record.device} by part (each part run alone, µs), "
        f"{_baseline_file(insights.record.task)} vs the "
        f"{b.best_reason} Pareto architecture (trial {b.best_trial}, `{b.best_arch_id}`).",
        "",
        f"![latency breakdown]({PLOT_FILE})",
        "",
        "| part | baseline µs | searched µs | change µs |",
        "|---|---:|---:|---:|",
    ]
    for label, a, c in zip(b.labels, b.baseline_ms, b.best_ms):
        lines.append(f"| {label} | {a * 1000:.2f} | {c * 1000:.2f} | {(c - a) * 1000:+.2f} |")
    lines.append(
        f"| **network** (parts + overhead term) | {b.baseline_total_ms * 1000:.2f} | {b.best_total_ms * 1000:.2f} "
        f"| {(b.best_total_ms - b.baseline_total_ms) * 1000:+.2f} |"
    )
    return [*lines, ""]


def _baseline_file(task: str) -> str:
    return "baseline.yaml" if task == "classification" else f"{task}_baseline.yaml"


def _signed_pct(change: float) -> str:
    return "±0%" if abs(change) < 0.005 else f"{change * 100:+.0f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _counts(counts: dict) -> str:
    return ", ".join(f"{_short(k)}: {v}" for k, v in counts.items())
