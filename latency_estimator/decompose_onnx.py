"""Decompose an ONNX model into subgraphs at the runtime's fusion granularity.

Shapes come from ``onnx.shape_inference`` (the model needs a fixed input
size). The graph is read in its (topological) node order:

* every Conv becomes a conv unit together with a BatchNormalization and an
  activation that follow it alone (Relu, Clip, HardSwish, Sigmoid, and the
  Sigmoid+Mul / HardSigmoid+Mul forms of swish / hard-swish);
* conv units chained one-to-one are matched as blocks: IBN (1x1 expand ->
  depthwise -> 1x1 project without activation), IBN without expansion
  (depthwise -> 1x1 project), fused IBN (full KxK conv -> 1x1 project); an Add
  of the block output and the block input is its residual;
* the conv reading the graph input is the ``stem``, a 1x1 conv feeding a
  pooling op the ``head_conv``, any other conv a ``conv``;
* GlobalAveragePool, AveragePool, MaxPool and a spatial ReduceMean are
  ``pool``; Gemm and MatMul (with a bias Add) are the ``classifier``;
* an Add, Mul, Sub, Div, Concat, BatchNormalization or activation outside any
  unit is an ``eltwise`` subgraph;
* Flatten, Reshape, Squeeze, Unsqueeze, Identity and Dropout are free (views),
  and constant or shape computations are folded away.

Anything else raises :class:`EstimatorError` naming the operator and the node.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import numpy_helper

from deploy.onnx_file import read_onnx
from latency_estimator.errors import EstimatorError
from latency_estimator.subgraph import Subgraph
from search_spaces.errors import one_line
from search_spaces.plan import OpSpec

__all__ = ["SUPPORTED_OPERATORS", "decompose_onnx"]

ACTIVATION_OPS = {"Relu": "relu", "Clip": "relu6", "HardSwish": "hardswish", "Sigmoid": "sigmoid"}
GATED_ACTIVATIONS = {"Sigmoid": "swish", "HardSigmoid": "hardswish"}  # x * gate(x)
POOL_OPS = ("GlobalAveragePool", "AveragePool", "MaxPool", "ReduceMean")
LINEAR_OPS = ("Gemm", "MatMul")
RESIZE_OPS = ("Resize", "Upsample")
ELTWISE_OPS = ("Add", "Mul", "Sub", "Div", "BatchNormalization", "Softmax", "LogSoftmax", "HardSigmoid")
ELTWISE_OPS += tuple(ACTIVATION_OPS)
VIEW_OPS = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout")
STATIC_OPS = ("Constant", "Shape", "ConstantOfShape", "Size")
SUPPORTED_OPERATORS = tuple(
    sorted({"Conv", "Concat", *RESIZE_OPS, *POOL_OPS, *LINEAR_OPS, *ELTWISE_OPS, *VIEW_OPS, *STATIC_OPS})
)


def decompose_onnx(model: onnx.ModelProto | str | Path) -> list[Subgraph]:
    """The model's subgraphs in execution order (see the module docstring)."""
    graph = _Graph.load(model)
    convs = {unit.nodes[0]: unit for unit in _conv_units(graph)}
    subgraphs: list[Subgraph] = []
    for index, node in enumerate(graph.nodes):
        if index in graph.claimed or graph.is_free(index):
            continue  # already inside a unit, a view, or constant-folded
        if index in convs:
            subgraphs.append(_conv_block(graph, convs, convs[index]))
        elif node.op_type in POOL_OPS:
            subgraphs.append(_pool(graph, index))
        elif node.op_type in LINEAR_OPS:
            subgraphs.append(_classifier(graph, index))
        elif node.op_type in (*RESIZE_OPS, "Concat") or _adds_two_maps(graph, index):
            subgraphs.append(_map_op(graph, index))
        elif node.op_type in ELTWISE_OPS:
            subgraphs.append(_eltwise(graph, index))
        else:
            raise graph.unsupported(index)
    return subgraphs


