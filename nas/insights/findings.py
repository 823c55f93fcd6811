"""Plain-language findings, each with the evidence it rests on.

Every function here reads numbers computed in :mod:`nas.insights.stats` and
says what they mean to an expert curating the next space, e.g.

    stages 0–2: fused IBN in 9–10 of 10 Pareto architectures; fusing cuts their estimated latency by 31%
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nas.insights.stats import Breakdown, ChoiceUsage, HeadStats, Importance, StageStats

__all__ = [
    "OFTEN",
    "RARELY",
    "Finding",
    "alignment_findings",
    "breakdown_findings",
    "choice_findings",
    "fusion_class",
    "fusion_findings",
    "head_findings",
    "importance_findings",
]

# Share of Pareto architectures above which a stage counts as "usually fused", and at or below which "rarely".
OFTEN = 0.75
RARELY = 0.25


@dataclass(frozen=True)
class Finding:
    topic: str  # fusion, channels, choices, alignment, importance, latency
    text: str  # one sentence an expert acts on
    evidence: str  # the numbers behind it


def fusion_class(stage: StageStats) -> str:
    """``usually``, ``never``, ``rarely`` or ``mixed``: how the Pareto front uses fused IBN at this stage."""
    share = stage.fused / stage.n_pareto
    if share >= OFTEN:
        return "usually"
    if stage.fused == 0:
        return "never"
    return "rarely" if share <= RARELY else "mixed"


def fusion_findings(stages: Sequence[StageStats]) -> list[Finding]:
    """One finding per run of consecutive fusable stages that the front treats alike."""
    runs: list[list[StageStats]] = []
    for stage in (s for s in stages if s.fusable and s.n_pareto):
        if runs and runs[-1][-1].stage == stage.stage - 1 and fusion_class(runs[-1][-1]) == fusion_class(stage):
            runs[-1].append(stage)
        else:
            runs.append([stage])
    return [_fusion_finding(run) for run in runs]


def _fusion_finding(run: list[StageStats]) -> Finding:
    kind, n = fusion_class(run[0]), run[0].n_pareto
    counts = sorted({s.fused for s in run})
    count = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    where = _stages_label([s.stage for s in run])
    change = _run_change(run)
    effect = f"fusing changes their estimated latency by {_pct(change)}" if change is not None else ""
    text = {
        "usually": f"{where}: fused IBN in {count} of {n} Pareto architectures; {effect}",
        "never": f"{where}: never fused in {n} Pareto architectures; {effect}",
        "rarely": f"{where}: rarely fused ({count} of {n} Pareto architectures); {effect}",
        "mixed": f"{where}: fused in {count} of {n} Pareto architectures, a latency/accuracy trade-off; {effect}",
    }[kind]
    evidence = "; ".join(_stage_evidence(s) for s in run)
    return Finding(topic="fusion", text=text.rstrip("; "), evidence=evidence)


def _run_change(run: list[StageStats]) -> float | None:
    """Median over Pareto architectures of (fused / IBN latency of the run's stages together) - 1."""
    if any(not s.ibn_ms for s in run):
        return None
    per_arch = zip(*(zip(s.fused_ms, s.ibn_ms) for s in run))
    return statistics.median(sum(f for f, _ in parts) / sum(i for _, i in parts) - 1.0 for parts in per_arch)


def _stage_evidence(stage: StageStats) -> str:
    parts = [f"stage {stage.stage} ({stage.output_size}x{stage.output_size}): {stage.fused}/{stage.n_pareto} fused"]
    if stage.fusion_change is not None:
        parts.append(f"fused vs IBN latency {_pct(stage.fusion_change)} (median of {len(stage.ibn_ms)})")
    if stage.value_fused is not None and stage.value_ibn is not None:
        parts.append(f"mean objective of complete trials fused {stage.value_fused:.4g} vs IBN {stage.value_ibn:.4g}")
    return ", ".join(parts)


def choice_findings(usage: Mapping[str, ChoiceUsage]) -> list[Finding]:
    """Searched parameters with choices that were tried but never made the Pareto front."""
    findings = []
    for item in usage.values():
        unused = [c for c in item.choices if item.pareto[c] == 0 and item.tried[c] > 0]
        if not item.searched or not unused or not item.n_pareto or item.name.endswith(".block"):
            continue
        used = [c for c in item.choices if item.pareto[c] > 0]
        topic = "channels" if item.name.endswith("channels") else "choices"
        text = f"{item.name}: the Pareto front uses only {_list(used)}, never {_list(unused)}"
        evidence = ", ".join(
            f"{_short(c)}: {item.pareto[c]}/{item.n_pareto} Pareto, tried {item.tried[c]}x" for c in item.choices
        )
        findings.append(Finding(topic=topic, text=text, evidence=evidence))
    return findings


def head_findings(head: HeadStats | None) -> list[Finding]:
    """What the dense head taps and costs, then per searched head parameter what its choices change."""
    if head is None:
        return []
    taps = ", ".join(f"{t} ({s}x{s})" for t, s in zip(head.taps, head.tap_sizes))
    text = (
        f"the {head.type} head (taps stages {taps}) takes {head.share:.0%} of the estimated latency of the "
        f"Pareto architectures (median); they use neck width {_counts(head.channels)}, depth {_counts(head.depth)}, "
        f"kernel {_counts(head.kernel)}"
    )
    evidence = "; ".join(
        f"{h * 1000:.1f} of {n * 1000:.1f} µs in the head" for h, n in zip(head.head_ms, head.network_ms)
    )
    findings = [Finding(topic="head", text=text, evidence=f"per Pareto architecture: {evidence}")]
    return findings + [_head_choice_finding(head, name) for name in head.choices]


def _head_choice_finding(head: HeadStats, name: str) -> Finding:
    options, change = head.choices[name], head.change(name)
    used = ", ".join(f"{_short(c.choice)}: {c.pareto}" for c in options)
    text = f"{name}: on the Pareto front {{{used}}} of {head.n_pareto}"
    if change is not None:
        first, last = _short(options[0].choice), _short(options[-1].choice)
        text += f"; {first} -> {last} changes the head's estimated latency by {_pct(change)}"
    evidence = "; ".join(
        f"{_short(c.choice)}: head {statistics.median(c.head_ms) * 1000:.1f} µs (median, all else equal)"
        + (f", mean objective of complete trials {c.value:.4g}" if c.value is not None else "")
        for c in options
    )
    return Finding(topic="head", text=text, evidence=evidence)


def alignment_findings(stages: Sequence[StageStats], *, parallelism_factor: int, align_channels: bool) -> list[Finding]:
    total = sum(s.n_pareto for s in stages)
    if not total:
        return []
    aligned = sum(s.aligned for s in stages)
    if align_channels:
        text = (
            f"every channel count on the Pareto front is a multiple of P={parallelism_factor} "
            "(the space allows no other)"
        )
    elif aligned == total:
        text = f"the Pareto front chose channel counts aligned to P={parallelism_factor} in every stage"
    else:
        worst = min(stages, key=lambda s: s.aligned / s.n_pareto)
        text = (
            f"{total - aligned} of {total} stage widths on the Pareto front are not multiples of "
            f"P={parallelism_factor} (most in stage {worst.stage}); aligning them wastes no lanes"
        )
    evidence = "; ".join(
        f"stage {s.stage}: {s.aligned}/{s.n_pareto} aligned, channels {_counts(s.channels)}" for s in stages
    )
    return [Finding(topic="alignment", text=text, evidence=evidence)]


def importance_findings(importances: Sequence[Importance], *, top: int = 2) -> list[Finding]:
    findings = []
    for item in importances:
        if not item.values:
            text = f"{item.objective}: the choices cannot be ranked yet"  # the note says why
            findings.append(Finding(topic="importance", text=text, evidence=item.note))
            continue
        ranked = list(item.values.items())
        lead = ", then ".join(f"{name} ({value:.2f})" for name, value in ranked[:top])
        evidence = f"importances over {item.n_trials} trials: " + ", ".join(
            f"{name} {value:.2f}" for name, value in ranked
        )
        findings.append(Finding(topic="importance", text=f"{item.objective} depends most on {lead}", evidence=evidence))
    return findings


def breakdown_findings(breakdown: Breakdown | None) -> list[Finding]:
    if breakdown is None:
        return []
    change = breakdown.best_total_ms / breakdown.baseline_total_ms - 1.0
    deltas = sorted((b - a, label) for label, a, b in zip(breakdown.labels, breakdown.baseline_ms, breakdown.best_ms))
    saved = " and ".join(f"{label} ({d * 1000:+.1f} µs)" for d, label in deltas[:2] if d < 0)
    spent = " and ".join(f"{label} ({d * 1000:+.1f} µs)" for d, label in reversed(deltas[-2:]) if d > 0)
    text = (
        f"the {breakdown.best_reason} architecture (trial {breakdown.best_trial}) runs {_pct(change)} vs the baseline "
        f"({breakdown.baseline_total_ms:.4f} -> {breakdown.best_total_ms:.4f} ms)"
    )
    text += f"; it saves most in {saved}" if saved else ""
    text += f"; it spends more in {spent}" if spent else ""
    evidence = "; ".join(
        f"{label}: {a * 1000:.1f} -> {b * 1000:.1f} µs"
        for label, a, b in zip(breakdown.labels, breakdown.baseline_ms, breakdown.best_ms)
    )
    return [Finding(topic="latency", text=text, evidence=evidence)]


def _stages_label(stages: list[int]) -> str:
    return f"stage {stages[0]}" if len(stages) == 1 else f"stages {stages[0]}–{stages[-1]}"


def _pct(change: float) -> str:
    if abs(change) < 0.005:
        return "±0%"
    return f"{change * 100:+.0f}%".replace("-", "−")


def _list(values: Sequence) -> str:
    return "[" + ", ".join(_short(v) for v in values) + "]"


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _counts(counts: Mapping) -> str:
    return "{" + ", ".join(f"{_short(k)}: {v}" for k, v in counts.items()) + "}"
