"""nas.training: a real short training run on digits, determinism, divergence, hooks and arch checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from nas.datasets import Dataset, load_dataset
from nas.training import (
    TrainConfig,
    TrainingError,
    check_compatible,
    evaluate,
    train_arch,
    train_model,
)
from search_spaces.arch import ArchConfig, HeadConfig, StageConfig, StemConfig

# One thread: tests share few cores, and determinism is checked on the CPU.
FAST = TrainConfig(epochs=3, threads=1, device="cpu")

TINY = ArchConfig(
    input_channels=1,
    resolution=16,
    channel_divisor=1,
    activation="relu6",
    stem=StemConfig(kernel=3, channels=8, stride=1),
    stages=(
        StageConfig(block="ibn", kernel=3, expansion=2, channels=16, depth=1, stride=2),
        StageConfig(block="fused_ibn", kernel=3, expansion=2, channels=24, depth=1, stride=2),
    ),
    head=HeadConfig(type="classification", channels=32, num_classes=10),
)


@pytest.fixture(scope="module")
def digits16() -> Dataset:
    return load_dataset("digits", resolution=16)


def small_cnn(seed: int = 0, num_classes: int = 10) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


class NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.mean(dim=(1, 2, 3))[:, None]) * float("nan")


def test_train_arch_on_digits_beats_chance_and_is_deterministic(digits16: Dataset) -> None:
    model, result = train_arch(TINY, digits16, config=FAST)
    assert result.val_accuracy > 0.7 and result.test_accuracy > 0.7  # chance is 0.1
    assert [record.epoch for record in result.history] == [1, 2, 3]
    assert result.steps == 3 * (len(digits16.train) // FAST.batch_size)
    assert evaluate(model, digits16.test) == result.test_accuracy
    _, again = train_arch(TINY, digits16, config=FAST)
    assert again.val_accuracy == result.val_accuracy and again.test_accuracy == result.test_accuracy
    assert [r.train_loss for r in again.history] == [r.train_loss for r in result.history]


def test_same_seed_same_weights_other_seed_differs(digits16: Dataset) -> None:
    config = dataclasses.replace(FAST, max_steps=15)
    models = [small_cnn(seed) for seed in (0, 0, 1)]
    for model, seed in zip(models, (0, 0, 1)):
        train_model(model, digits16, config=dataclasses.replace(config, seed=seed))
    weights = [torch.cat([p.detach().flatten() for p in model.parameters()]) for model in models]
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_max_steps_caps_training(digits16: Dataset) -> None:
    steps_per_epoch = len(digits16.train) // FAST.batch_size
    config = dataclasses.replace(FAST, epochs=5, max_steps=steps_per_epoch + 3)
    result = train_model(small_cnn(), digits16, config=config)
    assert result.steps == steps_per_epoch + 3 and len(result.history) == 2


def test_on_epoch_reports_each_epoch_and_may_stop_training(digits16: Dataset) -> None:
    seen = []

    class Pruned(Exception):
        pass

    def on_epoch(epoch: int, val_accuracy: float) -> None:
        seen.append((epoch, val_accuracy))
        if epoch == 2:
            raise Pruned

    with pytest.raises(Pruned):
        train_model(small_cnn(), digits16, config=dataclasses.replace(FAST, max_steps=60), on_epoch=on_epoch)
    assert [epoch for epoch, _ in seen] == [1, 2] and all(0.0 <= acc <= 1.0 for _, acc in seen)


def test_nan_output_stops_at_once(digits16: Dataset) -> None:
    with pytest.raises(TrainingError, match=r"diverged at epoch 1 step 1 \(loss=nan\); try a lower learning rate"):
        train_model(NaNModel(), digits16, config=FAST)


def test_huge_learning_rate_diverges(digits16: Dataset) -> None:
    config = dataclasses.replace(FAST, lr=1e6, warmup_steps=0)
    with pytest.raises(TrainingError, match="diverged at epoch"):
        train_model(small_cnn(), digits16, config=config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"head": dataclasses.replace(TINY.head, num_classes=5)}, "classes: arch 5 vs dataset 10"),
        ({"resolution": 32}, "resolution: arch 32 vs dataset 16"),
        ({"input_channels": 3}, "input channels: arch 3 vs dataset 1"),
    ],
)
def test_mismatched_arch_is_rejected_before_training(digits16: Dataset, change: dict, message: str) -> None:
    arch = dataclasses.replace(TINY, **change)
    with pytest.raises(TrainingError, match=message):
        check_compatible(arch, digits16)
    with pytest.raises(TrainingError, match="does not fit dataset 'digits'"):
        train_arch(arch, digits16, config=FAST)


def test_model_with_wrong_number_of_outputs(digits16: Dataset) -> None:
    with pytest.raises(TrainingError, match=r"logits of shape \(32, 7\), expected \(N, 10\)"):
        train_model(small_cnn(num_classes=7), digits16, config=FAST)


@pytest.mark.parametrize(
    "kwargs", [{"epochs": 0}, {"batch_size": 0}, {"lr": 0.0}, {"label_smoothing": 1.0}, {"threads": 0}]
)
def test_bad_config_is_rejected(kwargs: dict) -> None:
    with pytest.raises(TrainingError, match="must hold, but got"):
        TrainConfig(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when CUDA is absent")
def test_cuda_without_a_gpu_is_a_clear_error(digits16: Dataset) -> None:
    with pytest.raises(TrainingError, match="CUDA is not available"):
        train_model(small_cnn(), digits16, config=dataclasses.replace(FAST, device="cuda"))


def test_evaluate_restores_mode_and_progress_bar_goes_to_stderr(digits16: Dataset, capsys) -> None:
    model = small_cnn()
    accuracy = evaluate(model, digits16.val)
    assert 0.0 <= accuracy <= 1.0 and model.training
    threads = torch.get_num_threads()
    train_model(model, digits16, config=dataclasses.replace(FAST, max_steps=3), progress=True)
    assert torch.get_num_threads() == threads
    captured = capsys.readouterr()
    assert captured.out == "" and "train" in captured.err