@dataclass
class _Graph:
    nodes: list[onnx.NodeProto]
    source: str
    shapes: dict[str, tuple[int, ...]]
    constants: dict[str, onnx.TensorProto]
    inputs: set[str]
    static: set[str] = field(default_factory=set)  # tensors computable without the input
    consumers: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    claimed: set[int] = field(default_factory=set)

    @classmethod
    def load(cls, model: onnx.ModelProto | str | Path) -> _Graph:
        source = str(model) if isinstance(model, str | Path) else model.graph.name or "<onnx model>"
        if isinstance(model, str | Path):
            model = read_onnx(model, error=EstimatorError)
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as exc:
            raise EstimatorError(f"{source}: ONNX shape inference failed ({one_line(exc)})") from None
        g = inferred.graph
        constants = {t.name: t for t in g.initializer}
        inputs = {i.name for i in g.input if i.name not in constants}
        shapes = {v.name: _dims(v) for v in [*g.input, *g.value_info, *g.output]}
        graph = cls(list(g.node), source, shapes, constants, inputs, static=set(constants))
        for index, node in enumerate(graph.nodes):
            for name in node.input:
                graph.consumers[name].append(index)
            if node.op_type in STATIC_OPS or all(name in graph.static for name in node.input if name):
                graph.static.update(node.output)
            if node.op_type == "Constant":
                graph.constants[node.output[0]] = next(a.t for a in node.attribute if a.name == "value")
        return graph

    def is_free(self, index: int) -> bool:
        node = self.nodes[index]
        return node.op_type in VIEW_OPS or all(name in self.static for name in node.output)

    def chw(self, tensor: str, index: int) -> tuple[int, int, int]:
        """(C, H, W) of an activation (N, C, H, W) or (N, C); the batch is ignored."""
        dims = self.shapes.get(tensor)
        if dims is None or any(d <= 0 for d in dims[1:]) or len(dims) not in (2, 4):
            node = self.nodes[index]
            raise EstimatorError(
                f"{self.source}: node {node.name!r} ({node.op_type}): tensor {tensor!r} has no fixed "
                f"(N, C, H, W) or (N, C) shape ({dims}); export the model with a fixed input size"
            )
        return (dims[1], dims[2], dims[3]) if len(dims) == 4 else (dims[1], 1, 1)

    def sole_consumer(self, tensor: str) -> int | None:
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 else None

    def attr(self, index: int, name: str, default=None):
        for attribute in self.nodes[index].attribute:
            if attribute.name == name:
                return onnx.helper.get_attribute_value(attribute)
        return default

    def unsupported(self, index: int, why: str = "") -> EstimatorError:
        node = self.nodes[index]
        detail = why or f"supported operators: {', '.join(SUPPORTED_OPERATORS)}"
        return EstimatorError(
            f"{self.source}: node {node.name!r}: operator {node.op_type!r} is not supported ({detail})"
        )


@dataclass
class _ConvUnit:
    nodes: list[int]  # Conv [, BatchNormalization] [, activation node(s)]
    input: str
    output: str
    op: OpSpec
    activation: str  # "none" when no activation follows

    @property
    def is_pointwise(self) -> bool:
        return self.op.kernel == 1 and self.op.groups == 1


def _conv_units(graph: _Graph) -> list[_ConvUnit]:
    units = []
    for index, node in enumerate(graph.nodes):
        if node.op_type != "Conv":
            continue  # not a conv: handled by decompose_onnx's own loop
        nodes, out = [index], node.output[0]
        bn = graph.sole_consumer(out)
        if bn is not None and graph.nodes[bn].op_type == "BatchNormalization":
            nodes, out = [*nodes, bn], graph.nodes[bn].output[0]
        act_nodes, activation, out = _activation(graph, out)
        op = _conv_op(graph, index, out_tensor=node.output[0], activated=bool(act_nodes))
        units.append(_ConvUnit([*nodes, *act_nodes], node.input[0], out, op, activation))
    return units


