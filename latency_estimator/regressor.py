"""The subgraph model: XGBoost on a batch's features (plus ``log(prior)``) predicting ``log(latency_ms / prior)``.

Relative errors are what matter and latencies span three decades. Either one model with the kind among the
features (layout ``single``) or one model per kind (``per_kind``); trained on squared or absolute error of that
log (loss ``squared`` or ``absolute``: measured timings have heavy tails, and the absolute error follows the
typical measurement rather than the outliers). Every (prior, layout, loss) triple is trained on the same split
and scored on the held-out 20 % (:func:`compare_candidates`); the build keeps the best.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from latency_estimator.batch import SubgraphBatch
from latency_estimator.errors import EstimatorError
from latency_estimator.prior import PRIORS, Prior
from latency_estimator.subgraph import Subgraph

__all__ = [
    "LAYOUTS",
    "LOSSES",
    "MIN_KIND_ROWS",
    "SubgraphModel",
    "XGB_PARAMS",
    "XGB_ROUNDS",
    "compare_candidates",
    "cross_validated_errors",
    "fit_subgraph_model",
]


LAYOUTS = ("single", "per_kind")
LOSSES = {"squared": "reg:squarederror", "absolute": "reg:absoluteerror"}  # on log(latency / prior)
# Small data (hundreds to a few thousand rows): depth-6 trees, shrinkage and
# row/column subsampling; 300 rounds at eta 0.1 converge on every device tried.
# One thread: on a shared 2-core machine two OpenMP threads run 10-25x slower.
XGB_PARAMS = {
    "max_depth": 6,
    "eta": 0.1,
    "subsample": 0.85,
    "colsample_bytree": 0.85,
    "min_child_weight": 1.0,
    "nthread": 1,
}
XGB_ROUNDS = 300
MIN_KIND_ROWS = 20  # fewer measurements of a kind than this: the shared model serves it


@dataclass
class SubgraphModel:
    """Prior times XGBoost's correction. ``boosters["*"]`` is trained on every
    row; the per-kind layout adds one booster per kind with at least
    ``MIN_KIND_ROWS`` rows, and kinds without one (too few rows, or never
    profiled, such as ONNX ``eltwise``) use the shared booster."""

    prior: Prior
    layout: str
    boosters: dict[str, xgb.Booster]
    feature_names: tuple[str, ...]
    loss: str = "squared"

    def predict_ms(self, batch: SubgraphBatch) -> np.ndarray:
        if batch.feature_names != self.feature_names:
            raise EstimatorError("the estimator was trained on other subgraph features; rebuild it")
        prior = self.prior.predict_ms(batch)
        features = _with_prior(batch.features, prior, self.prior)
        correction = np.empty(len(batch))
        own = [kind for kind in np.unique(batch.kinds) if kind in self.boosters]
        shared = ~np.isin(batch.kinds, own)
        for kind, mask in [(kind, batch.kinds == kind) for kind in own] + [("*", shared)]:
            if mask.any():
                correction[mask] = self.boosters[kind].inplace_predict(features[mask])
        return prior * np.exp(correction)


def _with_prior(features: np.ndarray, prior: np.ndarray, model: Prior) -> np.ndarray:
    return features if model.form == "none" else np.column_stack([features, np.log(prior)])


def fit_subgraph_model(
    batch: SubgraphBatch,
    latency_ms: np.ndarray,
    *,
    prior: str,
    layout: str,
    loss: str = "squared",
    rows: np.ndarray | None = None,
    rounds: int = XGB_ROUNDS,
    params: dict[str, Any] | None = None,
    seed: int = 0,
) -> SubgraphModel:
    """Fit on ``rows`` (a boolean mask; default all); ``params`` override :data:`XGB_PARAMS`."""
    if layout not in LAYOUTS:
        raise EstimatorError(f"layout must be one of {list(LAYOUTS)}, but got {layout!r}")
    if loss not in LOSSES:
        raise EstimatorError(f"loss must be one of {list(LOSSES)}, but got {loss!r}")
    rows = np.ones(len(batch), bool) if rows is None else rows
    fitted_prior = Prior.fit(prior, batch, latency_ms, rows)
    prior_ms = fitted_prior.predict_ms(batch)
    features = _with_prior(batch.features, prior_ms, fitted_prior)
    target = np.log(latency_ms / prior_ms)
    groups = {"*": rows}
    if layout == "per_kind":
        groups.update({str(k): rows & (batch.kinds == k) for k in np.unique(batch.kinds)})
    params = {**XGB_PARAMS, "objective": LOSSES[loss], **(params or {}), "seed": seed}
    boosters = {
        name: xgb.train(params, xgb.DMatrix(features[mask], label=target[mask]), num_boost_round=rounds)
        for name, mask in groups.items()
        if mask.sum() >= (1 if name == "*" else MIN_KIND_ROWS)
    }
    return SubgraphModel(
        prior=fitted_prior, layout=layout, boosters=boosters, feature_names=batch.feature_names, loss=loss
    )


def compare_candidates(
    batch: SubgraphBatch, latency_ms: np.ndarray, *, held_out: float = 0.2, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Held-out subgraph errors of every (prior, layout, loss) triple, all trained on the same split."""
    test = np.random.default_rng(seed).random(len(batch)) < held_out
    if test.sum() < 5 or (~test).sum() < 10:
        raise EstimatorError(f"too few subgraph measurements ({len(batch)}) for a held-out split; profile more")
    results = {}
    for prior, layout, loss in itertools.product(PRIORS, LAYOUTS, LOSSES):
        model = fit_subgraph_model(batch, latency_ms, prior=prior, layout=layout, loss=loss, rows=~test, seed=seed)
        error = model.predict_ms(batch)[test] / latency_ms[test] - 1
        results[f"{prior}/{layout}/{loss}"] = {
            "held_out_rows": int(test.sum()),
            "mape": float(np.mean(np.abs(error))),
            "rmspe": float(np.sqrt(np.mean(np.square(error)))),
            "within_10pct": float(np.mean(np.abs(error) <= 0.10)),
        }
    return results


def cross_validated_errors(
    subgraphs: Sequence[Subgraph], latency_ms: np.ndarray, *, parallelism_factor: int, folds: int = 3, seed: int = 0
) -> np.ndarray:
    """Out-of-fold relative error ``|predicted / measured - 1|`` of every row
    (roofline prior, single layout, fewer rounds: a quick model to find weak strata)."""
    batch = SubgraphBatch.of(subgraphs, parallelism_factor)
    fold_of = np.random.default_rng(seed).permutation(len(batch)) % folds
    errors = np.empty(len(batch))
    for fold in range(folds):
        test = fold_of == fold
        model = fit_subgraph_model(batch, latency_ms, prior="roofline", layout="single", rows=~test, rounds=100)
        errors[test] = np.abs(model.predict_ms(batch)[test] / latency_ms[test] - 1)
    return errors
