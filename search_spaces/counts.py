"""Analytic counts of an ArchConfig: params, MACs and peak activation memory.

Peak activation memory is at batch 1, for inference with conv+BN+act fused
(the BN and activation run in place): the largest sum of tensors alive at once
while an op runs, i.e. its input, its output and the block input kept for a
residual add. Weights are not activations and are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.arch import ArchConfig
from search_spaces.plan import OpSpec, plan_network

__all__ = ["ArchCounts", "LayerCount", "count_arch"]


@dataclass(frozen=True)
class LayerCount:
    name: str
    kind: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    macs: int
    params: int
    activation_bytes: int  # the op's output tensor
    live_bytes: int  # everything alive while the op runs


@dataclass(frozen=True)
class ArchCounts:
    layers: tuple[LayerCount, ...]
    dtype_bytes: int

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def peak_activation_bytes(self) -> int:
        return max(layer.live_bytes for layer in self.layers)

    @property
    def peak_layer(self) -> str:
        return max(self.layers, key=lambda layer: layer.live_bytes).name


def count_arch(arch: ArchConfig, *, dtype_bytes: int = 4) -> ArchCounts:
    """Per-layer and total counts; ``dtype_bytes`` is 4 for float32, 1 for int8."""
    layers = []
    for block in plan_network(arch):
        kept = _numel(block.in_shape) if block.residual else 0  # block input held for the add
        for i, op in enumerate(block.ops):
            held = kept if i > 0 else 0  # the first op's input *is* the block input
            live = _numel(op.in_shape) + _numel(op.out_shape) + held
            layers.append(_layer(op, live * dtype_bytes, dtype_bytes))
    return ArchCounts(layers=tuple(layers), dtype_bytes=dtype_bytes)


def _layer(op: OpSpec, live_bytes: int, dtype_bytes: int) -> LayerCount:
    return LayerCount(
        name=op.name,
        kind="dwconv" if op.is_depthwise else op.kind,
        in_shape=op.in_shape,
        out_shape=op.out_shape,
        macs=op.macs,
        params=op.params,
        activation_bytes=_numel(op.out_shape) * dtype_bytes,
        live_bytes=live_bytes,
    )


def _numel(shape: tuple[int, int, int]) -> int:
    c, h, w = shape
    return c * h * w