def _activation(graph: _Graph, tensor: str) -> tuple[list[int], str, str]:
    """The activation applied to ``tensor`` alone: (its nodes, its name, its output)."""
    users = graph.consumers.get(tensor, [])
    if len(users) == 1 and graph.nodes[users[0]].op_type in ACTIVATION_OPS:
        node = graph.nodes[users[0]]
        return [users[0]], ACTIVATION_OPS[node.op_type], node.output[0]
    if len(users) == 2:  # x * gate(x)
        mul = next((i for i in users if graph.nodes[i].op_type == "Mul"), users[0])
        gate = users[1] if mul == users[0] else users[0]
        gate_node, mul_node = graph.nodes[gate], graph.nodes[mul]
        if gate_node.op_type in GATED_ACTIVATIONS and set(mul_node.input) == {tensor, gate_node.output[0]}:
            return sorted([gate, mul]), GATED_ACTIVATIONS[gate_node.op_type], mul_node.output[0]
    return [], "none", tensor


def _conv_op(graph: _Graph, index: int, *, out_tensor: str, activated: bool) -> OpSpec:
    node = graph.nodes[index]
    in_shape, out_shape = graph.chw(node.input[0], index), graph.chw(out_tensor, index)
    weight_dims = graph.shapes.get(node.input[1]) or tuple(graph.constants[node.input[1]].dims)
    kernels = graph.attr(index, "kernel_shape", list(weight_dims[2:]))
    strides = graph.attr(index, "strides", [1] * len(kernels))
    if len(set(kernels)) != 1 or len(set(strides)) != 1 or len(kernels) != 2:
        raise graph.unsupported(index, f"only square 2-D kernels and strides, got {kernels=} {strides=}")
    groups = graph.attr(index, "group", 1)
    return OpSpec(node.name or node.output[0], "conv", in_shape, out_shape, kernels[0], strides[0], groups, activated)


def _conv_block(graph: _Graph, convs: dict[int, _ConvUnit], first: _ConvUnit) -> Subgraph:
    chain, kind = _match_block(graph, convs, first)
    residual_add = _residual_add(graph, chain) if kind in ("ibn", "fused_ibn") else None
    for unit in chain:
        graph.claimed.update(unit.nodes)
    if residual_add is not None:
        graph.claimed.add(residual_add)
    activation = next((u.activation for u in chain if u.activation != "none"), "none")
    ops = tuple(unit.op for unit in chain)
    name = graph.nodes[first.nodes[0]].name or first.output
    return Subgraph.from_ops(name, kind, ops, residual=residual_add is not None, activation=activation)


def _match_block(graph: _Graph, convs: dict[int, _ConvUnit], first: _ConvUnit) -> tuple[list[_ConvUnit], str]:
    if first.input in graph.inputs:
        return [first], "stem"
    second = _next_conv(graph, convs, first)
    third = _next_conv(graph, convs, second) if second else None
    is_project = lambda u: u is not None and u.is_pointwise and u.activation == "none"  # noqa: E731
    activated = first.activation != "none"
    if activated and first.is_pointwise and second and second.op.is_depthwise and is_project(third):
        return [first, second, third], "ibn"
    if activated and first.op.is_depthwise and is_project(second):
        return [first, second], "ibn"
    if activated and first.op.groups == 1 and first.op.kernel > 1 and is_project(second):
        return [first, second], "fused_ibn"
    if activated and first.op.is_depthwise and second and second.is_pointwise and second.activation != "none":
        return [first, second], "separable"
    if first.is_pointwise and activated and _feeds_pool(graph, first.output):
        return [first], "head_conv"
    if first.is_pointwise and not activated:
        return [first], "pointwise"
    return [first], "conv"


def _next_conv(graph: _Graph, convs: dict[int, _ConvUnit], unit: _ConvUnit) -> _ConvUnit | None:
    user = graph.sole_consumer(unit.output)
    return convs.get(user) if user is not None else None


