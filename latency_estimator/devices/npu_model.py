"""Cycle model of a simulated edge neural engine (roofline, layer by layer).

The engine runs one op at a time (batch 1, int8 by default):

* **MAC array**: ``out_lanes x in_lanes`` MACs per cycle: ``out_lanes`` output
  channels, each reducing ``in_lanes`` input channels, for one output pixel
  and one kernel tap per cycle. Channels are processed in whole lane groups,
  so a conv costs ``Ho*Wo * K*K * ceil(Cout/out_lanes) * ceil(Cin_g/in_lanes)``
  cycles: ``Cout = P + 1`` costs what ``2P`` costs (the staircase). A
  depthwise conv has one input channel per output channel, so only 1 of the
  ``in_lanes`` is busy: it costs as many cycles as a full conv with
  ``Cin = in_lanes``; a full conv keeps the array busy.
* **Vector unit** (pooling, residual add, elementwise, a dense head's
  feature-map add, concat and bilinear resize): ``out_lanes`` elements per
  cycle; a bilinear resize blends 4 input pixels per output element (4 passes),
  a concat copies its inputs (one pass). Activations are applied in the array's
  output pipeline (free). These ops do no MACs: an add or a concat is
  memory-bound whenever a tensor goes to or comes from DRAM; a resize's four
  passes over a 4x larger output can keep a narrow vector unit (P=16) busier
  than the DRAM.
* **Memory**: an activation lives in on-chip SRAM when it fits there together
  with what else must be live (the op's input, if on chip, and a residual
  block's input, held until its add); otherwise it is written to DRAM and read
  back by its consumer. Weights always stream from DRAM, once per op, through a
  double-buffered weight buffer apart from the activation SRAM: a network's
  weights (hundreds of KiB to MiB at int8) never fit next to its activations,
  so keeping some resident across inferences is not modelled. Tiling is
  perfect: each DRAM tensor is read once per consumer.
* **Roofline per op**: ``max(compute cycles, DRAM bytes / bytes per cycle)``
  plus a fixed per-op overhead (descriptor set-up, pipeline fill and drain).

A sequence of units is simulated with the network input read from DRAM and
the final output written to DRAM. A dense network is a graph (its head reads
tapped stages): a unit's output stays on chip only when the next unit alone
reads it; one read later or by several units (a tapped stage, a map both
output convs read) is written to DRAM and read back by each reader, and a
two-input op (add) reads its second operand from DRAM. An isolated subgraph is simulated alone, so
its input comes from and its output goes to DRAM; inside a whole network a
small activation stays on chip between units, so a network is faster than the
sum of its isolated parts unless its activations spill.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from latency_estimator.errors import DeviceError, EstimatorError
from latency_estimator.subgraph import Subgraph, weight_count
from search_spaces.plan import OpSpec

__all__ = ["NpuHardware", "OpCost", "compute_cycles", "simulate"]


@dataclass(frozen=True)
class NpuHardware:
    """The hardware description (a sim-npu profile's ``settings``)."""

    mac_array_out_lanes: int = 16  # output channels per cycle (the parallelism factor P)
    mac_array_in_lanes: int = 16  # input channels reduced per cycle per output channel
    clock_mhz: float = 800.0
    sram_kib: float = 128.0  # activation SRAM; weights have their own streaming buffer
    dram_bandwidth_gbps: float = 6.4  # GB/s, 1e9 bytes per second
    dtype_bytes: int = 1  # int8 activations and weights
    op_overhead_cycles: int = 256  # per op: descriptor set-up, pipeline fill and drain

    def __post_init__(self) -> None:
        for name in ("mac_array_out_lanes", "mac_array_in_lanes", "dtype_bytes"):
            if getattr(self, name) < 1:
                raise DeviceError(f"`{name} >= 1` must hold, but got {name}={getattr(self, name)}")
        for name in ("clock_mhz", "sram_kib", "dram_bandwidth_gbps"):
            if not getattr(self, name) > 0:
                raise DeviceError(f"`{name} > 0` must hold, but got {name}={getattr(self, name)}")
        if self.op_overhead_cycles < 0:
            raise DeviceError(f"`op_overhead_cycles >= 0` must hold, but got {self.op_overhead_cycles=}")

    @property
    def sram_bytes(self) -> float:
        return self.sram_kib * 1024

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.dram_bandwidth_gbps * 1e9 / (self.clock_mhz * 1e6)

    def cycles_to_ms(self, cycles: float) -> float:
        return cycles / (self.clock_mhz * 1e3)


@dataclass(frozen=True)
class OpCost:
    """One op's simulated cost; ``spilled``: its output went to DRAM."""

    name: str
    compute_cycles: int
    dram_bytes: int
    memory_cycles: float
    cycles: float  # max(compute, memory) + overhead
    spilled: bool

    @property
    def bound(self) -> str:
        return "memory" if self.memory_cycles > self.compute_cycles else "compute"


def compute_cycles(op: OpSpec, hw: NpuHardware) -> int:
    """Cycles the MAC array (conv, linear) or the vector unit (pool, eltwise) is busy."""
    out_c, out_h, out_w = op.out_shape
    in_c, in_h, in_w = op.in_shape
    groups_of = lambda c, lanes: -(-c // lanes)  # noqa: E731
    if op.kind == "conv" and op.is_depthwise:  # one input lane busy per output channel
        return out_h * out_w * op.kernel**2 * groups_of(out_c, hw.mac_array_out_lanes)
    if op.kind == "conv":
        per_group = groups_of(out_c // op.groups, hw.mac_array_out_lanes) * groups_of(
            in_c // op.groups, hw.mac_array_in_lanes
        )
        return out_h * out_w * op.kernel**2 * op.groups * per_group
    if op.kind == "linear":
        return groups_of(out_c, hw.mac_array_out_lanes) * groups_of(in_c, hw.mac_array_in_lanes)
    if op.kind == "pool":
        global_pool = (out_h, out_w) == (1, 1) and op.kernel == 1
        window = in_h * in_w if global_pool else out_h * out_w * op.kernel**2
        return groups_of(in_c, hw.mac_array_out_lanes) * window
    if op.kind in ("eltwise", "add", "concat"):
        return groups_of(out_c, hw.mac_array_out_lanes) * out_h * out_w
    if op.kind == "resize":  # bilinear: 4 input pixels blended per output element
        return 4 * groups_of(out_c, hw.mac_array_out_lanes) * out_h * out_w
    raise EstimatorError(
        f"sim-npu: op {op.name!r} has kind {op.kind!r}, allowed conv, linear, pool, eltwise, add, concat, resize"
    )


def simulate(
    units: Sequence[Subgraph], hw: NpuHardware, *, sources: Sequence[tuple[int, ...]] | None = None
) -> list[OpCost]:
    """Run ``units`` in order, input from DRAM, final output(s) to DRAM; one cost per op. ``sources``: the
    positions of the units each one reads (``search_spaces.plan.block_sources``); default a chain."""
    sources = sources or [((u - 1,) if u else ()) for u in range(len(units))]
    readers: dict[int, list[int]] = {}
    for u, read in enumerate(sources):
        for j in read:
            readers.setdefault(j, []).append(u)
    costs: list[OpCost] = []
    state = _State(input_on_chip=False)
    for u, unit in enumerate(units):
        state.input_on_chip = state.input_on_chip and (u - 1) in sources[u]  # else its input comes from DRAM
        held = _Held(_size(unit.in_shape, hw), state.input_on_chip) if unit.residual else None
        stays = readers.get(u) == [u + 1]  # only the next unit reads it: it may stay on chip
        for i, op in enumerate(unit.ops):
            first, last = i == 0, i == len(unit.ops) - 1
            final = last and not stays
            costs.append(_run_op(op, hw, state, held=held, first_in_unit=first, add=last and held, final=final))
    return costs


@dataclass
class _State:
    input_on_chip: bool  # where the next op's input activation lives


@dataclass
class _Held:
    """A residual block's input, live until the block's add."""

    bytes: int
    on_chip: bool


def _run_op(op: OpSpec, hw: NpuHardware, state: _State, *, held, first_in_unit, add, final) -> OpCost:
    in_bytes, out_bytes = _size(op.in_shape, hw), _size(op.out_shape, hw)
    dram = weight_count(op) * hw.dtype_bytes + (0 if state.input_on_chip else in_bytes)
    if op.kind in ("eltwise", "add"):  # the second operand of a standalone add/mul comes from DRAM
        dram += in_bytes
    if op.kind == "concat":  # a concat reads all its parts: its output's size, the first part on chip or not
        dram += out_bytes - in_bytes
    live_in = in_bytes if state.input_on_chip else 0
    held_bytes = held.bytes if held and held.on_chip and not first_in_unit else 0
    if held_bytes and live_in + out_bytes + held_bytes > hw.sram_bytes:  # evict the residual to DRAM
        dram += held.bytes
        held.on_chip, held_bytes = False, 0
    cycles = compute_cycles(op, hw)
    if add:  # residual add in the output pipeline: read the held input, one vector pass
        dram += 0 if held.on_chip else held.bytes
        cycles += math.ceil(op.out_shape[0] / hw.mac_array_out_lanes) * op.out_shape[1] * op.out_shape[2]
    spilled = final or live_in + out_bytes + held_bytes > hw.sram_bytes
    dram += out_bytes if spilled else 0
    state.input_on_chip = not spilled
    memory = dram / hw.dram_bytes_per_cycle
    total = max(cycles, memory) + hw.op_overhead_cycles
    return OpCost(op.name, cycles, dram, memory, total, spilled)


def _size(shape: tuple[int, int, int], hw: NpuHardware) -> int:
    return math.prod(shape) * hw.dtype_bytes
