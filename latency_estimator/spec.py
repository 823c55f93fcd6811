"""One subgraph configuration to profile (:class:`SubgraphSpec`): the row a measurement is stored under."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from latency_estimator.errors import EstimatorError
from latency_estimator.subgraph import BLOCK_KINDS, Subgraph
from search_spaces import ArchConfig, HeadConfig, StageConfig, StemConfig, plan_network
from search_spaces.plan import BlockPlan, OpSpec

__all__ = [
    "BLOCK_NAME",
    "DENSE_PROFILED_KINDS",
    "PROFILED_KINDS",
    "SPEC_FIELDS",
    "STAGE_KINDS",
    "SubgraphSpec",
]


# A dense head's units are built from their ops directly (no one-block ArchConfig holds them alone).
DENSE_PROFILED_KINDS = ("pointwise", "separable", "resize", "add")
PROFILED_KINDS = ("stem", "conv", "ibn", "fused_ibn", "head_conv", "pool", "classifier", *DENSE_PROFILED_KINDS)
# The block of a SubgraphSpec's one-block network that is the subgraph itself.
BLOCK_NAME = {"stem": "stem", "head_conv": "head.conv", "pool": "head.pool", "classifier": "head.classifier"}
STAGE_KINDS = ("conv", "ibn", "fused_ibn")


@dataclass(frozen=True)
class SubgraphSpec:
    """One subgraph configuration: enough to rebuild the :class:`Subgraph` and
    nothing more. ``resolution`` is the input H = W; ``out_channels`` is the
    class count for ``classifier`` and equals ``in_channels`` for ``pool``,
    ``separable``, ``resize`` and ``add``; a ``resize``'s ``expansion`` is its
    scale (output H / input H). A dense kind's ``activation`` is ``none`` but
    for ``separable``."""

    kind: str
    resolution: int
    in_channels: int
    out_channels: int
    kernel: int = 1
    stride: int = 1
    expansion: float = 1.0
    divisor: int = 1  # the arch's channel_divisor: hidden widths are rounded up to it
    activation: str = "relu6"

    @property
    def key(self) -> str:
        return "|".join(str(value) for value in dataclasses.astuple(self))

    @property
    def stratum(self) -> tuple[str, int]:
        return (self.kind, self.resolution)

    def network(self) -> ArchConfig:
        """The smallest network holding this subgraph (its stem is a 1x1 conv to ``in_channels``); not for the
        dense kinds (:meth:`subgraph` builds them from their ops)."""
        if self.kind in DENSE_PROFILED_KINDS:
            raise EstimatorError(f"a {self.kind} subgraph has no one-block network; build it with subgraph()")
        relay = StemConfig(kernel=1, channels=self.in_channels, stride=1)
        stem, stages, head_channels, classes = relay, (), 0, 10
        if self.kind == "stem":
            stem = StemConfig(kernel=self.kernel, channels=self.out_channels, stride=self.stride)
        elif self.kind in STAGE_KINDS:
            stage = StageConfig(self.kind, self.kernel, self.expansion, self.out_channels, 1, self.stride)
            stages = (stage,)
        elif self.kind == "head_conv":
            head_channels = self.out_channels
        elif self.kind == "classifier":
            classes = self.out_channels
        elif self.kind != "pool":
            raise EstimatorError(f"cannot profile subgraph kind {self.kind!r}, allowed {list(PROFILED_KINDS)}")
        return ArchConfig(
            input_channels=self.in_channels if self.kind == "stem" else 1,
            resolution=self.resolution,
            channel_divisor=self.divisor,
            activation=self.activation,
            stem=stem,
            stages=stages,
            head=HeadConfig(type="classification", channels=head_channels, num_classes=classes),
        )

    def subgraph(self) -> Subgraph:
        if self.kind in DENSE_PROFILED_KINDS:
            return Subgraph.from_ops(self.kind, self.kind, self._dense_ops(), activation=self.activation)
        name = BLOCK_NAME.get(self.kind, "stages.0.0")
        block = next(block for block in plan_network(self.network()) if block.name == name)
        return Subgraph.from_block(block, activation=self.activation)

    def _dense_ops(self) -> tuple[OpSpec, ...]:
        """The ops of a dense unit, as ``search_spaces.plan`` lays them out (stride 1, "same" padding)."""
        shape = (self.in_channels, self.resolution, self.resolution)
        out = (self.out_channels, self.resolution, self.resolution)
        if self.kind == "pointwise":
            return (OpSpec("pointwise", "conv", shape, out),)
        if self.kind == "separable":
            c, k = self.in_channels, self.kernel
            depthwise = OpSpec("separable.depthwise", "conv", shape, shape, kernel=k, groups=c, activation=True)
            return depthwise, OpSpec("separable.pointwise", "conv", shape, shape, activation=True)
        if self.kind == "resize":
            size = round(self.resolution * self.expansion)
            return (OpSpec("resize", "resize", shape, (self.in_channels, size, size)),)
        return (OpSpec("add", "add", shape, shape),)

    @classmethod
    def from_block(cls, block: BlockPlan, arch: ArchConfig) -> SubgraphSpec:
        c_in, height, _ = block.in_shape
        kind = BLOCK_KINDS.get(block.kind, block.kind)
        if kind in DENSE_PROFILED_KINDS:
            return cls._from_dense_block(block, kind, arch)
        return cls(
            kind=block.kind,
            resolution=height,
            in_channels=c_in,
            out_channels=block.out_shape[0],
            kernel=block.kernel,
            stride=block.stride,
            expansion=float(block.expansion) if block.kind in STAGE_KINDS else 1.0,
            divisor=arch.channel_divisor if block.kind in STAGE_KINDS else 1,
            activation=arch.activation,
        )

    @classmethod
    def _from_dense_block(cls, block: BlockPlan, kind: str, arch: ArchConfig) -> SubgraphSpec:
        c_in, height, _ = block.in_shape
        c_out, out_height, _ = block.out_shape
        return cls(
            kind=kind,
            resolution=height,
            in_channels=c_in,
            out_channels=c_out,
            kernel=block.kernel if kind == "separable" else 1,
            expansion=out_height / height if kind == "resize" else 1.0,
            activation=arch.activation if kind == "separable" else "none",
        )

    def to_row(self) -> dict[str, str]:
        return {key: str(value) for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_row(cls, row: dict[str, str]) -> SubgraphSpec:
        types = {field.name: field.type for field in dataclasses.fields(cls)}
        convert = {"int": int, "float": float, "str": str}
        return cls(**{name: convert[kind](row[name]) for name, kind in types.items()})


SPEC_FIELDS = tuple(field.name for field in dataclasses.fields(SubgraphSpec))
