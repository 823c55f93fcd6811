"""Decomposition into subgraphs: of an ArchConfig, and of ONNX models built by
edgenas itself or exported by torch, which must agree."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from latency_estimator import EstimatorError, Subgraph, decompose_arch, decompose_onnx
from latency_estimator.onnx_graph import arch_model
from search_spaces import (
    DENSE_SPACES,
    SHIPPED_SPACES,
    baseline_arch,
    build_model,
    count_arch,
    load_space,
    shipped_space_path,
)
from search_spaces.arch import ArchConfig


def sampled_archs() -> list[ArchConfig]:
    rng = np.random.default_rng(7)
    spaces = [load_space(shipped_space_path(name)) for name in SHIPPED_SPACES]
    return [baseline_arch(), *(space.sample(rng) for space in spaces for _ in range(3))]


def dense_archs() -> list[ArchConfig]:
    rng = np.random.default_rng(5)
    return [load_space(shipped_space_path(name)).sample(rng) for name in DENSE_SPACES]


def shapes(subgraphs: list[Subgraph]) -> list[tuple]:
    """What must agree between decompositions: kinds, activations, residuals and every op's shape."""
    return [s.signature() for s in subgraphs]


# ----- ArchConfig ---------------------------------------------------------------------------------


def test_baseline_decomposes_into_units() -> None:
    kinds = [s.kind for s in decompose_arch(baseline_arch())]
    assert kinds == ["stem", *["ibn"] * 13, "head_conv", "pool", "classifier"]


def test_a_dense_head_decomposes_into_neck_and_head_units() -> None:
    arch = baseline_arch(task="detection")  # taps [2, 4, 5]: 16x16, 8x8 and 4x4 maps
    head = [(s.kind, s.in_shape, s.out_shape) for s in decompose_arch(arch) if s.name.startswith("head.")]
    c = arch.head.channels
    assert [kind for kind, _, _ in head] == [
        "pointwise", "pointwise", "resize", "add", "pointwise", "resize", "add", *["separable"] * arch.head.depth,
        "pointwise", "pointwise",
    ]  # fmt: skip
    assert head[2][1:] == ((c, 4, 4), (c, 8, 8)) and head[5][1:] == ((c, 8, 8), (c, 16, 16))
    assert head[-2][2] == (arch.head.num_classes, 16, 16) and head[-1][2] == (4, 16, 16)
    segmentation = decompose_arch(baseline_arch(task="segmentation"))
    assert segmentation[-1].kind == "resize" and segmentation[-1].out_shape == (11, 128, 128)
    assert sum(s.macs for s in decompose_arch(arch)) == count_arch(arch).macs
    add = next(s for s in decompose_arch(arch) if s.kind == "add")
    assert add.bytes_read == 2 * 4 * c * 8 * 8 and add.macs == 0  # two maps in, none of them weights


def test_subgraphs_count_what_the_plan_counts() -> None:
    arch = baseline_arch()
    subgraphs = decompose_arch(arch)
    assert sum(s.macs for s in subgraphs) == count_arch(arch).macs
    ibn = subgraphs[2]  # 16 -> 24 channels at 32x32, e=6, stride 2 on the depthwise
    assert (ibn.height, ibn.in_channels, ibn.hidden_channels, ibn.out_channels, ibn.stride) == (32, 16, 96, 24, 2)
    assert ibn.groups == 96 and ibn.kernel == 3 and ibn.expansion == 6.0 and not ibn.residual
    weights = 16 * 96 + 96 + 96 * 9 + 96 + 96 * 24 + 24  # BatchNorm folded: one bias per channel
    assert ibn.bytes_read == 4 * (16 * 32 * 32 + weights)
    assert ibn.bytes_written == 4 * 24 * 16 * 16


def test_features_are_stable_and_numeric() -> None:
    subgraphs = decompose_arch(baseline_arch())
    keys = [list(s.features(32)) for s in subgraphs]
    assert all(k == keys[0] for k in keys)
    features = subgraphs[2].features(32)
    assert features["hidden_channels_mod_p"] == 0 and features["hidden_channels_ceil_p"] == 3
    assert features["out_channels_mod_p"] == 24 and features["out_channels_ceil_p"] == 1
    assert features["kind_ibn"] == 1.0 and features["kind_fused_ibn"] == 0.0
    assert all(isinstance(v, float) for v in features.values())
    with pytest.raises(EstimatorError, match="parallelism_factor >= 1"):
        subgraphs[0].features(0)


