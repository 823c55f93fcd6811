"""Build a ``torch.nn.Module`` from an ArchConfig, following its layer plan.

Each :class:`~search_spaces.plan.BlockPlan` becomes one module (conv+BN(+act)
per conv op, a residual add where the plan says so), so module names match
the plan and the latency estimator's subgraphs one to one.
"""

from __future__ import annotations

import torch
from torch import nn

from search_spaces.arch import ArchConfig
from search_spaces.plan import BlockPlan, OpSpec, plan_network

__all__ = ["Network", "build_block", "build_model"]

_ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU, "hardswish": nn.Hardswish}


class ConvBNAct(nn.Sequential):
    def __init__(self, op: OpSpec, activation: str) -> None:
        c_in, c_out = op.in_shape[0], op.out_shape[0]
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, op.kernel, op.stride, op.kernel // 2, groups=op.groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
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


def build_model(arch: ArchConfig) -> Network:
    return Network(arch)


def build_block(block: BlockPlan, activation: str = "relu6") -> nn.Module:
    """One fusion unit as a module (also used to measure a subgraph alone)."""
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
