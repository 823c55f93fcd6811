"""Subgraph: the unit of latency the regressor learns and devices measure.

A subgraph is one fusion unit of the runtime: conv+BN+activation, a whole
inverted bottleneck (IBN), a fused IBN, pooling, the classifier; in a dense
head a 1x1 conv without activation (``pointwise``: a neck's lateral, an output
conv), a depthwise-separable block, a bilinear resize, a feature-map add, a
concat. It carries its
shape (as plain numbers, for features) and its primitive ops (so that a device
can build or simulate it). Subgraphs come from an ArchConfig
(:func:`decompose_arch`, via the layer plan) or from an ONNX model
(:func:`latency_estimator.decompose_onnx.decompose_onnx`); both give the same
subgraphs for the same network.

Byte counts are at fp32 (4 B per element) with BatchNorm folded into the conv
(weights plus one bias per output channel): ``bytes_read`` is the input
activation(s) plus all weights, ``bytes_written`` the output activation, and
``bytes_intermediate`` the tensors passed between the ops inside the unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from latency_estimator.errors import EstimatorError
from search_spaces.arch import ArchConfig
from search_spaces.plan import BlockPlan, OpSpec, plan_network

__all__ = [
    "ACTIVATIONS",
    "CLASSIFICATION_KINDS",
    "DENSE_KINDS",
    "KINDS",
    "Subgraph",
    "decompose_arch",
    "padded_macs",
    "weight_count",
    "weight_mb",
]

# The kinds of a classification network; "eltwise" is a Mul/Sub/activation outside any unit (ONNX only).
CLASSIFICATION_KINDS = ("stem", "conv", "ibn", "fused_ibn", "head_conv", "pool", "classifier", "eltwise")
# The kinds a dense head adds: "pointwise" is a 1x1 conv without activation outside any block (a neck's lateral, a
# head's output conv), "separable" a KxK depthwise + 1x1 conv (both activated); "concat" occurs in ONNX models only.
DENSE_KINDS = ("pointwise", "separable", "resize", "add", "concat")
KINDS = CLASSIFICATION_KINDS + DENSE_KINDS
# Plan block kinds that are another subgraph kind (the same ops once BatchNorm is folded).
BLOCK_KINDS = {"lateral": "pointwise", "head_out": "pointwise"}
# Ops reading two maps of their input shape.
BINARY_OPS = ("eltwise", "add")
# Activation of a unit's activated convs; "none" when no op is activated.
ACTIVATIONS = ("relu6", "relu", "hardswish", "sigmoid", "swish", "none")
BYTES_PER_ELEMENT = 4  # fp32


@dataclass(frozen=True)
class Subgraph:
    name: str
    kind: str  # one of KINDS
    height: int  # input H
    width: int  # input W
    in_channels: int
    out_channels: int
    hidden_channels: int  # width between the first and the last op; out_channels for one-op units
    kernel: int  # largest kernel of the unit (the KxK of an IBN / fused IBN)
    stride: int
    groups: int  # groups of the spatial (largest-kernel) op: hidden_channels for a depthwise IBN
    expansion: float  # effective: hidden_channels / in_channels for (fused) IBN, else 1.0
    residual: bool
    macs: int
    bytes_read: int
    bytes_written: int
    ops: tuple[OpSpec, ...]
    activation: str = "relu6"  # one of ACTIVATIONS
    bytes_intermediate: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EstimatorError(f"Subgraph {self.name!r}: kind must be one of {list(KINDS)}, but got {self.kind!r}")
        if self.activation not in ACTIVATIONS:
            raise EstimatorError(
                f"Subgraph {self.name!r}: activation must be one of {list(ACTIVATIONS)}, but got {self.activation!r}"
            )
        if not self.ops:
            raise EstimatorError(f"Subgraph {self.name!r}: needs at least one op")

    # ----- shapes ---------------------------------------------------------
    @property
    def in_shape(self) -> tuple[int, int, int]:
        return self.ops[0].in_shape

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return self.ops[-1].out_shape

    @property
    def params(self) -> int:
        """Weights and biases with BatchNorm folded, as a deployed model holds them."""
        return sum(weight_count(op) for op in self.ops)

    @property
    def is_depthwise(self) -> bool:
        return any(op.is_depthwise for op in self.ops)

    def signature(self) -> tuple:
        """Everything that determines latency (not the name): equal signatures, equal measurements."""
        return (self.kind, self.activation, self.residual, tuple(_op_signature(op) for op in self.ops))

    # ----- features -------------------------------------------------------
    def features(self, parallelism_factor: int, *, kinds: tuple[str, ...] = KINDS) -> dict[str, float]:
        """Every numeric feature the regressor sees, in a stable key order.

        ``parallelism_factor`` (P) adds, for the input, hidden and output
        widths, ``C mod P`` (wasted lanes) and ``ceil(C / P)`` (lane groups),
        and ``macs_padded``: MACs with every channel count rounded up to P.
        ``kinds``: the kinds one-hot encoded (an estimator trained on classification networks alone has no
        column for the dense kinds, and keeps its features, and its predictions, as they were).
        """
        if parallelism_factor < 1:
            raise EstimatorError(f"`parallelism_factor >= 1` must hold, but got {parallelism_factor=}")
        out_c, out_h, out_w = self.out_shape
        moved = self.bytes_read + self.bytes_written + 2 * self.bytes_intermediate
        values: dict[str, float] = {
            "height": self.height,
            "width": self.width,
            "out_height": out_h,
            "out_width": out_w,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "hidden_channels": self.hidden_channels,
            "kernel": self.kernel,
            "stride": self.stride,
            "groups": self.groups,
            "expansion": self.expansion,
            "residual": float(self.residual),
            "depthwise": float(self.is_depthwise),
            "num_ops": len(self.ops),
            "macs": self.macs,
            "params": self.params,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "bytes_intermediate": self.bytes_intermediate,
            "arithmetic_intensity": self.macs / moved if moved else 0.0,
            "macs_padded": sum(padded_macs(op, parallelism_factor) for op in self.ops),
        }
        for label, channels in (("in", self.in_channels), ("hidden", self.hidden_channels), ("out", out_c)):
            values[f"{label}_channels_mod_p"] = channels % parallelism_factor
            values[f"{label}_channels_ceil_p"] = -(-channels // parallelism_factor)
        values.update({f"kind_{kind}": float(self.kind == kind) for kind in kinds})
        values.update({f"activation_{act}": float(self.activation == act) for act in ACTIVATIONS})
        return {key: float(value) for key, value in values.items()}

    # ----- construction ---------------------------------------------------
    @classmethod
    def from_block(cls, block: BlockPlan, *, activation: str = "relu6") -> Subgraph:
        """The subgraph of one block of the layer plan (``activation``: the arch's)."""
        kind = BLOCK_KINDS.get(block.kind, block.kind)
        return cls.from_ops(block.name, kind, block.ops, residual=block.residual, activation=activation)

    @classmethod
    def from_ops(
        cls, name: str, kind: str, ops: tuple[OpSpec, ...], *, residual: bool = False, activation: str = "relu6"
    ) -> Subgraph:
        """A subgraph from its ops in execution order; every derived number is computed here,
        so that decomposing an ArchConfig and an ONNX model agree by construction."""
        if not ops:
            raise EstimatorError(f"Subgraph {name!r}: needs at least one op")
        ops = tuple(ops)
        first, last = ops[0], ops[-1]
        spatial = max(ops, key=lambda op: op.kernel)  # first op with the largest kernel
        in_c, height, width = first.in_shape
        hidden = first.out_shape[0] if len(ops) > 1 else last.out_shape[0]
        n_inputs = 2 if kind in BINARY_OPS else 1  # a concat's op reads its output's size (in_shape: the first part)
        read = math.prod(last.out_shape) if kind == "concat" else n_inputs * math.prod(first.in_shape)
        return cls(
            name=name,
            kind=kind,
            height=height,
            width=width,
            in_channels=in_c,
            out_channels=last.out_shape[0],
            hidden_channels=hidden,
            kernel=spatial.kernel,
            stride=math.prod(op.stride for op in ops),
            groups=spatial.groups,
            expansion=hidden / in_c if kind in ("ibn", "fused_ibn") else 1.0,
            residual=residual,
            macs=sum(op.macs for op in ops),
            bytes_read=BYTES_PER_ELEMENT * (read + sum(weight_count(op) for op in ops)),
            bytes_written=BYTES_PER_ELEMENT * math.prod(last.out_shape),
            ops=ops,
            activation=activation if any(op.activation for op in ops) else "none",
            bytes_intermediate=BYTES_PER_ELEMENT * sum(math.prod(op.out_shape) for op in ops[:-1]),
        )


def decompose_arch(arch: ArchConfig) -> list[Subgraph]:
    """The network's subgraphs in execution order: stem, every block, then the head's units (head conv, pooling,
    classifier; or a dense head's laterals, resizes, adds, separable blocks and output convs). Which subgraphs each
    one reads: :func:`search_spaces.plan.block_sources` of the same plan."""
    return [Subgraph.from_block(block, activation=arch.activation) for block in plan_network(arch)]


def kinds_of(subgraphs) -> tuple[str, ...]:
    """The kinds to one-hot encode for these subgraphs: the classification kinds, and the dense ones too when any
    subgraph is of a dense kind."""
    return KINDS if any(sg.kind in DENSE_KINDS for sg in subgraphs) else CLASSIFICATION_KINDS


def weight_count(op: OpSpec) -> int:
    """Weights plus biases of one op once BatchNorm is folded into the conv."""
    c_in, c_out = op.in_shape[0], op.out_shape[0]
    if op.kind == "conv":
        return c_out * (c_in // op.groups) * op.kernel * op.kernel + c_out
    if op.kind == "linear":
        return c_in * c_out + c_out
    return 0


def weight_mb(subgraphs: list[Subgraph]) -> float:
    """MB of weights of these subgraphs as a deployed model holds them (fp32, BatchNorm folded)."""
    return sum(sg.params for sg in subgraphs) * BYTES_PER_ELEMENT / 1e6


def padded_macs(op: OpSpec, parallelism_factor: int) -> int:
    c_in, c_out, (_, h_out, w_out) = op.in_shape[0], op.out_shape[0], op.out_shape
    pad = lambda c: -(-c // parallelism_factor) * parallelism_factor  # noqa: E731
    if op.kind == "conv":  # a depthwise conv fills 1 of P input lanes: counted as P
        return h_out * w_out * pad(c_out) * pad(c_in // op.groups) * op.kernel * op.kernel
    if op.kind == "linear":
        return pad(c_in) * pad(c_out)
    return 0


def _op_signature(op: OpSpec) -> tuple:
    return (op.kind, op.in_shape, op.out_shape, op.kernel, op.stride, op.groups, op.activation)
