"""The prior: a small analytic latency model whose coefficients are fitted to the measurements.

``none``; ``linear`` (padded MACs, bytes moved, op count, constant; non-negative least squares); or ``roofline``
(per op, the larger of a compute term in lane-padded MACs and a memory term in bytes, plus a per-op and a
per-subgraph cost). Trees cannot extrapolate; the prior carries the scale, the trees learn what it misses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares, nnls

from latency_estimator.batch import SubgraphBatch
from latency_estimator.errors import EstimatorError

__all__ = [
    "PRIORS",
    "Prior",
]


PRIORS = ("none", "linear", "roofline")


@dataclass(frozen=True)
class Prior:
    """A learned analytic latency (ms) the trees correct; ``coefficients`` per form:
    ``linear``: ms per padded MAC, per byte moved, per op, per subgraph;
    ``roofline``: ms per padded MAC, per byte (the larger of the two, per op), per op, per subgraph."""

    form: str = "none"
    coefficients: tuple[float, ...] = ()

    def predict_ms(self, batch: SubgraphBatch) -> np.ndarray:
        if self.form == "none":
            return np.ones(len(batch))
        if self.form == "linear":
            return _linear_basis(batch) @ np.array(self.coefficients)
        per_mac, per_byte, per_op, per_subgraph = self.coefficients
        op_ms = np.maximum(per_mac * batch.op_macs_padded, per_byte * batch.op_bytes) + per_op
        return batch.per_subgraph(op_ms) + per_subgraph

    @classmethod
    def fit(cls, form: str, batch: SubgraphBatch, latency_ms: np.ndarray, rows: np.ndarray) -> Prior:
        """Fit on ``rows`` (a boolean mask) minimising relative error."""
        if form not in PRIORS:
            raise EstimatorError(f"prior must be one of {list(PRIORS)}, but got {form!r}")
        if form == "none":
            return cls()
        basis = _linear_basis(batch)[rows] / latency_ms[rows, None]
        linear, _ = nnls(basis, np.ones(int(rows.sum())))
        linear = np.maximum(linear, 1e-12)  # a zero coefficient would freeze the roofline's log-space fit
        if form == "linear":
            return cls(form, tuple(linear.tolist()))

        def relative_error(log_coefficients: np.ndarray) -> np.ndarray:
            prior = cls("roofline", tuple(np.exp(log_coefficients))).predict_ms(batch)
            return (prior / latency_ms - 1)[rows]

        solution = least_squares(relative_error, np.log(linear), method="trf")
        return cls(form, tuple(np.exp(solution.x).tolist()))

    def to_dict(self) -> dict[str, Any]:
        return {"form": self.form, "coefficients": list(self.coefficients)}


def _linear_basis(batch: SubgraphBatch) -> np.ndarray:
    ops = np.bincount(batch.op_owner, minlength=len(batch)).astype(float)
    return np.stack([batch.column("macs_padded"), batch.per_subgraph(batch.op_bytes), ops, np.ones(len(batch))], 1)
