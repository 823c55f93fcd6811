"""Train and score a detection or segmentation network on a dense dataset.

The recipe, the schedule and the failure handling are classification's
(``nas.training``): SGD + Nesterov with warm-up and cosine decay, weight decay
on conv weights only, the ragged last batch dropped, a non-finite loss is a
:class:`~nas.training.TrainingError` naming the epoch and step, and the first
step checks the shapes the model returns. Batches come from a DataLoader
(``nas.dense_datasets``), shuffled in an order fixed by the seed.

What a dense network returns:

* detection: ``(heatmap, box)``, N x K x h x w and N x 4 x h x w raw values at
  an output stride ``resolution / h`` (``search_spaces.box_coding``);
* segmentation: N x K x H x W class logits at the input size.

The score is COCO mAP@[.5:.95] (``map``) for detection and mIoU for
segmentation; it fills ``TrainResult.val_accuracy`` / ``test_accuracy`` so
the search ranks dense networks as it ranks classifiers (``metric`` says
which score it is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nas.dense_datasets import DENSE_TASKS, DenseBatch, DenseDataset, DenseSplit
from nas.dense_losses import detection_loss, segmentation_loss
from nas.dense_metrics import ConfusionMatrix, DetectionScores, SegmentationScores, detection_map
from nas.task_metrics import task_metric
from nas.training import TrainConfig, TrainingError, TrainLoop, TrainResult, check_fits, fit
from search_spaces.arch import ArchConfig
from search_spaces.box_coding import DEFAULT_DECODE, DecodeSettings, decode, encode_targets
from search_spaces.builder import build_model

__all__ = [
    "DenseScores",
    "check_dense_compatible",
    "evaluate_dense",
    "output_stride",
    "train_dense_arch",
    "train_dense_model",
]


# What the score is, per task (nas.task_metrics decides the names): the manifest's test_metric.
METRICS = {task: task_metric(task).key for task in DENSE_TASKS}


@dataclass(frozen=True)
class DenseScores:
    task: str
    score: float  # map for detection, miou for segmentation
    detection: DetectionScores | None = None
    segmentation: SegmentationScores | None = None


def output_stride(resolution: int, grid: tuple[int, int]) -> int:
    """The stride of a detection head's h x w grid on a square input."""
    h, w = grid
    if h != w or resolution % h:
        raise TrainingError(f"detection head grid {h}x{w} does not divide the {resolution}x{resolution} input")
    return resolution // h


def check_dense_compatible(arch: ArchConfig, dataset: DenseDataset) -> None:
    """Raise a TrainingError naming every field where a dense ``arch`` and ``dataset`` disagree."""
    if arch.task not in dataset.tasks:
        raise TrainingError(
            f"a {arch.task} architecture needs {arch.task} labels, but dataset {dataset.name!r} serves "
            f"{', '.join(dataset.tasks)}"
        )
    check_fits(
        arch,
        dataset.name,
        channels=dataset.channels,
        resolution=dataset.resolution,
        classes=dataset.num_classes(arch.task),
    )


def train_dense_arch(
    arch: ArchConfig,
    dataset: DenseDataset,
    *,
    config: TrainConfig,
    on_epoch: Callable[[int, float], None] | None = None,
    progress: bool = False,
) -> tuple[nn.Module, TrainResult]:
    """Build the dense ``arch`` (weights seeded by ``config.seed``) and train it on ``dataset`` for its task."""
    check_dense_compatible(arch, dataset)
    torch.manual_seed(config.seed)
    model = build_model(arch)
    result = train_dense_model(model, dataset, task=arch.task, config=config, on_epoch=on_epoch, progress=progress)
    return model, result