# ----- ONNX ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", sampled_archs(), ids=lambda a: a.arch_id)
def test_onnx_graph_decomposes_like_its_arch(arch: ArchConfig) -> None:
    assert shapes(decompose_onnx(arch_model(arch))) == shapes(decompose_arch(arch))


@pytest.mark.parametrize("arch", dense_archs(), ids=lambda a: a.arch_id)
def test_dense_onnx_graph_decomposes_like_its_arch(arch: ArchConfig) -> None:
    assert shapes(decompose_onnx(arch_model(arch))) == shapes(decompose_arch(arch))


def test_dense_onnx_graph_runs_with_every_output() -> None:
    arch = baseline_arch(task="detection")
    session = ort.InferenceSession(arch_model(arch).SerializeToString(), providers=["CPUExecutionProvider"])
    heatmap, box = session.run(None, {"input": np.zeros((1, 1, 128, 128), np.float32)})
    assert heatmap.shape == (1, arch.head.num_classes, 16, 16) and box.shape == (1, 4, 16, 16)


def test_onnx_graph_is_a_valid_runnable_model() -> None:
    arch = baseline_arch()
    model = arch_model(arch)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": np.zeros((1, 1, 32, 32), np.float32)})
    assert logits.shape == (1, arch.head.num_classes)


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # raised inside torch.export
@pytest.mark.parametrize("dynamo", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["torchscript", "dynamo"])
def test_torch_export_decomposes_like_its_arch(dynamo: bool) -> None:
    rng = np.random.default_rng(11)
    arch = load_space(shipped_space_path("combined")).sample(rng)  # IBN and fused IBN, residuals
    model = build_model(arch).eval()
    x = torch.zeros(1, arch.input_channels, arch.resolution, arch.resolution)
    if dynamo:  # BatchNorm folded by the exporter's optimiser; ReduceMean + Reshape in the head
        exported = torch.onnx.export(model, (x,), dynamo=True, optimize=True).model_proto
    else:
        buffer = io.BytesIO()
        torch.onnx.export(model, (x,), buffer, dynamo=False, opset_version=17)
        exported = onnx.load_from_string(buffer.getvalue())
    assert shapes(decompose_onnx(exported)) == shapes(decompose_arch(arch))


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_torch_export_of_a_dense_network_decomposes_like_its_arch(task: str) -> None:
    arch = load_space(shipped_space_path(task)).sample(np.random.default_rng(13))  # laterals, resizes, adds, tower
    model = build_model(arch).eval()
    buffer = io.BytesIO()
    torch.onnx.export(model, (torch.zeros(1, 1, 128, 128),), buffer, dynamo=False, opset_version=17)
    assert shapes(decompose_onnx(onnx.load_from_string(buffer.getvalue()))) == shapes(decompose_arch(arch))


def test_unfolded_batchnorm_and_gated_activations_stay_in_the_unit() -> None:
    graph = _Graph((1, 8, 16, 16))
    x = graph.conv("input", 16, kernel=3)
    x = graph.node("BatchNormalization", [x, *graph.weights(16, 16, 16, 16)])
    x = graph.node("Mul", [x, graph.node("Sigmoid", [x])])  # swish
    x = graph.conv(x, 16, kernel=3, groups=16)
    x = graph.node("HardSwish", [x])
    graph.conv(x, 32, kernel=1)
    stem, ibn = decompose_onnx(graph.model())
    assert stem.kind == "stem" and stem.activation == "swish"
    assert ibn.kind == "ibn" and ibn.hidden_channels == 16 and ibn.out_channels == 32
    assert ibn.activation == "hardswish" and ibn.expansion == 1.0


