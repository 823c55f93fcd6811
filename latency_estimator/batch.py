"""What the model sees: subgraphs as arrays of features (``Subgraph.features(P)``), with per-op work for the prior.

Subgraphs timed inside whole networks (cpu-ort) also see the fp32 weight size of their network, in 4 MB bins
(:data:`CONTEXT_FEATURE`): on a CPU a layer's weights come from the caches or from memory depending on the whole
network's weights, and the same subgraph then runs at two speeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latency_estimator.errors import EstimatorError
from latency_estimator.subgraph import BINARY_OPS, BYTES_PER_ELEMENT, Subgraph, kinds_of, padded_macs, weight_count

__all__ = [
    "CONTEXT_BIN_MB",
    "CONTEXT_FEATURE",
    "SubgraphBatch",
    "network_context",
]


# Subgraphs timed inside whole networks also see the fp32 weight size of the network around them, in bins (the name
# says which: another binning is another feature, and an estimator trained on one refuses the other).
CONTEXT_BIN_MB = 4.0
CONTEXT_FEATURE = f"network_weight_mb_{CONTEXT_BIN_MB:g}mb_bins"


def network_context(weight_mb: float | np.ndarray) -> float | np.ndarray:
    """The context feature of a network of ``weight_mb`` MB of fp32 weights: the middle of its bin."""
    return (np.floor(np.asarray(weight_mb) / CONTEXT_BIN_MB) + 0.5) * CONTEXT_BIN_MB


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
    def of(
        cls, subgraphs: Sequence[Subgraph], parallelism_factor: int, *, kinds: tuple[str, ...] | None = None
    ) -> SubgraphBatch:
        """``kinds``: the kinds one-hot encoded (default :func:`~latency_estimator.subgraph.kinds_of` them)."""
        if not subgraphs:
            raise EstimatorError("no subgraphs to predict")
        kinds = kinds_of(subgraphs) if kinds is None else kinds
        rows = [sg.features(parallelism_factor, kinds=kinds) for sg in subgraphs]
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
    inputs = 2 if op.kind in BINARY_OPS else 1
    read = math.prod(op.out_shape) if op.kind == "concat" else inputs * math.prod(op.in_shape)
    moved = BYTES_PER_ELEMENT * (read + weight_count(op) + math.prod(op.out_shape))
    return padded_macs(op, parallelism_factor), moved
