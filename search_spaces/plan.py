"""The layer plan: an ArchConfig expanded into blocks of primitive ops.

This is the single description of a network's structure that the builder
(torch modules), the analytic counts (params, MACs, peak memory) and the
latency estimator's decomposition all read, so the three can never disagree.

A network is an ordered tuple of :class:`BlockPlan` (the stem, each repeated
block of each stage, the head conv, pooling, the classifier); a block holds
its primitive :class:`OpSpec` in execution order. Shapes are (C, H, W) at
batch 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.arch import ArchConfig, StageConfig, expanded_channels

__all__ = ["BlockPlan", "OpSpec", "plan_network"]

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class OpSpec:
    """One primitive op. ``kind`` is ``conv`` (conv+BN, act if ``activation``),
    ``pool`` (global average pooling) or ``linear`` (the classifier)."""

    name: str
    kind: str
    in_shape: Shape
    out_shape: Shape
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    activation: bool = False

    @property
    def macs(self) -> int:
        c_in, _, _ = self.in_shape
        c_out, h_out, w_out = self.out_shape
        if self.kind == "conv":
            return h_out * w_out * c_out * (c_in // self.groups) * self.kernel * self.kernel
        if self.kind == "linear":
            return c_in * c_out
        return 0

    @property
    def params(self) -> int:
        c_in, _, _ = self.in_shape
        c_out = self.out_shape[0]
        if self.kind == "conv":  # bias-free conv + BatchNorm weight and bias
            return c_out * (c_in // self.groups) * self.kernel * self.kernel + 2 * c_out
        if self.kind == "linear":
            return c_in * c_out + c_out
        return 0

    @property
    def is_depthwise(self) -> bool:
        return self.kind == "conv" and self.groups > 1 and self.groups == self.in_shape[0]


@dataclass(frozen=True)
class BlockPlan:
    """A fusion unit: ``stem``, ``ibn``, ``fused_ibn``, ``conv``, ``head_conv``,
    ``pool`` or ``classifier``. ``residual`` adds the block input to its output."""

    name: str
    kind: str
    ops: tuple[OpSpec, ...]
    residual: bool = False
    kernel: int = 1
    stride: int = 1
    expansion: float = 1.0

    @property
    def in_shape(self) -> Shape:
        return self.ops[0].in_shape

    @property
    def out_shape(self) -> Shape:
        return self.ops[-1].out_shape

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def params(self) -> int:
        return sum(op.params for op in self.ops)


def plan_network(arch: ArchConfig) -> tuple[BlockPlan, ...]:
    shape: Shape = (arch.input_channels, arch.resolution, arch.resolution)
    stem = _conv("stem", shape, arch.stem.channels, arch.stem.kernel, arch.stem.stride, activation=True)
    blocks = [BlockPlan("stem", "stem", (stem,), kernel=arch.stem.kernel, stride=arch.stem.stride)]
    shape = stem.out_shape
    for s, stage in enumerate(arch.stages):
        for r in range(stage.depth):
            block = _stage_block(f"stages.{s}.{r}", stage, shape, stage.stride if r == 0 else 1, arch.channel_divisor)
            blocks.append(block)
            shape = block.out_shape
    if arch.head.channels:
        head = _conv("head.conv", shape, arch.head.channels, 1, 1, activation=True)
        blocks.append(BlockPlan("head.conv", "head_conv", (head,)))
        shape = head.out_shape
    pool = OpSpec("head.pool", "pool", shape, (shape[0], 1, 1))
    blocks.append(BlockPlan("head.pool", "pool", (pool,)))
    classifier = OpSpec("head.classifier", "linear", (shape[0], 1, 1), (arch.head.num_classes, 1, 1))
    blocks.append(BlockPlan("head.classifier", "classifier", (classifier,)))
    return tuple(blocks)


def _stage_block(name: str, stage: StageConfig, shape: Shape, stride: int, channel_divisor: int) -> BlockPlan:
    c_in, k, c_out = shape[0], stage.kernel, stage.channels
    hidden = expanded_channels(c_in, stage.expansion, channel_divisor)
    if stage.block == "ibn":
        ops = []
        if stage.expansion != 1:  # MobileNetV2 drops the expand conv when e == 1
            ops.append(_conv(f"{name}.expand", shape, hidden, 1, 1, activation=True))
        else:
            hidden = c_in
        dw_in = ops[-1].out_shape if ops else shape
        ops.append(_conv(f"{name}.depthwise", dw_in, hidden, k, stride, groups=hidden, activation=True))
        ops.append(_conv(f"{name}.project", ops[-1].out_shape, c_out, 1, 1, activation=False))
    elif stage.block == "fused_ibn":
        full = _conv(f"{name}.fused", shape, hidden, k, stride, activation=True)
        ops = [full, _conv(f"{name}.project", full.out_shape, c_out, 1, 1, activation=False)]
    else:
        ops = [_conv(f"{name}.conv", shape, c_out, k, stride, activation=True)]
    residual = stride == 1 and c_in == c_out
    return BlockPlan(name, stage.block, tuple(ops), residual, kernel=k, stride=stride, expansion=stage.expansion)


def _conv(
    name: str, shape: Shape, c_out: int, kernel: int, stride: int, *, groups: int = 1, activation: bool
) -> OpSpec:
    c_in, h, w = shape
    out = (c_out, -(-h // stride), -(-w // stride))  # "same" padding: ceil(H / stride)
    return OpSpec(name, "conv", shape, out, kernel=kernel, stride=stride, groups=groups, activation=activation)
