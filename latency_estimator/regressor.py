"""The XGBoost latency regressor and the estimator built on it.

A :class:`LatencyEstimator` predicts a network's latency as the sum of its
subgraphs' predicted latencies, corrected by a per-network overhead term:

* **prior** — a small analytic model whose coefficients are fitted to the
  measurements: ``none``; ``linear`` (padded MACs, bytes moved, op count,
  constant; non-negative least squares); or ``roofline`` (per op, the larger
  of a compute term in lane-padded MACs and a memory term in bytes, plus a
  per-op and a per-subgraph cost). Trees cannot extrapolate; the prior
  carries the scale, the trees learn what it misses.
* **subgraph model** — XGBoost on ``Subgraph.features(P)`` (plus
  ``log(prior)``) predicting ``log(latency_ms / prior)``: relative errors
  are what matter and latencies span three decades. Either one model with
  the kind among the features (layout ``single``) or one model per kind
  (``per_kind``); trained on squared or absolute error of that log (loss
  ``squared`` or ``absolute``: measured timings have heavy tails, and the
  absolute error follows the typical measurement rather than the outliers).
  Subgraphs timed inside whole networks (cpu-ort) also see the fp32 weight
  size of their network, in 4 MB bins (:data:`CONTEXT_FEATURE`): on a CPU a
  layer's weights come from the caches or from memory depending on the whole
  network's weights, and the same subgraph then runs at two speeds.
* **choice** — every (prior, layout, loss) triple is trained on the same split
  and scored on the held-out 20 %; the best by held-out MAPE is refitted on
  all rows. The comparison is kept in ``metadata.json`` (``training.candidates``).
* **overhead term** — what a sum of isolated subgraphs misses (runtime call
  overhead, activations kept on chip across subgraph boundaries): fitted by
  least squares on a handful of whole-network measurements, its form chosen
  by leave-one-out error (:class:`OverheadModel`).

An estimator is a folder: XGBoost's own JSON model file(s) beside
``metadata.json`` (device, profile, feature names, prior, layout, overhead
term, versions, checksums). Loading checks that the folder belongs to the
device. The default folder of device ``D`` is ``results/estimators/D`` under
the current directory, or ``$EDGENAS_ESTIMATORS/D`` when that is set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import hashlib
import itertools
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from scipy.optimize import least_squares, nnls

from latency_estimator.errors import EstimatorError
from latency_estimator.subgraph import (
    BYTES_PER_ELEMENT,
    Subgraph,
    decompose_arch,
    padded_macs,
    weight_count,
    weight_mb,
)
from search_spaces import ArchConfig, HeadConfig, StemConfig, plan_network

__all__ = [
    "ESTIMATORS_ENV",
    "LatencyEstimator",
    "NetworkTotals",
    "OverheadModel",
    "Prediction",
    "Prior",
    "SubgraphBatch",
    "SubgraphLatency",
    "SubgraphModel",
    "cross_validated_errors",
    "default_estimator_dir",
    "fit_overhead",
    "fit_subgraph_model",
    "load_estimator",
    "train_estimator",
]

logger = logging.getLogger(__name__)

ESTIMATORS_ENV = "EDGENAS_ESTIMATORS"
FORMAT_VERSION = 1
LAYOUTS = ("single", "per_kind")
PRIORS = ("none", "linear", "roofline")
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
# Subgraphs timed inside whole networks also see the fp32 weight size of the network around them, in bins (the name
# says which: another binning is another feature, and an estimator trained on one refuses the other).
CONTEXT_BIN_MB = 4.0
CONTEXT_FEATURE = f"network_weight_mb_{CONTEXT_BIN_MB:g}mb_bins"


def network_context(weight_mb: float | np.ndarray) -> float | np.ndarray:
    """The context feature of a network of ``weight_mb`` MB of fp32 weights: the middle of its bin."""
    return (np.floor(np.asarray(weight_mb) / CONTEXT_BIN_MB) + 0.5) * CONTEXT_BIN_MB


def default_estimator_dir(device: str) -> Path:
    """``$EDGENAS_ESTIMATORS/<device>``, else ``results/estimators/<device>`` under the current directory."""
    return Path(os.environ.get(ESTIMATORS_ENV) or "results/estimators") / device


# ----- what the model sees ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubgraphBatch:
    """Subgraphs as arrays: features (one row each) and per-op work for the prior."""

    feature_names: tuple[str, ...]
    features: np.ndarray  # (subgraphs, features)
    kinds: np.ndarray  # (subgraphs,) kind names
    op_owner: np.ndarray  # (ops,) row of the subgraph each op belongs to
    op_macs_padded: np.ndarray  # (ops,) MACs with channels rounded up to P
    op_bytes: np.ndarray  # (ops,) bytes read and written by the op alone

    @classmethod
    def of(cls, subgraphs: Sequence[Subgraph], parallelism_factor: int) -> SubgraphBatch:
        if not subgraphs:
            raise EstimatorError("no subgraphs to predict")
        rows = [sg.features(parallelism_factor) for sg in subgraphs]
        work = [(i, *_op_work(op, parallelism_factor)) for i, sg in enumerate(subgraphs) for op in sg.ops]
        owner, macs, moved = (np.array(column, dtype=float) for column in zip(*work, strict=True))
        return cls(
            feature_names=tuple(rows[0]),
            features=np.array([list(row.values()) for row in rows], dtype=np.float64),
            kinds=np.array([sg.kind for sg in subgraphs]),
            op_owner=owner.astype(np.int64),
            op_macs_padded=macs,
            op_bytes=moved,
        )

    def with_context(self, network_weight_mb: float | np.ndarray) -> SubgraphBatch:
        """With :data:`CONTEXT_FEATURE` added: the weight size of the network each subgraph runs in (one value for
        all, or one per subgraph)."""
        context = np.broadcast_to(network_context(network_weight_mb), len(self))
        names = (*self.feature_names, CONTEXT_FEATURE)
        return dataclasses.replace(self, feature_names=names, features=np.column_stack([self.features, context]))

    def take(self, rows: np.ndarray) -> SubgraphBatch:
        """These rows, in this order (a row may come more than once), with their ops."""
        counts = np.bincount(self.op_owner, minlength=len(self))
        first_op = np.cumsum(counts) - counts  # ops are stored subgraph after subgraph
        taken = counts[rows]
        owner = np.repeat(np.arange(len(rows)), taken)
        ops = np.repeat(first_op[rows], taken) + np.arange(taken.sum()) - np.repeat(np.cumsum(taken) - taken, taken)
        return SubgraphBatch(
            feature_names=self.feature_names,
            features=self.features[rows],
            kinds=self.kinds[rows],
            op_owner=owner,
            op_macs_padded=self.op_macs_padded[ops],
            op_bytes=self.op_bytes[ops],
        )

    def __len__(self) -> int:
        return len(self.kinds)

    def column(self, name: str) -> np.ndarray:
        return self.features[:, self.feature_names.index(name)]

    def per_subgraph(self, op_values: np.ndarray) -> np.ndarray:
        return np.bincount(self.op_owner, weights=op_values, minlength=len(self))


def _op_work(op, parallelism_factor: int) -> tuple[float, float]:
    """(padded MACs, bytes moved) of one op alone, as the device counts them: its input(s), weights and output."""
    inputs = 2 if op.kind == "eltwise" else 1
    moved = BYTES_PER_ELEMENT * (inputs * math.prod(op.in_shape) + weight_count(op) + math.prod(op.out_shape))
    return padded_macs(op, parallelism_factor), moved


# ----- the prior --------------------------------------------------------------------------------------------------
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


# ----- the subgraph model -----------------------------------------------------------------------------------------
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


# ----- the per-network overhead term ------------------------------------------------------------------------------
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


# ----- predictions ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubgraphLatency:
    name: str
    kind: str
    latency_ms: float


@dataclass(frozen=True)
class Prediction:
    """``latency_ms`` = overhead term applied to the sum of ``breakdown``;
    ``overhead_ms`` is the difference (negative when the network runs faster
    than its parts run alone, e.g. activations kept on chip)."""

    latency_ms: float
    breakdown: tuple[SubgraphLatency, ...]

    @property
    def overhead_ms(self) -> float:
        return self.latency_ms - sum(part.latency_ms for part in self.breakdown)


@dataclass
class _Piece:
    """A stem, a stage or a head as the batched path caches it (by its input shape and config), with its predicted
    latency per network context (:func:`network_context`; ``None`` for an estimator without context)."""

    out_channels: int
    out_size: int
    subgraphs: list[Subgraph]
    weight_mb: float
    latency_ms: dict[float | None, float] = field(default_factory=dict)


class LatencyEstimator:
    """Predicts a network's latency on one device from its subgraphs."""

    MODEL_FILE = "model{suffix}.json"
    META_FILE = "metadata.json"
    MAX_CACHED_PIECES = 200_000

    def __init__(self, *, model: SubgraphModel, overhead: OverheadModel, metadata: dict[str, Any]) -> None:
        self.model = model
        self.overhead = overhead
        self.metadata = metadata
        self.parallelism_factor = int(metadata["parallelism_factor"])
        self._pieces: dict[tuple, _Piece] = {}

    @property
    def uses_context(self) -> bool:
        """Whether its subgraphs see the weight size of their network (trained on subgraphs timed inside networks)."""
        return CONTEXT_FEATURE in self.model.feature_names

    @property
    def device(self) -> str:
        return str(self.metadata["device"])

    # ----- one network ------------------------------------------------------
    def predict(self, arch: ArchConfig) -> Prediction:
        return self.predict_subgraphs(decompose_arch(arch))

    def predict_subgraphs(self, subgraphs: Sequence[Subgraph]) -> Prediction:
        """The prediction for a network given as its subgraphs (e.g. from an ONNX file)."""
        latency = self.subgraph_latency_ms(subgraphs)
        breakdown = tuple(SubgraphLatency(sg.name, sg.kind, float(ms)) for sg, ms in zip(subgraphs, latency))
        totals = NetworkTotals.of(latency.sum(), len(subgraphs), weight_mb(subgraphs))
        return Prediction(latency_ms=float(self.overhead.apply(totals)[0]), breakdown=breakdown)

    def subgraph_latency_ms(self, subgraphs: Sequence[Subgraph], *, network_weight_mb=None) -> np.ndarray:
        """Predicted latency of each subgraph in ms. An estimator that :attr:`uses_context` also takes the weight
        size of the network around them (one value, or one per subgraph; default: they are one whole network)."""
        batch = SubgraphBatch.of(subgraphs, self.parallelism_factor)
        return self._latency_ms(batch, weight_mb(subgraphs) if network_weight_mb is None else network_weight_mb)

    def _latency_ms(self, batch: SubgraphBatch, network_weight_mb: float | np.ndarray | None) -> np.ndarray:
        return self.model.predict_ms(batch.with_context(network_weight_mb) if self.uses_context else batch)

    # ----- many networks ----------------------------------------------------
    def predict_many(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Latency in ms of every architecture, batched: stems, stages and heads are
        decomposed once per distinct (input shape, config) and cached, with their latency per network context;
        all new ones are predicted in one XGBoost call. Equals ``predict(arch).latency_ms``."""
        if len(self._pieces) > self.MAX_CACHED_PIECES:
            self._pieces.clear()
        with _gc_paused():  # it makes many small objects and no cycles: collections would only cost time
            networks = [self._pieces_of(arch) for arch in archs]
            weights = [sum(piece.weight_mb for piece in pieces) for pieces in networks]
            contexts = network_context(np.array(weights)).tolist() if self.uses_context else [None] * len(archs)
            self._predict_pending(networks, contexts)
        totals = NetworkTotals.of(
            [sum(piece.latency_ms[context] for piece in pieces) for pieces, context in zip(networks, contexts)],
            [sum(len(piece.subgraphs) for piece in pieces) for pieces in networks],
            weights,
        )
        return self.overhead.apply(totals)

    def _pieces_of(self, arch: ArchConfig) -> list[_Piece]:
        common = (arch.channel_divisor, arch.activation)
        pieces = [self._piece(("stem", arch.input_channels, arch.resolution, arch.stem, *common), arch)]
        for stage in arch.stages:
            prev = pieces[-1]
            pieces.append(self._piece(("stage", prev.out_channels, prev.out_size, stage, *common), arch))
        prev = pieces[-1]
        pieces.append(self._piece(("head", prev.out_channels, prev.out_size, arch.head, *common), arch))
        return pieces

    def _piece(self, key: tuple, arch: ArchConfig) -> _Piece:
        piece = self._pieces.get(key)
        if piece is None:
            piece = self._pieces[key] = _decompose_piece(key, arch)
        return piece

    def _predict_pending(self, networks: list[list[_Piece]], contexts: list[float | None]) -> None:
        """Predict, in one call, every (piece, context) of these networks not predicted yet (the features of a piece
        are computed once for all its contexts)."""
        pending = {
            (id(piece), context): (piece, context)
            for pieces, context in zip(networks, contexts)
            for piece in pieces
            if context not in piece.latency_ms
        }
        if not pending:
            return
        items = list(pending.values())
        pieces = list({id(piece): piece for piece, _ in items}.values())
        batch = SubgraphBatch.of([sg for piece in pieces for sg in piece.subgraphs], self.parallelism_factor)
        first_row = dict(zip(map(id, pieces), np.cumsum([0] + [len(piece.subgraphs) for piece in pieces[:-1]])))
        sizes = [len(piece.subgraphs) for piece, _ in items]
        rows = np.concatenate(
            [np.arange(first_row[id(piece)], first_row[id(piece)] + len(piece.subgraphs)) for piece, _ in items]
        )
        context_mb = np.repeat([context for _, context in items], sizes) if self.uses_context else None
        latency = self._latency_ms(batch.take(rows), context_mb)
        for (piece, context), total in zip(items, np.add.reduceat(latency, np.cumsum([0] + sizes[:-1]))):
            piece.latency_ms[context] = float(total)

    # ----- files ------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the model file(s) and ``metadata.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = {}
        for kind, booster in self.model.boosters.items():
            name = self.MODEL_FILE.format(suffix="" if kind == "*" else f"-{kind}")
            booster.save_model(directory / name)
            files[kind] = {"file": name, "sha256": _sha256(directory / name)}
        self.metadata = {
            **self.metadata,
            "prior": self.model.prior.to_dict(),
            "layout": self.model.layout,
            "loss": self.model.loss,
            "feature_names": list(self.model.feature_names),
            "overhead": self.overhead.to_dict(),
            "files": files,
        }
        (directory / self.META_FILE).write_text(json.dumps(self.metadata, indent=2, default=str) + "\n")
        logger.info("saved the %s estimator to %s", self.device, directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None, profile: dict | None = None) -> LatencyEstimator:
        """Load a saved estimator; ``device`` / ``profile``, when given, must match what it was trained for."""
        directory = Path(directory)
        metadata = _read_metadata(directory / cls.META_FILE, device)
        if device is not None and metadata["device"] != device:
            raise EstimatorError(
                f"{directory}: the estimator there is for device {metadata['device']!r}, not {device!r}; "
                f"build one with `edgenas latency profile --device {device}` and `edgenas latency train`"
            )
        if profile is not None and metadata["profile"] != profile:
            raise EstimatorError(
                f"{directory}: the estimator was trained for another profile of {metadata['device']!r} "
                f"(its P or settings have changed since); rebuild it"
            )
        try:
            prior = Prior(metadata["prior"]["form"], tuple(metadata["prior"]["coefficients"]))
            overhead = OverheadModel(**metadata["overhead"])
            boosters = {kind: _read_booster(directory, entry) for kind, entry in _files_of(metadata, directory).items()}
            names = tuple(metadata["feature_names"])
            loss = metadata.get("loss", "squared")  # saved before the loss was a choice: trained on squared error
            model = SubgraphModel(
                prior=prior, layout=metadata["layout"], boosters=boosters, feature_names=names, loss=loss
            )
            return cls(model=model, overhead=overhead, metadata=metadata)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise EstimatorError(f"{directory / cls.META_FILE}: corrupted estimator metadata ({exc!r})") from None


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block (back on after it, if it was on): decomposing 10,000 new
    architectures allocates millions of objects, and the collections they set off cost up to half the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _decompose_piece(key: tuple, arch: ArchConfig) -> _Piece:
    """The subgraphs of one stem / stage / head, from a network holding only it
    (a 1x1 relay stem brings the input to the piece's input shape)."""
    what, channels, size, config, divisor, activation = key
    relay = StemConfig(kernel=1, channels=channels, stride=1)
    no_head = HeadConfig(type="classification", channels=0, num_classes=arch.head.num_classes)
    parts = {
        "stem": {"input_channels": channels, "stem": config, "stages": (), "head": no_head},
        "stage": {"input_channels": 1, "stem": relay, "stages": (config,), "head": no_head},
        "head": {"input_channels": 1, "stem": relay, "stages": (), "head": config},
    }[what]
    holder = ArchConfig(resolution=size, channel_divisor=divisor, activation=activation, **parts)
    prefix = {"stem": "stem", "stage": "stages.", "head": "head."}[what]
    blocks = [block for block in plan_network(holder) if block.name.startswith(prefix)]
    subgraphs = [Subgraph.from_block(block, activation=activation) for block in blocks]
    out_channels, out_size, _ = subgraphs[-1].out_shape
    return _Piece(out_channels, out_size, subgraphs, weight_mb=weight_mb(subgraphs))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_metadata(path: Path, device: str | None) -> dict[str, Any]:
    if not path.is_file():
        what = f"for device {device!r} " if device else ""
        raise EstimatorError(
            f"{path.parent}: no latency estimator {what}here (no {path.name}); "
            f"build one with `edgenas latency profile` and `edgenas latency train`"
        )
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EstimatorError(f"{path}: corrupted estimator metadata ({' '.join(str(exc).split())})") from None
    required = ("format_version", "device", "profile", "parallelism_factor", "prior", "layout", "feature_names")
    missing = [key for key in (*required, "overhead", "files") if not isinstance(metadata, dict) or key not in metadata]
    if missing:
        raise EstimatorError(f"{path}: corrupted estimator metadata (missing {missing})")
    if metadata["format_version"] != FORMAT_VERSION:
        raise EstimatorError(
            f"{path}: estimator format {metadata['format_version']}, this edgenas reads {FORMAT_VERSION}"
        )
    return metadata


def _files_of(metadata: dict[str, Any], directory: Path) -> dict[str, dict[str, str]]:
    files = metadata["files"]
    single = metadata["layout"] == "single"
    if not isinstance(files, dict) or "*" not in files or (single and set(files) != {"*"}):
        raise EstimatorError(f"{directory / LatencyEstimator.META_FILE}: corrupted estimator metadata (model files)")
    return files


def _read_booster(directory: Path, entry: dict[str, str]) -> xgb.Booster:
    path = directory / entry["file"]
    if not path.is_file():
        raise EstimatorError(f"{path}: estimator model file is missing")
    if _sha256(path) != entry["sha256"]:
        raise EstimatorError(f"{path}: corrupted estimator model file (its checksum differs from metadata.json)")
    booster = xgb.Booster()
    try:
        booster.load_model(path)
    except xgb.core.XGBoostError as exc:
        raise EstimatorError(f"{path}: corrupted estimator model file ({str(exc).splitlines()[0]})") from None
    booster.set_param({"nthread": 1})
    return booster


def load_estimator(device: str, *, path: str | Path | None = None) -> LatencyEstimator:
    """The saved estimator of ``device`` from ``path`` (default: :func:`default_estimator_dir`);
    it must have been trained for this device as its profile stands now."""
    from latency_estimator.devices import get_device

    profile = get_device(device).profile.to_dict()
    return LatencyEstimator.load(path or default_estimator_dir(device), device=device, profile=profile)


# ----- training ---------------------------------------------------------------------------------------------------
def train_estimator(
    subgraphs: Sequence[Subgraph],
    latency_ms: np.ndarray,
    *,
    device_metadata: dict[str, Any],
    networks: Sequence[tuple[ArchConfig, float]] = (),
    network_weight_mb: np.ndarray | None = None,
    seed: int = 0,
) -> LatencyEstimator:
    """Train on measured subgraphs, then fit the overhead term on whole networks
    ``(arch, measured_ms)``; the prior, layout and loss are chosen on a held-out split.
    ``network_weight_mb`` (per subgraph, for subgraphs timed inside networks: the weight size of that network)
    makes it an estimator that :attr:`~LatencyEstimator.uses_context`."""
    parallelism_factor = int(device_metadata["profile"]["parallelism_factor"])
    batch = SubgraphBatch.of(subgraphs, parallelism_factor)
    if network_weight_mb is not None:
        batch = batch.with_context(network_weight_mb)
    latency_ms = np.asarray(latency_ms, dtype=float)
    candidates = compare_candidates(batch, latency_ms, seed=seed)
    kept = min(candidates, key=lambda name: candidates[name]["mape"])
    logger.info("held-out subgraph MAPE: %s; keeping %s", {k: round(v["mape"], 4) for k, v in candidates.items()}, kept)
    prior, layout, loss = kept.split("/")
    model = fit_subgraph_model(batch, latency_ms, prior=prior, layout=layout, loss=loss, seed=seed)
    training = {"rows": len(batch), "candidates": candidates, "networks": [arch.arch_id for arch, _ in networks]}
    estimator = LatencyEstimator(model=model, overhead=OverheadModel(), metadata=_metadata(device_metadata, training))
    if networks:
        estimator.overhead = fit_overhead(*network_sums(estimator, networks))
        logger.info("overhead term: %s", estimator.overhead)
    return estimator


def network_sums(
    estimator: LatencyEstimator, networks: Sequence[tuple[ArchConfig, float]]
) -> tuple[NetworkTotals, np.ndarray]:
    """What the overhead term is fitted on: the networks' summed subgraph predictions (with their subgraph counts and
    weight sizes), and their measured latencies."""
    decomposed = [decompose_arch(arch) for arch, _ in networks]
    totals = NetworkTotals.of(
        [estimator.subgraph_latency_ms(subgraphs).sum() for subgraphs in decomposed],
        [len(subgraphs) for subgraphs in decomposed],
        [weight_mb(subgraphs) for subgraphs in decomposed],
    )
    return totals, np.array([measured for _, measured in networks])


def _metadata(device_metadata: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "device": device_metadata["device"],
        "profile": device_metadata["profile"],
        "parallelism_factor": device_metadata["profile"]["parallelism_factor"],
        "target": "log(latency_ms / prior_ms)",
        "versions": {"xgboost": xgb.__version__, "numpy": np.__version__},
        "measured_on": {key: device_metadata.get(key) for key in ("cpu_model", "host", "platform", "versions")},
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "training": training,
    }
