"""ONNX export: BatchNorm folding, checker, opset, parity with PyTorch, weights loading."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from deploy import ExportError, check_onnx_parity, export_onnx, fold_batchnorm, load_weights, random_inputs
from deploy.export import OPSET
from search_spaces import ArchConfig, build_model
from tests.tiny_arch import TINY

INPUT_SHAPE = (1, 1, 16, 16)


def trained_like(arch: ArchConfig) -> torch.nn.Module:
    """A model whose BatchNorm layers are far from identity, as after training."""
    torch.manual_seed(0)
    model = build_model(arch).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return trained_like(ArchConfig.from_dict(TINY))


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory) -> str:
    return str(export_onnx(model, input_shape=INPUT_SHAPE, path=tmp_path_factory.mktemp("export") / "model.onnx"))


def real_digits() -> np.ndarray:
    """Digits from scikit-learn at 16x16, normalised roughly as training does."""
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images[:8, None].astype(np.float32) / 16.0)
    images = torch.nn.functional.interpolate(images, size=(16, 16), mode="bilinear", align_corners=False)
    return ((images - 0.3) / 0.3).numpy()


def test_fold_batchnorm_keeps_outputs_and_removes_bn(model):
    folded = fold_batchnorm(model)
    x = torch.from_numpy(random_inputs(INPUT_SHAPE, batch=4))
    with torch.no_grad():
        assert torch.allclose(model(x), folded(x), atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()), "the original must be untouched"


def test_exported_graph_is_valid_opset17_without_batchnorm(onnx_path):
    proto = onnx.load(onnx_path)
    onnx.checker.check_model(proto, full_check=True)
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= OPSET
    assert "BatchNormalization" not in {node.op_type for node in proto.graph.node}
    assert [i.name for i in proto.graph.input] == ["input"]
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch", "the batch axis is dynamic for ONNX Runtime"


def test_parity_with_pytorch_on_random_and_real_inputs(model, onnx_path):
    report = check_onnx_parity(model, onnx_path, inputs={"random": random_inputs(INPUT_SHAPE), "real": real_digits()})
    assert set(report.max_abs_diff) == {"random", "real"}
    assert report.worst <= 1e-4


def test_parity_failure_is_an_export_error(model, onnx_path):
    other = trained_like(ArchConfig.from_dict(TINY))
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        check_onnx_parity(other, onnx_path, inputs={"random": random_inputs(INPUT_SHAPE)})


def test_load_weights_round_trip(model, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    loaded = load_weights(ArchConfig.from_dict(TINY), path)
    x = torch.from_numpy(random_inputs(INPUT_SHAPE))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_weights_of_another_arch_name_the_first_mismatching_layer(tmp_path):
    wider = {**TINY, "stem": {"kernel": 3, "channels": 16, "stride": 2}}
    path = tmp_path / "wider.pt"
    torch.save(build_model(ArchConfig.from_dict(wider)).state_dict(), path)
    with pytest.raises(ExportError) as info:
        load_weights(ArchConfig.from_dict(TINY), path)
    message = str(info.value)
    assert "\n" not in message
    assert "features.0.ops.0.0.weight" in message
    assert "(16, 1, 3, 3) in the weights" in message and "(8, 1, 3, 3) in the architecture" in message


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ExportError, match="not a PyTorch state_dict"):
        load_weights(ArchConfig.from_dict(TINY), path)
