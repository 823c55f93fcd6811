"""Analytic counts of an ArchConfig: params, MACs and peak activation memory.

Peak activation memory is at batch 1, for inference with conv+BN+act fused
(the BN and activation run in place): the largest sum of tensors alive at once
while an op runs, i.e. its input(s), its output, the block input kept for a
residual add and, in a dense network, every earlier block output that a later
block still reads (tapped stage outputs, the neck's running map) or that the
network returns. Weights are not activations and are not counted. Resizes and
feature-map adds count no MACs.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.arch import ArchConfig
from search_spaces.plan import BlockPlan, OpSpec, block_sources, network_outputs, plan_network

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
    blocks = plan_network(arch)
    sources = block_sources(blocks)
    last_read = _last_read(blocks, sources)
    layers = []
    for b, block in enumerate(blocks):
        alive = {j for j in range(b) if last_read[j] > b}  # read again after this block
        others = sum(_numel(blocks[j].out_shape) for j in alive - set(sources[b]))
        # From the second op on, the block's inputs are no op's input, but stay alive for a residual or a later reader.
        inputs_kept = sum(_numel(blocks[j].out_shape) for j in sources[b] if j in alive or block.residual)
        for i, op in enumerate(block.ops):
            reads = _numel(op.in_shape) * (len(sources[b]) if block.kind == "add" else 1)
            live = reads + _numel(op.out_shape) + others + (inputs_kept if i > 0 else 0)
            layers.append(_layer(op, live * dtype_bytes, dtype_bytes))
    return ArchCounts(layers=tuple(layers), dtype_bytes=dtype_bytes)


def _last_read(blocks: tuple[BlockPlan, ...], sources: list[tuple[int, ...]]) -> list[int]:
    """Position of the last block reading each block's output; the network's outputs live to the end."""
    last = list(range(len(blocks)))
    for b, reads in enumerate(sources):
        for j in reads:
            last[j] = max(last[j], b)
    for j in network_outputs(blocks):
        last[j] = len(blocks)
    return last


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
