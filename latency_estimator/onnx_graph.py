"""Build ONNX graphs of subgraphs and whole networks directly from their ops.

Devices that run ONNX (ONNX Runtime, TVM) measure these graphs. They are
written with ``onnx.helper`` in milliseconds, with random weights, instead of
exporting a torch module for every measurement, and they have the structure of
a BatchNorm-folded torch export of the same network (what ``deploy`` ships)::

    conv op     Conv(x, W, B) [-> Clip(0, 6) | Relu | HardSwish | Sigmoid | Sigmoid+Mul]
    residual    Add(block output, block input)
    pool        GlobalAveragePool (AveragePool for a windowed pool)
    classifier  Flatten -> Gemm(x, W, B, transB=1)
    eltwise     Add(a, b)
    add         Add(a, b)                      (a dense head's feature-map add)
    resize      Resize(x, sizes, linear, half_pixel)   (torch's bilinear, align_corners=False)
    concat      Concat(a, b, axis=1)

A dense network is a graph (its head reads tapped stages, an add two maps): each unit reads the outputs its plan
names (``search_spaces.plan.block_sources``), and the outputs no unit reads are the graph's outputs. Alone, a
two-input unit gets its second operand as a constant. The graph input is ``input`` (1, C, H, W) and the output
``output`` (of a graph, ``<subgraph name>.output`` each).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from latency_estimator.errors import EstimatorError
from latency_estimator.subgraph import Subgraph, decompose_arch
from search_spaces.arch import ArchConfig
from search_spaces.plan import OpSpec, block_sources, plan_network

__all__ = ["OPSET", "arch_model", "network_model", "subgraph_model"]

OPSET = 17  # HardSwish needs 14; 17 is what torch exports and TVM's Relax frontend reads
INPUT, OUTPUT = "input", "output"


def subgraph_model(subgraph: Subgraph, *, seed: int = 0) -> onnx.ModelProto:
    """One subgraph alone: input ``(1, *subgraph.in_shape)``."""
    return network_model([subgraph], seed=seed, name=subgraph.name)


def arch_model(arch: ArchConfig, *, seed: int = 0) -> onnx.ModelProto:
    """The whole network of ``arch``: logits ``(1, num_classes)``, or a dense head's output map(s)."""
    sources = block_sources(plan_network(arch))
    return network_model(decompose_arch(arch), seed=seed, name=f"edgenas-{arch.arch_id}", sources=sources)


def network_model(
    subgraphs: Sequence[Subgraph],
    *,
    seed: int = 0,
    name: str = "edgenas",
    sources: Sequence[tuple[int, ...]] | None = None,
) -> onnx.ModelProto:
    """Subgraphs in order, each reading the outputs of the subgraphs at its ``sources`` positions (default: a
    chain, each one's output the next one's input); the outputs no subgraph reads are the graph's outputs."""
    if not subgraphs:
        raise EstimatorError("network_model: needs at least one subgraph")
    sources = sources or [((i - 1,) if i else ()) for i in range(len(subgraphs))]
    builder = _GraphBuilder(np.random.default_rng(seed))
    values: list[str] = []
    for subgraph, read in zip(subgraphs, sources, strict=True):
        values.append(builder.unit(subgraph, *([values[j] for j in read] if read else [INPUT])))
    read_by_any = {j for read in sources for j in read}
    outputs = [i for i in range(len(subgraphs)) if i not in read_by_any]
    chain = all(read == ((i - 1,) if i else ()) for i, read in enumerate(sources))
    # A graph's outputs are named after their subgraph (ORT names a node it adds at an output after the output).
    names = [OUTPUT] if chain else [f"{subgraphs[i].name}.{OUTPUT}" for i in outputs]
    for i, output in zip(outputs, names):
        builder.rename_output(values[i], output)
    out_dims = [
        [1, subgraphs[i].out_shape[0]] if subgraphs[i].kind == "classifier" else [1, *subgraphs[i].out_shape]
        for i in outputs
    ]
    graph = helper.make_graph(
        builder.nodes,
        name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, *subgraphs[0].in_shape])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in zip(names, out_dims)],
        initializer=builder.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgenas")
    model.ir_version = 8  # readable by every onnxruntime and TVM release we support
    return model


