"""nas.dense_training: real short runs of built detection and segmentation networks on digit-scenes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from nas.dense_datasets import DenseDataset, load_dense_dataset
from nas.dense_training import check_dense_compatible, evaluate_dense, train_dense_arch, train_dense_model
from nas.training import TrainConfig, TrainingError
from tests.tiny_arch import DENSE_RESOLUTION, dense_arch

RESOLUTION = DENSE_RESOLUTION
FAST = TrainConfig(epochs=2, batch_size=16, lr=0.05, warmup_steps=4, threads=1, device="cpu")


@pytest.fixture(scope="module")
def scenes() -> DenseDataset:
    return load_dense_dataset("digit-scenes", resolution=RESOLUTION, limit=96, eval_limit=32)


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_training_lowers_the_loss_and_is_deterministic(scenes: DenseDataset, task: str) -> None:
    arch = dense_arch(task)
    model, result = train_dense_arch(arch, scenes, config=FAST)
    assert [r.epoch for r in result.history] == [1, 2] and result.steps == 2 * (96 // 16)
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert 0.0 <= result.val_accuracy <= 1.0 and 0.0 <= result.test_accuracy <= 1.0
    scores = evaluate_dense(model, scenes.test, task=task, num_classes=scenes.num_classes(task))
    assert scores.score == result.test_accuracy
    assert (scores.detection is not None) == (task == "detection")
    _, again = train_dense_arch(arch, scenes, config=FAST)
    assert [r.train_loss for r in again.history] == [r.train_loss for r in result.history]
    assert again.val_accuracy == result.val_accuracy


def test_huge_learning_rate_diverges(scenes: DenseDataset) -> None:
    config = dataclasses.replace(FAST, lr=1e8, warmup_steps=0)
    with pytest.raises(TrainingError, match="diverged at epoch"):
        train_dense_arch(dense_arch("detection"), scenes, config=config)


def test_mismatches_are_rejected_before_training(scenes: DenseDataset, tmp_path) -> None:
    with pytest.raises(TrainingError, match="classes: arch 5 vs dataset 10"):
        check_dense_compatible(dense_arch("detection", num_classes=5), scenes)
    with pytest.raises(TrainingError, match="resolution: arch 64 vs dataset 96"):
        check_dense_compatible(dense_arch("detection"), load_dense_dataset("digit-scenes", resolution=96, limit=4))
    from tests.test_dense_datasets import write_coco

    coco = load_dense_dataset("coco", resolution=RESOLUTION, data_dir=write_coco(tmp_path) and tmp_path)
    with pytest.raises(TrainingError, match="a segmentation architecture needs segmentation labels"):
        check_dense_compatible(dense_arch("segmentation"), coco)


class WrongOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_model_with_the_wrong_outputs_is_named(scenes: DenseDataset) -> None:
    with pytest.raises(TrainingError, match=r"model returns \(16, 10, 64, 64\), expected \(heatmap"):
        train_dense_model(WrongOutputs(), scenes, task="detection", config=FAST)
    with pytest.raises(TrainingError, match=r"expected \(N, 11, 64, 64\) logits for segmentation"):
        train_dense_model(WrongOutputs(), scenes, task="segmentation", config=FAST)


def test_edgenas_train_trains_a_dense_architecture(tmp_path, capsys) -> None:
    from nas.cli.main import main

    path = dense_arch("segmentation").save(tmp_path / "seg.yaml")
    weights = tmp_path / "seg.pt"
    args = ["train", "--arch", str(path), "--dataset", "digit-scenes", "--train-limit", "32", "--epochs", "1"]
    assert main([*args, "--batch-size", "16", "--device", "cpu", "--save", str(weights)]) == 0
    out = capsys.readouterr().out
    assert "digit-scenes: 1x64x64, detection+segmentation" in out and "test mIoU" in out and weights.is_file()
    assert main(["train", "--arch", str(path), "--dataset", "digits"]) == 2
    assert "unknown dense dataset 'digits'" in capsys.readouterr().err
