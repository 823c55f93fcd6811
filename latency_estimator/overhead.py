"""The per-network overhead term: what a sum of isolated subgraphs misses (runtime call overhead, activations
kept on chip across subgraph boundaries), fitted by least squares on a handful of whole-network measurements, its
form chosen by leave-one-out error (:class:`OverheadModel`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "NetworkTotals",
    "OVERHEAD_FORMS",
    "OVERHEAD_TERMS",
    "OverheadModel",
    "fit_overhead",
]

logger = logging.getLogger(__name__)


# What a network differs by from the sum of its subgraphs run alone. Terms, each a column of NetworkTotals:
#   scale          x sum of subgraph predictions (e.g. activations kept on chip, load on a shared machine)
#   constant       one runtime call per network instead of one per subgraph
#   per_subgraph   x number of subgraphs (per-call cost each isolated run paid)
#   per_weight_mb  x MB of fp32 weights (in a network the weights of a layer are no longer hot in cache)
OVERHEAD_FORMS = {
    "none": (),
    "constant": ("constant",),
    "scale": ("scale",),
    "per_subgraph": ("constant", "per_subgraph"),
    "affine": ("scale", "constant"),
    "weights": ("constant", "per_subgraph", "per_weight_mb"),
    "affine_weights": ("scale", "constant", "per_weight_mb"),
}
OVERHEAD_TERMS = ("scale", "constant", "per_subgraph", "per_weight_mb")


@dataclass(frozen=True)
class NetworkTotals:
    """Per network: sum of predicted subgraph latencies, subgraph count, MB of fp32 weights."""

    summed_ms: np.ndarray
    n_subgraphs: np.ndarray
    weight_mb: np.ndarray

    @classmethod
    def of(cls, summed_ms, n_subgraphs, weight_mb) -> NetworkTotals:
        return cls(*(np.atleast_1d(np.asarray(v, dtype=float)) for v in (summed_ms, n_subgraphs, weight_mb)))

    def column(self, term: str) -> np.ndarray:
        return {
            "scale": self.summed_ms,
            "constant": np.ones_like(self.summed_ms),
            "per_subgraph": self.n_subgraphs,
            "per_weight_mb": self.weight_mb,
        }[term]

    def take(self, rows: np.ndarray) -> NetworkTotals:
        return NetworkTotals(self.summed_ms[rows], self.n_subgraphs[rows], self.weight_mb[rows])


@dataclass(frozen=True)
class OverheadModel:
    """``total_ms = scale * summed_ms + constant + per_subgraph * n_subgraphs + per_weight_mb * weight_mb``."""

    form: str = "none"
    scale: float = 1.0
    constant: float = 0.0
    per_subgraph: float = 0.0
    per_weight_mb: float = 0.0
    loo_rmspe: dict[str, float] = field(default_factory=dict)  # every form's leave-one-out error, for the record

    def apply(self, totals: NetworkTotals) -> np.ndarray:
        return sum(getattr(self, term) * totals.column(term) for term in OVERHEAD_TERMS)

    def to_dict(self) -> dict[str, Any]:
        return {"form": self.form, **{t: getattr(self, t) for t in OVERHEAD_TERMS}, "loo_rmspe": self.loo_rmspe}


def fit_overhead(totals: NetworkTotals, measured_ms: np.ndarray) -> OverheadModel:
    """Fit every form, keep the one with the lowest leave-one-out RMSPE; a form
    with more free terms must beat a simpler one by 5 % (relative) to be kept,
    and none may have as many free terms as there are networks."""
    measured_ms = np.asarray(measured_ms, dtype=float)
    forms = [form for form, terms in OVERHEAD_FORMS.items() if len(terms) < len(measured_ms) - 1]
    if len(forms) < 2:
        logger.warning("only %d whole-network measurements: no overhead term fitted", len(measured_ms))
        return OverheadModel()
    errors = {form: _loo_rmspe(form, totals, measured_ms) for form in forms}
    best = "none"
    for form in sorted(forms, key=lambda f: len(OVERHEAD_FORMS[f])):
        if errors[form] < 0.95 * errors[best]:
            best = form
    model = _fit_form(best, totals, measured_ms)
    return OverheadModel(**{**model.to_dict(), "loo_rmspe": {k: round(v, 5) for k, v in errors.items()}})


def _fit_form(form: str, totals: NetworkTotals, measured: np.ndarray) -> OverheadModel:
    """Least squares on relative error: rows are weighted by 1 / measured."""
    terms = OVERHEAD_FORMS[form]
    if not terms:
        return OverheadModel()
    fixed = totals.summed_ms if "scale" not in terms else 0.0  # scale pinned at 1 when it is not free
    design = np.stack([totals.column(t) for t in terms], axis=1) / measured[:, None]
    solution, *_ = np.linalg.lstsq(design, (measured - fixed) / measured, rcond=None)
    return OverheadModel(form=form, **dict(zip(terms, solution.tolist(), strict=True)))


def _loo_rmspe(form: str, totals: NetworkTotals, measured: np.ndarray) -> float:
    errors = []
    for i in range(len(measured)):
        keep = np.arange(len(measured)) != i
        model = _fit_form(form, totals.take(keep), measured[keep])
        errors.append(model.apply(totals.take(np.array([i])))[0] / measured[i] - 1)
    return float(np.sqrt(np.mean(np.square(errors))))