class _GraphBuilder:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def rename_output(self, old: str, new: str) -> None:
        for node in self.nodes:
            node.input[:] = [new if name == old else name for name in node.input]
            node.output[:] = [new if name == old else name for name in node.output]

    def unit(self, subgraph: Subgraph, x: str, *others: str) -> str:
        """The unit's nodes on input ``x`` (and, for an add, the second operand ``others[0]``)."""
        unit_input = x
        if subgraph.kind in ("eltwise", "add", "concat"):
            return self._binary(subgraph, x, others[0] if others else None)
        if subgraph.kind == "resize":
            sizes = self._constant(f"{subgraph.name}.sizes", np.array([1, *subgraph.out_shape]), dtype=np.int64)
            attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
            return self._node("Resize", [x, "", "", sizes], subgraph.name, **attrs)
        for op in subgraph.ops:
            x = self.op(op, x, subgraph.activation)
        if subgraph.residual:
            x = self._node("Add", [x, unit_input], f"{subgraph.name}.add")
        return x

    def _binary(self, subgraph: Subgraph, x: str, other: str | None) -> str:
        if subgraph.kind == "concat":
            c_in, c_out = subgraph.in_shape[0], subgraph.out_shape[0]
            rest = (1, c_out - c_in, *subgraph.out_shape[1:])
            other = other or self._constant(f"{subgraph.name}.other", self.rng.standard_normal(rest))
            return self._node("Concat", [x, other], subgraph.name, axis=1)
        other = other or self._constant(f"{subgraph.name}.other", self.rng.standard_normal((1, *subgraph.in_shape)))
        return self._node("Add", [x, other], subgraph.name)

    def op(self, op: OpSpec, x: str, activation: str) -> str:
        if op.kind == "conv":
            x = self._conv(op, x)
            return self._activation(activation, x, op.name) if op.activation else x
        if op.kind == "pool":
            return self._pool(op, x)
        if op.kind == "linear":
            flat = self._node("Flatten", [x], f"{op.name}.flatten", axis=1)
            c_in, c_out = op.in_shape[0], op.out_shape[0]
            weight = self._constant(f"{op.name}.weight", self._weights((c_out, c_in), fan_in=c_in))
            bias = self._constant(f"{op.name}.bias", np.zeros(c_out))
            return self._node("Gemm", [flat, weight, bias], op.name, transB=1)
        raise EstimatorError(f"cannot build ONNX for op {op.name!r} of kind {op.kind!r} (allowed conv, pool, linear)")

    def _conv(self, op: OpSpec, x: str) -> str:
        c_in, c_out, k = op.in_shape[0], op.out_shape[0], op.kernel
        shape = (c_out, c_in // op.groups, k, k)
        weight = self._constant(f"{op.name}.weight", self._weights(shape, fan_in=math.prod(shape[1:])))
        bias = self._constant(f"{op.name}.bias", 0.01 * self.rng.standard_normal(c_out))
        attrs = {"kernel_shape": [k, k], "strides": [op.stride] * 2, "pads": [k // 2] * 4, "group": op.groups}
        return self._node("Conv", [x, weight, bias], op.name, **attrs)

    def _pool(self, op: OpSpec, x: str) -> str:
        if op.out_shape[1:] == (1, 1) and op.kernel == 1:
            return self._node("GlobalAveragePool", [x], op.name)
        k = op.kernel
        attrs = {"kernel_shape": [k, k], "strides": [op.stride] * 2, "pads": [k // 2] * 4}
        return self._node("AveragePool", [x], op.name, **attrs)

    def _activation(self, activation: str, x: str, name: str) -> str:
        if activation == "relu6":
            low, high = self._constant(f"{name}.min", np.float32(0.0)), self._constant(f"{name}.max", np.float32(6.0))
            return self._node("Clip", [x, low, high], f"{name}.act")
        if activation == "swish":
            gate = self._node("Sigmoid", [x], f"{name}.sigmoid")
            return self._node("Mul", [x, gate], f"{name}.act")
        ops = {"relu": "Relu", "hardswish": "HardSwish", "sigmoid": "Sigmoid"}
        if activation not in ops:
            raise EstimatorError(f"cannot build ONNX for activation {activation!r} of op {name!r}")
        return self._node(ops[activation], [x], f"{name}.act")

    def _weights(self, shape: tuple[int, ...], *, fan_in: int) -> np.ndarray:
        return self.rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)  # He init keeps activations O(1)

    def _constant(self, name: str, value: np.ndarray | np.floating, *, dtype=np.float32) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def _node(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name
