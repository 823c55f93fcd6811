"""The layer plan: an ArchConfig expanded into blocks of primitive ops.

This is the single description of a network's structure that the builder
(torch modules), the analytic counts (params, MACs, peak memory) and the
latency estimator's decomposition all read, so the three can never disagree.

A network is an ordered tuple of :class:`BlockPlan` (the stem, each repeated
block of each stage, the head conv, pooling, the classifier); a block holds
its primitive :class:`OpSpec` in execution order. Shapes are (C, H, W) at
batch 1.

A classification network is a chain: each block reads the one before it. A
dense head (``search_spaces.dense_head``) reads tapped stage outputs, so its
blocks name their ``inputs``; :func:`block_sources` resolves both cases and
:func:`network_outputs` lists the blocks whose outputs the network returns
(those no later block reads), in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.arch import ArchConfig, StageConfig, expanded_channels
from search_spaces.dense_head import DenseHeadConfig

__all__ = ["BlockPlan", "OpSpec", "block_sources", "network_outputs", "plan_network"]

Shape = tuple[int, int, int]


@dataclass(frozen=True)
class OpSpec:
    """One primitive op. ``kind`` is ``conv`` (conv+BN, act if ``activation``;
    conv with bias and no BN when not ``batch_norm``), ``pool`` (global average
    pooling), ``linear`` (the classifier), ``resize`` (bilinear, to
    ``out_shape``) or ``add`` (of two ``in_shape`` maps)."""

    name: str
    kind: str
    in_shape: Shape
    out_shape: Shape
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    activation: bool = False
    batch_norm: bool = True  # conv only: False for the dense heads' output convs (bias instead)

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
        if self.kind == "conv":  # bias-free conv + BatchNorm weight and bias, or conv + bias
            return c_out * (c_in // self.groups) * self.kernel * self.kernel + (2 if self.batch_norm else 1) * c_out
        if self.kind == "linear":
            return c_in * c_out + c_out
        return 0

    @property
    def is_depthwise(self) -> bool:
        return self.kind == "conv" and self.groups > 1 and self.groups == self.in_shape[0]


@dataclass(frozen=True)
class BlockPlan:
    """A fusion unit: ``stem``, ``ibn``, ``fused_ibn``, ``conv``, ``head_conv``,
    ``pool`` or ``classifier``; in a dense head ``lateral``, ``resize``, ``add``,
    ``separable`` or ``head_out``. ``residual`` adds the block input to its
    output; ``inputs`` names the blocks it reads (empty: the block before it)."""

    name: str
    kind: str
    ops: tuple[OpSpec, ...]
    residual: bool = False
    kernel: int = 1
    stride: int = 1
    expansion: float = 1.0
    inputs: tuple[str, ...] = ()

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
    if isinstance(arch.head, DenseHeadConfig):
        return tuple(blocks + _dense_head(arch, arch.head, {b.name: b for b in blocks}))
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
    name: str,
    shape: Shape,
    c_out: int,
    kernel: int,
    stride: int,
    *,
    groups: int = 1,
    activation: bool,
    batch_norm: bool = True,
) -> OpSpec:
    c_in, h, w = shape
    out = (c_out, -(-h // stride), -(-w // stride))  # "same" padding: ceil(H / stride)
    return OpSpec(
        name,
        "conv",
        shape,
        out,
        kernel=kernel,
        stride=stride,
        groups=groups,
        activation=activation,
        batch_norm=batch_norm,
    )


# ----- dense heads --------------------------------------------------


def _dense_head(arch: ArchConfig, head: DenseHeadConfig, backbone: dict[str, BlockPlan]) -> list[BlockPlan]:
    """The FPN neck, the separable tower and the outputs (``search_spaces.dense_head``), in execution order."""
    taps = [backbone[f"stages.{t}.{arch.stages[t].depth - 1}"] for t in head.taps]
    blocks = [_one_op_block(f"head.lateral.{len(taps) - 1}", "lateral", taps[-1], head.channels, 1, act=False)]
    current = blocks[-1]
    for i in reversed(range(len(taps) - 1)):  # top-down, coarsest first
        lateral = _one_op_block(f"head.lateral.{i}", "lateral", taps[i], head.channels, 1, act=False)
        blocks.append(lateral)
        if current.out_shape != lateral.out_shape:
            current = _resize(f"head.resize.{i}", current, lateral.out_shape)
            blocks.append(current)
        add = OpSpec(f"head.add.{i}", "add", lateral.out_shape, lateral.out_shape)
        current = BlockPlan(f"head.add.{i}", "add", (add,), inputs=(lateral.name, current.name))
        blocks.append(current)
    for r in range(head.depth):
        name, c = f"head.tower.{r}", head.channels
        dw = _conv(f"{name}.depthwise", current.out_shape, c, head.kernel, 1, groups=c, activation=True)
        pw = _conv(f"{name}.pointwise", dw.out_shape, c, 1, 1, activation=True)
        current = BlockPlan(name, "separable", (dw, pw), kernel=head.kernel, inputs=(current.name,))
        blocks.append(current)
    if head.type == "detection":
        return blocks + [
            _one_op_block("head.heatmap", "head_out", current, head.num_classes, 1, act=False, batch_norm=False),
            _one_op_block("head.box", "head_out", current, 4, 1, act=False, batch_norm=False),
        ]
    classes = _one_op_block("head.classes", "head_out", current, head.num_classes, 1, act=False, batch_norm=False)
    blocks.append(classes)
    full = (head.num_classes, arch.resolution, arch.resolution)
    return blocks + ([_resize("head.upsample", classes, full)] if classes.out_shape != full else [])


def _one_op_block(
    name: str, kind: str, source: BlockPlan, c_out: int, kernel: int, *, act: bool, batch_norm: bool = True
) -> BlockPlan:
    op = _conv(name, source.out_shape, c_out, kernel, 1, activation=act, batch_norm=batch_norm)
    return BlockPlan(name, kind, (op,), kernel=kernel, inputs=(source.name,))


def _resize(name: str, source: BlockPlan, shape: Shape) -> BlockPlan:
    op = OpSpec(name, "resize", source.out_shape, shape)
    return BlockPlan(name, "resize", (op,), inputs=(source.name,))


def block_sources(blocks: tuple[BlockPlan, ...]) -> list[tuple[int, ...]]:
    """For each block, the positions of the blocks it reads; () for the first (it reads the network input)."""
    position = {block.name: i for i, block in enumerate(blocks)}
    return [
        tuple(position[name] for name in block.inputs) if block.inputs else ((i - 1,) if i else ())
        for i, block in enumerate(blocks)
    ]


def network_outputs(blocks: tuple[BlockPlan, ...]) -> tuple[int, ...]:
    """Positions of the blocks no later block reads: what the network returns, in order."""
    read = {j for sources in block_sources(blocks) for j in sources}
    return tuple(i for i in range(len(blocks)) if i not in read)
