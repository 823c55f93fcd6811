"""Dense heads as data: every shipped dense space validates, samples, builds, runs and counts exactly."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from search_spaces import (
    DENSE_SPACES,
    HIGH_RESOLUTION_SPACES,
    ArchConfig,
    SearchSpaceError,
    build_model,
    count_arch,
    load_space,
    parse_space,
    plan_network,
    shipped_space_path,
)
from search_spaces.builder import DenseNetwork

TINY_DETECTOR = {
    "input_channels": 1,
    "resolution": 16,
    "channel_divisor": 1,
    "activation": "relu6",
    "stem": {"kernel": 3, "channels": 8, "stride": 2},
    "stages": [
        {"block": "conv", "kernel": 3, "expansion": 1, "channels": 8, "depth": 1, "stride": 1},
        {"block": "conv", "kernel": 3, "expansion": 1, "channels": 16, "depth": 1, "stride": 2},
    ],
    "head": {"type": "detection", "num_classes": 2, "taps": [0, 1], "channels": 8, "depth": 1, "kernel": 3},
}


def run_counting_macs(model: nn.Module, x: torch.Tensor):
    """The model's outputs on ``x`` and the MACs of every conv and linear layer, from the shapes torch produces."""
    total = 0

    def hook(module, _inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output[0].numel() * (module.in_channels // module.groups) * k
        else:
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.inference_mode():
        outputs = model(x)
    for handle in handles:
        handle.remove()
    return outputs, total


def finest_tap_stride(arch: ArchConfig) -> int:
    stride = arch.stem.stride
    for i, stage in enumerate(arch.stages):
        stride *= stage.stride
        if i == arch.head.taps[0]:
            return stride
    raise AssertionError("no tap")


@pytest.mark.parametrize("name", DENSE_SPACES + HIGH_RESOLUTION_SPACES)
def test_shipped_dense_space_samples_build_run_and_count_exactly(name: str) -> None:
    space = load_space(shipped_space_path(name))
    assert space.task == name.split("_")[0] if name in DENSE_SPACES else space.task == "classification"
    assert min(space.resolution) >= 96
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(10)]
    assert len(set(archs)) == 1 if space.size() == 1 else len(set(archs)) > 1
    for arch in archs:
        assert space.contains(arch)
        assert ArchConfig.from_dict(yaml.safe_load(arch.to_yaml())) == arch
        assert ArchConfig.from_dict(yaml.safe_load(arch.to_json())).arch_id == arch.arch_id
        torch.manual_seed(0)
        model = build_model(arch).eval()
        x = torch.zeros(1, arch.input_channels, arch.resolution, arch.resolution)
        out, macs = run_counting_macs(model, x)
        r, k = arch.resolution, arch.head.num_classes
        if arch.task == "detection":
            grid = r // finest_tap_stride(arch)
            assert [tuple(o.shape) for o in out] == [(1, k, grid, grid), (1, 4, grid, grid)]
        elif arch.task == "segmentation":
            assert tuple(out.shape) == (1, k, r, r)
        else:
            assert tuple(out.shape) == (1, k)
        counts = count_arch(arch)
        assert counts.params == sum(p.numel() for p in model.parameters())
        assert counts.macs == macs


def test_peak_activation_memory_of_a_dense_network_by_hand() -> None:
    arch = ArchConfig.from_dict(TINY_DETECTOR)
    names = [b.name for b in plan_network(arch)]
    assert names == [
        "stem", "stages.0.0", "stages.1.0", "head.lateral.1", "head.lateral.0", "head.resize.0", "head.add.0",
        "head.tower.0", "head.heatmap", "head.box",
    ]  # fmt: skip
    live = {layer.name: layer.live_bytes // 4 for layer in count_arch(arch).layers}
    # stages.0.0's 8x8x8 output (512) is tapped: it stays alive until head.lateral.0 reads it
    assert live["stages.1.0.conv"] == 512 + 256  # its input is the tapped map itself
    assert live["head.lateral.1"] == 256 + 128 + 512
    assert live["head.lateral.0"] == 512 + 512 + 128  # lateral.1's output waits for the resize
    assert live["head.resize.0"] == 128 + 512 + 512
    assert live["head.add.0"] == 2 * 512 + 512
    assert live["head.tower.0.depthwise"] == live["head.tower.0.pointwise"] == 1024
    assert live["head.heatmap"] == 512 + 128
    assert live["head.box"] == 512 + 256 + 128  # the heatmap is an output: alive to the end
    counts = count_arch(arch)
    assert counts.peak_activation_bytes == 1536 * 4 and counts.peak_layer == "head.add.0"
    model = build_model(arch)
    assert isinstance(model, DenseNetwork)
    heatmap, box = model(torch.zeros(3, 1, 16, 16))
    assert heatmap.shape == (3, 2, 8, 8) and box.shape == (3, 4, 8, 8)
    assert arch.block_string().endswith("| det_t0.1_c8_d1_k3")


def test_segmentation_head_resizes_to_the_input() -> None:
    data = copy.deepcopy(TINY_DETECTOR)
    data["head"].update(type="segmentation", num_classes=3, depth=0)
    arch = ArchConfig.from_dict(data)
    blocks = plan_network(arch)
    assert [b.name for b in blocks][-3:] == ["head.add.0", "head.classes", "head.upsample"]
    assert blocks[-1].out_shape == (3, 16, 16)
    assert build_model(arch)(torch.zeros(2, 1, 16, 16)).shape == (2, 3, 16, 16)


def dense_space(**head) -> dict:
    space = yaml.safe_load(shipped_space_path("detection").read_text())
    space["head"].update(head)
    return space


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ({"taps": [2, 9]}, r"head.taps\[1\]: got 9, allowed an integer in \[0, 5\]"),
        ({"taps": [4, 2, 5]}, r"head.taps: got \[4, 2, 5\], allowed 1 to 4 increasing stage indices"),
        ({"taps": [2, 4]}, r"head.taps: got \[2, 4\], but the last tap must be the last stage \(5\)"),
        ({"kernel": [3, 4]}, r"head.kernel\[1\]: got 4, allowed an odd kernel size"),
        ({"depth": [-1]}, r"head.depth\[0\]: got -1, allowed an integer in \[0, 8\]"),
        ({"channels": [48]}, r"head.channels\[0\]: got 48, allowed a multiple of the parallelism factor P=32"),
        ({"type": "keypoints"}, r"head.type: got 'keypoints', allowed one of \['classification', 'detection'"),
        ({"dropout": 0.1}, r"head.dropout: unknown key 'dropout'"),
    ],
)
def test_dense_head_errors_name_the_path(head: dict, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        parse_space(dense_space(**head), source="detection.yaml")


def test_dense_head_missing_key_and_arch_file_errors() -> None:
    space = dense_space()
    del space["head"]["taps"]
    with pytest.raises(SearchSpaceError, match=r"detection.yaml: head: missing required key 'taps'"):
        parse_space(space, source="detection.yaml")
    data = copy.deepcopy(TINY_DETECTOR)
    data["head"]["taps"] = [1, 0]
    with pytest.raises(SearchSpaceError, match=r"a.yaml: head.taps: got \[1, 0\], allowed 1 to 4 increasing"):
        ArchConfig.from_dict(data, source="a.yaml")
    data["head"] = {"num_classes": 2}
    with pytest.raises(SearchSpaceError, match=r"a.yaml: head: missing required key 'type'"):
        ArchConfig.from_dict(data, source="a.yaml")


def test_searched_head_choices_are_parameters() -> None:
    space = load_space(shipped_space_path("detection"))
    params = space.parameters()
    assert params["head.depth"] == (1, 2, 3) and params["head.kernel"] == (3, 5)
    assert params["head.channels"] == (64, 96)
    point = {name: choices[-1] for name, choices in params.items()}
    arch = space.resolve(point)
    assert (arch.head.depth, arch.head.kernel, arch.head.taps) == (3, 5, (2, 4, 5))
    assert arch.head.channels == 128  # 96 x depth multiplier 1.25, on multiples of P
    assert space.point_of(arch) == point
