"""Expert in the loop: a search's lessons, a curated space derived from them, and warm starts.

study       a finished search read back (results folder + Optuna storage)
stats       importances, choices on the Pareto front, per-stage statistics, latency by part
findings    plain-language findings, each with its evidence
plots       latency-breakdown.png
analyze     analyze_study -> insights.md (``edgenas analyze``)
derive      a narrower, commented space (``edgenas space derive``)
warm_start  Pareto architectures to enqueue first in a new study (``edgenas search --warm-start``)
"""

from __future__ import annotations

from nas.insights.analyze import Insights, analyze_study, derive_from_study, render_insights, write_insights
from nas.insights.derive import ChoiceDecision, DerivedSpace, decide_choices, derive_space
from nas.insights.findings import Finding
from nas.insights.stats import Breakdown, ChoiceUsage, Importance, StageStats, choice_usage, compute_importances
from nas.insights.study import InsightsError, StudyRecord, TrialRecord, open_study_record
from nas.insights.warm_start import warm_start_archs

__all__ = [
    "Breakdown",
    "ChoiceDecision",
    "ChoiceUsage",
    "DerivedSpace",
    "Finding",
    "Importance",
    "Insights",
    "InsightsError",
    "StageStats",
    "StudyRecord",
    "TrialRecord",
    "analyze_study",
    "choice_usage",
    "compute_importances",
    "decide_choices",
    "derive_from_study",
    "derive_space",
    "open_study_record",
    "render_insights",
    "warm_start_archs",
    "write_insights",
]