def _residual_add(graph: _Graph, chain: list[_ConvUnit]) -> int | None:
    user = graph.sole_consumer(chain[-1].output)
    is_add = user is not None and graph.nodes[user].op_type == "Add"
    return user if is_add and set(graph.nodes[user].input) == {chain[-1].output, chain[0].input} else None


def _feeds_pool(graph: _Graph, tensor: str) -> bool:
    user = graph.sole_consumer(tensor)
    return user is not None and graph.nodes[user].op_type in POOL_OPS


def _pool(graph: _Graph, index: int) -> Subgraph:
    node = graph.nodes[index]
    in_shape, out_shape = graph.chw(node.input[0], index), graph.chw(node.output[0], index)
    if node.op_type == "ReduceMean" and not _reduces_spatial(graph, index):
        raise graph.unsupported(index, "ReduceMean is supported over the spatial axes (2, 3) only")
    if node.op_type in ("GlobalAveragePool", "ReduceMean"):
        kernel, stride = 1, 1
    else:
        kernels, strides = graph.attr(index, "kernel_shape"), graph.attr(index, "strides", [1, 1])
        kernel, stride = kernels[0], strides[0]
    out_shape = (in_shape[0], out_shape[1], out_shape[2])  # a keepdims=0 ReduceMean reads as (C, 1, 1)
    graph.claimed.add(index)
    op = OpSpec(node.name or node.output[0], "pool", in_shape, out_shape, kernel, stride)
    return Subgraph.from_ops(op.name, "pool", (op,), activation="none")


def _reduces_spatial(graph: _Graph, index: int) -> bool:
    node = graph.nodes[index]
    axes = graph.attr(index, "axes")
    if axes is None and len(node.input) > 1 and node.input[1] in graph.constants:
        axes = numpy_helper.to_array(graph.constants[node.input[1]]).tolist()
    return axes is not None and sorted(a % 4 for a in axes) == [2, 3]


def _classifier(graph: _Graph, index: int) -> Subgraph:
    node = graph.nodes[index]
    out = node.output[0]
    graph.claimed.add(index)
    bias = graph.sole_consumer(out)
    is_bias = bias is not None and graph.nodes[bias].op_type == "Add"
    if node.op_type == "MatMul" and is_bias and any(name in graph.static for name in graph.nodes[bias].input):
        graph.claimed.add(bias)
        out = graph.nodes[bias].output[0]
    in_c, out_c = graph.chw(node.input[0], index)[0], graph.chw(out, index)[0]
    op = OpSpec(node.name or out, "linear", (in_c, 1, 1), (out_c, 1, 1))
    return Subgraph.from_ops(op.name, "classifier", (op,), activation="none")


def _adds_two_maps(graph: _Graph, index: int) -> bool:
    node = graph.nodes[index]
    return node.op_type == "Add" and len(node.input) == 2 and not any(name in graph.static for name in node.input)


def _map_op(graph: _Graph, index: int) -> Subgraph:
    """A dense head's resize, feature-map add or concat (its ``in_shape``: the first input's)."""
    node = graph.nodes[index]
    kind = {"Resize": "resize", "Upsample": "resize", "Add": "add", "Concat": "concat"}[node.op_type]
    if kind == "concat" and graph.attr(index, "axis") not in (1, -3):
        raise graph.unsupported(index, "Concat is supported along the channel axis (1) only")
    graph.claimed.add(index)
    in_shape, out_shape = graph.chw(node.input[0], index), graph.chw(node.output[0], index)
    op = OpSpec(node.name or node.output[0], kind, in_shape, out_shape)
    return Subgraph.from_ops(op.name, kind, (op,), activation="none")


def _eltwise(graph: _Graph, index: int) -> Subgraph:
    node = graph.nodes[index]
    graph.claimed.add(index)
    op = OpSpec(
        node.name or node.output[0], "eltwise", graph.chw(node.input[0], index), graph.chw(node.output[0], index)
    )
    return Subgraph.from_ops(op.name, "eltwise", (op,), activation="none")


def _dims(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
