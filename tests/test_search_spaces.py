"""Shipped spaces: validate, sample, build, forward, params exact, MACs agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from search_spaces import baseline_arch, build_model, count_arch, load_space, shipped_space_path


def hook_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs counted from the real tensors flowing through Conv2d and Linear layers."""
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output[0].numel() * module.in_features

    handles = [
        m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return total


def test_shipped_space_samples_build_and_count_exactly(shipped_space_file) -> None:
    space = load_space(shipped_space_file)
    rng = np.random.default_rng(0)
    archs = {space.sample(rng) for _ in range(20)}
    for arch in archs:
        model = build_model(arch).eval()
        x = torch.randn(2, arch.input_channels, arch.resolution, arch.resolution)
        assert model(x).shape == (2, arch.head.num_classes)
        counts = count_arch(arch)
        assert counts.params == sum(p.numel() for p in model.parameters())
        assert counts.macs == hook_macs(model, x[:1])
        assert space.contains(arch)


def test_baseline_is_one_mobilenetv2_point() -> None:
    space = load_space(shipped_space_path("baseline"))
    assert space.size() == 1
    arch = baseline_arch()
    assert {stage.block for stage in arch.stages} == {"ibn"}
    assert [stage.channels for stage in arch.stages] == [16, 24, 32, 64, 96, 160]


@pytest.mark.parametrize("name", ["channels", "combined"])
def test_aligned_spaces_keep_every_channel_on_multiples_of_p(name: str) -> None:
    space = load_space(shipped_space_path(name))
    assert space.align_channels
    rng = np.random.default_rng(1)
    for _ in range(20):
        arch = space.sample(rng)
        channels = [arch.stem.channels, arch.head.channels, *(s.channels for s in arch.stages)]
        assert all(c % space.parallelism_factor == 0 for c in channels)
        for layer in count_arch(arch).layers:
            if layer.kind != "linear":
                assert layer.out_shape[0] % space.parallelism_factor == 0, layer.name


def test_parallelism_factor_override_reexpands_ranges() -> None:
    path = shipped_space_path("channels")
    assert load_space(path).stages[3].channels == (32, 64, 96)
    assert load_space(path, parallelism_factor=16).stages[3].channels == (32, 48, 64, 80, 96)


def test_depth_multiplier_scales_channels_on_multiples_of_p() -> None:
    space = load_space(shipped_space_path("channels"))
    point = {name: choices[-1] for name, choices in space.parameters().items()}
    wide = space.resolve({**point, "depth_multiplier": 1.25})
    narrow = space.resolve({**point, "depth_multiplier": 0.5})
    assert wide.stages[5].channels == 256  # 192 x 1.25 = 240 -> nearest multiple of 32
    assert narrow.stages[5].channels == 96
    assert narrow.stem.channels == 32  # never below P


def test_fused_ibn_has_more_macs_than_ibn_at_same_channels() -> None:
    space = load_space(shipped_space_path("fused_ibn"))
    point = {name: choices[0] for name, choices in space.parameters().items()}
    ibn = space.resolve(point)
    fused = space.resolve({**point, "stages.1.block": "fused_ibn"})
    assert count_arch(fused).macs > count_arch(ibn).macs
    assert fused.arch_id != ibn.arch_id


def test_optuna_trial_picks_every_multi_choice_parameter(tmp_path) -> None:
    import optuna

    space = load_space(shipped_space_path("combined"))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'space.db'}")
    trial = study.ask()
    arch = space.suggest(trial)
    multi = {name for name, choices in space.parameters().items() if len(choices) > 1}
    assert set(trial.params) == multi
    assert space.resolve({**{n: c[0] for n, c in space.parameters().items()}, **trial.params}) == arch