def test_pools_and_loose_eltwise_ops_become_their_own_subgraphs() -> None:
    graph = _Graph((1, 8, 16, 16))
    x = graph.conv("input", 16, kernel=3)
    y = graph.conv(x, 16, kernel=3)
    x = graph.node("Concat", [x, y], axis=1)
    graph.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    kinds = [(s.kind, s.out_shape) for s in decompose_onnx(graph.model())]
    assert kinds == [("stem", (16, 16, 16)), ("conv", (16, 16, 16)), ("concat", (32, 16, 16)), ("pool", (32, 8, 8))]
    concat = decompose_onnx(graph.model())[2]
    assert concat.bytes_read == concat.bytes_written == 4 * 32 * 16 * 16  # both parts in, one map out


def test_dense_head_ops_outside_units_become_their_own_subgraphs() -> None:
    graph = _Graph((1, 8, 16, 16))
    x = graph.conv("input", 16, kernel=3, stride=2)  # 8x8
    lateral = graph.conv(x, 16, kernel=1)  # no activation: a pointwise unit
    up = graph.node("Resize", [lateral, "", graph.constant(np.array([1, 1, 2, 2], np.float32))], mode="linear")
    other = graph.conv("input", 16, kernel=1)  # reads the input too: a stem
    summed = graph.node("Add", [up, other])
    scaled = graph.node("Mul", [summed, graph.constant(np.array(0.5, np.float32))])
    graph.node("Softmax", [scaled], axis=1)
    kinds = [(s.kind, s.in_shape, s.out_shape) for s in decompose_onnx(graph.model())]
    assert kinds == [
        ("stem", (8, 16, 16), (16, 8, 8)),
        ("pointwise", (16, 8, 8), (16, 8, 8)),
        ("resize", (16, 8, 8), (16, 16, 16)),
        ("stem", (8, 16, 16), (16, 16, 16)),
        ("add", (16, 16, 16), (16, 16, 16)),
        ("eltwise", (16, 16, 16), (16, 16, 16)),
        ("eltwise", (16, 16, 16), (16, 16, 16)),
    ]


def test_unsupported_operator_names_operator_and_node() -> None:
    graph = _Graph((1, 8, 16, 16))
    x = graph.conv("input", 16, kernel=3)
    graph.node("LRN", [x], name="lrn", size=3)
    with pytest.raises(EstimatorError, match="node 'lrn': operator 'LRN' is not supported"):
        decompose_onnx(graph.model())


def test_a_concat_along_space_is_refused_in_one_line() -> None:
    graph = _Graph((1, 8, 16, 16))
    x = graph.conv("input", 16, kernel=3)
    graph.node("Concat", [x, x], name="stack", axis=2)
    with pytest.raises(EstimatorError, match="node 'stack'.*channel axis"):
        decompose_onnx(graph.model())


def test_missing_file_and_dynamic_size_are_estimator_errors(tmp_path) -> None:
    with pytest.raises(EstimatorError, match="no such ONNX file"):
        decompose_onnx(tmp_path / "missing.onnx")
    graph = _Graph((1, 8, "height", "width"))
    graph.conv("input", 16, kernel=3)
    path = tmp_path / "dynamic.onnx"
    onnx.save(graph.model(), str(path))
    with pytest.raises(EstimatorError, match="fixed input size"):
        decompose_onnx(path)


class _Graph:
    """A hand-written ONNX graph, for operators the builder never emits."""

    def __init__(self, input_shape: tuple) -> None:
        self.input_shape, self.nodes, self.initializers = input_shape, [], []
        self.channels = {"input": input_shape[1]}

    def constant(self, value: np.ndarray) -> str:
        name = f"const{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def weights(self, *sizes: int) -> list[str]:
        return [self.constant(np.ones(size, np.float32)) for size in sizes]

    def conv(self, x: str, c_out: int, *, kernel: int, groups: int = 1, stride: int = 1) -> str:
        w = self.constant(np.ones((c_out, self.channels[x] // groups, kernel, kernel), np.float32))
        out = self.node("Conv", [x, w], pads=[kernel // 2] * 4, group=groups, strides=[stride] * 2)
        self.channels[out] = c_out
        return out

    def node(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        out = name or f"{op_type.lower()}{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        self.channels[out] = self.channels.get(inputs[0], 0)
        return out

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "handmade",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(self.input_shape))],
            [helper.make_tensor_value_info(self.nodes[-1].output[0], TensorProto.FLOAT, None)],
            initializer=self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return model
