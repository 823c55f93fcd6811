"""Build a ``torch.nn.Module`` from an ArchConfig, following its layer plan.

Each :class:`~search_spaces.plan.BlockPlan` becomes one module (conv+BN(+act)
per conv op, a residual add where the plan says so), so module names match
the plan and the latency estimator's subgraphs one to one.

A classification network returns N x num_classes logits. A dense network
(:class:`DenseNetwork`) runs its blocks in plan order, each on the outputs it
names, and returns ``(heatmap, box)`` for detection or the N x K x H x W
logits for segmentation (``search_spaces.dense_head``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.arch import ArchConfig
from search_spaces.dense_head import DenseHeadConfig
from search_spaces.plan import BlockPlan, OpSpec, block_sources, network_outputs, plan_network

__all__ = ["DenseNetwork", "Network", "build_block", "build_model"]

_ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU, "hardswish": nn.Hardswish}
# Initial heatmap bias: sigmoid(-2.19) = 0.1, CenterNet's prior; a 0.5 start floods the focal loss with negatives.
HEATMAP_PRIOR_BIAS = -2.19


class ConvBNAct(nn.Sequential):
    def __init__(self, op: OpSpec, activation: str) -> None:
        c_in, c_out = op.in_shape[0], op.out_shape[0]
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, op.kernel, op.stride, op.kernel // 2, groups=op.groups, bias=not op.batch_norm)
        ]
        if op.batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        if op.activation:
            layers.append(_ACTIVATIONS[activation]())
        super().__init__(*layers)


class Block(nn.Module):
    """A fusion unit: its ops in sequence, plus the input when ``residual``."""

    def __init__(self, block: BlockPlan, activation: str) -> None:
        super().__init__()
        self.residual = block.residual
        self.ops = nn.Sequential(*(_build_op(op, activation) for op in block.ops))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ops(x)
        return out + x if self.residual else out


class Network(nn.Module):
    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        blocks = plan_network(arch)
        self.features = nn.Sequential(*(build_block(b, arch.activation) for b in blocks[:-1]))
        self.dropout = nn.Dropout(arch.head.dropout)
        self.classifier = build_block(blocks[-1], arch.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # N x C x 1 x 1 after global pooling
        return self.classifier(self.dropout(x))


class Resize(nn.Module):
    """Bilinear resize to a fixed size (half-pixel centres, as ONNX Resize and TVM run it)."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.size = (height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


class Add(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class DenseNetwork(nn.Module):
    """Blocks in plan order, each fed the outputs its plan names; returns the plan's outputs."""

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        plan = plan_network(arch)
        self.blocks = nn.ModuleList(build_block(b, arch.activation) for b in plan)
        for block, module in zip(plan, self.blocks):
            if block.name == "head.heatmap":
                nn.init.constant_(module.ops[0][0].bias, HEATMAP_PRIOR_BIAS)
        self.sources = block_sources(plan)
        self.outputs = network_outputs(plan)
        # When each block's output may be dropped: after the last block that reads it (outputs never).
        last_read = {j: i for i, sources in enumerate(self.sources) for j in sources}
        self.free_after = [
            [j for j, i in last_read.items() if i == b and j not in self.outputs] for b in range(len(plan))
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        values: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks):
            values[i] = block(*(values[j] for j in self.sources[i])) if i else block(x)
            for j in self.free_after[i]:
                del values[j]
        outputs = tuple(values[i] for i in self.outputs)
        return outputs[0] if len(outputs) == 1 else outputs


def build_model(arch: ArchConfig) -> Network | DenseNetwork:
    return DenseNetwork(arch) if isinstance(arch.head, DenseHeadConfig) else Network(arch)


def build_block(block: BlockPlan, activation: str = "relu6") -> nn.Module:
    """One fusion unit as a module (also used to measure a subgraph alone)."""
    if block.kind == "resize":
        _, height, width = block.out_shape
        return Resize(height, width)
    if block.kind == "add":
        return Add()
    if block.kind == "pool":
        return nn.AdaptiveAvgPool2d(1)
    if block.kind == "classifier":
        (op,) = block.ops
        return nn.Sequential(nn.Flatten(), nn.Linear(op.in_shape[0], op.out_shape[0]))
    return Block(block, activation)


def _build_op(op: OpSpec, activation: str) -> nn.Module:
    if op.kind != "conv":
        raise ValueError(f"op {op.name}: kind {op.kind!r} cannot appear inside a conv block")
    return ConvBNAct(op, activation)