def train_dense_model(
    model: nn.Module,
    dataset: DenseDataset,
    *,
    task: str,
    config: TrainConfig,
    on_epoch: Callable[[int, float], None] | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` in place for ``task``; score on val every epoch, on test at the end."""
    if task not in DENSE_TASKS:
        raise TrainingError(f"`task` must be one of {DENSE_TASKS}, but got {task=}")
    num_classes = dataset.num_classes(task)
    return fit(
        model,
        config=config,
        loop=lambda device: _DenseLoop(model, dataset, task, config, device),
        test_score=lambda: evaluate_dense(model, dataset.test, task=task, num_classes=num_classes).score,
        on_epoch=on_epoch,
        progress=progress,
    )


class _DenseLoop(TrainLoop):
    """Detection or segmentation: batches from the split's loader, the task's loss."""

    def __init__(self, model: nn.Module, data: DenseDataset, task: str, config: TrainConfig, device: torch.device):
        super().__init__(model, config, device, train_size=len(data.train))
        self.data, self.task, self.metric = data, task, METRICS[task]
        self.num_classes = data.num_classes(task)

    def val_score(self) -> float:
        return evaluate_dense(self.model, self.data.val, task=self.task, num_classes=self.num_classes).score

    def train_epoch(self, epoch: int, bar) -> float:
        steps = min(self.steps_per_epoch, self.total_steps - self.step)
        batches = self.data.train.loader(
            batch_size=min(self.config.batch_size, len(self.data.train)), shuffle=True, seed=self.config.seed + epoch
        )
        losses = []
        for batch in batches:
            if len(losses) == steps or len(batch) < min(self.config.batch_size, len(self.data.train)):
                break  # the ragged last batch: a batch of one breaks BatchNorm and skews the step size
            batch = batch.to(self.device)
            losses.append(self.apply(self._loss(self.model(batch.images), batch), epoch))
            if bar is not None:
                bar.update(1)
        return sum(losses) / len(losses)

    def _loss(self, outputs, batch: DenseBatch) -> torch.Tensor:
        if self.step == 0:
            check_outputs(outputs, self.task, self.num_classes, tuple(batch.images.shape), self.data.name)
        if self.task == "segmentation":
            return segmentation_loss(outputs, batch.masks)
        heatmap, box = outputs
        grid = tuple(heatmap.shape[-2:])
        stride = output_stride(self.data.resolution, grid)
        targets = encode_targets(batch.boxes, batch.labels, num_classes=self.num_classes, grid=grid, stride=stride)
        return detection_loss(heatmap, box, targets)


def check_outputs(outputs, task: str, num_classes: int, input_shape: tuple[int, ...], dataset: str) -> None:
    """A TrainingError when the model's outputs do not have the shapes ``task`` needs."""
    n, _, height, width = input_shape
    if task == "segmentation":
        expected = f"(N, {num_classes}, {height}, {width}) logits"
        ok = isinstance(outputs, torch.Tensor) and tuple(outputs.shape) == (n, num_classes, height, width)
    else:
        expected = f"(heatmap (N, {num_classes}, h, w), box (N, 4, h, w))"
        ok = (
            isinstance(outputs, tuple)
            and len(outputs) == 2
            and outputs[0].ndim == 4
            and tuple(outputs[0].shape[:2]) == (n, num_classes)
            and tuple(outputs[1].shape) == (n, 4, *outputs[0].shape[2:])
        )
    if not ok:
        raise TrainingError(f"model returns {_shapes(outputs)}, expected {expected} for {task} on dataset {dataset!r}")


def _shapes(outputs) -> str:
    if isinstance(outputs, torch.Tensor):
        return str(tuple(outputs.shape))
    if isinstance(outputs, tuple | list):
        return "(" + ", ".join(_shapes(o) for o in outputs) + ")"
    return type(outputs).__name__


def evaluate_dense(
    model: nn.Module,
    split: DenseSplit,
    *,
    task: str,
    num_classes: int,
    batch_size: int = 64,
    decode_settings: DecodeSettings = DEFAULT_DECODE,
) -> DenseScores:
    """mAP (detection) or mIoU (segmentation) of ``model`` on ``split``; its train/eval mode is restored."""
    if len(split) == 0:
        raise TrainingError("cannot evaluate on an empty split")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if task == "segmentation":
                return _segmentation_scores(model, split, num_classes, batch_size, device)
            return _detection_scores(model, split, num_classes, batch_size, device, decode_settings)
    finally:
        model.train(was_training)


def _segmentation_scores(model, split: DenseSplit, num_classes: int, batch_size: int, device) -> DenseScores:
    matrix = ConfusionMatrix(num_classes)
    for batch in split.loader(batch_size=batch_size):
        matrix.update(model(batch.images.to(device)).argmax(dim=1), batch.masks)
    scores = matrix.scores()
    return DenseScores(task="segmentation", score=scores.miou, segmentation=scores)


def _detection_scores(model, split: DenseSplit, num_classes: int, batch_size: int, device, settings) -> DenseScores:
    found, truth = [], []
    for batch in split.loader(batch_size=batch_size):
        heatmap, box = model(batch.images.to(device))
        stride = output_stride(split.resolution, tuple(heatmap.shape[-2:]))
        size = (split.resolution, split.resolution)
        found += decode(heatmap.cpu(), box.cpu(), stride=stride, image_size=size, settings=settings)
        truth += list(zip(batch.boxes, batch.labels))
    scores = detection_map(found, truth, num_classes=num_classes)
    return DenseScores(task="detection", score=scores.map, detection=scores)
